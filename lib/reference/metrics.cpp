#include "reference/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace moe {

template <typename A, typename R>
void ErrorAccumulator::add_impl(const A* a, const R* ref, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double x = static_cast<double>(a[i]), r = static_cast<double>(ref[i]);
    if (!std::isfinite(x)) {
      finite_ = false;
      continue;  // keeps the norms meaningful for the rest; `finite` already fails the check
    }
    const double d = x - r;
    max_abs_ = std::max(max_abs_, std::fabs(d));
    ref_max_ = std::max(ref_max_, std::fabs(r));
    diff2_ += d * d;
    a2_ += x * x;
    ref2_ += r * r;
    dot_ += x * r;
  }
  count_ += n;
}

void ErrorAccumulator::add(const float* a, const double* ref, int64_t n) { add_impl(a, ref, n); }
void ErrorAccumulator::add(const float* a, const float* ref, int64_t n) { add_impl(a, ref, n); }
void ErrorAccumulator::add(const double* a, const double* ref, int64_t n) { add_impl(a, ref, n); }

void ErrorAccumulator::merge(const ErrorAccumulator& o) {
  count_ += o.count_;
  max_abs_ = std::max(max_abs_, o.max_abs_);
  ref_max_ = std::max(ref_max_, o.ref_max_);
  diff2_ += o.diff2_;
  a2_ += o.a2_;
  ref2_ += o.ref2_;
  dot_ += o.dot_;
  finite_ = finite_ && o.finite_;
}

ErrorMetrics ErrorAccumulator::result() const {
  ErrorMetrics m;
  m.count = count_;
  m.finite = finite_;
  m.max_abs = finite_ ? max_abs_ : std::numeric_limits<double>::infinity();
  m.ref_max_abs = ref_max_;
  const double inf = std::numeric_limits<double>::infinity();
  if (!finite_) {
    m.rel_l2 = inf;
    m.cosine = 0;
    return m;
  }
  m.rel_l2 = ref2_ > 0 ? std::sqrt(diff2_ / ref2_) : (diff2_ > 0 ? inf : 0.0);
  if (a2_ > 0 && ref2_ > 0) m.cosine = dot_ / (std::sqrt(a2_) * std::sqrt(ref2_));
  else m.cosine = (a2_ == 0 && ref2_ == 0) ? 1.0 : 0.0;
  return m;
}

ErrorMetrics compare(const float* a, const double* ref, int64_t n) {
  ErrorAccumulator acc;
  acc.add(a, ref, n);
  return acc.result();
}

nlohmann::json metrics_to_json(const ErrorMetrics& m) {
  // JSON has no Inf: a non-finite number is written as null and `finite` says why.
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); };
  return {{"count", m.count},   {"max_abs", num(m.max_abs)}, {"rel_l2", num(m.rel_l2)},
          {"cosine", num(m.cosine)}, {"ref_max_abs", num(m.ref_max_abs)}, {"finite", m.finite}};
}

}  // namespace moe
