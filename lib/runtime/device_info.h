// Whether this build and this machine can run the CUDA path, and why not.
#pragma once
#include <string>

namespace moe {

struct GpuInfo {
  bool available = false;
  std::string reason;  // why not, when unavailable ("built without CUDA", "no CUDA device: ...")
  std::string name;    // device 0
  int sm_major = 0, sm_minor = 0, sm_count = 0, device_count = 0;
  double memory_gib = 0;
};

GpuInfo query_gpu();

// How long one host-side wait on the GPU (a stream, an event) may take before it fails with a
// one-line Error{Cuda} instead of hanging on a kernel that never finishes; 0 = no limit. `run`
// and `bench` set it from --gpu-timeout. Plain settings (no CUDA call): every build has them.
constexpr double kDefaultGpuTimeoutS = 600;
void set_gpu_wait_timeout(double seconds);
double gpu_wait_timeout();

}  // namespace moe
