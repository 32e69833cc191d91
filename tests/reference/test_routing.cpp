// Hand-computed routing and activation cases: each RoutingSpec knob changes the answer in a way
// worked out on paper here, so a dropped or misordered step fails a specific case.
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "reference/activation.h"
#include "reference/routing.h"

using namespace moe;

namespace {

double logit_of(double p) { return std::log(p / (1 - p)); }  // sigmoid(logit_of(p)) == p

std::vector<double> logits_for_sigmoid(const std::vector<double>& probs) {
  std::vector<double> l;
  for (double p : probs) l.push_back(logit_of(p));
  return l;
}

Routing route1(const RoutingSpec& spec, int top_k, const std::vector<double>& logits,
               const std::vector<float>& corr = {}, Precision prec = Precision::F64) {
  return route(spec, top_k, logits.data(), corr.empty() ? nullptr : corr.data(), 1,
               static_cast<int>(logits.size()), prec);
}

}  // namespace

TEST_CASE("softmax top-k, renormalized or not", "[reference][routing]") {
  RoutingSpec spec;  // softmax, renormalize
  std::vector<double> logits = {1, 2, 3, 0};
  for (Precision prec : {Precision::F32, Precision::F64}) {
    const double tol = prec == Precision::F32 ? 1e-6 : 1e-14;
    Routing r = route1(spec, 2, logits, {}, prec);
    REQUIRE(r.ids == std::vector<int32_t>{2, 1});
    // e^3 / (e^3 + e^2) = sigmoid(1)
    CHECK(r.weights[0] == Approx(1 / (1 + std::exp(-1.0))).epsilon(tol));
    CHECK(r.weights[1] == Approx(1 / (1 + std::exp(1.0))).epsilon(tol));

    spec.renormalize = false;
    r = route1(spec, 2, logits, {}, prec);
    const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0) + 1.0;
    CHECK(r.weights[0] == Approx(std::exp(3.0) / z).epsilon(tol));
    CHECK(r.weights[1] == Approx(std::exp(2.0) / z).epsilon(tol));
    spec.renormalize = true;
  }
}

TEST_CASE("sigmoid scores, renormalize and routed scaling", "[reference][routing]") {
  RoutingSpec spec;
  spec.score = ScoreFunc::Sigmoid;
  spec.renormalize = false;
  auto logits = logits_for_sigmoid({0.5, 0.75, 0.25, 0.125});
  Routing r = route1(spec, 2, logits);
  REQUIRE(r.ids == std::vector<int32_t>{1, 0});
  CHECK(r.weights[0] == Approx(0.75));
  CHECK(r.weights[1] == Approx(0.5));

  spec.renormalize = true;
  r = route1(spec, 2, logits);
  CHECK(r.weights[0] == Approx(0.6));
  CHECK(r.weights[1] == Approx(0.4));

  spec.routed_scaling_factor = 2.5f;
  r = route1(spec, 2, logits);
  CHECK(r.weights[0] == Approx(1.5));
  CHECK(r.weights[1] == Approx(1.0));
}

TEST_CASE("correction bias changes the selection but not the weights", "[reference][routing]") {
  RoutingSpec spec;
  spec.score = ScoreFunc::Sigmoid;
  spec.has_correction_bias = true;
  spec.routed_scaling_factor = 2.5f;
  auto logits = logits_for_sigmoid({0.5, 0.75, 0.25, 0.125});
  std::vector<float> bias = {0.0f, 0.0f, 0.6f, 0.0f};  // expert 2 selects as 0.85
  Routing r = route1(spec, 2, logits, bias);
  REQUIRE(r.ids == std::vector<int32_t>{2, 1});
  // weights from the unbiased scores 0.25 and 0.75, renormalized, times 2.5
  CHECK(r.weights[0] == Approx(0.25 / 1.0 * 2.5));
  CHECK(r.weights[1] == Approx(0.75 / 1.0 * 2.5));

  spec.has_correction_bias = false;  // the spec decides, not the presence of the array
  r = route1(spec, 2, logits, bias);
  CHECK(r.ids == std::vector<int32_t>{1, 0});
}

TEST_CASE("grouped top-k with Max and SumTop2 group scores", "[reference][routing]") {
  // 8 experts in 4 groups of 2: g0 {0.9, 0.1}, g1 {0.8, 0.7}, g2 {0.2, 0.3}, g3 {0.4, 0.6}.
  auto logits = logits_for_sigmoid({0.9, 0.1, 0.8, 0.7, 0.2, 0.3, 0.4, 0.6});
  RoutingSpec spec;
  spec.score = ScoreFunc::Sigmoid;
  spec.renormalize = false;
  spec.n_group = 4;
  spec.topk_group = 1;

  spec.group_score = GroupScore::Max;  // g0 wins on 0.9: its two experts, even 0.1
  Routing r = route1(spec, 2, logits);
  CHECK(r.ids == std::vector<int32_t>{0, 1});
  CHECK(r.weights[1] == Approx(0.1));

  spec.group_score = GroupScore::SumTop2;  // g1 wins on 0.8 + 0.7
  r = route1(spec, 2, logits);
  CHECK(r.ids == std::vector<int32_t>{2, 3});

  spec.topk_group = 2;
  spec.group_score = GroupScore::Max;  // g0 and g1 kept: 0.1 beats the masked 0.6
  r = route1(spec, 4, logits);
  CHECK(r.ids == std::vector<int32_t>{0, 2, 3, 1});
  spec.group_score = GroupScore::SumTop2;
  r = route1(spec, 3, {logit_of(0.9), logit_of(0.05), logit_of(0.8), logit_of(0.7), logit_of(0.2),
                       logit_of(0.3), logit_of(0.4), logit_of(0.6)});
  // g0 now sums to 0.95 < g3's 1.0: g1 and g3 are kept, and 0.9 is masked out.
  CHECK(r.ids == std::vector<int32_t>{2, 3, 7});

  spec.n_group = 1;  // ungrouped: the global top-4
  r = route1(spec, 4, logits);
  CHECK(r.ids == std::vector<int32_t>{0, 2, 3, 7});
}

TEST_CASE("grouped selection uses the biased scores", "[reference][routing]") {
  auto logits = logits_for_sigmoid({0.9, 0.1, 0.8, 0.7});
  RoutingSpec spec;
  spec.score = ScoreFunc::Sigmoid;
  spec.renormalize = false;
  spec.n_group = 2;
  spec.topk_group = 1;
  spec.group_score = GroupScore::SumTop2;
  spec.has_correction_bias = true;
  // unbiased sums: g0 1.0, g1 1.5; the bias lifts g0 to 1.0 + 0.6 = 1.6
  std::vector<float> bias = {0.3f, 0.3f, 0.0f, 0.0f};
  Routing r = route1(spec, 2, logits, bias);
  CHECK(r.ids == std::vector<int32_t>{0, 1});
  CHECK(r.weights[0] == Approx(0.9));
  CHECK(r.weights[1] == Approx(0.1));
}

TEST_CASE("ties go to the lower expert id", "[reference][routing]") {
  RoutingSpec spec;
  Routing r = route1(spec, 2, {0.5, 1.0, 1.0, 1.0});
  CHECK(r.ids == std::vector<int32_t>{1, 2});
  CHECK(r.weights[0] == Approx(0.5));
}

TEST_CASE("renorm_min clamps the renormalization sum", "[reference][routing]") {
  RoutingSpec spec;
  spec.score = ScoreFunc::Sigmoid;
  auto logits = logits_for_sigmoid({0.25, 0.25, 0.125, 0.125});
  spec.renorm_min = 0.8f;  // sum 0.5 < 0.8: divide by 0.8
  Routing r = route1(spec, 2, logits);
  CHECK(r.weights[0] == Approx(0.25 / 0.8));
  spec.renorm_min = 0.1f;  // sum 0.5 > 0.1: plain renormalization
  r = route1(spec, 2, logits);
  CHECK(r.weights[0] == Approx(0.5));
}

TEST_CASE("router bias is added to the logits", "[reference][routing]") {
  std::vector<float> x = {1.0f, -1.0f};
  std::vector<float> w = {1, 0, 0, 1, 2, 0};  // [3, 2]
  std::vector<float> b = {0, 5, 0};
  auto no_bias = router_logits(x.data(), 1, 2, w.data(), 3, nullptr, Precision::F64);
  CHECK(no_bias == std::vector<double>{1, -1, 2});
  auto with_bias = router_logits(x.data(), 1, 2, w.data(), 3, b.data(), Precision::F32);
  CHECK(with_bias == std::vector<double>{1, 4, 2});
  RoutingSpec spec;
  CHECK(route1(spec, 1, no_bias).ids == std::vector<int32_t>{2});
  CHECK(route1(spec, 1, with_bias).ids == std::vector<int32_t>{1});
}

TEST_CASE("selection_weights re-weights a selection made elsewhere", "[reference][routing]") {
  RoutingSpec spec;
  spec.score = ScoreFunc::Sigmoid;
  spec.routed_scaling_factor = 2.0f;
  auto logits = logits_for_sigmoid({0.5, 0.75, 0.25, 0.125});
  auto scores = routing_scores(spec, logits.data(), 1, 4, Precision::F64);
  std::vector<int32_t> ids = {3, 2};  // not what route() would pick
  auto w = selection_weights(spec, 2, scores.data(), ids.data(), 1, 4, Precision::F64);
  CHECK(w[0] == Approx(0.125 / 0.375 * 2));
  CHECK(w[1] == Approx(0.25 / 0.375 * 2));
  std::vector<int32_t> bad = {3, 4};
  CHECK_THROWS_AS(selection_weights(spec, 2, scores.data(), bad.data(), 1, 4, Precision::F64),
                  Error);
}

TEST_CASE("impossible routing specs are rejected", "[reference][routing]") {
  RoutingSpec spec;
  std::vector<double> logits(6, 0.0);
  CHECK_THROWS_AS(route1(spec, 7, logits), Error);
  spec.n_group = 4;  // 4 does not divide 6
  CHECK_THROWS_AS(route1(spec, 2, logits), Error);
  spec.n_group = 3;
  spec.topk_group = 1;  // one group of 2 experts cannot give 3
  CHECK_THROWS_AS(route1(spec, 3, logits), Error);
}

TEST_CASE("routing agreement compares top-k sets", "[reference][routing]") {
  std::vector<int32_t> a = {1, 2, 3, 4, 5, 6};
  std::vector<int32_t> b = {2, 1, 3, 5, 5, 6};
  CHECK(routing_agreement(a.data(), b.data(), 3, 2) == Approx(2.0 / 3));
}

TEST_CASE("activations match hand-computed values", "[reference][activation]") {
  struct Case {
    Activation kind;
    double gate, up, expected;
  };
  const Case cases[] = {
      {Activation::SiluAndMul, 1.0, 2.0, 1.4621171572600098},   // 1 * sigmoid(1) * 2
      {Activation::GeluAndMul, 1.0, 2.0, 1.6826894921370859},   // Phi(1) * 1 * 2, exact erf
      {Activation::GeluAndMul, -1.0, 3.0, -0.4759657617943712},
      {Activation::SwigluOai, 8.0, -9.0, -41.99971876986308},   // gate -> 7, up -> -7
      {Activation::SwigluOai, 1.0, 0.5, 1.268693653190454},
      {Activation::SwigluOai, -10.0, 0.0, -4.0579604047615473e-07},  // no lower clamp on gate
      {Activation::SwigluOai, 3.0, 7.5, 23.855429531793654},     // up clamped to 7: (7 + 1)
  };
  // alpha is the profile's float 1.702f (1.70199990...), which the expected values use too
  for (const Case& c : cases) {
    ActivationParams p{c.kind, 1.702f, 7.0f};
    double h64;
    apply_activation(p, &c.gate, &c.up, &h64, 1);
    CHECK(h64 == Approx(c.expected).epsilon(1e-12));
    float g = static_cast<float>(c.gate), u = static_cast<float>(c.up), h32;
    apply_activation(p, &g, &u, &h32, 1);
    CHECK(h32 == Approx(c.expected).epsilon(1e-6));
  }
}

TEST_CASE("gpt-oss / GraniteMoE: top-k of (logits + router bias), softmax over the k",
          "[reference][routing]") {
  // x [1, 2] . W^T gives logits {1, -1, 2, 0}; gpt-oss's bias {0, 2.5, 0, 0.5} makes them
  // {1, 1.5, 2, 0.5}: experts 2 and 1, weights softmax(2, 1.5) = sigmoid(+-0.5).
  std::vector<float> x = {1.0f, -1.0f};
  std::vector<float> w = {1, 0, 0, 1, 2, 0, 0, 0};  // [4, 2]
  std::vector<float> b = {0.0f, 2.5f, 0.0f, 0.5f};
  RoutingSpec spec;  // the family table's rows: softmax over E, then renormalize
  spec.has_router_bias = true;
  for (Precision prec : {Precision::F32, Precision::F64}) {
    const double tol = prec == Precision::F32 ? 1e-6 : 1e-14;
    auto logits = router_logits(x.data(), 1, 2, w.data(), 4, b.data(), prec);
    Routing r = route(spec, 2, logits.data(), nullptr, 1, 4, prec);
    REQUIRE(r.ids == std::vector<int32_t>{2, 1});
    CHECK(r.weights[0] == Approx(0.6224593312018546).epsilon(tol));
    CHECK(r.weights[1] == Approx(0.3775406687981454).epsilon(tol));
    // GraniteMoE: no bias, so experts 2 and 0, softmax(2, 1) = sigmoid(+-1)
    logits = router_logits(x.data(), 1, 2, w.data(), 4, nullptr, prec);
    r = route(spec, 2, logits.data(), nullptr, 1, 4, prec);
    REQUIRE(r.ids == std::vector<int32_t>{2, 0});
    CHECK(r.weights[0] == Approx(0.7310585786300049).epsilon(tol));
  }
}

TEST_CASE("Llama-4: top-k on logits, sigmoid of the selected, no renormalization",
          "[reference][routing]") {
  RoutingSpec spec;
  spec.score = ScoreFunc::Sigmoid;
  spec.renormalize = false;
  spec.weight_on_input = true;  // changes the experts' input, not the routing
  const std::vector<double> logits = {0.5, -1.0, 2.0};
  Routing r = route1(spec, 1, logits);
  REQUIRE(r.ids == std::vector<int32_t>{2});
  CHECK(r.weights[0] == Approx(0.8807970779778823));  // sigmoid(2)
  r = route1(spec, 2, logits);  // the weights sum to 1.50 > 1: not renormalized
  REQUIRE(r.ids == std::vector<int32_t>{2, 0});
  CHECK(r.weights[0] == Approx(0.8807970779778823));
  CHECK(r.weights[1] == Approx(0.6224593312018546));  // sigmoid(0.5)
}

TEST_CASE("DeepSeek-V3 noaux_tc end to end on one token", "[reference][routing]") {
  // 8 experts, 4 groups of 2, keep 2 groups, top-3, sigmoid, correction bias, renormalize,
  // x 2.5. Scores s = {0.9, 0.1 | 0.6, 0.5 | 0.7, 0.2 | 0.3, 0.4}; bias lifts expert 7 by 0.5:
  // biased {0.9, 0.1 | 0.6, 0.5 | 0.7, 0.2 | 0.3, 0.9}; group sums of top-2 {1.0, 1.1, 0.9,
  // 1.2}: groups 3 and 1 kept; top-3 by biased score: 7 (0.9), 2 (0.6), 3 (0.5); weights from
  // UNBIASED s {0.4, 0.6, 0.5} / 1.5 * 2.5.
  auto logits = logits_for_sigmoid({0.9, 0.1, 0.6, 0.5, 0.7, 0.2, 0.3, 0.4});
  std::vector<float> bias(8, 0.0f);
  bias[7] = 0.5f;
  RoutingSpec spec;
  spec.score = ScoreFunc::Sigmoid;
  spec.has_correction_bias = true;
  spec.n_group = 4;
  spec.topk_group = 2;
  spec.group_score = GroupScore::SumTop2;
  spec.routed_scaling_factor = 2.5f;
  Routing r = route1(spec, 3, logits, bias);
  REQUIRE(r.ids == std::vector<int32_t>{7, 2, 3});
  CHECK(r.weights[0] == Approx(0.4 / 1.5 * 2.5));
  CHECK(r.weights[1] == Approx(0.6 / 1.5 * 2.5));
  CHECK(r.weights[2] == Approx(0.5 / 1.5 * 2.5));
}
