// One gated expert MLP on a batch of rows, y = act(x Wg^T + bg, x Wu^T + bu) Wd^T + bd, in
// float or double with Eigen: the arithmetic the reference and the CPU backend share (they
// differ in where the weights come from, not in what an expert computes).
#pragma once
#include <Eigen/Core>
#include <optional>
#include <string>

#include "reference/activation.h"
#include "reference/layer_weights.h"

namespace moe {

template <typename S>
using RowMatrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct MlpWeights {
  DenseMatrix gate, up, down;  // [I, H], [I, H], [H, I]
  std::optional<FloatVec> gate_bias, up_bias, down_bias;
  // Throws ShapeMismatch naming `file` and `what` unless the shapes fit hidden size `hidden`.
  void check(int64_t hidden, const std::string& file, const std::string& what) const;
};

RowMatrix<float> run_mlp(const MlpWeights& w, const RowMatrix<float>& x, const ActivationParams& a);
RowMatrix<double> run_mlp(const MlpWeights& w, const RowMatrix<double>& x,
                          const ActivationParams& a);

}  // namespace moe
