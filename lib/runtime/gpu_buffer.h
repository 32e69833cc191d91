// RAII owners of device memory, pinned host memory, streams and events, and cuda_check(): the
// one place where a CUDA error becomes moe::Error{Cuda} with a message naming the call.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>

namespace moe {

// Throws Error{Cuda} "<what>: <cudaErrorName> (<description>)" unless err == cudaSuccess.
void cuda_check(cudaError_t err, const std::string& what);

// cudaStreamSynchronize / cudaEventSynchronize under gpu_wait_timeout() (runtime/device_info.h):
// polls, and past the deadline throws Error{Cuda} "<what> did not finish within S s (a hung
// kernel?)". An error of the work waited for throws as cuda_check does.
void wait_stream(cudaStream_t stream, const std::string& what);
void wait_event(cudaEvent_t event, const std::string& what);

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) { ensure(bytes); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  // Grows to at least `bytes` (contents are not kept); never shrinks, so a steady-state
  // workload stops allocating (and can be captured in a CUDA graph).
  void ensure(size_t bytes);
  void release();
  void* data() const { return ptr_; }
  template <typename T>
  T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }
  bool empty() const { return ptr_ == nullptr; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

class PinnedBuffer {
 public:
  explicit PinnedBuffer(size_t bytes);
  ~PinnedBuffer();
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  void* data() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

class CudaStream {
 public:
  CudaStream();
  ~CudaStream();
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  cudaStream_t get() const { return s_; }
  void sync() const;

 private:
  cudaStream_t s_ = nullptr;
};

class CudaEvent {
 public:
  CudaEvent();
  ~CudaEvent();
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

// Copies n bytes device -> host on `stream` and waits.
void copy_to_host(void* dst, const void* src, size_t n, cudaStream_t stream);
// Copies n bytes host -> device on `stream` (pageable source: synchronous w.r.t. the host).
void copy_to_device(void* dst, const void* src, size_t n, cudaStream_t stream);

}  // namespace moe
