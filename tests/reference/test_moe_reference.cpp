// The reference MoE block against a naive float64 implementation written separately below
// (plain loops, its own routing), on fresh random data for every family's routing and expert
// semantics; plus hand-computed cases for weight-on-input and the shared-expert gate.
#include <algorithm>
#include <catch2/catch.hpp>
#include <mutex>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "reference/metrics.h"
#include "model/synthetic.h"
#include "reference/moe_reference.h"

using namespace moe;

namespace {

// ---- the families' semantics, as formats.md 9.1 states them ---------------------------------

struct FamilyCase {
  const char* name;
  ModelProfile profile;
};

ModelProfile base_profile(int experts, int top_k, int hidden, int inter) {
  ModelProfile p;
  p.num_experts = experts;
  p.top_k = top_k;
  p.hidden_size = hidden;
  p.moe_intermediate_size = inter;
  p.moe_layers = {0};
  p.num_layers = 1;
  return p;
}

std::vector<FamilyCase> family_cases() {
  const int E = 8, H = 40, I = 19;
  std::vector<FamilyCase> cases;
  auto add = [&](const char* name, auto&& tweak) {
    ModelProfile p = base_profile(E, 2, H, I);
    tweak(p);
    cases.push_back({name, p});
  };
  add("mixtral", [](ModelProfile&) {});
  add("qwen2_moe", [](ModelProfile& p) {
    p.routing.renormalize = false;
    p.shared_intermediate_size = 2 * p.moe_intermediate_size;
    p.has_shared_expert_gate = true;
  });
  add("qwen3_moe", [](ModelProfile& p) { p.top_k = 3; });
  add("olmoe", [](ModelProfile& p) { p.routing.renormalize = false; });
  add("deepseek_v2", [](ModelProfile& p) {
    p.routing.renormalize = false;
    p.routing.n_group = 4;
    p.routing.topk_group = 2;
    p.routing.group_score = GroupScore::Max;
    p.routing.routed_scaling_factor = 16.0f;
    p.shared_intermediate_size = 2 * p.moe_intermediate_size;
  });
  auto v3 = [](ModelProfile& p) {
    p.routing.score = ScoreFunc::Sigmoid;
    p.routing.has_correction_bias = true;
    p.routing.n_group = 4;
    p.routing.topk_group = 2;
    p.routing.group_score = GroupScore::SumTop2;
    p.routing.routed_scaling_factor = 2.5f;
    p.shared_intermediate_size = p.moe_intermediate_size;
    p.top_k = 3;
  };
  add("deepseek_v3", v3);
  add("glm4_moe", [&](ModelProfile& p) {
    v3(p);
    p.routing.routed_scaling_factor = 1.0f;
  });
  add("granitemoe", [](ModelProfile&) {});
  add("llama4", [](ModelProfile& p) {
    p.top_k = 1;
    p.routing.score = ScoreFunc::Sigmoid;
    p.routing.renormalize = false;
    p.routing.weight_on_input = true;
    p.shared_intermediate_size = p.moe_intermediate_size;
  });
  add("gpt_oss", [](ModelProfile& p) {
    p.routing.has_router_bias = true;
    p.has_expert_bias = true;
    p.activation = Activation::SwigluOai;
  });
  add("ernie4_5_moe", [](ModelProfile& p) {
    p.routing.has_correction_bias = true;
    p.routing.renorm_min = 1e-12f;
    p.shared_intermediate_size = 2 * p.moe_intermediate_size;
  });
  add("gelu_variant", [](ModelProfile& p) { p.activation = Activation::GeluAndMul; });
  return cases;
}

// ---- random fixtures ------------------------------------------------------------------------

struct Rng {
  std::mt19937 gen;
  explicit Rng(uint32_t seed) : gen(seed) {}
  std::vector<float> normal(size_t n, float stddev) {
    std::normal_distribution<float> d(0.0f, stddev);
    std::vector<float> v(n);
    for (auto& x : v) x = d(gen);
    return v;
  }
  DenseMatrix matrix(int64_t rows, int64_t cols) {  // std 1/sqrt(in): unit-scale outputs
    return {rows, cols, normal(static_cast<size_t>(rows * cols), 1.0f / std::sqrt(float(cols)))};
  }
};

DenseLayerWeights random_weights(const ModelProfile& p, Rng& rng) {
  const int E = p.num_experts, H = p.hidden_size, I = p.moe_intermediate_size;
  DenseLayerWeights w;
  w.router_w = rng.matrix(E, H);
  if (p.routing.has_router_bias) w.router_b = rng.normal(E, 0.5f);
  if (p.routing.has_correction_bias) w.correction_b = rng.normal(E, 0.1f);
  for (int e = 0; e < E; ++e) {
    DenseExpert x{rng.matrix(I, H), rng.matrix(I, H), rng.matrix(H, I), {}, {}, {}};
    if (p.has_expert_bias) {
      x.gate_bias = rng.normal(I, 0.3f);
      x.up_bias = rng.normal(I, 0.3f);
      x.down_bias = rng.normal(H, 0.3f);
    }
    w.experts.push_back(std::move(x));
  }
  if (p.shared_intermediate_size > 0) {
    const int S = p.shared_intermediate_size;
    w.shared_gate = rng.matrix(S, H);
    w.shared_up = rng.matrix(S, H);
    w.shared_down = rng.matrix(H, S);
  }
  if (p.has_shared_expert_gate) w.shared_gate_w = rng.normal(H, 0.3f);
  return w;
}

// ---- the naive float64 implementation --------------------------------------------------------

double naive_act(const ModelProfile& p, double g, double u) {
  const double alpha = p.swiglu_alpha, limit = p.swiglu_limit;
  switch (p.activation) {
    case Activation::SiluAndMul: return g / (1 + std::exp(-g)) * u;
    case Activation::GeluAndMul: return 0.5 * g * (1 + std::erf(g / std::sqrt(2.0))) * u;
    case Activation::SwigluOai: {
      double gc = g > limit ? limit : g;
      double uc = u > limit ? limit : (u < -limit ? -limit : u);
      return gc / (1 + std::exp(-alpha * gc)) * (uc + 1);
    }
    default: return NAN;
  }
}

std::vector<double> naive_mlp(const ModelProfile& p, const DenseMatrix& g, const DenseMatrix& u,
                              const DenseMatrix& d, const FloatVec& bg, const FloatVec& bu,
                              const FloatVec& bd, const std::vector<double>& x) {
  const int64_t I = g.rows, H = g.cols;
  std::vector<double> a(I), y(H);
  for (int64_t i = 0; i < I; ++i) {
    double sg = bg.empty() ? 0 : bg[i], su = bu.empty() ? 0 : bu[i];
    for (int64_t h = 0; h < H; ++h) {
      sg += double(g.data[i * H + h]) * x[h];
      su += double(u.data[i * H + h]) * x[h];
    }
    a[i] = naive_act(p, sg, su);
  }
  for (int64_t h = 0; h < H; ++h) {
    double s = bd.empty() ? 0 : bd[h];
    for (int64_t i = 0; i < I; ++i) s += double(d.data[h * I + i]) * a[i];
    y[h] = s;
  }
  return y;
}

struct NaiveResult {
  std::vector<int32_t> ids;
  std::vector<double> weights, out;
};

NaiveResult naive_block(const ModelProfile& p, const DenseLayerWeights& lw,
                        const std::vector<float>& x, int T) {
  const int E = p.num_experts, H = p.hidden_size, K = p.top_k;
  const RoutingSpec& rs = p.routing;
  NaiveResult r;
  r.out.assign(static_cast<size_t>(T) * H, 0.0);
  for (int t = 0; t < T; ++t) {
    std::vector<double> xt(x.begin() + t * H, x.begin() + (t + 1) * H);
    std::vector<double> logit(E), score(E), sel(E);
    for (int e = 0; e < E; ++e) {
      double s = rs.has_router_bias ? lw.router_b[e] : 0.0;
      for (int h = 0; h < H; ++h) s += double(lw.router_w.data[e * H + h]) * xt[h];
      logit[e] = s;
    }
    if (rs.score == ScoreFunc::Sigmoid) {
      for (int e = 0; e < E; ++e) score[e] = 1 / (1 + std::exp(-logit[e]));
    } else {
      double z = 0;
      for (int e = 0; e < E; ++e) z += std::exp(logit[e]);
      for (int e = 0; e < E; ++e) score[e] = std::exp(logit[e]) / z;
    }
    for (int e = 0; e < E; ++e) sel[e] = score[e] + (rs.has_correction_bias ? lw.correction_b[e] : 0);
    if (rs.n_group > 1) {
      const int gs = E / rs.n_group;
      std::vector<std::pair<double, int>> groups;
      for (int g = 0; g < rs.n_group; ++g) {
        std::vector<double> v(sel.begin() + g * gs, sel.begin() + (g + 1) * gs);
        std::sort(v.rbegin(), v.rend());
        groups.push_back({rs.group_score == GroupScore::Max ? v[0] : v[0] + v[1], g});
      }
      std::stable_sort(groups.begin(), groups.end(),
                       [](auto& a, auto& b) { return a.first > b.first; });
      std::vector<bool> keep(rs.n_group);
      for (int i = 0; i < rs.topk_group; ++i) keep[groups[i].second] = true;
      for (int e = 0; e < E; ++e)
        if (!keep[e / gs]) sel[e] = -1e300;
    }
    std::vector<std::pair<double, int>> order;
    for (int e = 0; e < E; ++e) order.push_back({sel[e], e});
    std::stable_sort(order.begin(), order.end(), [](auto& a, auto& b) { return a.first > b.first; });
    double sum = 0;
    for (int k = 0; k < K; ++k) sum += score[order[k].second];
    for (int k = 0; k < K; ++k) {
      int id = order[k].second;
      double w = score[id];
      if (rs.renormalize) w /= std::max(sum, double(rs.renorm_min));
      w *= rs.routed_scaling_factor;
      r.ids.push_back(id);
      r.weights.push_back(w);
      const DenseExpert& ex = lw.experts[id];
      std::vector<double> xin = xt;
      if (rs.weight_on_input)
        for (auto& v : xin) v *= w;
      auto y = naive_mlp(p, ex.gate, ex.up, ex.down, ex.gate_bias, ex.up_bias, ex.down_bias, xin);
      for (int h = 0; h < H; ++h) r.out[t * H + h] += (rs.weight_on_input ? 1.0 : w) * y[h];
    }
    if (lw.shared_gate) {
      auto y = naive_mlp(p, *lw.shared_gate, *lw.shared_up, *lw.shared_down, {}, {}, {}, xt);
      double gate = 1;
      if (!lw.shared_gate_w.empty()) {
        double s = 0;
        for (int h = 0; h < H; ++h) s += double(lw.shared_gate_w[h]) * xt[h];
        gate = 1 / (1 + std::exp(-s));
      }
      for (int h = 0; h < H; ++h) r.out[t * H + h] += gate * y[h];
    }
  }
  return r;
}

ErrorMetrics compare_to(const std::vector<double>& got, const std::vector<double>& ref) {
  ErrorAccumulator acc;
  acc.add(got.data(), ref.data(), static_cast<int64_t>(ref.size()));
  return acc.result();
}

}  // namespace

TEST_CASE("reference block matches a naive float64 implementation for every family",
          "[reference]") {
  const int T = 23;
  uint32_t seed = 1000;
  for (const FamilyCase& fc : family_cases()) {
    DYNAMIC_SECTION(fc.name) {
      Rng rng(seed++);
      const ModelProfile& p = fc.profile;
      DenseLayerWeights lw = random_weights(p, rng);
      std::vector<float> x = rng.normal(static_cast<size_t>(T) * p.hidden_size, 1.0f);
      NaiveResult naive = naive_block(p, lw, x, T);
      // the outputs are not degenerate: real routed and shared contributions
      double norm = 0;
      for (double v : naive.out) norm += v * v;
      REQUIRE(std::sqrt(norm / naive.out.size()) > 0.05);

      ReferenceOptions f64{Precision::F64, 2, nullptr};
      BlockOutput b64 = reference_block(p, lw, x.data(), T, f64);
      CHECK(b64.routing.ids == naive.ids);
      ErrorMetrics w64 = compare_to(b64.routing.weights, naive.weights);
      CHECK(w64.max_abs < 1e-12);
      ErrorMetrics m64 = compare_to(b64.out, naive.out);
      CHECK(m64.rel_l2 < 1e-12);
      CHECK(m64.cosine > 1 - 1e-12);

      // float32 accumulation: its own routing should agree; its experts, run under the naive
      // routing, carry only float32 rounding
      ReferenceOptions f32{Precision::F32, 2, nullptr};
      Routing r32 = reference_routing(p, lw, x.data(), T, Precision::F32);
      CHECK(routing_agreement(r32.ids.data(), naive.ids.data(), T, p.top_k) >= 0.9);
      Routing forced = reference_routing_for(p, lw, x.data(), T, naive.ids, Precision::F32);
      ErrorMetrics w32 = compare_to(forced.weights, naive.weights);
      CHECK(w32.max_abs < 1e-5 * std::max(1.0f, p.routing.routed_scaling_factor));
      std::vector<double> out32 = reference_block_under(p, lw, x.data(), T, forced, f32);
      ErrorMetrics m32 = compare_to(out32, naive.out);
      CHECK(m32.rel_l2 < 2e-6);
      CHECK(m32.rel_l2 > 0);  // float32 really ran in float32
    }
  }
}

TEST_CASE("reference matches the naive implementation under every family's real profile",
          "[reference]") {
  // The profiles lib/model reads from each family's config.json (as synthetic.h writes it), so
  // the routing fields the family table sets are the ones exercised here.
  uint32_t seed = 2000;
  for (int f = 0; f < static_cast<int>(Family::kCount); ++f) {
    SyntheticSpec spec;
    spec.family = static_cast<Family>(f);
    spec.hidden_size = 36;
    spec.moe_intermediate_size = 20;
    spec.num_experts = 8;
    spec.top_k = 3;
    spec.num_layers = 2;
    const ModelProfile p = profile_from_config(synthetic_config(spec), "config.json");
    DYNAMIC_SECTION(family_name(p.family)) {
      Rng rng(seed++);
      DenseLayerWeights lw = random_weights(p, rng);
      const int T = 17;
      std::vector<float> x = rng.normal(static_cast<size_t>(T) * p.hidden_size, 1.0f);
      NaiveResult naive = naive_block(p, lw, x, T);
      BlockOutput b = reference_block(p, lw, x.data(), T, {Precision::F64, 2, nullptr});
      CHECK(b.routing.ids == naive.ids);
      CHECK(compare_to(b.out, naive.out).rel_l2 < 1e-12);
    }
  }
}

TEST_CASE("reference results do not depend on the thread count", "[reference]") {
  FamilyCase fc = family_cases()[5];  // deepseek_v3: grouped, biased, shared
  Rng rng(7);
  DenseLayerWeights lw = random_weights(fc.profile, rng);
  const int T = 31;
  std::vector<float> x = rng.normal(static_cast<size_t>(T) * fc.profile.hidden_size, 1.0f);
  BlockOutput one = reference_block(fc.profile, lw, x.data(), T, {Precision::F32, 1, nullptr});
  BlockOutput three = reference_block(fc.profile, lw, x.data(), T, {Precision::F32, 3, nullptr});
  CHECK(one.routing.ids == three.routing.ids);
  CHECK(one.out == three.out);
}

// Counts decodes, to show the reference reads only the experts its tokens selected. The
// reference decodes from several threads at once, so the count is guarded.
struct CountingWeights : DenseLayerWeights {
  mutable std::mutex mu;
  mutable std::vector<int> decoded;
  void expert_into(int e, Proj p, DenseMatrix& out) const override {
    if (p == Proj::Gate) {
      std::lock_guard<std::mutex> lock(mu);
      decoded.push_back(e);
    }
    DenseLayerWeights::expert_into(e, p, out);
  }
};

TEST_CASE("only the experts some token selected are decoded, once each", "[reference]") {
  FamilyCase fc = family_cases()[0];  // 8 experts, top-2
  Rng rng(8);
  CountingWeights lw;
  static_cast<DenseLayerWeights&>(lw) = random_weights(fc.profile, rng);
  const int T = 3;
  std::vector<float> x = rng.normal(static_cast<size_t>(T) * fc.profile.hidden_size, 1.0f);
  BlockOutput b = reference_block(fc.profile, lw, x.data(), T, {Precision::F32, 2, nullptr});
  std::vector<int> want(b.routing.ids.begin(), b.routing.ids.end());
  std::sort(want.begin(), want.end());
  want.erase(std::unique(want.begin(), want.end()), want.end());
  std::sort(lw.decoded.begin(), lw.decoded.end());
  CHECK(lw.decoded == want);
  CHECK(want.size() < 8u);
}

TEST_CASE("weight on input: expert(w x) instead of w expert(x)", "[reference]") {
  // One expert, H = I = 1, all weights 1: expert(x) = silu(x) * x.
  ModelProfile p = base_profile(1, 1, 1, 1);
  p.routing.score = ScoreFunc::Sigmoid;
  p.routing.renormalize = false;
  DenseLayerWeights lw;
  lw.router_w = {1, 1, {0.0f}};  // logit 0: weight sigmoid(0) = 0.5
  lw.experts.push_back({{1, 1, {1.0f}}, {1, 1, {1.0f}}, {1, 1, {1.0f}}, {}, {}, {}});
  float x = 2.0f;
  ReferenceOptions opt{Precision::F64, 1, nullptr};
  BlockOutput b = reference_block(p, lw, &x, 1, opt);
  CHECK(b.routing.weights[0] == Approx(0.5));
  CHECK(b.out[0] == Approx(1.7615941559557646));  // 0.5 * silu(2) * 2
  p.routing.weight_on_input = true;
  b = reference_block(p, lw, &x, 1, opt);
  CHECK(b.out[0] == Approx(0.7310585786300049));  // silu(1) * 1
}

TEST_CASE("Qwen2-MoE shared expert is scaled by sigmoid(x . gate)", "[reference]") {
  ModelProfile p = base_profile(1, 1, 1, 1);
  p.shared_intermediate_size = 1;
  p.has_shared_expert_gate = true;
  DenseLayerWeights lw;
  lw.router_w = {1, 1, {0.0f}};
  lw.experts.push_back({{1, 1, {0.0f}}, {1, 1, {1.0f}}, {1, 1, {1.0f}}, {}, {}, {}});  // 0 out
  lw.shared_gate = DenseMatrix{1, 1, {1.0f}};
  lw.shared_up = DenseMatrix{1, 1, {1.0f}};
  lw.shared_down = DenseMatrix{1, 1, {1.0f}};
  lw.shared_gate_w = {0.5f};
  float x = 2.0f;  // shared(x) = silu(2) * 2 = 1.7615941559557646 * 2; gate sigmoid(1)
  BlockOutput b = reference_block(p, lw, &x, 1, {Precision::F64, 1, nullptr});
  CHECK(b.out[0] == Approx(2 * 1.7615941559557646 * 0.7310585786300049));
  lw.shared_gate_w.clear();  // without the gate the shared expert adds in full
  b = reference_block(p, lw, &x, 1, {Precision::F64, 1, nullptr});
  CHECK(b.out[0] == Approx(2 * 1.7615941559557646));
}

TEST_CASE("expert shapes that disagree with the profile are errors", "[reference]") {
  FamilyCase fc = family_cases()[0];
  Rng rng(9);
  DenseLayerWeights lw = random_weights(fc.profile, rng);
  lw.experts[3].down = rng.matrix(fc.profile.hidden_size, fc.profile.moe_intermediate_size + 1);
  Routing r;
  r.tokens = 1;
  r.top_k = 2;
  r.ids = {3, 0};
  r.weights = {0.5, 0.5};
  std::vector<float> x = rng.normal(fc.profile.hidden_size, 1.0f);
  CHECK_THROWS_AS(routed_experts(fc.profile, lw, x.data(), 1, r, {}), Error);
  r.ids = {1, 0};  // expert 3 not needed: not decoded, no error
  CHECK_NOTHROW(routed_experts(fc.profile, lw, x.data(), 1, r, {}));
}

TEST_CASE("gpt-oss block by hand: router bias, top-1 renormalized, clamped swiglu with biases",
          "[reference]") {
  // E = 2, H = I = 1. Router w {1, 1}, bias {0, 1}: expert 1 always wins and, renormalized over
  // the top-1, weighs exactly 1 (softmax over both would give sigmoid(1) = 0.731).
  // Expert 1: g = x + 0.5, u = x - 0.25, y = min(g, 7) sigmoid(1.702 min(g, 7))
  // (clamp(u, -7, 7) + 1) + 0.125, with alpha the profile's float 1.702f.
  ModelProfile p = base_profile(2, 1, 1, 1);
  p.routing.has_router_bias = true;
  p.has_expert_bias = true;
  p.activation = Activation::SwigluOai;
  DenseLayerWeights lw;
  lw.router_w = {2, 1, {1.0f, 1.0f}};
  lw.router_b = {0.0f, 1.0f};
  lw.experts.push_back({{1, 1, {-1.0f}}, {1, 1, {3.0f}}, {1, 1, {2.0f}}, {0.2f}, {0.0f}, {5.0f}});
  lw.experts.push_back({{1, 1, {1.0f}}, {1, 1, {1.0f}}, {1, 1, {1.0f}}, {0.5f}, {-0.25f}, {0.125f}});
  struct Case {
    float x;
    double expected;
  };
  const Case cases[] = {
      {2.0f, 6.903788051318503},    // g 2.5, u 1.75: no clamp
      {10.0f, 56.12462502648411},   // g 10.5 -> 7, u 9.75 -> 7
  };
  for (const Case& c : cases) {
    for (Precision prec : {Precision::F64, Precision::F32}) {
      BlockOutput b = reference_block(p, lw, &c.x, 1, {prec, 1, nullptr});
      REQUIRE(b.routing.ids == std::vector<int32_t>{1});
      CHECK(b.routing.weights[0] == 1.0);
      CHECK(b.out[0] == Approx(c.expected).epsilon(prec == Precision::F64 ? 1e-12 : 1e-6));
    }
  }
}

TEST_CASE("float64 expert MLP: few-row and many-row products agree with the naive one",
          "[reference]") {
  // run_mlp takes a matrix-vector path for up to 4 rows and a GEMM path above: both must be
  // the naive float64 MLP up to summation order.
  ModelProfile p = base_profile(1, 1, 70, 130);  // sizes not multiples of the 64-row blocks
  p.has_expert_bias = true;
  p.activation = Activation::SwigluOai;
  Rng rng(12);
  DenseLayerWeights lw = random_weights(p, rng);
  const DenseExpert& e = lw.experts[0];
  MlpWeights mlp{e.gate, e.up, e.down, e.gate_bias, e.up_bias, e.down_bias};
  const std::vector<float> xs = rng.normal(9 * 70, 1.0f);
  for (int rows : {1, 3, 4, 5, 9}) {
    INFO(rows << " rows");
    RowMatrix<double> x(rows, 70);
    std::vector<double> naive;
    for (int r = 0; r < rows; ++r) {
      std::vector<double> xr(xs.begin() + r * 70, xs.begin() + (r + 1) * 70);
      for (int h = 0; h < 70; ++h) x(r, h) = xr[h];
      auto y = naive_mlp(p, e.gate, e.up, e.down, e.gate_bias, e.up_bias, e.down_bias, xr);
      naive.insert(naive.end(), y.begin(), y.end());
    }
    const RowMatrix<double> y = run_mlp(mlp, x, activation_params(p));
    std::vector<double> got(y.data(), y.data() + y.size());
    const ErrorMetrics m = compare_to(got, naive);
    CHECK(m.rel_l2 < 1e-13);
    CHECK(m.ref_max_abs > 0.1);
  }
}
