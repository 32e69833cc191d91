#include "runtime/gpu_buffer.h"

#include "core/error.h"

namespace moe {

void cuda_check(cudaError_t err, const std::string& what) {
  if (err == cudaSuccess) return;
  cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  fail(ErrorCode::Cuda, "", "",
       what + ": " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    release();
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

void DeviceBuffer::ensure(size_t bytes) {
  if (bytes <= bytes_ && ptr_) return;
  release();
  if (bytes == 0) bytes = 16;  // a valid pointer even for empty tensors
  cuda_check(cudaMalloc(&ptr_, bytes),
             "cudaMalloc of " + std::to_string(bytes) + " bytes");
  bytes_ = bytes;
}

void DeviceBuffer::release() {
  if (ptr_) cudaFree(ptr_);
  ptr_ = nullptr;
  bytes_ = 0;
}

PinnedBuffer::PinnedBuffer(size_t bytes) : bytes_(bytes) {
  cuda_check(cudaMallocHost(&ptr_, bytes), "cudaMallocHost of " + std::to_string(bytes) + " bytes");
}
PinnedBuffer::~PinnedBuffer() {
  if (ptr_) cudaFreeHost(ptr_);
}

CudaStream::CudaStream() {
  cuda_check(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking), "cudaStreamCreate");
}
CudaStream::~CudaStream() {
  if (s_) cudaStreamDestroy(s_);
}
void CudaStream::sync() const { cuda_check(cudaStreamSynchronize(s_), "cudaStreamSynchronize"); }

CudaEvent::CudaEvent() { cuda_check(cudaEventCreate(&e_), "cudaEventCreate"); }
CudaEvent::~CudaEvent() {
  if (e_) cudaEventDestroy(e_);
}

void copy_to_host(void* dst, const void* src, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  cuda_check(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, stream), "copy to host");
  cuda_check(cudaStreamSynchronize(stream), "copy to host (synchronize)");
}

void copy_to_device(void* dst, const void* src, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  cuda_check(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, stream), "copy to device");
  cuda_check(cudaStreamSynchronize(stream), "copy to device (synchronize)");
}

}  // namespace moe
