// Error metrics on hand-computed vectors, including the degenerate and non-finite cases.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <vector>

#include "reference/metrics.h"

using namespace moe;

TEST_CASE("metrics: max abs, relative L2, cosine", "[reference][metrics]") {
  std::vector<float> a = {1.0f, 2.0f};
  std::vector<double> ref = {1.0, 1.0};
  ErrorMetrics m = compare(a.data(), ref.data(), 2);
  CHECK(m.max_abs == 1.0);
  CHECK(m.rel_l2 == Approx(1.0 / std::sqrt(2.0)));
  CHECK(m.cosine == Approx(3.0 / (std::sqrt(5.0) * std::sqrt(2.0))));
  CHECK(m.ref_max_abs == 1.0);
  CHECK(m.finite);

  // pieces accumulate to the same as one call
  ErrorAccumulator acc;
  acc.add(a.data(), ref.data(), 1);
  acc.add(a.data() + 1, ref.data() + 1, 1);
  ErrorMetrics m2 = acc.result();
  CHECK(m2.rel_l2 == Approx(m.rel_l2));
  CHECK(m2.count == 2);
}

TEST_CASE("metrics: zeros and non-finite values", "[reference][metrics]") {
  std::vector<float> zero = {0.0f, 0.0f};
  std::vector<double> zref = {0.0, 0.0};
  ErrorMetrics m = compare(zero.data(), zref.data(), 2);
  CHECK(m.rel_l2 == 0.0);
  CHECK(m.cosine == 1.0);

  std::vector<float> one = {1.0f, 0.0f};
  m = compare(one.data(), zref.data(), 2);
  CHECK(std::isinf(m.rel_l2));
  CHECK(m.cosine == 0.0);

  std::vector<float> nan = {std::numeric_limits<float>::quiet_NaN(), 1.0f};
  std::vector<double> ref = {1.0, 1.0};
  m = compare(nan.data(), ref.data(), 2);
  CHECK_FALSE(m.finite);
  CHECK(std::isinf(m.rel_l2));
  auto j = metrics_to_json(m);
  CHECK(j["rel_l2"].is_null());
  CHECK(j["finite"] == false);
}
