#include "reference/activation.h"

#include <algorithm>
#include <cmath>

namespace moe {

namespace {

template <typename S>
S sigmoid(S x) {
  return S(1) / (S(1) + std::exp(-x));
}

template <typename S>
S silu_and_mul(S g, S u, S, S) {
  return g * sigmoid(g) * u;
}

// Exact (erf) gelu, not the tanh approximation.
template <typename S>
S gelu_and_mul(S g, S u, S, S) {
  return S(0.5) * g * (S(1) + std::erf(g / std::sqrt(S(2)))) * u;
}

// gpt-oss: g = min(gate, limit), u = clamp(up, -limit, limit), h = g * sigmoid(alpha g) * (u + 1).
template <typename S>
S swiglu_oai(S g, S u, S alpha, S limit) {
  g = std::min(g, limit);
  u = std::clamp(u, -limit, limit);
  return g * sigmoid(alpha * g) * (u + S(1));
}

template <typename S>
struct ActivationRow {
  Activation kind;
  S (*fn)(S, S, S, S);
};
template <typename S>
constexpr ActivationRow<S> kActivations[] = {
    {Activation::SiluAndMul, silu_and_mul<S>},
    {Activation::GeluAndMul, gelu_and_mul<S>},
    {Activation::SwigluOai, swiglu_oai<S>},
};
static_assert(sizeof(kActivations<float>) / sizeof(kActivations<float>[0]) == 3,
              "one row per Activation");

template <typename S>
void apply(const ActivationParams& a, const S* gate, const S* up, S* h, int64_t n) {
  const auto& row = kActivations<S>[static_cast<int>(a.kind)];
  const S alpha = static_cast<S>(a.alpha), limit = static_cast<S>(a.limit);
  for (int64_t i = 0; i < n; ++i) h[i] = row.fn(gate[i], up[i], alpha, limit);
}

constexpr bool rows_follow_enum() {
  for (int i = 0; i < 3; ++i)
    if (static_cast<int>(kActivations<float>[i].kind) != i) return false;
  return true;
}
static_assert(rows_follow_enum(), "kActivations rows must follow the Activation enum order");

}  // namespace

ActivationParams activation_params(const ModelProfile& p) {
  return {p.activation, p.swiglu_alpha, p.swiglu_limit};
}

void apply_activation(const ActivationParams& a, const float* gate, const float* up, float* h,
                      int64_t n) {
  apply(a, gate, up, h, n);
}
void apply_activation(const ActivationParams& a, const double* gate, const double* up, double* h,
                      int64_t n) {
  apply(a, gate, up, h, n);
}

}  // namespace moe
