// A Hugging Face checkpoint as one tensor catalogue: a directory with config.json and either
// model.safetensors, model.safetensors.index.json (+ shards), or any *.safetensors files; or a
// single .safetensors file (config.json beside it, if any). Every tensor name maps to a lazy,
// mmap-backed view. GGUF files come through the same catalogue later.
#pragma once
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace moe {

struct CatalogueEntry {
  size_t file;  // index into files()
  const TensorEntry* entry;
};

class Checkpoint {
 public:
  static Checkpoint open(const std::string& path);  // throws Error (Io, InvalidIndex, ...)

  const std::string& root() const { return root_; }         // directory
  const nlohmann::json& config() const { return config_; }  // {} if no config.json
  bool has_config() const { return has_config_; }
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

  bool has(const std::string& name) const { return catalogue_.count(name) != 0; }
  const CatalogueEntry& find(const std::string& name) const;  // throws MissingTensor
  TensorView view(const std::string& name) const;             // throws MissingTensor
  const std::string& file_of(const std::string& name) const;  // path of the file holding it
  std::vector<std::string> names() const;                     // sorted
  uint64_t total_tensor_bytes() const;

 private:
  std::string root_;
  nlohmann::json config_ = nlohmann::json::object();
  bool has_config_ = false;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, CatalogueEntry> catalogue_;
};

}  // namespace moe
