// The CUDA kernels against the float64 CPU oracle (gpu_fixtures.h) and the in-tree naive kernel:
// routing for every RoutingSpec variant, the alignment with expert maps and replicas, the fused
// gate-up / down GEMMs in every tile configuration (both dtypes, every activation, biases,
// weight on input, odd T / E / H / I, split-K), ranks summing to the whole layer, shared experts.
// Workspaces are poisoned (NaN) before the kernels write them; outputs start from random values
// (the kernels accumulate) so an unwritten or twice-written element shows.
#include <catch2/catch.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "core/error.h"
#include "gpu_fixtures.h"
#include "runtime/device_info.h"

using namespace moe;
using namespace moe::test;
using kernels::ElemType;

namespace {

const int kGpuChecked = (require_gpu(), 0);

template <typename T>
std::vector<T> to_host(const DeviceBuffer& b, size_t n, cudaStream_t s) {
  std::vector<T> v(n);
  copy_to_host(v.data(), b.data(), n * sizeof(T), s);
  return v;
}
template <typename T>
void to_device(DeviceBuffer& b, const std::vector<T>& v, cudaStream_t s) {
  b.ensure(v.size() * sizeof(T));
  copy_to_device(b.data(), v.data(), v.size() * sizeof(T), s);
}

// Distinct logical ids per token, random weights in (0.1, 1).
void random_routing(std::mt19937_64& rng, int tokens, int experts, int top_k,
                    std::vector<int32_t>& ids, std::vector<float>& weights) {
  ids.resize(size_t(tokens) * top_k);
  weights.resize(ids.size());
  REQUIRE(top_k <= experts);  // top_k distinct experts per token
  std::uniform_real_distribution<float> ud(0.1f, 1.0f);
  std::vector<int32_t> perm(static_cast<size_t>(experts));
  for (int t = 0; t < tokens; ++t) {
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int k = 0; k < top_k; ++k) {
      ids[size_t(t) * top_k + k] = perm[size_t(k)];
      weights[size_t(t) * top_k + k] = ud(rng);
    }
  }
}

HostRouteTable identity_table(int experts) {
  HostRouteTable t;
  t.num_logical = experts;
  for (int e = 0; e < experts; ++e) {
    t.physical_to_logical.push_back(e);
    t.expert_map.push_back(e);
  }
  return t;
}

struct Pair {
  int gate_up, down;
};
// Pairs of equal block height this device runs that cover every row: each gate-up row with
// down rows in turn, so every down row is paired at least once (not the whole cross product,
// which compute-sanitizer would take too long over).
std::vector<Pair> config_pairs() {
  std::vector<Pair> out;
  const bool wg = kernels::wgmma_available();
  auto runs = [&](const kernels::GemmConfigInfo& c) { return !c.wgmma || wg; };
  std::vector<bool> down_used(size_t(kernels::down_config_count()), false);
  std::vector<int> next_down;  // per block height: the next down row to pair
  for (int g = 0; g < kernels::gate_up_config_count(); ++g) {
    const auto gi = kernels::gate_up_config(g);
    if (!runs(gi)) continue;
    std::vector<int> same;
    for (int d = 0; d < kernels::down_config_count(); ++d) {
      const auto di = kernels::down_config(d);
      if (di.block_m == gi.block_m && runs(di)) same.push_back(d);
    }
    if (same.empty()) continue;
    if (next_down.size() <= size_t(gi.block_m)) next_down.resize(size_t(gi.block_m) + 1, 0);
    const int d = same[size_t(next_down[size_t(gi.block_m)]++) % same.size()];
    out.push_back({g, d});
    down_used[size_t(d)] = true;
  }
  for (int d = 0; d < kernels::down_config_count(); ++d) {
    const auto di = kernels::down_config(d);
    if (down_used[size_t(d)] || !runs(di)) continue;
    for (int g = 0; g < kernels::gate_up_config_count(); ++g) {
      const auto gi = kernels::gate_up_config(g);
      if (gi.block_m == di.block_m && runs(gi)) {
        out.push_back({g, d});
        break;
      }
    }
  }
  return out;
}

// The table index of the gate-up (or down) row called `name`.
int config_named(bool gate_up, const std::string& name) {
  const int i = gate_up ? kernels::gate_up_config_named(name.c_str())
                        : kernels::down_config_named(name.c_str());
  if (i < 0) FAIL("no tile row named " << name);
  return i;
}

// Every gate-up row whose name starts with `prefix` with every down row of that prefix and the
// same block height (the whole cross product: a handful of rows).
std::vector<Pair> prefix_pairs(const std::string& prefix) {
  std::vector<Pair> out;
  if (!kernels::wgmma_available()) return out;
  auto named = [&](const kernels::GemmConfigInfo& c) { return std::string(c.name).rfind(prefix, 0) == 0; };
  for (int g = 0; g < kernels::gate_up_config_count(); ++g) {
    const auto gi = kernels::gate_up_config(g);
    if (!named(gi)) continue;
    for (int d = 0; d < kernels::down_config_count(); ++d) {
      const auto di = kernels::down_config(d);
      if (named(di) && di.block_m == gi.block_m) out.push_back({g, d});
    }
  }
  return out;
}

// Device state of one routed-expert problem.
struct Problem {
  int tokens = 0, top_k = 0;
  std::vector<float> x;  // [T, H] rounded to the dtype
  std::vector<int32_t> ids;
  std::vector<float> weights;
  std::vector<float> start;  // random initial output
  DeviceBuffer d_x32, d_x, d_ids, d_w, d_out;
};

Problem make_problem(std::mt19937_64& rng, const HostExperts& e, int logical, int tokens,
                     int top_k, cudaStream_t s) {
  Problem p;
  p.tokens = tokens;
  p.top_k = top_k;
  p.x = random_elems(rng, size_t(tokens) * e.hidden, 1.0f, e.dtype);
  random_routing(rng, tokens, logical, top_k, p.ids, p.weights);
  p.start = random_elems(rng, size_t(tokens) * e.hidden, 1.0f, ElemType::BF16);
  to_device(p.d_x32, p.x, s);
  const int ld = round_up8(e.hidden);
  p.d_x.ensure(size_t(tokens) * ld * 2);
  cuda_check(kernels::launch_convert_input(p.d_x32.as<float>(), tokens, e.hidden, e.dtype,
                                           p.d_x.data(), ld, s),
             "convert input");
  to_device(p.d_ids, p.ids, s);
  to_device(p.d_w, p.weights, s);
  return p;
}

ExpertInputs inputs_of(Problem& p, const HostExperts& e, Activation act, bool weight_on_input) {
  ExpertInputs in;
  in.x = p.d_x.data();
  in.ldx = round_up8(e.hidden);
  in.tokens = p.tokens;
  in.top_k = p.top_k;
  in.topk_ids = p.d_ids.as<int32_t>();
  in.topk_weights = p.d_w.as<float>();
  in.act = act_kind_of(act);
  in.weight_on_input = weight_on_input;
  in.out = p.d_out.as<float>();
  in.ldo = e.hidden;
  return in;
}

// Resets the output to the random start and poisons the workspace the kernels must write.
void reset(Problem& p, MoeWorkspace& ws, cudaStream_t s) {
  to_device(p.d_out, p.start, s);
  if (!ws.act.empty())
    cuda_check(kernels::launch_fill_nan_elem(ws.act.data(), ElemType::BF16,
                                             int64_t(ws.act.bytes() / 2), s), "poison act");
  if (!ws.x_sorted.empty())
    cuda_check(kernels::launch_fill_nan_elem(ws.x_sorted.data(), ElemType::BF16,
                                             int64_t(ws.x_sorted.bytes() / 2), s), "poison x_sorted");
  if (!ws.rows.empty())
    cuda_check(kernels::launch_fill_nan_elem(ws.rows.data(), ElemType::BF16,
                                             int64_t(ws.rows.bytes() / 2), s), "poison rows");
  // Zero positions are in range: the token-order gather must reject them by the sorted table.
  if (!ws.slot_pos.empty())
    cuda_check(cudaMemsetAsync(ws.slot_pos.data(), 0, ws.slot_pos.bytes(), s), "poison slot_pos");
  for (DeviceBuffer* b : {&ws.sorted_slots, &ws.tile_expert, &ws.slot_expert})
    if (!b->empty())
      cuda_check(kernels::launch_fill_nan_f32(b->as<float>(), int64_t(b->bytes() / 4), s),
                 "poison indices");
}

// got - start vs the oracle.
Compare check_delta(const Problem& p, const std::vector<float>& got, const std::vector<double>& ref) {
  std::vector<float> delta(got.size());
  for (size_t i = 0; i < got.size(); ++i) delta[i] = got[i] - p.start[i];
  return compare(delta, ref);
}

double tolerance(ElemType t) { return t == ElemType::BF16 ? 1.5e-2 : 4e-3; }

}  // namespace

TEST_CASE("gpu routing matches the float64 oracle for every RoutingSpec variant",
          "[gpu][routing][sanitize]") {
  struct Case {
    const char* name;
    RoutingSpec spec;
    int experts, top_k;
  };
  auto spec = [](ScoreFunc f, bool renorm) {
    RoutingSpec r;
    r.score = f;
    r.renormalize = renorm;
    return r;
  };
  std::vector<Case> cases;
  cases.push_back({"softmax + renormalize (mixtral)", spec(ScoreFunc::Softmax, true), 15, 2});
  cases.push_back({"softmax, no renormalize (qwen2)", spec(ScoreFunc::Softmax, false), 33, 4});
  {
    RoutingSpec r = spec(ScoreFunc::Sigmoid, true);
    r.routed_scaling_factor = 2.5f;
    r.n_group = 4;
    r.topk_group = 2;
    r.group_score = GroupScore::SumTop2;
    r.has_correction_bias = true;
    cases.push_back({"sigmoid, grouped sum-top2, correction bias, scaling (deepseek-v3)", r, 20, 4});
  }
  {
    RoutingSpec r = spec(ScoreFunc::Softmax, false);
    r.routed_scaling_factor = 16.0f;
    r.n_group = 3;
    r.topk_group = 2;
    r.group_score = GroupScore::Max;
    cases.push_back({"softmax, grouped max (deepseek-v2)", r, 27, 6});
  }
  {
    RoutingSpec r = spec(ScoreFunc::Softmax, true);
    r.has_router_bias = true;
    cases.push_back({"router bias (gpt-oss)", r, 9, 4});
  }
  {
    RoutingSpec r = spec(ScoreFunc::Sigmoid, false);
    r.weight_on_input = true;
    cases.push_back({"sigmoid top-1 (llama4)", r, 5, 1});
  }
  {
    RoutingSpec r = spec(ScoreFunc::Softmax, true);
    r.renorm_min = 0.9f;  // binds: a sum of 3 of 13 softmax scores is usually below it
    r.has_correction_bias = true;
    cases.push_back({"renorm_min clamp, correction bias (ernie)", r, 13, 3});
  }
  CudaStream stream;
  const cudaStream_t s = stream.get();
  std::mt19937_64 rng(20251124);
  const int H = 72;
  for (const Case& c : cases) {
    for (int T : {1, 19, 111}) {
      INFO(c.name << ", T = " << T);
      const std::vector<float> x = random_elems(rng, size_t(T) * H, 1.0f, ElemType::BF16);
      const std::vector<float> w = random_elems(rng, size_t(c.experts) * H, 0.3f, ElemType::BF16);
      const std::vector<float> rb = random_elems(rng, size_t(c.experts), 0.5f, ElemType::BF16);
      const std::vector<float> cb = random_elems(rng, size_t(c.experts), 0.2f, ElemType::BF16);
      GpuRouter router;
      router.num_experts = c.experts;
      router.hidden = H;
      to_device(router.weight, w, s);
      to_device(router.bias, rb, s);
      to_device(router.correction_bias, cb, s);
      DeviceBuffer d_x, logits, d_ids, d_w;
      to_device(d_x, x, s);
      d_ids.ensure(size_t(T) * c.top_k * 4);
      d_w.ensure(size_t(T) * c.top_k * 4);
      cuda_check(kernels::launch_fill_nan_f32(d_w.as<float>(), int64_t(T) * c.top_k, s), "poison");
      run_routing(router, c.spec, d_x.as<float>(), T, c.top_k, logits, d_ids.as<int32_t>(),
                  d_w.as<float>(), s);
      const auto ids = to_host<int32_t>(d_ids, size_t(T) * c.top_k, s);
      const auto wts = to_host<float>(d_w, size_t(T) * c.top_k, s);

      const auto lg = oracle_logits(x, w, c.spec.has_router_bias ? rb : std::vector<float>{}, T,
                                    H, c.experts);
      std::vector<double> corr;
      if (c.spec.has_correction_bias) corr.assign(cb.begin(), cb.end());
      const HostRouting ref = oracle_routing(lg, corr, c.spec, T, c.experts, c.top_k);
      int mismatched = 0;
      for (int t = 0; t < T; ++t) {
        std::set<int> got(ids.begin() + t * c.top_k, ids.begin() + (t + 1) * c.top_k);
        std::set<int> want(ref.ids.begin() + t * c.top_k, ref.ids.begin() + (t + 1) * c.top_k);
        REQUIRE(got.size() == size_t(c.top_k));
        if (got != want) {
          ++mismatched;
          CHECK(ref.margin[size_t(t)] < 1e-4);  // only a near-tie may flip
          continue;
        }
        // Weights under the same selection, in the GPU's order.
        for (int k = 0; k < c.top_k; ++k) {
          const int id = ids[size_t(t) * c.top_k + k];
          const auto pos = std::find(ref.ids.begin() + t * c.top_k,
                                     ref.ids.begin() + (t + 1) * c.top_k, id) - ref.ids.begin();
          const double want_w = ref.weights[size_t(pos)];
          CHECK(std::fabs(wts[size_t(t) * c.top_k + k] - want_w) <= 1e-5 * std::max(1.0, want_w));
        }
      }
      CHECK(mismatched <= std::max(1, T / 50));
    }
  }
}

namespace {

// The alignment of T random routings (top-K of the table's logical experts) against the host's
// view: every slot's local expert, the tile count, tiles in expert order, padding only at an
// expert's tail, and every slot of this rank exactly once; with `positions`, also each such
// slot's sorted row in AlignBuffers::slot_pos. Sorted slots, positions and scratch poisoned
// first.
void check_alignment(const HostRouteTable& table, const GpuRouteTable& d_table, int E_local, int T,
                     int K, int bm, bool positions, std::mt19937_64& rng, cudaStream_t s) {
  INFO("T = " << T << ", top-k " << K << ", local experts " << E_local << ", block_m = " << bm
              << (positions ? ", slot positions" : ""));
  std::vector<int32_t> ids;
  std::vector<float> w;
  random_routing(rng, T, table.num_logical, K, ids, w);
  DeviceBuffer d_ids, slot_expert, counts, sorted, tiles, num, slot_pos;
  to_device(d_ids, ids, s);
  const int max_tiles = kernels::align_max_tiles(T * K, E_local, bm);
  slot_expert.ensure(size_t(T) * K * 4);
  counts.ensure(size_t(kernels::align_scratch_ints(T * K, E_local)) * 4);
  sorted.ensure(size_t(max_tiles) * bm * 4);
  tiles.ensure(size_t(max_tiles) * 4);
  num.ensure(4);
  cuda_check(kernels::launch_fill_nan_f32(sorted.as<float>(), int64_t(max_tiles) * bm, s), "poison");
  cuda_check(kernels::launch_fill_nan_f32(counts.as<float>(), kernels::align_scratch_ints(T * K, E_local), s),
             "poison");
  kernels::AlignBuffers ab{slot_expert.as<int32_t>(), counts.as<int32_t>(), sorted.as<int32_t>(),
                           tiles.as<int32_t>(), num.as<int32_t>()};
  if (positions) {
    slot_pos.ensure(size_t(T) * K * 4);
    cuda_check(kernels::launch_fill_nan_f32(slot_pos.as<float>(), int64_t(T) * K, s), "poison");
    ab.slot_pos = slot_pos.as<int32_t>();
  }
  cuda_check(kernels::launch_align(d_ids.as<int32_t>(), d_table.view(), T, K, E_local, bm, ab, s),
             "align");
  const int n_tiles = to_host<int32_t>(num, 1, s)[0];
  REQUIRE(n_tiles <= max_tiles);
  const auto se = to_host<int32_t>(slot_expert, size_t(T) * K, s);
  const auto srt = to_host<int32_t>(sorted, size_t(n_tiles) * bm, s);
  const auto te = to_host<int32_t>(tiles, size_t(std::max(n_tiles, 1)), s);
  std::vector<int> seen(size_t(T) * K, 0), per_expert(size_t(E_local), 0);
  int wrong_expert = 0;
  for (int t = 0; t < T; ++t)
    for (int k = 0; k < K; ++k)
      wrong_expert += se[size_t(t) * K + k] != local_expert(table, t, ids[size_t(t) * K + k]);
  CHECK(wrong_expert == 0);
  int expected_tiles = 0;
  for (int32_t e : se)
    if (e >= 0) ++per_expert[size_t(e)];
  for (int c : per_expert) expected_tiles += (c + bm - 1) / bm;
  CHECK(n_tiles == expected_tiles);
  int bad = 0;  // counted, not CHECKed one by one: tens of thousands of slots
  for (int i = 0; i < n_tiles; ++i) {
    REQUIRE(te[size_t(i)] >= 0);
    REQUIRE(te[size_t(i)] < E_local);
    if (i > 0) bad += te[size_t(i)] < te[size_t(i - 1)];
    bool padding = false;
    for (int r = 0; r < bm; ++r) {
      const int32_t slot = srt[size_t(i) * bm + r];
      if (slot < 0) {
        bad += slot != -1;
        padding = true;
        continue;
      }
      bad += padding;  // padding only at the tail of an expert's group
      REQUIRE(slot < T * K);
      bad += se[size_t(slot)] != te[size_t(i)];
      ++seen[size_t(slot)];
    }
  }
  CHECK(bad == 0);
  int unseen = 0;
  for (size_t sl = 0; sl < seen.size(); ++sl) unseen += seen[sl] != (se[sl] >= 0 ? 1 : 0);
  CHECK(unseen == 0);
  if (positions) {  // this rank's slots only: the others keep the poison
    const auto pos = to_host<int32_t>(slot_pos, size_t(T) * K, s);
    int wrong_pos = 0;
    for (size_t sl = 0; sl < pos.size(); ++sl)
      if (se[sl] >= 0)
        wrong_pos += pos[sl] < 0 || pos[sl] >= n_tiles * bm || srt[size_t(pos[sl])] != int(sl);
    CHECK(wrong_pos == 0);
  }
}

}  // namespace

TEST_CASE("gpu alignment groups slots by local expert, with expert maps and replicas",
          "[gpu][align][sanitize]") {
  CudaStream stream;
  const cudaStream_t s = stream.get();
  std::mt19937_64 rng(7);
  // 9 logical experts, 3 redundant (p mod 9), this rank holds physical 1, 4, 9, 10, 11.
  HostRouteTable table;
  table.num_logical = 9;
  const std::vector<int> local = {1, 4, 9, 10, 11};
  for (int p = 0; p < 12; ++p) {
    table.physical_to_logical.push_back(p % 9);
    const auto it = std::find(local.begin(), local.end(), p);
    table.expert_map.push_back(it == local.end() ? -1 : int(it - local.begin()));
  }
  const GpuRouteTable d_table = upload(table, s);
  // One block up to 16384 slots: 111 x 3 two slots a thread, 700 x 3 four, 5000 x 3 sixteen;
  // 6000 x 3 the three launches over 18 chunks. A height of 5 rows: row counts that are not
  // multiples of 4, which the one block copies out an int at a time (else 16 bytes at a time).
  for (int T : {1, 19, 111, 700, 5000, 6000})
    for (int bm : {5, 16, 64})
      check_alignment(table, d_table, int(local.size()), T, 3, bm, bm != 16, rng, s);
}

TEST_CASE("gpu alignment of many slots and many experts (qwen3's 128 experts, more experts than "
          "shared-memory counters)", "[gpu][align]") {
  CudaStream stream;
  const cudaStream_t s = stream.get();
  std::mt19937_64 rng(8);
  for (int experts : {128, 1000, 1100}) {
    const HostRouteTable table = identity_table(experts);
    const GpuRouteTable d_table = upload(table, s);
    // 128 experts: one block up to 2048 x 8 slots (4, 8 and 16 a thread), chunks from 2049 x 8
    // on; 1000 experts: chunks throughout (at least 1000 x 64 possible sorted rows, more than
    // the one block's shared memory holds); 1100 experts: a global atomic per slot.
    for (int T : {300, 1024, 2048, 2049, 4096, 16384})
      for (int bm : {64, 192})
        check_alignment(table, d_table, experts, T, 8, bm, bm == 192, rng, s);
  }
}

namespace {

struct Variant {
  const char* name;
  ElemType dtype;
  Activation act;
  bool biases, up_first, weight_on_input;
};
const Variant kVariants[] = {
    {"bf16 silu", ElemType::BF16, Activation::SiluAndMul, false, false, false},
    {"bf16 swiglu-oai + biases, up-gate order", ElemType::BF16, Activation::SwigluOai, true, true, false},
    {"bf16 gelu, weight on input", ElemType::BF16, Activation::GeluAndMul, false, false, true},
    {"fp16 silu + biases", ElemType::F16, Activation::SiluAndMul, true, false, false},
};

// Top-1 routing that gives expert e exactly counts[e] of the tokens, in random order.
void route_counts(std::mt19937_64& rng, const std::vector<int>& counts, Problem& p, cudaStream_t s) {
  p.ids.clear();
  for (size_t e = 0; e < counts.size(); ++e) p.ids.insert(p.ids.end(), size_t(counts[e]), int32_t(e));
  REQUIRE(p.ids.size() == size_t(p.tokens) * size_t(p.top_k));
  std::shuffle(p.ids.begin(), p.ids.end(), rng);
  to_device(p.d_ids, p.ids, s);
}

// Every tile configuration (config_pairs), or with `prefix` only the rows of that name prefix
// (prefix_pairs), against the float64 oracle. `counts`: tokens per expert (top-1) instead of
// random routing. `down_rows`: the down rows stored in sorted order and summed by token (pairs
// whose down row cannot, and splits past 1, are skipped); `zero_out`: the output is poisoned
// with NaN and must come out as the layer's sum alone (ExpertInputs::zero_out).
void run_all_configs(const Variant& v, int E, int H, int I, int K, const std::vector<int>& token_counts,
                     const std::vector<int>& splits, uint64_t seed, const std::string& prefix = "",
                     const std::vector<int>& counts = {}, bool gather_by_token = false,
                     bool down_rows = false, bool zero_out = false) {
  CudaStream stream;
  const cudaStream_t s = stream.get();
  std::mt19937_64 rng(seed);
  const HostExperts he = random_experts(rng, v.dtype, E, I, H, v.biases, v.up_first);
  const GpuExperts ge = upload(he, s);
  const HostRouteTable table = identity_table(E);
  const GpuRouteTable gt = upload(table, s);
  const auto pairs = prefix.empty() ? config_pairs() : prefix_pairs(prefix);
  REQUIRE(!pairs.empty());
  for (int T : token_counts) {
    Problem p = make_problem(rng, he, E, T, K, s);
    if (!counts.empty()) route_counts(rng, counts, p, s);
    std::vector<double> ref(size_t(T) * H, 0.0);
    oracle_experts(he, table, p.x, p.ids, p.weights, T, K, v.act, v.weight_on_input, ref);
    MoeWorkspace ws;

    // The naive in-tree oracle kernel agrees with the float64 oracle too.
    {
      to_device(p.d_out, p.start, s);
      kernels::TileChoice tc = default_tiles(ge, T, K);
      run_routed_experts(ge, gt, inputs_of(p, he, v.act, v.weight_on_input), ws, s, &tc);
      to_device(p.d_out, p.start, s);
      DeviceBuffer scratch(size_t(T) * K * I * 4);
      kernels::NaiveMoeArgs na;
      na.dtype = v.dtype;
      na.act = act_kind_of(v.act);
      na.x = p.d_x.data();
      na.ldx = ge.hidden_ld;
      na.w13 = ge.w13.data();
      na.w13_bias = v.biases ? ge.w13_bias.data() : nullptr;
      na.w2 = ge.w2.data();
      na.w2_bias = v.biases ? ge.w2_bias.data() : nullptr;
      na.up_first = v.up_first;
      na.inter = I;
      na.hidden = H;
      na.ld_w13 = ge.hidden_ld;
      na.ld_w2 = ge.inter_ld;
      na.tokens = T;
      na.top_k = K;
      na.slot_expert = ws.slot_expert.as<int32_t>();
      na.slot_weights = p.d_w.as<float>();
      na.weight_on_input = v.weight_on_input;
      na.scratch = scratch.as<float>();
      na.out = p.d_out.as<float>();
      na.ldo = H;
      cuda_check(kernels::launch_naive_moe(na, s), "naive");
      const Compare c = check_delta(p, to_host<float>(p.d_out, size_t(T) * H, s), ref);
      INFO(v.name << " naive kernel, T = " << T << " rel_l2 " << c.rel_l2);
      CHECK(c.finite);
      CHECK(c.rel_l2 < tolerance(v.dtype));
    }

    int run_index = 0;
    for (const Pair& pr : pairs) {
      for (int split : splits) {
        if (down_rows && (!kernels::down_config(pr.down).rows_out || split != 1)) continue;
        // Every other run by token: the alignment in a call of its own and the slot positions
        // it wrote poisoned, so that the gather (or the down sum) must find them again.
        const bool staged = (gather_by_token || down_rows) && run_index++ % 2 == 1;
        kernels::TileChoice tc;
        tc.gate_up_cfg = pr.gate_up;
        tc.down_cfg = pr.down;
        tc.block_m = kernels::gate_up_config(pr.gate_up).block_m;
        tc.down_split_k = split;
        tc.gather_by_token = gather_by_token;
        tc.down_rows = down_rows;
        ExpertInputs in = inputs_of(p, he, v.act, v.weight_on_input);
        in.zero_out = zero_out;
        run_routed_experts(ge, gt, in, ws, s, &tc);
        reset(p, ws, s);  // workspace sized now: poison it, restart the output
        if (zero_out)
          cuda_check(kernels::launch_fill_nan_f32(p.d_out.as<float>(), int64_t(T) * H, s),
                     "poison the output");
        if (staged) {
          run_routed_experts(ge, gt, in, ws, s, &tc, kStageAlign);
          cuda_check(cudaMemsetAsync(ws.slot_pos.data(), 0, ws.slot_pos.bytes(), s),
                     "poison slot_pos");
          run_routed_experts(ge, gt, in, ws, s, &tc, kStageGateUp | kStageDown);
        } else {
          run_routed_experts(ge, gt, in, ws, s, &tc);
        }
        const std::vector<float> got = to_host<float>(p.d_out, size_t(T) * H, s);
        const Compare c = zero_out ? compare(got, ref) : check_delta(p, got, ref);
        INFO(v.name << ", E " << E << " H " << H << " I " << I << " K " << K << ", T = " << T
                    << ", " << kernels::gate_up_config(pr.gate_up).name << " + "
                    << kernels::down_config(pr.down).name << " split " << split
                    << (gather_by_token ? " (x gathered by token)" : "")
                    << (down_rows ? " (down rows summed by token)" : "")
                    << (zero_out ? " (output written, not added to)" : "")
                    << (staged ? " (alignment in a call of its own)" : "") << ": rel_l2 "
                    << c.rel_l2 << " max_abs " << c.max_abs << " of " << c.ref_max_abs);
        CHECK(c.finite);
        CHECK(c.rel_l2 < tolerance(v.dtype));
        CHECK(c.rel_l2 > 0);  // a real computation in rounded arithmetic, not a copy
      }
    }
  }
}

}  // namespace

TEST_CASE("gpu fused experts match the float64 oracle in every tile configuration",
          "[gpu][experts]") {
  uint64_t seed = 100;
  for (const Variant& v : kVariants) {
    run_all_configs(v, 7, 136, 72, 2, {1, 19, 111}, {1, 3}, ++seed);
    run_all_configs(v, 5, 100, 43, 3, {1, 19, 111}, {1, 2}, ++seed);  // H, I not multiples of 8
  }
  // An output row stride that is not a multiple of 4 floats: the epilogues' one-by-one path.
  run_all_configs(kVariants[1], 4, 98, 40, 2, {19, 111}, {1}, ++seed);
}

TEST_CASE("gpu fused experts, small case for compute-sanitizer", "[gpu][experts][sanitize]") {
  run_all_configs(kVariants[1], 5, 100, 43, 3, {19}, {1, 3}, 5);
}

TEST_CASE("gpu fused experts with many tokens per expert (large tiles, many M tiles)",
          "[gpu][experts]") {
  run_all_configs(kVariants[0], 3, 264, 136, 2, {700}, {1}, 9);
}

// The persistent rows launch one CTA per SM, which on these sizes is one tile per CTA; a grid of
// two or three CTAs makes each walk many tiles, both warpgroups in turn, around the ring many laps.
struct PersistentCtas {
  explicit PersistentCtas(int n) { kernels::set_persistent_ctas(n); }
  ~PersistentCtas() { kernels::set_persistent_ctas(0); }
};

// The persistent rows need wgmma: false (with a warning naming the rows) where it is absent.
bool wgmma_rows_run(const char* rows) {
  if (kernels::wgmma_available()) return true;
  WARN("no wgmma on this GPU: the " << rows << " rows do not run");
  return false;
}

// 128-row TMA tiles load and multiply only the lower 64 rows where the upper 64 are padding:
// experts with 40 and 64 slots take one such tile, 65 and 129 a tile with one slot past row 64,
// 200 a whole tile and a live one (every tma_ row of every height, 64, 128 and 192 rows, the
// persistent ones too; a 192-row tile: 129 slots fill its three boxes, 200 one whole tile and one box).
TEST_CASE("gpu 128-row tiles whose upper half is padding, at the 64-slot boundary",
          "[gpu][experts][halves]") {
  if (!wgmma_rows_run("tma_")) return;
  const std::vector<int> counts = {40, 64, 65, 200, 129};
  run_all_configs(kVariants[0], 5, 136, 72, 1, {498}, {1, 2}, 21, "tma_", counts);
  run_all_configs(kVariants[3], 5, 100, 43, 1, {498}, {1}, 22, "tma_", counts);
}

// x gathered in token order (each token's row read once, written to its slots' sorted rows)
// for the sorted_a rows: the 192-row pairs (the bulk-reduce down rows among them) and the
// 128-row pairs, at top-k 3 and 8.
TEST_CASE("gpu token-order gather of x matches the float64 oracle", "[gpu][experts][gather]") {
  if (!wgmma_rows_run("tma_m")) return;
  run_all_configs(kVariants[0], 7, 136, 72, 3, {1, 19, 111, 700}, {1, 2}, 41, "tma_m192", {}, true);
  run_all_configs(kVariants[3], 9, 100, 43, 8, {19, 300}, {1}, 42, "tma_m128n", {}, true);
}

TEST_CASE("gpu token-order gather, small case for compute-sanitizer",
          "[gpu][experts][gather][sanitize]") {
  if (!wgmma_rows_run("tma_m")) return;
  run_all_configs(kVariants[1], 5, 100, 43, 3, {111}, {1}, 43, "tma_m192", {}, true);
}

// The down GEMM's rows stored in sorted order and summed by token (for float32 outputs past 0.6
// of the L2): added into the output or written over it (zero_out), after x gathered in either
// order, at top-k 3 and 8, with an output width that is not a multiple of 8 (the sum's
// one-by-one path, and the per-lane stores of the bulk rows) and one that is (the bulk rows'
// bulk copies: tma_m192n192r, tma_m192n128r, tma_m128n256r, tma_m128n128s3r); and zero_out
// through the atomic epilogues (split 1 and 2).
TEST_CASE("gpu down rows summed by token match the float64 oracle", "[gpu][experts][rows]") {
  if (!wgmma_rows_run("tma_m")) return;
  run_all_configs(kVariants[1], 7, 136, 72, 3, {1, 19, 111, 700}, {1}, 51, "tma_m192", {}, true,
                  true);
  run_all_configs(kVariants[0], 9, 100, 43, 8, {19, 300}, {1}, 52, "tma_m128n", {}, false, true,
                  true);
  run_all_configs(kVariants[3], 9, 136, 72, 8, {300}, {1}, 56, "tma_m128n", {}, true, true, true);
  run_all_configs(kVariants[3], 4, 98, 40, 2, {19, 111}, {1}, 53, "tma_m64", {}, false, true, true);
  run_all_configs(kVariants[2], 5, 100, 43, 3, {111}, {1, 2}, 54, "tma_m128n", {}, false, false,
                  true);
}

TEST_CASE("gpu down rows summed by token, small case for compute-sanitizer",
          "[gpu][experts][rows][sanitize]") {
  if (!wgmma_rows_run("tma_m")) return;
  run_all_configs(kVariants[1], 5, 100, 43, 3, {111}, {1}, 55, "tma_m192", {}, true, true, true);
  run_all_configs(kVariants[0], 5, 136, 72, 3, {111}, {1}, 57, "tma_m192", {}, true, true, true);
}

// The persistent rows of name prefix `rows` (tma_p: ping-pong, tma_c: cooperative): a grid of
// three CTAs over many tiles, and a small case with two for compute-sanitizer.
// Each also with the down rows stored in sorted order and summed by token, written over a
// poisoned output (the persistent down rows store them through the same epilogue).
void run_persistent_rows(const char* rows, uint64_t seed) {
  if (!wgmma_rows_run(rows)) return;
  PersistentCtas limit(3);
  run_all_configs(kVariants[0], 3, 264, 136, 2, {700}, {1, 2}, seed, rows);
  run_all_configs(kVariants[3], 5, 100, 43, 3, {1, 111}, {1, 3}, seed + 1, rows);
  run_all_configs(kVariants[0], 9, 136, 72, 8, {300}, {1}, seed + 2, rows, {}, false, true, true);
}
void run_persistent_rows_small(const char* rows, uint64_t seed) {
  if (!wgmma_rows_run(rows)) return;
  PersistentCtas limit(2);
  run_all_configs(kVariants[1], 5, 100, 43, 3, {111}, {1, 2}, seed, rows);
  run_all_configs(kVariants[1], 5, 100, 43, 3, {111}, {1}, seed + 1, rows, {}, true, true, true);
}

TEST_CASE("gpu persistent ping-pong rows, each CTA walking many tiles", "[gpu][experts][ping]") {
  run_persistent_rows("tma_p", 11);
}

TEST_CASE("gpu persistent ping-pong rows, small case for compute-sanitizer",
          "[gpu][experts][ping][sanitize]") {
  run_persistent_rows_small("tma_p", 13);
}

TEST_CASE("gpu persistent cooperative rows, each CTA walking many tiles", "[gpu][experts][coop]") {
  run_persistent_rows("tma_c", 14);
}

TEST_CASE("gpu persistent cooperative rows, small case for compute-sanitizer",
          "[gpu][experts][coop][sanitize]") {
  run_persistent_rows_small("tma_c", 16);
}

namespace {

// The experts of logical `all` restricted to intermediate columns [begin, begin + count),
// padded to `padded`; w2 bias kept only when `keep_b2` (the tp_rank 0 rule).
HostExperts tp_slice(const HostExperts& all, int begin, int count, int padded, bool keep_b2) {
  HostExperts h = all;
  h.inter = padded;
  const int I = all.inter, H = all.hidden;
  h.w13.assign(size_t(all.experts) * 2 * padded * H, 0.0f);
  h.w2.assign(size_t(all.experts) * H * padded, 0.0f);
  if (!all.b13.empty()) {
    h.b13.assign(size_t(all.experts) * 2 * padded, 0.0f);
    h.b2.assign(size_t(all.experts) * H, 0.0f);
  }
  for (int e = 0; e < all.experts; ++e) {
    for (int half = 0; half < 2; ++half)
      for (int i = 0; i < count; ++i) {
        const size_t src = (size_t(e) * 2 * I + size_t(half) * I + begin + i) * H;
        const size_t dst = (size_t(e) * 2 * padded + size_t(half) * padded + i) * H;
        std::copy(all.w13.begin() + src, all.w13.begin() + src + H, h.w13.begin() + dst);
        if (!all.b13.empty())
          h.b13[size_t(e) * 2 * padded + half * padded + i] = all.b13[size_t(e) * 2 * I + half * I + begin + i];
      }
    for (int o = 0; o < H; ++o)
      for (int i = 0; i < count; ++i)
        h.w2[(size_t(e) * H + o) * padded + i] = all.w2[(size_t(e) * H + o) * I + begin + i];
    if (!all.b2.empty() && keep_b2)
      std::copy(all.b2.begin() + size_t(e) * H, all.b2.begin() + size_t(e + 1) * H,
                h.b2.begin() + size_t(e) * H);
  }
  return h;
}

}  // namespace

TEST_CASE("gpu ranks with TP slices, EP maps and redundant replicas sum to the whole layer",
          "[gpu][ranks]") {
  CudaStream stream;
  const cudaStream_t s = stream.get();
  std::mt19937_64 rng(31);
  const int E = 9, R = 3, Ep = E + R, H = 96, I = 72, K = 3, ep = 3, tp = 2;
  const HostExperts all = random_experts(rng, ElemType::BF16, E, I, H, true, false);
  const HostRouteTable full = identity_table(E);
  for (int T : {1, 19, 111}) {
    for (int mode : {0, 1, 2}) {  // default tiles; x gathered by token; and down rows so summed
      const bool by_token = mode >= 1, rows = mode == 2;
      if (by_token && !kernels::wgmma_available()) continue;
      INFO("T = " << T << (by_token ? ", x gathered by token" : "")
                  << (rows ? ", down rows summed by token" : ""));
      Problem p = make_problem(rng, all, E, T, K, s);
      std::vector<double> ref(size_t(T) * H, 0.0);
      oracle_experts(all, full, p.x, p.ids, p.weights, T, K, Activation::SwigluOai, false, ref);
      to_device(p.d_out, p.start, s);
      MoeWorkspace ws;
      // TP slices of I = 72: 40 and 32 columns, each padded to 40 (vLLM: I_u = ceil, pad tail).
      const int I_u = 40;
      for (int er = 0; er < ep; ++er) {
        HostRouteTable table;
        table.num_logical = E;
        std::vector<int> logical_of_local;
        for (int ph = 0; ph < Ep; ++ph) {
          table.physical_to_logical.push_back(ph % E);
          if (ph % ep == er) {  // round robin
            table.expert_map.push_back(int(logical_of_local.size()));
            logical_of_local.push_back(ph % E);
          } else {
            table.expert_map.push_back(-1);
          }
        }
        const HostExperts rank_experts = select_experts(all, logical_of_local);
        const GpuRouteTable gt = upload(table, s);
        for (int tr = 0; tr < tp; ++tr) {
          const int begin = tr * I_u, count = std::min(I_u, I - begin);
          const HostExperts slice = tp_slice(rank_experts, begin, count, I_u, tr == 0);
          const GpuExperts ge = upload(slice, s);
          // The default tiles, or with wgmma a 128-row TMA pair gathering x (and summing the
          // down rows) in token order: the workspace's slot positions then hold the other
          // ranks' slots, which must not be read.
          kernels::TileChoice tc = default_tiles(ge, T, K);
          if (by_token) {
            tc.block_m = 128;
            tc.gate_up_cfg = config_named(true, "tma_m128n64s3");
            tc.down_cfg = config_named(false, "tma_m128n128s3r");
            tc.down_split_k = 1;
            tc.gather_by_token = true;
            tc.down_rows = rows;
          }
          run_routed_experts(ge, gt, inputs_of(p, slice, Activation::SwigluOai, false), ws, s, &tc);
        }
      }
      const Compare c = check_delta(p, to_host<float>(p.d_out, size_t(T) * H, s), ref);
      INFO("rel_l2 " << c.rel_l2);
      CHECK(c.finite);
      CHECK(c.rel_l2 < 1.5e-2);
      CHECK(c.rel_l2 > 0);
    }
  }
}

TEST_CASE("gpu shared expert, with and without the sigmoid gate", "[gpu][shared][sanitize]") {
  CudaStream stream;
  const cudaStream_t s = stream.get();
  std::mt19937_64 rng(77);
  const int H = 100, Is = 48;
  for (bool gated : {false, true}) {
    for (int T : {1, 19, 111}) {
      INFO("gated " << gated << ", T = " << T);
      const HostExperts e = random_experts(rng, ElemType::BF16, 1, Is, H, false, false);
      const GpuExperts ge = upload(e, s);
      Problem p = make_problem(rng, e, 1, T, 1, s);
      const std::vector<float> g = random_elems(rng, size_t(H), 0.1f, ElemType::BF16);
      std::vector<double> gate;
      DeviceBuffer d_g, d_gw;
      const float* gate_ptr = nullptr;
      if (gated) {
        for (int t = 0; t < T; ++t) {
          double acc = 0;
          for (int h = 0; h < H; ++h) acc += double(p.x[size_t(t) * H + h]) * g[size_t(h)];
          gate.push_back(1.0 / (1.0 + std::exp(-acc)));
        }
        to_device(d_g, g, s);
        d_gw.ensure(size_t(T) * 4);
        cuda_check(kernels::launch_shared_gate(p.d_x32.as<float>(), d_g.as<float>(), T, H,
                                               d_gw.as<float>(), s),
                   "shared gate");
        gate_ptr = d_gw.as<float>();
      }
      std::vector<double> ref(size_t(T) * H, 0.0);
      oracle_shared(e, p.x, gate, T, Activation::SiluAndMul, ref);
      to_device(p.d_out, p.start, s);
      MoeWorkspace ws;
      run_shared_expert(ge, inputs_of(p, e, Activation::SiluAndMul, false), gate_ptr, ws, s);
      const Compare c = check_delta(p, to_host<float>(p.d_out, size_t(T) * H, s), ref);
      INFO("rel_l2 " << c.rel_l2);
      CHECK(c.finite);
      CHECK(c.rel_l2 < 1.5e-2);
      CHECK(c.rel_l2 > 0);
    }
  }
}

TEST_CASE("a GPU wait past its limit fails with one line instead of hanging, and 0 means no limit",
          "[gpu][timeout]") {
  CudaStream stream;
  const cudaStream_t s = stream.get();
  int* flag = nullptr;  // host-mapped: the host releases the waiting kernel while it runs
  cuda_check(cudaHostAlloc(reinterpret_cast<void**>(&flag), sizeof(int), cudaHostAllocMapped), "cudaHostAlloc");
  int* d_flag = nullptr;
  cuda_check(cudaHostGetDevicePointer(reinterpret_cast<void**>(&d_flag), flag, 0), "mapped pointer");
  const double limit_before = gpu_wait_timeout();
  using Clock = std::chrono::steady_clock;
  auto seconds_since = [](Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  };

  // A kernel that never finishes on its own: the wait gives up after 0.5 s.
  *static_cast<volatile int*>(flag) = 0;
  set_gpu_wait_timeout(0.5);
  cuda_check(kernels::launch_wait_for_flag(d_flag, s), "launch");
  std::string message;
  ErrorCode code = ErrorCode::Internal;
  const auto t0 = Clock::now();
  try {
    wait_stream(s, "the stuck kernel");
  } catch (const Error& e) {
    message = e.what();
    code = e.code();
  }
  const double waited = seconds_since(t0);
  *static_cast<volatile int*>(flag) = 1;  // released: the stream drains
  set_gpu_wait_timeout(0);
  wait_stream(s, "the released kernel");
  INFO(message);
  CHECK(code == ErrorCode::Cuda);
  CHECK(message.find("the stuck kernel did not finish within 0.5 s") != std::string::npos);
  CHECK(message.find('\n') == std::string::npos);
  CHECK(waited >= 0.5);
  CHECK(waited < 5.0);

  // No limit: the same wait outlasts 0.5 s and returns once the host releases the kernel.
  *static_cast<volatile int*>(flag) = 0;
  cuda_check(kernels::launch_wait_for_flag(d_flag, s), "launch");
  std::thread release([flag] {
    std::this_thread::sleep_for(std::chrono::milliseconds(800));
    *static_cast<volatile int*>(flag) = 1;
  });
  const auto t1 = Clock::now();
  bool threw = false;
  try {
    CudaEvent done;
    cuda_check(cudaEventRecord(done.get(), s), "event");
    wait_event(done.get(), "the kernel released after 0.8 s");
  } catch (const Error&) {
    threw = true;
  }
  release.join();
  const double waited_unlimited = seconds_since(t1);
  wait_stream(s, "the stream");
  set_gpu_wait_timeout(limit_before);
  cudaFreeHost(flag);
  CHECK_FALSE(threw);
  CHECK(waited_unlimited >= 0.7);
}
