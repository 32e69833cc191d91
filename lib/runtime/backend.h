// The seam between `run` and whatever computes the MoE block under test. A backend runs every
// rank of a shard set for one layer and returns the sum over ranks (what the TP all-reduce / EP
// combine produces), plus the routing it used. The CPU backend (lib/runtime/cpu_backend.cpp)
// works from the shards' stored encodings; the CUDA backend (lib/runtime/cuda_backend.cpp) runs
// the kernels in kernels/.
//
// Replica choice (redundant experts), identical in every backend: a token t routed to logical
// expert l, whose physical replicas in increasing id order are p_0 .. p_{n-1}, goes to
// p_{t mod n}. A rank adds only the tokens whose chosen replica is local to it (expert_map >= 0).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "shard/shard_set.h"

namespace moe {

struct LayerOutputs {
  // All float32 / int32 row-major host arrays, allocated by the caller.
  int32_t* topk_ids;    // [T, top_k] logical expert ids, as the backend routed
  float* topk_weights;  // [T, top_k]
  float* out;           // [T, H] sum over ranks, incl. shared experts (true H, padding dropped)
};

class MoeBackend {
 public:
  virtual ~MoeBackend() = default;
  virtual std::string name() const = 0;
  // x: [T, H] float32 host (true H). Runs routing and all ranks of `set` for `layer`.
  virtual void run_layer(const ShardSet& set, int layer, const float* x, int tokens,
                         const LayerOutputs& outputs) = 0;
};

std::unique_ptr<MoeBackend> make_cpu_backend(int threads);
// Throws Error{Cuda} with the reason when CUDA is unavailable in this build or machine.
std::unique_ptr<MoeBackend> make_cuda_backend();

}  // namespace moe
