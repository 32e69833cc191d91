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

}  // namespace moe
