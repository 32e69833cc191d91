#include "model/value_scan.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>

#include "core/error.h"
#include "core/parallel.h"
#include "core/progress.h"

// The block tests below are the hot loop; with GCC/Clang on x86-64 they are compiled twice and
// the AVX2 copy is picked at load time where the CPU has it (2x the SSE2 rate, docs/perf.md).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__)
#define MOE_SCAN_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MOE_SCAN_CLONES
#endif

namespace moe {

namespace {

constexpr uint64_t replicate(uint64_t lane, int lane_bytes) {
  uint64_t r = 0;
  for (int i = 0; i < 8 / lane_bytes; ++i) r |= lane << (i * 8 * lane_bytes);
  return r;
}

constexpr int64_t kBlockWords = 32;  // 256 bytes per word-wide test

inline uint64_t load64(const uint8_t* p) {
  uint64_t x;
  std::memcpy(&x, p, 8);
  return x;
}

// First block in [from, blocks) holding a lane whose masked bits are all ones (see ExpAllOnes),
// or `blocks` when none does.
MOE_SCAN_CLONES int64_t next_block_exp(const uint8_t* p, int64_t from, int64_t blocks, uint64_t m,
                                       uint64_t a, uint64_t t) {
  for (int64_t b = from; b < blocks; ++b) {
    const uint8_t* q = p + b * kBlockWords * 8;
    uint64_t acc = 0;
    for (int64_t j = 0; j < kBlockWords; ++j) acc |= ((load64(q + 8 * j) & m) + a) & t;
    if (acc) return b;
  }
  return blocks;
}

// First block in [from, blocks) holding the byte `code` (replicated in `c`), or `blocks`.
MOE_SCAN_CLONES int64_t next_block_byte(const uint8_t* p, int64_t from, int64_t blocks, uint64_t c) {
  constexpr uint64_t kOnes = replicate(0x01, 1), kHigh = replicate(0x80, 1);
  for (int64_t b = from; b < blocks; ++b) {
    const uint8_t* q = p + b * kBlockWords * 8;
    uint64_t acc = 0;
    for (int64_t j = 0; j < kBlockWords; ++j) {
      const uint64_t y = load64(q + 8 * j) ^ c;
      acc |= (y - kOnes) & ~y & kHigh;  // has-zero-byte: exact on whether one exists
    }
    if (acc) return b;
  }
  return blocks;
}

enum : int { kFinite = 0, kNan = 1, kInf = 2 };

// Formats whose specials have the exponent field all ones (the sign bit is outside `kExp`):
// a lane is special iff (v & exp) == exp, i.e. iff (v & exp) + lowest_exp_bit carries into the
// sign bit. No carry crosses lanes because (v & exp) + lowest_exp_bit <= sign bit.
template <typename Lane, uint64_t kExp, uint64_t kMant, bool kHasInf>
struct ExpAllOnes {
  static constexpr int kBytes = sizeof(Lane);
  static constexpr uint64_t kSign = uint64_t{1} << (8 * kBytes - 1);
  static int64_t next_block(const uint8_t* p, int64_t from, int64_t blocks) {
    return next_block_exp(p, from, blocks, replicate(kExp, kBytes),
                          replicate(kExp & (~kExp + 1), kBytes), replicate(kSign, kBytes));
  }
  static int classify(uint64_t v) {
    if ((v & kExp) != kExp) return kFinite;
    return !kHasInf || (v & kMant) ? kNan : kInf;
  }
};

// One-byte formats whose only special is one code (fnuz 0x80 = NaN, E8M0 0xFF = NaN).
template <uint8_t kCode>
struct ByteCode {
  static constexpr int kBytes = 1;
  static int64_t next_block(const uint8_t* p, int64_t from, int64_t blocks) {
    return next_block_byte(p, from, blocks, replicate(kCode, 1));
  }
  static int classify(uint64_t v) { return v == kCode ? kNan : kFinite; }
};

using Bf16 = ExpAllOnes<uint16_t, 0x7f80, 0x007f, true>;
using F16 = ExpAllOnes<uint16_t, 0x7c00, 0x03ff, true>;
using F32 = ExpAllOnes<uint32_t, 0x7f800000, 0x007fffff, true>;
using F64 = ExpAllOnes<uint64_t, 0x7ff0000000000000ull, 0x000fffffffffffffull, true>;
using E4m3 = ExpAllOnes<uint8_t, 0x7f, 0x7f, false>;  // fn: S.1111.111 is NaN, no Inf
using E5m2 = ExpAllOnes<uint8_t, 0x7c, 0x03, true>;
using Fnuz = ByteCode<0x80>;
using E8m0 = ByteCode<0xff>;

template <class T>
void scan_slow(const uint8_t* p, int64_t begin, int64_t end, ScanCounts& c) {
  for (int64_t i = begin; i < end; ++i) {
    uint64_t v = 0;
    std::memcpy(&v, p + i * T::kBytes, T::kBytes);  // little-endian host
    const int cls = T::classify(v);
    if (cls == kFinite) continue;
    if (c.first < 0) c.first = i;
    (cls == kNan ? c.nan : c.inf)++;
  }
}

template <class T>
ScanCounts scan_impl(const uint8_t* p, int64_t n) {
  constexpr int64_t kPerBlock = kBlockWords * 8 / T::kBytes;
  const int64_t blocks = n / kPerBlock;
  ScanCounts c;
  for (int64_t b = T::next_block(p, 0, blocks); b < blocks; b = T::next_block(p, b + 1, blocks))
    scan_slow<T>(p, b * kPerBlock, (b + 1) * kPerBlock, c);
  scan_slow<T>(p, blocks * kPerBlock, n, c);
  return c;
}

struct ScanRow {
  DType dtype;
  ScanCounts (*scan)(const uint8_t* p, int64_t n);
};
constexpr ScanRow kScanRows[] = {
    {DType::BF16, scan_impl<Bf16>},        {DType::F16, scan_impl<F16>},
    {DType::F32, scan_impl<F32>},          {DType::F64, scan_impl<F64>},
    {DType::F8_E4M3, scan_impl<E4m3>},     {DType::F8_E5M2, scan_impl<E5m2>},
    {DType::F8_E4M3FNUZ, scan_impl<Fnuz>}, {DType::F8_E5M2FNUZ, scan_impl<Fnuz>},
    {DType::F8_E8M0, scan_impl<E8m0>},
};

const ScanRow* scan_row(DType t) {
  for (const auto& row : kScanRows)
    if (row.dtype == t) return &row;
  return nullptr;
}

// Read-only descriptors of the scanned files, closed on scope exit.
class Files {
 public:
  int fd(const std::string& path) {
    auto it = fds_.find(path);
    if (it != fds_.end()) return it->second;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    MOE_CHECK(fd >= 0, Io, path, "", std::string("cannot open: ") + std::strerror(errno));
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    fds_[path] = fd;
    return fd;
  }
  ~Files() {
    for (auto& [p, fd] : fds_) ::close(fd);
  }

 private:
  std::map<std::string, int> fds_;
};

// Reads [offset, offset + n) of fd into buf in full.
void read_fully(int fd, const std::string& path, uint64_t offset, uint8_t* buf, uint64_t n) {
  while (n > 0) {
    ssize_t r = ::pread(fd, buf, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    MOE_CHECK(r > 0, Io, path, "", r == 0 ? "unexpected end of file" : std::string("read failed: ") + std::strerror(errno));
    buf += r;
    offset += static_cast<uint64_t>(r);
    n -= static_cast<uint64_t>(r);
  }
}

// pread piece size: small enough to stay in L2 while it is scanned (256 KiB measured best).
constexpr uint64_t kPieceBytes = 256 << 10;

}  // namespace

bool has_nonfinite_encodings(DType t) { return scan_row(t) != nullptr; }

ScanCounts scan_nonfinite(const uint8_t* data, DType dtype, int64_t n) {
  const ScanRow* row = scan_row(dtype);
  return row && n > 0 ? row->scan(data, n) : ScanCounts{};
}

std::string index_str(const Shape& shape, int64_t flat) {
  if (shape.empty()) return "[]";
  std::vector<int64_t> idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    const int64_t dim = shape[d] > 0 ? shape[d] : 1;
    idx[d] = flat % dim;
    flat /= dim;
  }
  return shape_str(idx);
}

std::vector<TensorScan> scan_tensors(const std::vector<ScanSource>& sources, int threads,
                                     Progress* progress, uint64_t chunk_bytes) {
  struct Chunk {
    size_t tensor;
    uint64_t begin, end;  // bytes within the tensor, multiples of 8 except a tensor's end
  };
  std::vector<TensorScan> out;
  std::vector<const ScanSource*> src;
  std::vector<Chunk> chunks;
  const uint64_t step = std::max<uint64_t>(8, chunk_bytes / 8 * 8);
  for (const auto& s : sources) {
    if (!has_nonfinite_encodings(s.dtype)) continue;
    const int64_t n = shape_numel(s.shape);
    MOE_ASSERT(n >= 0 && static_cast<uint64_t>(n) * (dtype_bits(s.dtype) / 8) == s.nbytes);
    for (uint64_t b = 0; b < s.nbytes; b += step) chunks.push_back({out.size(), b, std::min(s.nbytes, b + step)});
    out.push_back({s.name, s.dtype, s.shape, static_cast<uint64_t>(n), 0, 0, -1});
    src.push_back(&s);
  }
  Files files;
  std::vector<int> fds(src.size(), -1);
  for (size_t i = 0; i < src.size(); ++i)
    if (!src[i]->data) fds[i] = files.fd(src[i]->path);

  std::vector<ScanCounts> results(chunks.size());
  parallel_for(static_cast<int64_t>(chunks.size()), threads, [&](int64_t i) {
    const Chunk& c = chunks[i];
    const ScanSource& s = *src[c.tensor];
    const int eb = dtype_bits(s.dtype) / 8;
    ScanCounts& r = results[i];
    auto add = [&](const uint8_t* p, uint64_t at, uint64_t bytes) {
      ScanCounts k = scan_nonfinite(p, s.dtype, static_cast<int64_t>(bytes / eb));
      r.nan += k.nan;
      r.inf += k.inf;
      if (r.first < 0 && k.first >= 0) r.first = static_cast<int64_t>(at / eb) + k.first;
    };
    if (s.data) {
      add(s.data + c.begin, c.begin, c.end - c.begin);
    } else {
      thread_local std::unique_ptr<uint8_t[]> buf(new uint8_t[kPieceBytes]);
      for (uint64_t at = c.begin; at < c.end; at += kPieceBytes) {
        const uint64_t len = std::min(kPieceBytes, c.end - at);
        read_fully(fds[c.tensor], s.path, s.offset + at, buf.get(), len);
        add(buf.get(), at, len);
      }
    }
    if (progress) progress->add(c.end - c.begin);
  });
  for (size_t i = 0; i < chunks.size(); ++i) {  // chunks are in element order per tensor
    TensorScan& t = out[chunks[i].tensor];
    t.nan += results[i].nan;
    t.inf += results[i].inf;
    if (t.first < 0) t.first = results[i].first;
  }
  return out;
}

}  // namespace moe
