// Loading shard bytes to the GPU through two pinned staging buffers: while the copy engine
// moves chunk i from one buffer, the CPU reads chunk i+1 (from the mapped shard file) into the
// other; an event per buffer says when it may be refilled.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "runtime/gpu_buffer.h"

namespace moe {

class StagingLoader {
 public:
  explicit StagingLoader(size_t chunk_bytes = size_t(32) << 20);
  StagingLoader(const StagingLoader&) = delete;
  StagingLoader& operator=(const StagingLoader&) = delete;

  // `rows` rows of `row_bytes` each, read `src_stride` bytes apart, written `dst_stride` bytes
  // apart; when dst_stride > row_bytes the gap is zeroed (K padding for the kernels).
  void upload_rows(void* dst, size_t dst_stride, const uint8_t* src, size_t src_stride,
                   size_t row_bytes, int64_t rows);
  void upload(void* dst, const void* src, size_t bytes);
  // Waits until every queued copy has landed.
  void finish();
  cudaStream_t stream() const { return stream_.get(); }
  uint64_t bytes_uploaded() const { return uploaded_; }

 private:
  // Returns the next free staging buffer (waits for its previous copy to finish).
  uint8_t* acquire();
  void release_after_copy();

  size_t chunk_;
  CudaStream stream_;
  PinnedBuffer buf_[2];
  CudaEvent done_[2];
  bool pending_[2] = {false, false};
  int next_ = 0;
  uint64_t uploaded_ = 0;
};

}  // namespace moe
