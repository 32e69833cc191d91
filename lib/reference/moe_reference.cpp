#include "reference/moe_reference.h"

#include <Eigen/Core>
#include <cmath>
#include <string>

#include "core/error.h"
#include "core/parallel.h"
#include "reference/activation.h"
#include "reference/expert_mlp.h"
#include "reference/scratch_pool.h"

namespace moe {

namespace {

template <typename S>
using Mat = RowMatrix<S>;
using FloatMap = Eigen::Map<const Mat<float>>;

void check_shape(const DenseMatrix& m, int64_t rows, int64_t cols, const std::string& what) {
  MOE_CHECK(m.rows == rows && m.cols == cols, ShapeMismatch, "", what,
            "shape [" + std::to_string(m.rows) + ", " + std::to_string(m.cols) + "], expected [" +
                std::to_string(rows) + ", " + std::to_string(cols) + "]");
}

void check_len(const std::optional<FloatVec>& v, int64_t n, const std::string& what) {
  if (!v) return;
  MOE_CHECK(static_cast<int64_t>(v->size()) == n, ShapeMismatch, "", what,
            std::to_string(v->size()) + " elements, expected " + std::to_string(n));
}

void load_expert(const LayerWeights& w, int e, MlpWeights& into) {
  w.expert_into(e, Proj::Gate, into.gate);
  w.expert_into(e, Proj::Up, into.up);
  w.expert_into(e, Proj::Down, into.down);
  into.gate_bias = w.expert_bias(e, Proj::Gate);
  into.up_bias = w.expert_bias(e, Proj::Up);
  into.down_bias = w.expert_bias(e, Proj::Down);
}

template <typename S>
std::vector<double> routed_impl(const ModelProfile& profile, const LayerWeights& weights,
                                const float* x, int tokens, const Routing& routing,
                                const ReferenceOptions& options) {
  const int E = profile.num_experts, H = profile.hidden_size, K = routing.top_k;
  MOE_ASSERT(routing.tokens == tokens);
  MOE_ASSERT(routing.ids.size() == static_cast<size_t>(tokens) * K);
  MOE_ASSERT(routing.weights.size() == routing.ids.size());
  std::vector<std::vector<int64_t>> slots_of(E);
  for (size_t slot = 0; slot < routing.ids.size(); ++slot) {
    int32_t id = routing.ids[slot];
    MOE_CHECK(id >= 0 && id < E, InvalidArgument, "", "",
              "routed expert id " + std::to_string(id) + " is not within 0.." +
                  std::to_string(E - 1));
    slots_of[id].push_back(static_cast<int64_t>(slot));
  }
  std::vector<int> used;
  for (int e = 0; e < E; ++e)
    if (!slots_of[e].empty()) used.push_back(e);

  // One row per (token, k) slot: each slot is written by exactly one expert, so workers never
  // share a row, and the sum over k below runs in a fixed order (deterministic results).
  Mat<S> contrib = Mat<S>::Zero(static_cast<int64_t>(tokens) * K, H);
  const ActivationParams act = activation_params(profile);
  const bool on_input = profile.routing.weight_on_input;
  ScratchPool<MlpWeights> own_scratch;
  ScratchPool<MlpWeights>& scratch = options.scratch ? *options.scratch : own_scratch;
  parallel_for(static_cast<int64_t>(used.size()), options.threads, [&](int64_t i) {
    const int e = used[i];
    auto lease = scratch.take();
    MlpWeights& mlp = *lease;
    load_expert(weights, e, mlp);
    mlp.check(H, "", "expert " + std::to_string(e));
    const auto& slots = slots_of[e];
    Mat<S> xe(static_cast<int64_t>(slots.size()), H);
    for (size_t j = 0; j < slots.size(); ++j) {
      const float* xt = x + (slots[j] / K) * static_cast<int64_t>(H);
      S scale = on_input ? static_cast<S>(routing.weights[slots[j]]) : S(1);
      for (int h = 0; h < H; ++h) xe(j, h) = static_cast<S>(xt[h]) * scale;
    }
    Mat<S> ye = run_mlp(mlp, xe, act);
    for (size_t j = 0; j < slots.size(); ++j) {
      S scale = on_input ? S(1) : static_cast<S>(routing.weights[slots[j]]);
      contrib.row(slots[j]) = ye.row(j) * scale;
    }
    if (options.progress) options.progress->add(weights.expert_bytes());
  });

  std::vector<double> out(static_cast<size_t>(tokens) * H);
  for (int t = 0; t < tokens; ++t)
    for (int h = 0; h < H; ++h) {
      S acc = 0;
      for (int k = 0; k < K; ++k) acc += contrib(static_cast<int64_t>(t) * K + k, h);
      out[static_cast<size_t>(t) * H + h] = acc;
    }
  return out;
}

template <typename S>
std::vector<double> shared_impl(const ModelProfile& profile, const LayerWeights& weights,
                                const float* x, int tokens) {
  const int H = profile.hidden_size;
  std::vector<double> out(static_cast<size_t>(tokens) * H, 0.0);
  auto gate = weights.shared(Proj::Gate);
  if (!gate) return out;
  auto up = weights.shared(Proj::Up);
  auto down = weights.shared(Proj::Down);
  MOE_CHECK(up && down, MissingTensor, "", "shared expert", "gate present but up or down missing");
  MlpWeights mlp{std::move(*gate), std::move(*up), std::move(*down), std::nullopt, std::nullopt,
                 std::nullopt};
  mlp.check(H, "", "shared expert");
  Mat<S> xs = FloatMap(x, tokens, H).template cast<S>();
  Mat<S> y = run_mlp(mlp, xs, activation_params(profile));
  if (auto g = weights.shared_expert_gate()) {
    MOE_CHECK(static_cast<int>(g->size()) == H, ShapeMismatch, "", "shared_expert_gate",
              std::to_string(g->size()) + " elements, expected " + std::to_string(H));
    Eigen::Matrix<S, Eigen::Dynamic, 1> logit =
        xs * Eigen::Map<const Eigen::VectorXf>(g->data(), H).template cast<S>();
    for (int t = 0; t < tokens; ++t) y.row(t) *= S(1) / (S(1) + std::exp(-logit(t)));
  }
  Eigen::Map<Mat<double>>(out.data(), tokens, H) = y.template cast<double>();
  return out;
}

template <typename S>
std::vector<double> add_in(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> out(a.size());
  for (size_t i = 0; i < a.size(); ++i) out[i] = static_cast<S>(a[i]) + static_cast<S>(b[i]);
  return out;
}

struct RouterParams {
  DenseMatrix weight;
  std::optional<FloatVec> bias, correction;
};

RouterParams load_router(const ModelProfile& profile, const LayerWeights& weights) {
  RouterParams r{weights.router_weight(), std::nullopt, std::nullopt};
  check_shape(r.weight, profile.num_experts, profile.hidden_size, "router weight");
  if (profile.routing.has_router_bias) {
    r.bias = weights.router_bias();
    MOE_CHECK(r.bias.has_value(), MissingTensor, "", "router bias", "the family has one");
    check_len(r.bias, profile.num_experts, "router bias");
  }
  if (profile.routing.has_correction_bias) {
    r.correction = weights.correction_bias();
    MOE_CHECK(r.correction.has_value(), MissingTensor, "", "e_score_correction_bias",
              "the family has one");
    check_len(r.correction, profile.num_experts, "e_score_correction_bias");
  }
  return r;
}

}  // namespace

Routing reference_routing(const ModelProfile& profile, const LayerWeights& weights, const float* x,
                          int tokens, Precision precision) {
  RouterParams r = load_router(profile, weights);
  std::vector<double> logits =
      router_logits(x, tokens, profile.hidden_size, r.weight.data.data(), profile.num_experts,
                    r.bias ? r.bias->data() : nullptr, precision);
  return route(profile.routing, profile.top_k, logits.data(),
               r.correction ? r.correction->data() : nullptr, tokens, profile.num_experts,
               precision);
}

Routing reference_routing_for(const ModelProfile& profile, const LayerWeights& weights,
                              const float* x, int tokens, const std::vector<int32_t>& ids,
                              Precision precision) {
  MOE_ASSERT(ids.size() == static_cast<size_t>(tokens) * profile.top_k);
  RouterParams r = load_router(profile, weights);
  std::vector<double> logits =
      router_logits(x, tokens, profile.hidden_size, r.weight.data.data(), profile.num_experts,
                    r.bias ? r.bias->data() : nullptr, precision);
  std::vector<double> scores =
      routing_scores(profile.routing, logits.data(), tokens, profile.num_experts, precision);
  Routing out;
  out.tokens = tokens;
  out.top_k = profile.top_k;
  out.ids = ids;
  out.weights = selection_weights(profile.routing, profile.top_k, scores.data(), ids.data(), tokens,
                                  profile.num_experts, precision);
  return out;
}

std::vector<double> routed_experts(const ModelProfile& profile, const LayerWeights& weights,
                                   const float* x, int tokens, const Routing& routing,
                                   const ReferenceOptions& options) {
  return options.precision == Precision::F32
             ? routed_impl<float>(profile, weights, x, tokens, routing, options)
             : routed_impl<double>(profile, weights, x, tokens, routing, options);
}

std::vector<double> shared_experts(const ModelProfile& profile, const LayerWeights& weights,
                                   const float* x, int tokens, Precision precision) {
  return precision == Precision::F32 ? shared_impl<float>(profile, weights, x, tokens)
                                     : shared_impl<double>(profile, weights, x, tokens);
}

std::vector<double> reference_block_under(const ModelProfile& profile, const LayerWeights& weights,
                                          const float* x, int tokens, const Routing& routing,
                                          const ReferenceOptions& options) {
  std::vector<double> routed = routed_experts(profile, weights, x, tokens, routing, options);
  std::vector<double> shared = shared_experts(profile, weights, x, tokens, options.precision);
  return options.precision == Precision::F32 ? add_in<float>(routed, shared)
                                             : add_in<double>(routed, shared);
}

BlockOutput reference_block(const ModelProfile& profile, const LayerWeights& weights,
                            const float* x, int tokens, const ReferenceOptions& options) {
  BlockOutput b;
  b.routing = reference_routing(profile, weights, x, tokens, options.precision);
  b.out = reference_block_under(profile, weights, x, tokens, b.routing, options);
  return b;
}

}  // namespace moe
