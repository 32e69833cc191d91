// Streaming, atomic safetensors writer: declare every tensor (name, dtype, shape), begin_data()
// writes the header, then the data arrives by append() (declaration order) or write_at()
// (positional, from many threads); commit() makes the file appear at PATH in one rename.
//
// Alignment policy. The header is padded with spaces so the data buffer starts at a multiple of
// 8, and the format forbids gaps, so alignment comes from the *order* of the data: tensors whose
// byte size is a multiple of 8 come first, then those of size 4 (mod 8), then 2 (mod 4), then odd
// sizes; declaration order is kept inside each group. Hence every tensor whose size is a multiple
// of 8 starts at a multiple of 8 from the data start (and of the file), and every tensor starts
// at a multiple of its own element size. When all sizes are multiples of 8 (the usual case) the
// data order is exactly the declaration order. file_offset() says where each tensor landed.
//
// Atomicity: output goes to PATH.tmp-<random>, which commit() fsyncs and renames to PATH; a
// writer destroyed without commit() removes its temporary. Write errors (ENOSPC, EFBIG, ...)
// throw Error{Io} naming PATH.
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor_view.h"

namespace moe {

class SafetensorsWriter {
 public:
  // Creates the temporary file next to `path` (throws Error{Io} if that is impossible).
  SafetensorsWriter(std::string path, std::map<std::string, std::string> metadata);
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // Declaration phase. A duplicate name throws DuplicateTensor; a sub-byte dtype whose element
  // count is not a whole number of bytes (odd F4 count) throws MisalignedSlice.
  void declare(const std::string& name, DType dtype, const Shape& shape);
  // Fixes the layout and writes the header; after this only append() / write_at() and commit().
  void begin_data();
  // Appends bytes of the current tensor (tensors are filled in declaration order; a tensor is
  // complete when its byte count is reached, and one call may span several tensors).
  // Thread-compatible, not thread-safe.
  void append(const void* bytes, uint64_t n);
  // Positional write for parallel writers: bytes at `offset` within tensor `name` (pwrite).
  // Mixing with append() is not allowed. Thread-safe. Each byte must be written exactly once.
  void write_at(const std::string& name, uint64_t offset, const void* bytes, uint64_t n);
  // Byte offset of a declared tensor within the file (valid after begin_data()).
  uint64_t file_offset(const std::string& name) const;
  uint64_t total_bytes() const;  // file size once complete (valid after begin_data())
  // Checks that every data byte was written, then fsync, close, rename into place. Throws
  // Error{Io} on any failure (e.g. disk full). Calls begin_data() if nobody did.
  void commit();
  // Durable (the default): commit() fsyncs the file before the rename and its directory after.
  // Off: the rename alone, still atomic for a process that fails or is killed, not for a power
  // loss (convert --no-fsync).
  void set_durable(bool durable) { durable_ = durable; }
  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return tmp_path_; }

 private:
  struct Decl {
    std::string name;
    DType dtype;
    Shape shape;
    uint64_t nbytes, begin;
  };
  enum Mode : int { kNone, kAppend, kPositional };
  void claim_mode(Mode m);
  void write_fully(const void* bytes, uint64_t n, uint64_t file_pos);

  std::string path_, tmp_path_;
  std::map<std::string, std::string> metadata_;
  std::vector<Decl> decls_;              // declaration order
  std::map<std::string, size_t> index_;  // name -> decls_ index
  int fd_ = -1;
  uint64_t data_offset_ = 0, data_bytes_ = 0;
  bool begun_ = false, committed_ = false, durable_ = true;
  size_t append_tensor_ = 0;     // append(): the tensor being filled (declaration order)
  uint64_t append_offset_ = 0;   // append(): bytes of it already written
  std::atomic<int> mode_{kNone};
  std::atomic<uint64_t> written_{0};
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
