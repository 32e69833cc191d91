// Numeric comparison of an output (or weight) against a reference: max abs error, relative L2
// error ||a - ref|| / ||ref||, cosine similarity. Accumulates in float64 over any number of
// pieces, so a whole layer's experts can be compared one expert at a time.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>

namespace moe {

struct ErrorMetrics {
  int64_t count = 0;
  double max_abs = 0;     // max |a - ref|
  double rel_l2 = 0;      // ||a - ref|| / ||ref|| (0 when both are 0; inf when only ref is 0)
  double cosine = 1;      // a . ref / (|a| |ref|) (1 when both are 0, 0 when one is)
  double ref_max_abs = 0; // max |ref|, the scale atol defaults are taken from
  bool finite = true;     // no NaN / Inf in a
};

class ErrorAccumulator {
 public:
  void add(const float* a, const double* ref, int64_t n);
  void add(const float* a, const float* ref, int64_t n);
  void add(const double* a, const double* ref, int64_t n);
  void merge(const ErrorAccumulator& other);  // as if other's pieces were added here
  ErrorMetrics result() const;

 private:
  template <typename A, typename R>
  void add_impl(const A* a, const R* ref, int64_t n);
  int64_t count_ = 0;
  double max_abs_ = 0, diff2_ = 0, a2_ = 0, ref2_ = 0, dot_ = 0, ref_max_ = 0;
  bool finite_ = true;
};

ErrorMetrics compare(const float* a, const double* ref, int64_t n);

nlohmann::json metrics_to_json(const ErrorMetrics& m);

}  // namespace moe
