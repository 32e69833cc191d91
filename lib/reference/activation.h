// The expert activations as one table (silu-and-mul, gelu-and-mul with exact erf, gpt-oss
// clamped swiglu; formats.md section 7): h = act(gate, up), elementwise, in float or double.
#pragma once
#include <cstdint>

#include "model/profile.h"

namespace moe {

struct ActivationParams {
  Activation kind = Activation::SiluAndMul;
  float alpha = 1.702f, limit = 7.0f;  // SwigluOai only
};
ActivationParams activation_params(const ModelProfile& p);

// h[i] = act(gate[i], up[i]) for i < n. h may alias gate.
void apply_activation(const ActivationParams& a, const float* gate, const float* up, float* h,
                      int64_t n);
void apply_activation(const ActivationParams& a, const double* gate, const double* up, double* h,
                      int64_t n);

}  // namespace moe
