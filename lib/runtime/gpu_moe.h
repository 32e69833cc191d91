// One rank's MoE layer on the GPU: the device weights in the layout the kernels read (every K
// dimension padded to a multiple of 8 elements with zeros), the routing tables, and the forward
// pass: route, align, gate-up (+activation), down (+routing weight, top-k sum), shared expert.
// This file and cuda_backend.cpp are the only places that turn views into kernel arguments.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "model/profile.h"
#include "moe_kernels.h"
#include "runtime/gpu_buffer.h"
#include "runtime/gpu_loader.h"
#include "shard/shard_set.h"

namespace moe {

inline int round_up8(int v) { return (v + 7) / 8 * 8; }

// Routed experts of one rank, or a dense MLP (num_local == 1) for shared experts.
struct GpuExperts {
  kernels::ElemType dtype = kernels::ElemType::BF16;
  int num_local = 0;
  int inter = 0, inter_ld = 0;    // I_r (w13 rows 2*I_r, w2 columns), padded to 8
  int hidden = 0, hidden_ld = 0;  // H_p (w2 rows, w13 columns), padded to 8
  bool up_first = false;
  DeviceBuffer w13, w2;            // [E, 2*inter, hidden_ld], [E, hidden, inter_ld]
  DeviceBuffer w13_bias, w2_bias;  // [E, 2*inter], [E, hidden] or empty
  bool has_bias() const { return !w13_bias.empty(); }
  uint64_t weight_bytes() const;  // w13 + w2 as stored on the device
};

// Logical -> physical replicas (CSR) and this rank's expert map (runtime/backend.h rule).
struct GpuRouteTable {
  int num_logical = 0;
  DeviceBuffer offsets, physical, expert_map;
  kernels::ReplicaTable view() const {
    return {offsets.as<int32_t>(), physical.as<int32_t>(), expert_map.as<int32_t>()};
  }
};

// Router of a layer: fp32 copies of the router weight and biases.
struct GpuRouter {
  int num_experts = 0, hidden = 0;
  DeviceBuffer weight, bias, correction_bias;
};

// Scratch that grows on demand and is then reused (steady state allocates nothing).
struct MoeWorkspace {
  DeviceBuffer slot_expert, counts, sorted_slots, tile_expert, num_tiles, act;
  DeviceBuffer x_sorted;  // x gathered into sorted order, for the TMA gate-up rows
  DeviceBuffer slot_pos;  // each slot's sorted row, for the token-order gather and sum
  DeviceBuffer rows;      // the down GEMM's rows in sorted order (TileChoice::down_rows)
  DeviceBuffer shared_sorted, shared_tiles, shared_num, shared_act, shared_weights, shared_x_sorted;
};

struct ExpertInputs {
  const void* x = nullptr;  // [tokens, ldx] in the experts' dtype (ldx >= hidden_ld)
  int ldx = 0;
  int tokens = 0, top_k = 1;
  const int32_t* topk_ids = nullptr;    // [tokens, top_k] logical ids
  const float* topk_weights = nullptr;  // [tokens, top_k]
  kernels::ActKind act = kernels::ActKind::SiluAndMul;
  float swiglu_alpha = 1.702f, swiglu_limit = 7.0f;
  bool weight_on_input = false;
  float* out = nullptr;  // [tokens, ldo] float32, accumulated
  int ldo = 0;
  // run_routed_experts writes this rank's sum into out instead of adding it (out's old values
  // are not read): the token-order sum of TileChoice::down_rows writes every row, else out is
  // zeroed first.
  bool zero_out = false;
};

kernels::ElemType elem_type_of(DType t, const std::string& file, const std::string& tensor);
kernels::ActKind act_kind_of(Activation a);
kernels::RoutingParams routing_params_of(const RoutingSpec& r);

// Uploads the routed experts / the shared expert / the router of one rank-layer.
GpuExperts upload_routed_experts(const RankLayer& layer, const ShardGeometry& g,
                                 StagingLoader& loader, const std::string& file);
GpuExperts upload_shared_expert(const RankLayer& layer, const ShardGeometry& g,
                                StagingLoader& loader, const std::string& file);
GpuRouteTable upload_route_table(const RankLayer& layer, int num_logical, cudaStream_t stream,
                                 const std::string& file);
GpuRouter upload_router(const RankLayer& layer, int num_experts, int hidden, cudaStream_t stream,
                        const std::string& file);
// Identity tables for `num_experts` experts all local (bench, tests).
GpuRouteTable identity_route_table(int num_experts, cudaStream_t stream);

// logits -> ids / weights on the device.
void run_routing(const GpuRouter& router, const RoutingSpec& spec, const float* x_f32,
                 int tokens, int top_k, DeviceBuffer& logits, int32_t* topk_ids,
                 float* topk_weights, cudaStream_t stream);

// Tile choice for the routed forward (kernels::choose_tiles with this device's SM count and
// memory bandwidth); x gathered in token order where x is larger than the device's L2, and the
// down rows summed by token where the float32 output passes 0.6 of it.
kernels::TileChoice default_tiles(const GpuExperts& w, int tokens, int top_k);
// Whether tc's down rows can be summed by token (TileChoice::down_rows): a down row that stores
// its rows in sorted order, split 1, top_k <= 32.
bool down_rows_possible(const kernels::TileChoice& tc, int top_k);

// The launches of run_routed_experts, as bits: the alignment, the gate-up GEMM (with the
// gather of x where its row reads sorted x) and the down GEMM. A subset re-runs those launches
// on the workspace an earlier whole call left (bench --breakdown times them one by one).
enum MoeStage : unsigned { kStageAlign = 1, kStageGateUp = 2, kStageDown = 4, kStageAll = 7 };

// Adds this rank's routed-expert output to in.out. `tiles` overrides the choice (bench sweeps).
void run_routed_experts(const GpuExperts& w, const GpuRouteTable& table, const ExpertInputs& in,
                        MoeWorkspace& ws, cudaStream_t stream,
                        const kernels::TileChoice* tiles = nullptr, unsigned stages = kStageAll);
// Adds gate[t] * shared(x[t]) (gate null: weight 1) to in.out; in.topk_* are ignored.
void run_shared_expert(const GpuExperts& w, const ExpertInputs& in, const float* gate,
                       MoeWorkspace& ws, cudaStream_t stream);

}  // namespace moe
