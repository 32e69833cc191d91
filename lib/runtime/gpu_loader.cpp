#include "runtime/gpu_loader.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace moe {

StagingLoader::StagingLoader(size_t chunk_bytes)
    : chunk_(chunk_bytes), buf_{PinnedBuffer(chunk_bytes), PinnedBuffer(chunk_bytes)} {}

uint8_t* StagingLoader::acquire() {
  const int i = next_;
  if (pending_[i]) {
    wait_event(done_[i].get(), "staging buffer wait");
    pending_[i] = false;
  }
  return static_cast<uint8_t*>(buf_[i].data());
}

void StagingLoader::release_after_copy() {
  cuda_check(cudaEventRecord(done_[next_].get(), stream_.get()), "staging event record");
  pending_[next_] = true;
  next_ ^= 1;
}

void StagingLoader::upload(void* dst, const void* src, size_t bytes) {
  const auto* s = static_cast<const uint8_t*>(src);
  auto* d = static_cast<uint8_t*>(dst);
  for (size_t off = 0; off < bytes; off += chunk_) {
    const size_t n = std::min(chunk_, bytes - off);
    uint8_t* stage = acquire();
    std::memcpy(stage, s + off, n);  // the read of the mapped file happens here
    cuda_check(cudaMemcpyAsync(d + off, stage, n, cudaMemcpyHostToDevice, stream_.get()),
               "staged upload");
    release_after_copy();
    uploaded_ += n;
  }
}

void StagingLoader::upload_rows(void* dst, size_t dst_stride, const uint8_t* src,
                                size_t src_stride, size_t row_bytes, int64_t rows) {
  if (rows <= 0 || row_bytes == 0) return;
  if (dst_stride == row_bytes && src_stride == row_bytes) {
    upload(dst, src, row_bytes * size_t(rows));
    return;
  }
  MOE_ASSERT(row_bytes <= chunk_ && dst_stride >= row_bytes);
  if (dst_stride > row_bytes)
    cuda_check(cudaMemsetAsync(dst, 0, dst_stride * size_t(rows), stream_.get()),
               "zero the padded rows");
  const int64_t rows_per_chunk = int64_t(chunk_ / row_bytes);
  auto* d = static_cast<uint8_t*>(dst);
  for (int64_t r0 = 0; r0 < rows; r0 += rows_per_chunk) {
    const int64_t n = std::min(rows_per_chunk, rows - r0);
    uint8_t* stage = acquire();
    for (int64_t r = 0; r < n; ++r)
      std::memcpy(stage + size_t(r) * row_bytes, src + size_t(r0 + r) * src_stride, row_bytes);
    cuda_check(cudaMemcpy2DAsync(d + size_t(r0) * dst_stride, dst_stride, stage, row_bytes,
                                 row_bytes, size_t(n), cudaMemcpyHostToDevice, stream_.get()),
               "staged row upload");
    release_after_copy();
    uploaded_ += size_t(n) * row_bytes;
  }
}

void StagingLoader::finish() { stream_.sync(); }

}  // namespace moe
