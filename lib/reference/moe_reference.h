// The Eigen reference MoE block of one layer from logical weights: routing, routed experts under
// a routing (its own or a backend's), shared experts with Qwen2-MoE's gate; float32 or float64,
// experts in parallel, only the selected experts decoded.
#pragma once
#include <vector>

#include "core/progress.h"
#include "model/profile.h"
#include "reference/expert_mlp.h"
#include "reference/layer_weights.h"
#include "reference/routing.h"
#include "reference/scratch_pool.h"

namespace moe {

struct ReferenceOptions {
  Precision precision = Precision::F32;
  int threads = 1;
  Progress* progress = nullptr;  // add()s the stored bytes of each expert decoded
  // Decode buffers to reuse across calls (layers); nullptr = a pool for this call only.
  ScratchPool<MlpWeights>* scratch = nullptr;
};

// The reference's own routing of x [T, H].
Routing reference_routing(const ModelProfile& profile, const LayerWeights& weights, const float* x,
                          int tokens, Precision precision);

// Weights the reference gives a selection made elsewhere (a backend's ids): the scores are the
// reference's, so a wrong weight formula in the backend still shows as an output error.
Routing reference_routing_for(const ModelProfile& profile, const LayerWeights& weights,
                              const float* x, int tokens, const std::vector<int32_t>& ids,
                              Precision precision);

// [T, H]: sum over k of w_tk * expert_{id_tk}(x_t), or expert(w_tk * x_t) when the spec says
// weight_on_input (Llama-4). Routed experts only.
std::vector<double> routed_experts(const ModelProfile& profile, const LayerWeights& weights,
                                   const float* x, int tokens, const Routing& routing,
                                   const ReferenceOptions& options);

// [T, H]: the shared expert(s) times Qwen2-MoE's sigmoid(x . shared_expert_gate); zeros when the
// model has none.
std::vector<double> shared_experts(const ModelProfile& profile, const LayerWeights& weights,
                                   const float* x, int tokens, Precision precision);

struct BlockOutput {
  Routing routing;
  std::vector<double> out;  // [T, H] routed + shared
};

// The whole block under the given routing, or under the reference's own routing.
std::vector<double> reference_block_under(const ModelProfile& profile, const LayerWeights& weights,
                                          const float* x, int tokens, const Routing& routing,
                                          const ReferenceOptions& options);
BlockOutput reference_block(const ModelProfile& profile, const LayerWeights& weights,
                            const float* x, int tokens, const ReferenceOptions& options);

}  // namespace moe
