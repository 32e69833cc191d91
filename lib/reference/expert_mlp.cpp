#include "reference/expert_mlp.h"

#include <algorithm>

#include "core/error.h"

namespace moe {

namespace {

using FloatMap = Eigen::Map<const RowMatrix<float>>;
FloatMap map(const DenseMatrix& m) { return FloatMap(m.data.data(), m.rows, m.cols); }

void check_shape(const DenseMatrix& m, int64_t rows, int64_t cols, const std::string& file,
                 const std::string& what) {
  MOE_CHECK(m.rows == rows && m.cols == cols, ShapeMismatch, file, what,
            "shape [" + std::to_string(m.rows) + ", " + std::to_string(m.cols) + "], expected [" +
                std::to_string(rows) + ", " + std::to_string(cols) + "]");
}

void check_len(const std::optional<FloatVec>& v, int64_t n, const std::string& file,
               const std::string& what) {
  if (!v) return;
  MOE_CHECK(static_cast<int64_t>(v->size()) == n, ShapeMismatch, file, what,
            std::to_string(v->size()) + " elements, expected " + std::to_string(n));
}

template <typename S>
void add_bias(RowMatrix<S>& y, const std::optional<FloatVec>& b) {
  if (!b) return;
  y.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(b->data(), b->size()).template cast<S>();
}

// A float64 product widens the float weights kWidenRows rows at a time (a few MB, cache
// resident) and multiplies each block with Eigen's GEMM: a widened copy of a whole full-size
// expert would be 350 MB per worker, and per-row dot products do not vectorize the widening.
constexpr int64_t kWidenRows = 64;

// x [n, K] times w^T (w [N, K] float).
RowMatrix<float> times_transposed(const RowMatrix<float>& x, const DenseMatrix& w) {
  return x * map(w).transpose();  // float weights used in place, no copy
}
// With --ref-tokens most experts see one to a few rows, where Eigen's GEMM spends more time
// packing the widened block than multiplying it; a matrix-vector product per row is about a
// third faster there (2 to 4 rows, measured on a full-size expert). Same float64 products,
// another summation order.
constexpr int64_t kGemvMaxRows = 4;

RowMatrix<double> times_transposed(const RowMatrix<double>& x, const DenseMatrix& w) {
  RowMatrix<double> y(x.rows(), w.rows);
  RowMatrix<double> block;
  for (int64_t r0 = 0; r0 < w.rows; r0 += kWidenRows) {
    const int64_t n = std::min(kWidenRows, w.rows - r0);
    block = FloatMap(w.row(r0), n, w.cols).cast<double>();
    if (x.rows() > kGemvMaxRows) {
      y.middleCols(r0, n).noalias() = x * block.transpose();
      continue;
    }
    for (int64_t j = 0; j < x.rows(); ++j)
      y.row(j).segment(r0, n).noalias() = (block * x.row(j).transpose()).transpose();
  }
  return y;
}

template <typename S>
RowMatrix<S> mlp_impl(const MlpWeights& m, const RowMatrix<S>& x, const ActivationParams& act) {
  RowMatrix<S> g = times_transposed(x, m.gate);
  RowMatrix<S> u = times_transposed(x, m.up);
  add_bias(g, m.gate_bias);
  add_bias(u, m.up_bias);
  apply_activation(act, g.data(), u.data(), g.data(), g.size());
  RowMatrix<S> y = times_transposed(g, m.down);
  add_bias(y, m.down_bias);
  return y;
}

}  // namespace

void MlpWeights::check(int64_t hidden, const std::string& file, const std::string& what) const {
  const int64_t inter = gate.rows;
  check_shape(gate, inter, hidden, file, what + " gate");
  check_shape(up, inter, hidden, file, what + " up");
  check_shape(down, hidden, inter, file, what + " down");
  check_len(gate_bias, inter, file, what + " gate bias");
  check_len(up_bias, inter, file, what + " up bias");
  check_len(down_bias, hidden, file, what + " down bias");
}

RowMatrix<float> run_mlp(const MlpWeights& w, const RowMatrix<float>& x, const ActivationParams& a) {
  return mlp_impl(w, x, a);
}
RowMatrix<double> run_mlp(const MlpWeights& w, const RowMatrix<double>& x,
                          const ActivationParams& a) {
  return mlp_impl(w, x, a);
}

}  // namespace moe
