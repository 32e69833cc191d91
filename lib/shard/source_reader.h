// Reads checkpoint bytes for convert with pread instead of touching the read-only mapping:
// faulting a file mapping in costs ~1 us per 4 KiB page on our VMs (docs/perf.md "convert"), and
// pages never mapped need no releasing, so resident memory stays at the writer's buffers.
// A source file that shrinks while converting is an Io error naming it, not a SIGBUS.
#pragma once
#include <cstdint>
#include <memory>
#include <new>
#include <utility>
#include <string>
#include <vector>

#include "core/tensor_view.h"
#include "io/checkpoint.h"

namespace moe {

class SourceReader {
 public:
  explicit SourceReader(const Checkpoint& ckpt);  // opens every file; throws Io naming it
  ~SourceReader();
  SourceReader(const SourceReader&) = delete;
  SourceReader& operator=(const SourceReader&) = delete;

  // Copies the n bytes at `src` (a pointer into one of the checkpoint's mappings) to dst.
  // Thread-safe. Throws Io naming the file on a read error or a short read.
  void read(const uint8_t* src, uint64_t n, uint8_t* dst) const;

 private:
  struct File {
    const uint8_t* base;
    uint64_t size;
    int fd;
    std::string path;
  };
  std::vector<File> files_;
};

// A byte buffer whose resize() leaves new bytes uninitialised: the writer's buffers are always
// overwritten whole, and zero-filling them first would be one more pass over memory.
template <typename T>
struct NoInitAllocator : std::allocator<T> {
  using value_type = T;
  template <typename U>
  struct rebind {
    using other = NoInitAllocator<U>;
  };
  NoInitAllocator() = default;
  template <typename U>
  NoInitAllocator(const NoInitAllocator<U>&) noexcept {}
  template <typename U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};
using ByteBuffer = std::vector<uint8_t, NoInitAllocator<uint8_t>>;

// stage_rows reads a view's contiguous runs one by one when they are separated by gaps of at
// least this many bytes; otherwise the whole span in one call (a syscall costs about as much
// as copying a few KiB).
constexpr uint64_t kMinGapBytes = 4096;

// Copies what view `v` addresses into `buf` (resized) and returns the same matrix as a view
// into `buf`. `reader` null: the source is plain memory, `v` is returned as is. A view is seen
// as runs of contiguous elements: its rows when col_stride == 1 (a TP slice of w2's columns
// takes part of each row), its columns when the rows are the inner dimension (fused 3-D inputs
// stored in x out: Llama-4 and gpt-oss gate_up_proj / down_proj). Runs apart by kMinGapBytes
// or more are read one by one into a compact copy; otherwise the span from the first to the
// last element is read at once and the strides are kept.
MatrixView stage_rows(const MatrixView& v, const SourceReader* reader, ByteBuffer& buf);

// Rows a chunk of `v` should span so that each run of a column-strided view (see stage_rows)
// is at least kMinGapBytes long; 1 for row-contiguous views.
int64_t min_rows_per_chunk(const MatrixView& v);

// Bytes from the first to one past the last element of `v` (non-negative strides); 0 if empty.
uint64_t view_span_bytes(const MatrixView& v);

}  // namespace moe
