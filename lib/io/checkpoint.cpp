#include "io/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/error.h"

namespace moe {

namespace fs = std::filesystem;

namespace {

constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kConfigName = "config.json";

// Reads a small JSON file (config, index); any failure is `code` naming the file.
nlohmann::json read_json_object(const std::string& path, ErrorCode code) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(ErrorCode::Io, path, "", "cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    fail(code, path, "", std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) fail(code, path, "", "not a JSON object");
  return j;
}

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// Shard file names of an index, and for each one the tensors the index puts there.
std::map<std::string, std::vector<std::string>> read_index(const std::string& index_path) {
  const nlohmann::json index = read_json_object(index_path, ErrorCode::InvalidIndex);
  auto wm = index.find("weight_map");
  MOE_CHECK(wm != index.end() && wm->is_object(), InvalidIndex, index_path, "",
            "no \"weight_map\" object");
  MOE_CHECK(!wm->empty(), InvalidIndex, index_path, "", "\"weight_map\" is empty");
  std::map<std::string, std::vector<std::string>> shards;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    MOE_CHECK(it.value().is_string() && !it.value().get_ref<const std::string&>().empty(),
              InvalidIndex, index_path, it.key(), "weight_map value is not a file name");
    shards[it.value().get<std::string>()].push_back(it.key());
  }
  return shards;
}

}  // namespace

Checkpoint Checkpoint::open(const std::string& path) {
  Checkpoint ck;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  MOE_CHECK(!ec && fs::exists(st), Io, path, "", "no such file or directory");

  std::vector<std::string> file_paths;
  std::map<std::string, std::vector<std::string>> index_shards;  // shard path -> tensors
  std::string index_path;
  if (fs::is_directory(st)) {
    ck.root_ = path;
    index_path = (fs::path(path) / kIndexName).string();
    if (is_file(index_path)) {
      for (auto& [name, tensors] : read_index(index_path)) {
        const std::string shard = (fs::path(path) / name).string();
        MOE_CHECK(is_file(shard), InvalidIndex, index_path, tensors.front(),
                  "shard '" + name + "' (listed for " + std::to_string(tensors.size()) +
                      " tensors) does not exist");
        file_paths.push_back(shard);
        index_shards[shard] = std::move(tensors);
      }
    } else {
      for (const auto& de : fs::directory_iterator(path, ec))
        if (de.path().extension() == ".safetensors" && is_file(de.path()))
          file_paths.push_back(de.path().string());
      MOE_CHECK(!ec, Io, path, "", "cannot list the directory: " + ec.message());
      std::sort(file_paths.begin(), file_paths.end());
      MOE_CHECK(!file_paths.empty(), Io, path, "",
                "no model.safetensors.index.json and no *.safetensors files");
    }
  } else {
    MOE_CHECK(fs::is_regular_file(st), Io, path, "", "not a regular file or directory");
    const fs::path parent = fs::path(path).parent_path();
    ck.root_ = parent.empty() ? std::string(".") : parent.string();
    file_paths.push_back(path);
  }

  const std::string config_path = (fs::path(ck.root_) / kConfigName).string();
  if (is_file(config_path)) {
    ck.config_ = read_json_object(config_path, ErrorCode::InvalidConfig);
    ck.has_config_ = true;
  }

  for (const std::string& fp : file_paths) {
    ck.files_.push_back(std::make_unique<SafetensorsFile>(fp));
    const size_t fi = ck.files_.size() - 1;
    const SafetensorsFile& file = *ck.files_.back();
    for (const std::string& name : index_shards[fp])
      MOE_CHECK(file.has(name), InvalidIndex, index_path, name,
                "not found in shard '" + fs::path(fp).filename().string() +
                    "' where the index puts it");
    for (const TensorEntry& e : file.header().tensors) {
      auto [it, inserted] = ck.catalogue_.emplace(e.name, CatalogueEntry{fi, &e});
      MOE_CHECK(inserted, DuplicateTensor, fp, e.name,
                "also in " + ck.files_[it->second.file]->path());
    }
  }
  return ck;
}

const CatalogueEntry& Checkpoint::find(const std::string& name) const {
  auto it = catalogue_.find(name);
  MOE_CHECK(it != catalogue_.end(), MissingTensor, root_, name, "not in the checkpoint");
  return it->second;
}

TensorView Checkpoint::view(const std::string& name) const {
  return files_[find(name).file]->view(name);
}

const std::string& Checkpoint::file_of(const std::string& name) const {
  return files_[find(name).file]->path();
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(catalogue_.size());
  for (const auto& kv : catalogue_) out.push_back(kv.first);
  return out;
}

uint64_t Checkpoint::total_tensor_bytes() const {
  uint64_t total = 0;
  for (const auto& kv : catalogue_) total += kv.second.entry->end - kv.second.entry->begin;
  return total;
}

}  // namespace moe
