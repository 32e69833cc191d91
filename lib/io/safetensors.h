// safetensors reading (formats.md section 1): the header parser, which applies every rejection
// rule of the reference reader (section 1.2) as a named moe::Error, and a mapped file that hands
// out lazy TensorViews into the data buffer.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor_view.h"
#include "io/mapped_file.h"

namespace moe {

struct TensorEntry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin = 0, end = 0;  // relative to the data buffer
};

struct SafetensorsHeader {
  std::vector<TensorEntry> tensors;             // in header order
  std::map<std::string, std::string> metadata;  // __metadata__
  uint64_t data_offset = 0;                     // 8 + n
};

// Parses and validates the first bytes of a file of `file_size` bytes; `bytes` holds at least
// min(file_size, 8 + n) bytes. `path` only names the file in errors. Pure: no I/O.
SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, uint64_t available,
                                           uint64_t file_size, const std::string& path);

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);  // maps and validates
  const std::string& path() const { return file_.path(); }
  const SafetensorsHeader& header() const { return header_; }
  const MappedFile& mapped() const { return file_; }
  bool has(const std::string& name) const { return index_.count(name) != 0; }
  const TensorEntry& entry(const std::string& name) const;  // throws MissingTensor
  TensorView view(const std::string& name) const;

 private:
  MappedFile file_;
  SafetensorsHeader header_;
  std::map<std::string, size_t> index_;
};

}  // namespace moe
