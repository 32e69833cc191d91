// NaN / Inf counting over raw tensor bytes by bit tests (no float conversion), one table row per
// float dtype (formats.md section 10), and a parallel scan of many tensors in chunks, read from
// the files with pread (docs/perf.md "scan-values": faster than faulting in an mmap). A word-wide
// test rejects clean 256-byte blocks; only blocks holding a special value are decoded element by
// element.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor_view.h"

namespace moe {

class Progress;

struct ScanCounts {
  uint64_t nan = 0, inf = 0;
  int64_t first = -1;  // element index of the first NaN/Inf, -1 if none
};

// True when `t` has NaN or Inf encodings to look for (BF16, F16, F32, F64, the fp8 types, E8M0).
// Integer types and FP4/FP6 (no special values) are not scanned.
bool has_nonfinite_encodings(DType t);

// Counts NaN and Inf among elements [0, n) at `data` (any alignment). Indices are relative to
// `data`. Returns zeros for types without special encodings.
ScanCounts scan_nonfinite(const uint8_t* data, DType dtype, int64_t n);

// One tensor to scan: in memory (`data`), or `nbytes` at byte `offset` of the file `path`.
struct ScanSource {
  std::string name;
  DType dtype = DType::BF16;
  Shape shape;
  uint64_t nbytes = 0;
  const uint8_t* data = nullptr;
  std::string path;
  uint64_t offset = 0;
};

struct TensorScan {
  std::string name;
  DType dtype = DType::BF16;
  Shape shape;
  uint64_t elements = 0, nan = 0, inf = 0;
  int64_t first = -1;  // flat index
};

// Scans every source (those without special encodings are skipped), split into chunks of about
// `chunk_bytes`, on `threads` threads; progress goes to `progress` (may be null). Throws Error{Io}
// when a file cannot be read.
std::vector<TensorScan> scan_tensors(const std::vector<ScanSource>& sources, int threads,
                                     Progress* progress, uint64_t chunk_bytes = 8ull << 20);

// "[2, 17]": the multi-index of flat element `flat` in `shape`.
std::string index_str(const Shape& shape, int64_t flat);

}  // namespace moe
