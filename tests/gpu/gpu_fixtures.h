// Fixtures of the GPU tests: the skip rule (exit 77 without a device), random 16-bit weights
// kept on the host as the exact float values they encode, their upload into the runtime's
// device layout, and the float64 CPU oracle of routing and routed / shared experts.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

#include "model/profile.h"
#include "runtime/gpu_moe.h"

namespace moe::test {

// Exits 77 ("no CUDA device: ...") when this build or machine has no GPU. Call first.
void require_gpu();

// Random values rounded to `dtype`; returned as the floats they encode.
std::vector<float> random_elems(std::mt19937_64& rng, size_t n, float stddev,
                                kernels::ElemType dtype);
std::vector<uint16_t> encode(const std::vector<float>& v, kernels::ElemType dtype);
float round_to(float v, kernels::ElemType dtype);

// Host copy of one stack of experts in the shard layout ([E, 2I, H] gate then up rows, or up
// first; [E, H, I]; biases optional).
struct HostExperts {
  kernels::ElemType dtype = kernels::ElemType::BF16;
  int experts = 0, inter = 0, hidden = 0;
  bool up_first = false;
  std::vector<float> w13, w2, b13, b2;
};
HostExperts random_experts(std::mt19937_64& rng, kernels::ElemType dtype, int experts, int inter,
                           int hidden, bool biases, bool up_first);
// Subset of experts (a rank's local experts, by index into `all`).
HostExperts select_experts(const HostExperts& all, const std::vector<int>& which);
GpuExperts upload(const HostExperts& h, cudaStream_t stream);

// Replica tables on the host (backend.h rule) and their device copy.
struct HostRouteTable {
  int num_logical = 0;
  std::vector<int32_t> physical_to_logical, expert_map;  // [E_p]
};
GpuRouteTable upload(const HostRouteTable& t, cudaStream_t stream);
// Local expert of token t's choice of logical l, or -1.
int local_expert(const HostRouteTable& t, int token, int logical);

// float64 oracle of RoutingSpec (profile.h) on given logits; ids in selection order.
struct HostRouting {
  std::vector<int32_t> ids;
  std::vector<double> weights;
  std::vector<double> margin;  // per token: selection gap between k-th and (k+1)-th candidate
};
HostRouting oracle_routing(const std::vector<double>& logits, const std::vector<double>& correction,
                           const RoutingSpec& spec, int tokens, int experts, int top_k);
std::vector<double> oracle_logits(const std::vector<float>& x, const std::vector<float>& w,
                                  const std::vector<float>& bias, int tokens, int hidden,
                                  int experts);

// float64 oracle of the routed experts of one rank: out[t] += sum_k w * expert(x_t).
// x: [T, hidden] values as the kernels see them (rounded to the dtype).
void oracle_experts(const HostExperts& e, const HostRouteTable& table, const std::vector<float>& x,
                    const std::vector<int32_t>& ids, const std::vector<float>& weights, int tokens,
                    int top_k, Activation act, bool weight_on_input, std::vector<double>& out);
// Dense MLP (shared expert, experts == 1) times gate[t] (empty: 1).
void oracle_shared(const HostExperts& e, const std::vector<float>& x, const std::vector<double>& gate,
                   int tokens, Activation act, std::vector<double>& out);

double oracle_act(Activation act, double g, double u);

struct Compare {
  double rel_l2 = 0, max_abs = 0, ref_max_abs = 0;
  bool finite = true;
};
Compare compare(const std::vector<float>& got, const std::vector<double>& ref);

}  // namespace moe::test
