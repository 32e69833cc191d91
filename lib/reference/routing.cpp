#include "reference/routing.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include <Eigen/Core>

#include "core/error.h"

namespace moe {

const char* precision_name(Precision p) { return p == Precision::F32 ? "float32" : "float64"; }

namespace {

// NaN sorts as -inf so a poisoned score can never break the comparator's strict weak ordering.
template <typename S>
S sort_key(S v) {
  return std::isnan(v) ? -std::numeric_limits<S>::infinity() : v;
}

// Indices of the n largest keys, largest first, ties to the lower index.
template <typename S>
void top_n(const std::vector<S>& keys, int n, std::vector<int32_t>& idx) {
  idx.resize(keys.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + n, idx.end(), [&](int32_t a, int32_t b) {
    S ka = sort_key(keys[a]), kb = sort_key(keys[b]);
    return ka > kb || (ka == kb && a < b);
  });
  idx.resize(n);
}

template <typename S>
S group_score(GroupScore how, const S* v, int n) {
  std::vector<S> g(v, v + n);
  for (auto& x : g) x = sort_key(x);
  std::sort(g.begin(), g.end(), std::greater<S>());
  // SumTop2 of a one-expert group is that expert's score (DeepSeek never builds such groups).
  return how == GroupScore::Max || n < 2 ? g[0] : g[0] + g[1];
}

template <typename S>
std::vector<double> logits_impl(const float* x, int tokens, int hidden, const float* w, int experts,
                                const float* bias) {
  using Mat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using FMap = Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
  Mat logits = FMap(x, tokens, hidden).template cast<S>() *
               FMap(w, experts, hidden).template cast<S>().transpose();
  if (bias)
    logits.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(bias, experts).template cast<S>();
  std::vector<double> out(static_cast<size_t>(tokens) * experts);
  Eigen::Map<Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
      out.data(), tokens, experts) = logits.template cast<double>();
  return out;
}

template <typename S>
std::vector<double> scores_impl(const RoutingSpec& spec, const double* logits, int tokens,
                                int experts) {
  std::vector<double> out(static_cast<size_t>(tokens) * experts);
  for (int t = 0; t < tokens; ++t) {
    const double* l = logits + static_cast<size_t>(t) * experts;
    double* s = out.data() + static_cast<size_t>(t) * experts;
    if (spec.score == ScoreFunc::Sigmoid) {
      for (int e = 0; e < experts; ++e) s[e] = S(1) / (S(1) + std::exp(-static_cast<S>(l[e])));
      continue;
    }
    S m = -std::numeric_limits<S>::infinity();
    for (int e = 0; e < experts; ++e) m = std::max(m, static_cast<S>(l[e]));
    S sum = 0;
    std::vector<S> ex(experts);
    for (int e = 0; e < experts; ++e) sum += ex[e] = std::exp(static_cast<S>(l[e]) - m);
    for (int e = 0; e < experts; ++e) s[e] = ex[e] / sum;
  }
  return out;
}

void check_spec(const RoutingSpec& spec, int top_k, int experts) {
  MOE_CHECK(top_k >= 1 && top_k <= experts, InvalidConfig, "", "",
            "top_k " + std::to_string(top_k) + " is not within 1.." + std::to_string(experts));
  MOE_CHECK(spec.n_group >= 1 && experts % spec.n_group == 0, InvalidConfig, "", "",
            "n_group " + std::to_string(spec.n_group) + " does not divide " +
                std::to_string(experts) + " experts");
  if (spec.n_group > 1) {
    MOE_CHECK(spec.topk_group >= 1 && spec.topk_group <= spec.n_group, InvalidConfig, "", "",
              "topk_group " + std::to_string(spec.topk_group) + " is not within 1..n_group " +
                  std::to_string(spec.n_group));
    MOE_CHECK(top_k <= spec.topk_group * (experts / spec.n_group), InvalidConfig, "", "",
              "top_k " + std::to_string(top_k) + " exceeds the experts of topk_group groups");
  }
}

template <typename S>
std::vector<int32_t> select_impl(const RoutingSpec& spec, int top_k, const double* scores,
                                 const float* correction_bias, int tokens, int experts) {
  check_spec(spec, top_k, experts);
  const bool use_bias = spec.has_correction_bias && correction_bias != nullptr;
  const int group_size = experts / spec.n_group;
  std::vector<int32_t> ids(static_cast<size_t>(tokens) * top_k);
  std::vector<S> select(experts), gscore(spec.n_group);
  std::vector<int32_t> idx;
  for (int t = 0; t < tokens; ++t) {
    const double* s = scores + static_cast<size_t>(t) * experts;
    for (int e = 0; e < experts; ++e)
      select[e] = static_cast<S>(s[e]) + (use_bias ? static_cast<S>(correction_bias[e]) : S(0));
    if (spec.n_group > 1) {
      for (int g = 0; g < spec.n_group; ++g)
        gscore[g] = group_score(spec.group_score, select.data() + g * group_size, group_size);
      top_n(gscore, spec.topk_group, idx);
      std::vector<bool> keep(spec.n_group, false);
      for (int32_t g : idx) keep[g] = true;
      for (int e = 0; e < experts; ++e)
        if (!keep[e / group_size]) select[e] = -std::numeric_limits<S>::infinity();
    }
    top_n(select, top_k, idx);
    std::copy(idx.begin(), idx.end(), ids.begin() + static_cast<size_t>(t) * top_k);
  }
  return ids;
}

template <typename S>
std::vector<double> weights_impl(const RoutingSpec& spec, int top_k, const double* scores,
                                 const int32_t* ids, int tokens, int experts) {
  std::vector<double> w(static_cast<size_t>(tokens) * top_k);
  std::vector<S> row(top_k);
  for (int t = 0; t < tokens; ++t) {
    const double* s = scores + static_cast<size_t>(t) * experts;
    S sum = 0;
    for (int k = 0; k < top_k; ++k) {
      int32_t id = ids[static_cast<size_t>(t) * top_k + k];
      MOE_CHECK(id >= 0 && id < experts, InvalidArgument, "", "",
                "routed expert id " + std::to_string(id) + " of token " + std::to_string(t) +
                    " is not within 0.." + std::to_string(experts - 1));
      row[k] = static_cast<S>(s[id]);
      sum += row[k];
    }
    S denom = spec.renormalize ? std::max(sum, static_cast<S>(spec.renorm_min)) : S(1);
    for (int k = 0; k < top_k; ++k) {
      S v = spec.renormalize ? row[k] / denom : row[k];
      w[static_cast<size_t>(t) * top_k + k] = v * static_cast<S>(spec.routed_scaling_factor);
    }
  }
  return w;
}

}  // namespace

std::vector<double> router_logits(const float* x, int tokens, int hidden, const float* router_weight,
                                  int experts, const float* router_bias, Precision precision) {
  return precision == Precision::F32
             ? logits_impl<float>(x, tokens, hidden, router_weight, experts, router_bias)
             : logits_impl<double>(x, tokens, hidden, router_weight, experts, router_bias);
}

std::vector<double> routing_scores(const RoutingSpec& spec, const double* logits, int tokens,
                                   int experts, Precision precision) {
  return precision == Precision::F32 ? scores_impl<float>(spec, logits, tokens, experts)
                                     : scores_impl<double>(spec, logits, tokens, experts);
}

std::vector<int32_t> select_experts(const RoutingSpec& spec, int top_k, const double* scores,
                                    const float* correction_bias, int tokens, int experts,
                                    Precision precision) {
  return precision == Precision::F32
             ? select_impl<float>(spec, top_k, scores, correction_bias, tokens, experts)
             : select_impl<double>(spec, top_k, scores, correction_bias, tokens, experts);
}

std::vector<double> selection_weights(const RoutingSpec& spec, int top_k, const double* scores,
                                      const int32_t* ids, int tokens, int experts,
                                      Precision precision) {
  return precision == Precision::F32
             ? weights_impl<float>(spec, top_k, scores, ids, tokens, experts)
             : weights_impl<double>(spec, top_k, scores, ids, tokens, experts);
}

Routing route(const RoutingSpec& spec, int top_k, const double* logits, const float* correction_bias,
              int tokens, int experts, Precision precision) {
  Routing r;
  r.tokens = tokens;
  r.top_k = top_k;
  std::vector<double> scores = routing_scores(spec, logits, tokens, experts, precision);
  r.ids = select_experts(spec, top_k, scores.data(), correction_bias, tokens, experts, precision);
  r.weights = selection_weights(spec, top_k, scores.data(), r.ids.data(), tokens, experts, precision);
  return r;
}

double routing_agreement(const int32_t* ids_a, const int32_t* ids_b, int tokens, int top_k) {
  if (tokens == 0) return 1.0;
  int same = 0;
  std::vector<int32_t> a(top_k), b(top_k);
  for (int t = 0; t < tokens; ++t) {
    a.assign(ids_a + static_cast<size_t>(t) * top_k, ids_a + static_cast<size_t>(t + 1) * top_k);
    b.assign(ids_b + static_cast<size_t>(t) * top_k, ids_b + static_cast<size_t>(t + 1) * top_k);
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    same += a == b;
  }
  return static_cast<double>(same) / tokens;
}

}  // namespace moe
