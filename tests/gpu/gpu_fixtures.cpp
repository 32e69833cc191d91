#include "gpu_fixtures.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <numeric>

#include "core/dtype.h"
#include "runtime/device_info.h"

namespace moe::test {

void require_gpu() {
  const GpuInfo info = query_gpu();
  if (!info.available) {
    const bool prefixed = info.reason.rfind("no CUDA device", 0) == 0;
    std::fprintf(stderr, "skipped: %s%s\n", prefixed ? "" : "no CUDA device: ", info.reason.c_str());
    std::exit(77);
  }
}

float round_to(float v, kernels::ElemType dtype) {
  return dtype == kernels::ElemType::BF16 ? bf16_to_f32(f32_to_bf16(v)) : f16_to_f32(f32_to_f16(v));
}

std::vector<float> random_elems(std::mt19937_64& rng, size_t n, float stddev,
                                kernels::ElemType dtype) {
  std::normal_distribution<float> nd(0.0f, stddev);
  std::vector<float> v(n);
  for (auto& x : v) {
    x = round_to(nd(rng), dtype);
    if (x == 0.0f) x = round_to(stddev * 0.5f, dtype);  // never zeros: they hide indexing bugs
  }
  return v;
}

std::vector<uint16_t> encode(const std::vector<float>& v, kernels::ElemType dtype) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    out[i] = dtype == kernels::ElemType::BF16 ? f32_to_bf16(v[i]) : f32_to_f16(v[i]);
  return out;
}

HostExperts random_experts(std::mt19937_64& rng, kernels::ElemType dtype, int experts, int inter,
                           int hidden, bool biases, bool up_first) {
  HostExperts h;
  h.dtype = dtype;
  h.experts = experts;
  h.inter = inter;
  h.hidden = hidden;
  h.up_first = up_first;
  const float s13 = 1.0f / std::sqrt(float(hidden)), s2 = 1.0f / std::sqrt(float(inter));
  h.w13 = random_elems(rng, size_t(experts) * 2 * inter * hidden, s13, dtype);
  h.w2 = random_elems(rng, size_t(experts) * hidden * inter, s2, dtype);
  if (biases) {
    h.b13 = random_elems(rng, size_t(experts) * 2 * inter, 0.5f, dtype);
    h.b2 = random_elems(rng, size_t(experts) * hidden, 0.5f, dtype);
  }
  return h;
}

HostExperts select_experts(const HostExperts& all, const std::vector<int>& which) {
  HostExperts h = all;
  h.experts = int(which.size());
  h.w13.clear();
  h.w2.clear();
  h.b13.clear();
  h.b2.clear();
  const size_t n13 = size_t(2) * all.inter * all.hidden, n2 = size_t(all.hidden) * all.inter;
  for (int e : which) {
    h.w13.insert(h.w13.end(), all.w13.begin() + e * n13, all.w13.begin() + (e + 1) * n13);
    h.w2.insert(h.w2.end(), all.w2.begin() + e * n2, all.w2.begin() + (e + 1) * n2);
    if (!all.b13.empty()) {
      h.b13.insert(h.b13.end(), all.b13.begin() + e * 2 * all.inter,
                   all.b13.begin() + (e + 1) * 2 * all.inter);
      h.b2.insert(h.b2.end(), all.b2.begin() + e * all.hidden, all.b2.begin() + (e + 1) * all.hidden);
    }
  }
  return h;
}

namespace {
void upload_padded(DeviceBuffer& dst, const std::vector<uint16_t>& src, int64_t rows, int cols,
                   int ld, cudaStream_t s) {
  dst.ensure(size_t(rows) * ld * 2);
  cuda_check(cudaMemsetAsync(dst.data(), 0, size_t(rows) * ld * 2, s), "memset");
  cuda_check(cudaMemcpy2DAsync(dst.data(), size_t(ld) * 2, src.data(), size_t(cols) * 2,
                               size_t(cols) * 2, size_t(rows), cudaMemcpyHostToDevice, s),
             "upload");
  cuda_check(cudaStreamSynchronize(s), "upload sync");
}
template <typename T>
void upload_vec(DeviceBuffer& dst, const std::vector<T>& v, cudaStream_t s) {
  dst.ensure(v.size() * sizeof(T));
  copy_to_device(dst.data(), v.data(), v.size() * sizeof(T), s);
}
}  // namespace

GpuExperts upload(const HostExperts& h, cudaStream_t s) {
  GpuExperts g;
  g.dtype = h.dtype;
  g.num_local = h.experts;
  g.inter = h.inter;
  g.inter_ld = round_up8(h.inter);
  g.hidden = h.hidden;
  g.hidden_ld = round_up8(h.hidden);
  g.up_first = h.up_first;
  upload_padded(g.w13, encode(h.w13, h.dtype), int64_t(h.experts) * 2 * h.inter, h.hidden,
                g.hidden_ld, s);
  upload_padded(g.w2, encode(h.w2, h.dtype), int64_t(h.experts) * h.hidden, h.inter, g.inter_ld, s);
  if (!h.b13.empty()) {
    upload_vec(g.w13_bias, encode(h.b13, h.dtype), s);
    upload_vec(g.w2_bias, encode(h.b2, h.dtype), s);
  }
  return g;
}

GpuRouteTable upload(const HostRouteTable& t, cudaStream_t s) {
  RankLayer rl;
  rl.physical_to_logical = t.physical_to_logical;
  rl.expert_map = t.expert_map;
  int num_local = 0;
  for (int32_t m : t.expert_map) num_local = std::max(num_local, m + 1);
  rl.w13.shape = {num_local, 2, 8};
  return upload_route_table(rl, t.num_logical, s, "test");
}

int local_expert(const HostRouteTable& t, int token, int logical) {
  std::vector<int> reps;
  for (size_t p = 0; p < t.physical_to_logical.size(); ++p)
    if (t.physical_to_logical[p] == logical) reps.push_back(int(p));
  if (reps.empty()) return -1;
  return t.expert_map[size_t(reps[size_t(token) % reps.size()])];
}

std::vector<double> oracle_logits(const std::vector<float>& x, const std::vector<float>& w,
                                  const std::vector<float>& bias, int tokens, int hidden,
                                  int experts) {
  std::vector<double> l(size_t(tokens) * experts);
  for (int t = 0; t < tokens; ++t)
    for (int e = 0; e < experts; ++e) {
      double acc = bias.empty() ? 0.0 : double(bias[size_t(e)]);
      for (int h = 0; h < hidden; ++h)
        acc += double(x[size_t(t) * hidden + h]) * double(w[size_t(e) * hidden + h]);
      l[size_t(t) * experts + e] = acc;
    }
  return l;
}

HostRouting oracle_routing(const std::vector<double>& logits, const std::vector<double>& corr,
                           const RoutingSpec& spec, int tokens, int experts, int top_k) {
  HostRouting r;
  r.ids.resize(size_t(tokens) * top_k);
  r.weights.resize(size_t(tokens) * top_k);
  r.margin.resize(size_t(tokens));
  const double ninf = -std::numeric_limits<double>::infinity();
  for (int t = 0; t < tokens; ++t) {
    const double* lg = &logits[size_t(t) * experts];
    std::vector<double> score(static_cast<size_t>(experts)), sel(static_cast<size_t>(experts));
    if (spec.score == ScoreFunc::Softmax) {
      const double m = *std::max_element(lg, lg + experts);
      double s = 0;
      for (int e = 0; e < experts; ++e) s += (score[size_t(e)] = std::exp(lg[e] - m));
      for (auto& v : score) v /= s;
    } else {
      for (int e = 0; e < experts; ++e) score[size_t(e)] = 1.0 / (1.0 + std::exp(-lg[e]));
    }
    for (int e = 0; e < experts; ++e)
      sel[size_t(e)] = score[size_t(e)] + (corr.empty() ? 0.0 : corr[size_t(e)]);
    double margin = std::numeric_limits<double>::infinity();
    if (spec.n_group > 1) {
      const int gs = experts / spec.n_group;
      std::vector<std::pair<double, int>> groups;
      for (int g = 0; g < spec.n_group; ++g) {
        std::vector<double> v(sel.begin() + g * gs, sel.begin() + (g + 1) * gs);
        std::sort(v.rbegin(), v.rend());
        const double gsc = spec.group_score == GroupScore::SumTop2 && gs > 1 ? v[0] + v[1] : v[0];
        groups.push_back({-gsc, g});
      }
      std::sort(groups.begin(), groups.end());
      if (spec.topk_group < spec.n_group)
        margin = std::min(margin, groups[size_t(spec.topk_group)].first -
                                      groups[size_t(spec.topk_group - 1)].first);
      for (int i = spec.topk_group; i < spec.n_group; ++i)
        for (int e = groups[size_t(i)].second * gs; e < (groups[size_t(i)].second + 1) * gs; ++e)
          sel[size_t(e)] = ninf;
    }
    std::vector<int> order(static_cast<size_t>(experts));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return sel[size_t(a)] > sel[size_t(b)]; });
    if (top_k < experts && sel[size_t(order[size_t(top_k)])] != ninf)
      margin = std::min(margin, sel[size_t(order[size_t(top_k - 1)])] - sel[size_t(order[size_t(top_k)])]);
    double sum = 0;
    for (int k = 0; k < top_k; ++k) sum += score[size_t(order[size_t(k)])];
    for (int k = 0; k < top_k; ++k) {
      double w = score[size_t(order[size_t(k)])];
      if (spec.renormalize) w /= std::max(sum, double(spec.renorm_min));
      r.ids[size_t(t) * top_k + k] = order[size_t(k)];
      r.weights[size_t(t) * top_k + k] = w * spec.routed_scaling_factor;
    }
    r.margin[size_t(t)] = margin;
  }
  return r;
}

double oracle_act(Activation act, double g, double u) {
  switch (act) {
    case Activation::GeluAndMul:
      return 0.5 * g * (1.0 + std::erf(g / std::sqrt(2.0))) * u;
    case Activation::SwigluOai: {
      g = std::min(g, 7.0);
      u = std::clamp(u, -7.0, 7.0);
      return g / (1.0 + std::exp(-1.702 * g)) * (u + 1.0);
    }
    default:
      return g / (1.0 + std::exp(-g)) * u;
  }
}

namespace {
// One expert on one input row: y[H] += scale * (W2 act(W13 x * in_scale + b13) + b2).
void expert_row(const HostExperts& e, int ex, const float* x, Activation act, double in_scale,
                double out_scale, double* y) {
  const int I = e.inter, H = e.hidden;
  const size_t base13 = size_t(ex) * 2 * I * H;
  std::vector<double> h(static_cast<size_t>(I));
  for (int i = 0; i < I; ++i) {
    const int gr = (e.up_first ? I : 0) + i, ur = (e.up_first ? 0 : I) + i;
    double g = 0, u = 0;
    for (int k = 0; k < H; ++k) {
      g += double(x[k]) * e.w13[base13 + size_t(gr) * H + k];
      u += double(x[k]) * e.w13[base13 + size_t(ur) * H + k];
    }
    g *= in_scale;
    u *= in_scale;
    if (!e.b13.empty()) {
      g += e.b13[size_t(ex) * 2 * I + gr];
      u += e.b13[size_t(ex) * 2 * I + ur];
    }
    h[size_t(i)] = oracle_act(act, g, u);
  }
  for (int o = 0; o < H; ++o) {
    double acc = e.b2.empty() ? 0.0 : double(e.b2[size_t(ex) * H + o]);
    const float* w = &e.w2[(size_t(ex) * H + o) * I];
    for (int i = 0; i < I; ++i) acc += h[size_t(i)] * w[i];
    y[o] += out_scale * acc;
  }
}
}  // namespace

void oracle_experts(const HostExperts& e, const HostRouteTable& table, const std::vector<float>& x,
                    const std::vector<int32_t>& ids, const std::vector<float>& weights, int tokens,
                    int top_k, Activation act, bool weight_on_input, std::vector<double>& out) {
  for (int t = 0; t < tokens; ++t)
    for (int k = 0; k < top_k; ++k) {
      const int local = local_expert(table, t, ids[size_t(t) * top_k + k]);
      if (local < 0) continue;
      const double w = weights[size_t(t) * top_k + k];
      expert_row(e, local, &x[size_t(t) * e.hidden], act, weight_on_input ? w : 1.0,
                 weight_on_input ? 1.0 : w, &out[size_t(t) * e.hidden]);
    }
}

void oracle_shared(const HostExperts& e, const std::vector<float>& x, const std::vector<double>& gate,
                   int tokens, Activation act, std::vector<double>& out) {
  for (int t = 0; t < tokens; ++t)
    expert_row(e, 0, &x[size_t(t) * e.hidden], act, 1.0, gate.empty() ? 1.0 : gate[size_t(t)],
               &out[size_t(t) * e.hidden]);
}

Compare compare(const std::vector<float>& got, const std::vector<double>& ref) {
  Compare c;
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(got[i])) c.finite = false;
    const double d = double(got[i]) - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
    c.max_abs = std::max(c.max_abs, std::fabs(d));
    c.ref_max_abs = std::max(c.ref_max_abs, std::fabs(ref[i]));
  }
  c.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  if (!c.finite) c.rel_l2 = std::numeric_limits<double>::infinity();
  return c;
}

}  // namespace moe::test
