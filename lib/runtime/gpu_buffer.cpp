#include "runtime/gpu_buffer.h"

#include "core/error.h"
#include "runtime/device_info.h"
#include "runtime/poll_wait.h"

namespace moe {

void cuda_check(cudaError_t err, const std::string& what) {
  if (err == cudaSuccess) return;
  cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  fail(ErrorCode::Cuda, "", "",
       what + ": " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

namespace {

template <typename Query>
void wait_done(Query query, const std::string& what) {
  const double limit = gpu_wait_timeout();
  const auto start = PollClock::now();
  const auto deadline = deadline_after(limit);
  for (;;) {
    const cudaError_t e = query();
    if (e == cudaSuccess) return;
    if (e != cudaErrorNotReady) cuda_check(e, what);
    if (limit > 0 && PollClock::now() > deadline)
      fail(ErrorCode::Cuda, "", "",
           what + " did not finish within " + seconds_str(limit) +
               " s (a hung kernel? --gpu-timeout sets the limit)");
    poll_backoff(start);
  }
}

}  // namespace

void wait_stream(cudaStream_t stream, const std::string& what) {
  wait_done([stream] { return cudaStreamQuery(stream); }, what);
}

void wait_event(cudaEvent_t event, const std::string& what) {
  wait_done([event] { return cudaEventQuery(event); }, what);
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
void CudaStream::sync() const { wait_stream(s_, "stream synchronize"); }

CudaEvent::CudaEvent() { cuda_check(cudaEventCreate(&e_), "cudaEventCreate"); }
CudaEvent::~CudaEvent() {
  if (e_) cudaEventDestroy(e_);
}

void copy_to_host(void* dst, const void* src, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  cuda_check(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, stream), "copy to host");
  wait_stream(stream, "copy to host");
}

void copy_to_device(void* dst, const void* src, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  cuda_check(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, stream), "copy to device");
  wait_stream(stream, "copy to device");
}

}  // namespace moe
