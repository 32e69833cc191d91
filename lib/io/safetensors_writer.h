// Streaming safetensors writer: declare every tensor first (name, dtype, shape), then write the
// data tensor by tensor in declaration order, in as many pieces as the caller likes. The header
// is padded with spaces to a multiple of 8 and each tensor's data starts at a multiple of 8
// (zero bytes between tensors are never written: declared order and offsets leave no gaps,
// sizes are rounded up by giving the header the padding). Output goes to PATH.tmp-XXXX and is
// renamed to PATH by commit(); a writer destroyed without commit() removes its temporary.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor_view.h"

namespace moe {

class SafetensorsWriter {
 public:
  SafetensorsWriter(std::string path, std::map<std::string, std::string> metadata);
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // Declaration phase. Tensors keep this order in the data buffer.
  void declare(const std::string& name, DType dtype, const Shape& shape);
  // Writes the header; after this only append() and commit().
  void begin_data();
  // Appends bytes of the current tensor (tensors are filled in declaration order; a tensor is
  // complete when its byte count is reached). Thread-compatible, not thread-safe.
  void append(const void* bytes, uint64_t n);
  // Positional write for parallel writers: bytes at `offset` within tensor `name` (pwrite).
  // Mixing with append() is not allowed. Thread-safe.
  void write_at(const std::string& name, uint64_t offset, const void* bytes, uint64_t n);
  // Byte offset of a declared tensor within the file (valid after begin_data()).
  uint64_t file_offset(const std::string& name) const;
  uint64_t total_bytes() const;  // file size once complete
  // fsync, close, rename into place. Throws Error{Io} on any failure (e.g. disk full).
  void commit();
  const std::string& path() const { return path_; }

 private:
  struct Decl {
    std::string name;
    DType dtype;
    Shape shape;
    uint64_t nbytes, begin;
  };
  std::string path_, tmp_path_;
  std::map<std::string, std::string> metadata_;
  std::vector<Decl> decls_;
  std::map<std::string, size_t> index_;
  int fd_ = -1;
  uint64_t data_offset_ = 0, written_ = 0;
  bool committed_ = false;
};

// Convenience: write a whole file of in-memory tensors atomically.
struct OwnedTensor {
  std::string name;
  DType dtype;
  Shape shape;
  std::vector<uint8_t> bytes;
};
void write_safetensors(const std::string& path, const std::vector<OwnedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace moe
