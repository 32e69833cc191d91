// `run --device cuda` end to end: the CUDA backend (lib/runtime/cuda_backend.cpp) against the
// float64 reference (lib/reference) on synthetic checkpoints of every family and on shard sets
// of a spread of plans (TP, EP, redundant replicas, both placements, padding, w13 order), at odd
// token counts. Without a GPU it checks the backend's error and exits 77 (skipped).
#include <catch2/catch.hpp>
#include <cstdio>
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "model/synthetic.h"
#include "reference/run_report.h"
#include "runtime/backend.h"
#include "runtime/gpu_bench.h"
#include "runtime/device_info.h"
#include "shard/convert.h"
#include "support/temp_dir.h"

using namespace moe;
using namespace moe::test;

namespace {

// Without a device: make_cuda_backend() must throw Error{Cuda} carrying the reason; then skip.
const int kGpuChecked = [] {
  const GpuInfo info = query_gpu();
  if (info.available) return 0;
  try {
    make_cuda_backend();
    std::fprintf(stderr, "make_cuda_backend() did not throw without a GPU\n");
    std::exit(1);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::Cuda) {
      std::fprintf(stderr, "make_cuda_backend() threw %s, not Cuda\n", error_code_name(e.code()));
      std::exit(1);
    }
  }
  const bool prefixed = info.reason.rfind("no CUDA device", 0) == 0;
  std::fprintf(stderr, "skipped: %s%s\n", prefixed ? "" : "no CUDA device: ", info.reason.c_str());
  std::exit(77);
}();

constexpr Family kFamilies[] = {Family::Mixtral,    Family::Qwen2Moe,   Family::Qwen3Moe,
                                Family::DeepseekV2, Family::DeepseekV3, Family::Glm4Moe,
                                Family::Olmoe,      Family::GraniteMoe, Family::Llama4,
                                Family::GptOss,     Family::Ernie45Moe};

SyntheticSpec spec_for(Family f, uint64_t seed, DType dtype = DType::BF16) {
  SyntheticSpec s;
  s.family = f;
  s.dtype = dtype;
  s.num_layers = 2;
  s.hidden_size = 40;
  s.moe_intermediate_size = 12;
  s.dense_intermediate_size = 16;
  s.num_experts = 10;
  s.top_k = 3;
  s.vocab_size = 16;
  s.seed = seed;
  s.threads = 1;
  return s;
}

RunOptions quiet_run(int tokens) {
  RunOptions o;
  o.tokens = tokens;
  o.threads = 2;
  o.quiet = true;
  return o;
}

void check_all_pass(const RunReport& r, size_t layers) {
  REQUIRE(r.layers.size() == layers);
  CHECK(r.backend == "cuda");
  for (const LayerResult& l : r.layers) {
    INFO("layer " << l.layer << " rel_l2 " << l.metrics.rel_l2 << " routing agreement "
                  << l.routing_agreement << " note " << l.note);
    CHECK(l.pass);
    CHECK(l.metrics.finite);
    CHECK(l.metrics.rel_l2 > 0);  // bf16 activations: a real, nonzero error
    CHECK(l.metrics.ref_max_abs > 0);
    CHECK(l.routing_agreement >= 0.9);
  }
  CHECK(r.pass);
}

ConvertOptions convert_opts(int tp, int ep, int redundant, Placement placement,
                            int64_t pad_hidden, int64_t pad_inter, W13Order order) {
  ConvertOptions o;
  o.plan.tp = tp;
  o.plan.ep = ep;
  o.plan.redundant_experts = redundant;
  o.plan.placement = placement;
  o.plan.pad_hidden_to = pad_hidden;
  o.plan.pad_intermediate_to = pad_inter;
  o.plan.w13_order = order;
  o.threads = 1;
  o.quiet = true;
  o.moe_only = true;
  return o;
}

}  // namespace

TEST_CASE("cuda backend on a checkpoint passes for every family", "[gpu][backend]") {
  TempDir tmp;
  uint64_t seed = 140;
  auto backend = make_cuda_backend();
  for (Family f : kFamilies) {
    for (int tokens : {1, 19, 111}) {
      INFO("family " << family_name(f) << ", " << tokens << " tokens");
      const std::string ckpt = tmp / (std::string(family_name(f)) + std::to_string(tokens));
      write_synthetic_checkpoint(ckpt, spec_for(f, ++seed));
      const ShardSet set = ShardSet::from_checkpoint(ckpt);
      check_all_pass(run_check(set, *backend, ckpt, quiet_run(tokens)),
                     set.profile().moe_layers.size());
    }
  }
}

TEST_CASE("cuda backend on fp16 checkpoints passes", "[gpu][backend]") {
  TempDir tmp;
  auto backend = make_cuda_backend();
  for (Family f : {Family::Mixtral, Family::GptOss, Family::DeepseekV3}) {
    INFO("family " << family_name(f));
    const std::string ckpt = tmp / family_name(f);
    write_synthetic_checkpoint(ckpt, spec_for(f, 3, DType::F16));
    const ShardSet set = ShardSet::from_checkpoint(ckpt);
    check_all_pass(run_check(set, *backend, ckpt, quiet_run(37)), set.profile().moe_layers.size());
  }
}

TEST_CASE("cuda backend on shard sets of a spread of plans passes", "[gpu][backend]") {
  struct Plan {
    int tp, ep, redundant;
    Placement placement;
    int64_t pad_hidden, pad_inter;
    W13Order order;
  };
  const Plan plans[] = {
      {2, 2, 2, Placement::Linear, 0, 0, W13Order::GateUp},
      {3, 1, 0, Placement::Linear, 0, 8, W13Order::UpGate},       // tp 3 of I = 12, padded
      {1, 3, 1, Placement::RoundRobin, 64, 0, W13Order::GateUp},  // uneven EP, padded hidden
      {2, 2, 3, Placement::RoundRobin, 16, 4, W13Order::UpGate},
      {4, 1, 0, Placement::Linear, 0, 0, W13Order::GateUp},       // I_r = 3: K padded to 8
  };
  const Family families[] = {Family::Qwen2Moe, Family::DeepseekV3, Family::GptOss,
                             Family::Llama4, Family::Ernie45Moe};
  TempDir tmp;
  uint64_t seed = 170;
  auto backend = make_cuda_backend();
  for (Family f : families) {
    const std::string ckpt = tmp / (std::string(family_name(f)) + "-ckpt");
    write_synthetic_checkpoint(ckpt, spec_for(f, ++seed));
    int idx = 0;
    for (const Plan& p : plans) {
      INFO("family " << family_name(f) << " plan " << idx << " tp " << p.tp << " ep " << p.ep
                     << " redundant " << p.redundant);
      const std::string out = tmp / (std::string(family_name(f)) + "-" + std::to_string(idx++));
      convert_checkpoint(ckpt, out,
                         convert_opts(p.tp, p.ep, p.redundant, p.placement, p.pad_hidden,
                                      p.pad_inter, p.order));
      const ShardSet set = ShardSet::open(out);
      check_all_pass(run_check(set, *backend, out, quiet_run(111)), set.profile().moe_layers.size());
    }
  }
}

TEST_CASE("cuda backend refuses float32 expert weights with a clear error", "[gpu][backend]") {
  TempDir tmp;
  write_synthetic_checkpoint(tmp / "ckpt", spec_for(Family::Mixtral, 5, DType::F32));
  const ShardSet set = ShardSet::from_checkpoint(tmp / "ckpt");
  auto backend = make_cuda_backend();
  try {
    run_check(set, *backend, tmp / "ckpt", quiet_run(4));
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::DTypeMismatch);
    CHECK(std::string(e.what()).find("bf16/fp16") != std::string::npos);
  }
}

// The bench cases' synthetic shape: 8 experts, top-2, H 256, I 128, no progress line.
static BenchOptions small_bench(std::vector<int> tokens, int weight_sets) {
  BenchOptions b;
  b.shape = {"small", 8, 2, 256, 128};
  b.tokens = std::move(tokens);
  b.weight_sets = weight_sets;
  b.quiet = true;
  return b;
}

TEST_CASE("bench on a synthetic shape: timings, floor, the naive check, breakdown and sweep",
          "[gpu][bench]") {
  BenchOptions b = small_bench({1, 40}, 2);
  b.measure_ceilings = true;
  b.breakdown = true;
  b.sweep = true;
  const BenchReport r = run_bench(b);
  CHECK(r.hbm_gbs > 100);
  CHECK(r.tensor_tflops > 1);
  REQUIRE(r.cells.size() == 2);
  for (const BenchCell& c : r.cells) {
    INFO(c.tokens << " tokens: " << c.us << " us, alone " << c.align_us << " / " << c.gate_up_us
                  << " / " << c.down_us);
    CHECK(c.us > 0);
    CHECK(c.floor_us > 0);
    CHECK(c.x_floor == Approx(c.us / c.floor_us));
    CHECK(c.experts_touched == std::min(8, c.tokens * 2));
    CHECK(c.check_rel_l2 >= 0);  // compared with the naive kernel (tokens <= 256)
    CHECK(c.check_rel_l2 < 1e-2);  // bench's own tolerance (cmd_bench.cpp)
    // Each stage alone is part of the call: positive, shorter than the whole three together.
    CHECK(c.align_us > 0);
    CHECK(c.gate_up_us > 0);
    CHECK(c.down_us > 0);
    CHECK(c.align_us < c.us);
    CHECK(c.gate_up_us < c.us);
    CHECK(c.down_us < c.us);
    CHECK(c.align_us + c.gate_up_us + c.down_us > 0.5 * c.us);
    REQUIRE(!c.sweep.empty());
    bool chosen_timed = false;
    for (const BenchSweepEntry& s : c.sweep) {
      CHECK(s.us > 0);
      chosen_timed |= s.gate_up == c.gate_up_cfg && s.down == c.down_cfg && s.split_k == c.split_k;
    }
    CHECK(chosen_timed);
  }
  const nlohmann::json j = bench_to_json(r);
  CHECK(j["cells"][1]["breakdown"]["down_us"].get<double>() == Approx(r.cells[1].down_us));
}

// --pairs: the named pairs timed in turn after each cell, in the order given (repeats too), with
// the cell's gather order; names that are not rows, or rows of two heights, are refused before
// any timing.
TEST_CASE("bench --pairs times the named tile pairs in turn", "[gpu][bench][pairs]") {
  BenchOptions b = small_bench({40, 200}, 1);
  b.measure_ceilings = false;
  b.pairs = {"mma_m16n16k256+mma_m16n128k64", "mma_m64n64k64+mma_m64n128k64",
             "mma_m16n16k256+mma_m16n128k64"};
  const BenchReport r = run_bench(b);
  REQUIRE(r.cells.size() == 2);
  for (const BenchCell& c : r.cells) {
    REQUIRE(c.pairs.size() == 3);
    CHECK(c.pairs[0].gate_up == "mma_m16n16k256");
    CHECK(c.pairs[0].down == "mma_m16n128k64");
    CHECK(c.pairs[1].gate_up == "mma_m64n64k64");
    CHECK(c.pairs[1].down == "mma_m64n128k64");
    CHECK(c.pairs[2].down == "mma_m16n128k64");
    for (const BenchSweepEntry& e : c.pairs) {
      CHECK(e.us > 0);
      CHECK(e.split_k == 1);
      CHECK(e.gather_by_token == c.gather_by_token);
    }
    CHECK(c.sweep.empty());
  }
  const nlohmann::json j = bench_to_json(r);
  REQUIRE(j["cells"][0]["pairs"].size() == 3);
  CHECK(j["cells"][0]["pairs"][1]["us"].get<double>() == Approx(r.cells[0].pairs[1].us));

  auto refused = [&](const std::string& pair, const char* why) {
    b.pairs = {pair};
    try {
      run_bench(b);
      FAIL("accepted --pairs " << pair);
    } catch (const Error& e) {
      INFO(e.what());
      CHECK(e.code() == ErrorCode::InvalidArgument);
      CHECK(std::string(e.what()).find(why) != std::string::npos);
    }
  };
  refused("mma_m16n16k256+no_such_row", "down 'no_such_row' unknown");
  refused("no_such_row+mma_m16n128k64", "gate-up 'no_such_row' unknown");
  refused("mma_m16n16k256", "not GATE_UP+DOWN");
  refused("mma_m16n16k256+mma_m64n128k64", "block heights differ");
}

TEST_CASE("bench --settle runs each ceiling and cell that long before timing it", "[gpu][bench]") {
  BenchOptions b = small_bench({16, 64}, 1);
  auto timed = [&](double settle_s, BenchReport& r) {
    b.settle_s = settle_s;
    const auto t0 = std::chrono::steady_clock::now();
    r = run_bench(b);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  BenchReport r0, r;
  timed(0, r0);  // one-time costs (cuBLAS, first allocations) before the two compared runs
  const double settled = timed(0.2, r), plain = timed(0, r0);
  // Two ceilings and two cells, each after 0.2 s of its own work: the settled run takes at
  // least 0.8 s more than the same run without (less a margin for the rest's jitter).
  INFO("settled " << settled << " s, plain " << plain << " s");
  CHECK(settled >= 4 * 0.2);
  CHECK(settled - plain >= 4 * 0.2 - 0.1);
  CHECK(r.settle_s == 0.2);
  CHECK(r0.settle_s == 0);
  REQUIRE(r.cells.size() == 2);
  for (const BenchCell& c : r.cells) CHECK(c.us > 0);
  CHECK(bench_to_json(r)["settle_s"].get<double>() == 0.2);
}
