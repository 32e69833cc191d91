#include "runtime/device_info.h"

#include <atomic>

#ifdef MOE_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace moe {

namespace {
std::atomic<double> g_gpu_wait_timeout{kDefaultGpuTimeoutS};
}  // namespace

void set_gpu_wait_timeout(double seconds) { g_gpu_wait_timeout = seconds > 0 ? seconds : 0.0; }
double gpu_wait_timeout() { return g_gpu_wait_timeout; }

GpuInfo query_gpu() {
  GpuInfo info;
#ifndef MOE_HAVE_CUDA
  info.reason = "moe-tool was built without CUDA (no nvcc at configure time)";
#else
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess || n == 0) {
    info.reason = std::string("no CUDA device: ") +
                  (err != cudaSuccess ? cudaGetErrorString(err) : "device count is 0");
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return info;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
    info.reason = "cudaGetDeviceProperties failed";
    return info;
  }
  info.available = true;
  info.device_count = n;
  info.name = prop.name;
  info.sm_major = prop.major;
  info.sm_minor = prop.minor;
  info.sm_count = prop.multiProcessorCount;
  info.memory_gib = static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0);
#endif
  return info;
}

}  // namespace moe
