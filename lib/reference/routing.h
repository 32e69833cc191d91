// Routing in exactly the order of RoutingSpec's comment (model/profile.h), as pure functions in
// float32 or float64; selection and weights are separate so experts can be evaluated under a
// selection made elsewhere (selection_weights).
#pragma once
#include <cstdint>
#include <vector>

#include "model/profile.h"

namespace moe {

enum class Precision { F32, F64 };
const char* precision_name(Precision p);

// Which experts each token goes to and with which weights. In F32 every value is a float
// stored in a double (exactly).
struct Routing {
  int tokens = 0, top_k = 0;
  std::vector<int32_t> ids;     // [T, top_k] logical expert ids, best first
  std::vector<double> weights;  // [T, top_k]
};

// logits [T, E] = x [T, H] . router_weight[E, H]^T (+ router_bias [E]; may be null).
std::vector<double> router_logits(const float* x, int tokens, int hidden, const float* router_weight,
                                  int experts, const float* router_bias, Precision precision);

// scores [T, E] = softmax or sigmoid of the logits, per token.
std::vector<double> routing_scores(const RoutingSpec& spec, const double* logits, int tokens,
                                   int experts, Precision precision);

// ids [T, top_k]: top-k of scores (+ correction_bias [E]; may be null), within the topk_group
// best groups when n_group > 1. Throws InvalidConfig when the spec cannot select top_k experts.
std::vector<int32_t> select_experts(const RoutingSpec& spec, int top_k, const double* scores,
                                    const float* correction_bias, int tokens, int experts,
                                    Precision precision);

// weights [T, top_k] of a given selection: scores[ids], renormalized and scaled as the spec says.
std::vector<double> selection_weights(const RoutingSpec& spec, int top_k, const double* scores,
                                      const int32_t* ids, int tokens, int experts,
                                      Precision precision);

// All of it: logits -> scores -> selection -> weights.
Routing route(const RoutingSpec& spec, int top_k, const double* logits, const float* correction_bias,
              int tokens, int experts, Precision precision);

// Share of tokens whose top-k SETS agree (order within the top-k ignored).
double routing_agreement(const int32_t* ids_a, const int32_t* ids_b, int tokens, int top_k);

}  // namespace moe
