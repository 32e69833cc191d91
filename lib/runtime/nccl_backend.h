// The several-GPU backend behind make_multi_gpu_backend (multi_gpu.h): each member of the NCCL
// world routes the layer, runs its shard ranks in turn on its GPU (uploading only their
// weights), sums them locally, and one float32 ncclAllReduce per layer combines the members.
// Built only with NCCL.
#pragma once
#include <memory>

#include "runtime/multi_gpu.h"

namespace moe {

std::unique_ptr<MultiGpuBackend> make_nccl_backend(const ShardSet& set, const WorldPlan& plan,
                                                   double timeout_s);

}  // namespace moe
