#include "reference/tolerance.h"

namespace moe {

namespace {

struct ToleranceRow {
  const char* backend;
  const char* encoding;  // "*" = any other encoding of this backend
  double rel_l2, max_abs_rel;
};

// docs/numerics.md explains each number. The CPU backend decodes the same stored values as
// the reference and accumulates in float32, so only summation order separates them; the GPU
// rounds activations (and intermediate h) to the weight dtype, so its bounds follow that dtype's
// unit roundoff, with a margin for accumulation over H and I.
constexpr ToleranceRow kRows[] = {
    {"cpu", "F32", 1e-5, 1e-5},
    {"cpu", "BF16", 1e-5, 1e-5},
    {"cpu", "F16", 1e-5, 1e-5},
    {"cpu", "*", 1e-5, 1e-5},
    {"cuda", "F32", 5e-3, 1e-2},   // TF32 tensor cores: 10-bit mantissa
    {"cuda", "F16", 5e-3, 1e-2},   // 11-bit significand activations
    {"cuda", "BF16", 2e-2, 4e-2},  // 8-bit significand activations and h
    {"cuda", "fp8", 6e-2, 1.2e-1}, // fp8 activations on the FP8 tensor-core path
    {"cuda", "int", 2e-2, 4e-2},   // weight-only: dequantized exactly, bf16 activations
    {"cuda", "fp4", 2e-2, 4e-2},
    {"cuda", "nf4", 2e-2, 4e-2},
    {"cuda", "*", 6e-2, 1.2e-1},
};

}  // namespace

Tolerance default_tolerance(const std::string& backend, const std::string& encoding) {
  const ToleranceRow* fallback = nullptr;
  for (const auto& row : kRows) {
    if (backend != row.backend) continue;
    if (encoding == row.encoding) return {row.rel_l2, row.max_abs_rel, backend + "/" + encoding};
    if (std::string(row.encoding) == "*") fallback = &row;
  }
  if (fallback) return {fallback->rel_l2, fallback->max_abs_rel, backend + "/*"};
  return {6e-2, 1.2e-1, "unknown backend"};  // a backend added without a row: the loosest
}

Verdict judge(const ErrorMetrics& m, const Tolerance& table, std::optional<double> rtol,
              std::optional<double> atol) {
  Verdict v;
  v.rtol = rtol ? *rtol : table.rel_l2;
  v.atol = atol ? *atol : table.max_abs_rel * m.ref_max_abs;
  v.pass = m.finite && m.rel_l2 <= v.rtol && m.max_abs <= v.atol;
  return v;
}

}  // namespace moe
