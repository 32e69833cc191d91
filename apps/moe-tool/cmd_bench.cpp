// `moe-tool bench [SHARDS_OR_CKPT] [--shape NAME | --experts E --top-k K --hidden H
// --intermediate I] --tokens LIST`: times the fused-MoE CUDA path per token count against the
// floor measured in the same run (docs/perf.md); exit 1 when the kernel disagrees with the naive
// in-tree oracle, 2 on bad input or without a GPU.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>

#include "command.h"
#include "core/error.h"
#include "runtime/device_info.h"
#include "runtime/gpu_bench.h"
#include "runtime/nccl_bench.h"

namespace {

struct Args {
  std::string source, shape, dtype = "bf16", tokens = "1,16,64,256,1024,4096";
  int experts = 0, top_k = 0, hidden = 0, inter = 0, layer = -1, rank = 0, weight_sets = 3;
  int check_max_tokens = 256;
  bool sweep = false, breakdown = false, json = false, quiet = false;
  std::vector<std::string> sweep_rows;
  std::vector<std::string> pairs;
  std::string gpus;  // --gpus N|all|env: per-rank kernels and the NCCL all-reduce
  double nccl_timeout = 300;
  double gpu_timeout = moe::kDefaultGpuTimeoutS;
  double settle = 0;
};

constexpr double kCheckTolerance = 1e-2;  // relative L2 vs the naive kernel (bf16 rounding)

std::vector<int> parse_tokens(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      const int v = std::stoi(item, &used);
      MOE_CHECK(used == item.size() && v > 0, InvalidArgument, "", "", "bad --tokens entry '" + item + "'");
      out.push_back(v);
    } catch (const std::logic_error&) {
      moe::fail(moe::ErrorCode::InvalidArgument, "", "", "bad --tokens entry '" + item + "'");
    }
  }
  MOE_CHECK(!out.empty(), InvalidArgument, "", "", "--tokens is empty");
  return out;
}

void print_table(const moe::BenchReport& r) {
  std::printf("bench %s: E=%d top-%d H=%d I=%d %s on %s (wgmma %s), %d weight set%s",
              r.shape.name.c_str(), r.shape.experts, r.shape.top_k, r.shape.hidden, r.shape.inter,
              r.dtype.c_str(), r.device.c_str(), r.wgmma ? "on" : "off", r.weight_sets,
              r.weight_sets == 1 ? "" : "s");
  if (r.settle_s > 0) std::printf(", each timing after %.2f s of the same work", r.settle_s);
  std::printf("\n");
  std::printf("ceilings: HBM %.0f GB/s (d2d copy, read+write), tensor %.0f TFLOP/s (cuBLAS bf16 8192^3)\n",
              r.hbm_gbs, r.tensor_tflops);
  // "by token": x gathered in token order (x), the down rows summed by token (rows).
  std::printf("%7s %10s %7s %8s %8s %10s %7s %8s  %-16s %-16s %5s %-8s %9s\n", "tokens", "us",
              "spread", "TFLOP/s", "GB/s", "floor us", "xfloor", "experts", "gate-up", "down",
              "split", "by token", "check");
  for (const auto& c : r.cells) {
    char check[32] = "-";
    if (c.check_rel_l2 >= 0) std::snprintf(check, sizeof check, "%.1e", c.check_rel_l2);
    const char* by_token = c.gather_by_token ? (c.down_rows ? "x,rows" : "x")
                                             : (c.down_rows ? "rows" : "-");
    std::printf("%7d %10.1f %6.1f%% %8.1f %8.0f %10.1f %7.2f %8d  %-16s %-16s %5d %-8s %9s\n",
                c.tokens, c.us, 100 * c.us_spread, c.tflops, c.weight_gbs, c.floor_us, c.x_floor,
                c.experts_touched, c.gate_up_cfg.c_str(), c.down_cfg.c_str(), c.split_k, by_token,
                check);
    if (c.gate_up_us > 0)
      std::printf("        alone: align %.1f us, gate-up %.1f us (%.0f TFLOP/s), down %.1f us (%.0f TFLOP/s)\n",
                  c.align_us, c.gate_up_us, c.gate_up_tflops, c.down_us, c.down_tflops);
    if (!c.sweep.empty()) {
      const moe::BenchSweepEntry* best = &c.sweep.front();
      for (const auto& s : c.sweep)
        if (s.us < best->us) best = &s;
      std::printf("        sweep: %zu configs, best %.1f us (%s + %s split %d)\n", c.sweep.size(),
                  best->us, best->gate_up.c_str(), best->down.c_str(), best->split_k);
    }
    for (const auto& pr : c.pairs)
      std::printf("        pair: %.1f us  %s + %s%s%s\n", pr.us, pr.gate_up.c_str(),
                  pr.down.c_str(), pr.gather_by_token ? ", x by token" : "",
                  pr.down_rows ? ", rows summed by token" : "");
  }
}

// --gpus: one row per shard rank (its kernel time on its GPU) and per GPU its ranks' sum beside
// its all-reduce time.
void print_multi_gpu_table(const moe::MultiGpuBenchReport& r) {
  std::printf("bench %s: E=%d top-%d H=%d I=%d %s on %s, NCCL %s, %s\n", r.shape.name.c_str(),
              r.shape.experts, r.shape.top_k, r.shape.hidden, r.shape.inter, r.dtype.c_str(),
              r.device.c_str(), r.nccl_version.c_str(), moe::world_summary(r.world).c_str());
  std::printf("%7s %6s %6s %10s %12s %14s %10s %10s\n", "tokens", "gpu", "rank", "experts",
              "kernel us", "all-reduce us", "busbw GB/s", "step us");
  for (const auto& c : r.cells) {
    for (const auto& m : c.members) {
      for (const auto& rk : c.ranks)
        if (rk.member == m.member)
          std::printf("%7d %6d %6d %10d %12.1f\n", c.tokens, m.member, rk.rank, rk.experts,
                      rk.kernel_us);
      std::printf("%7d %6d %6s %10s %12.1f %14.1f\n", c.tokens, m.member, "sum", "",
                  m.kernel_us_sum, m.allreduce_us);
    }
    std::printf("%7d %6s %6s %10s %12s %14.1f %10.1f %10.1f\n", c.tokens, "world", "", "", "",
                c.allreduce_us, c.busbw_gbs, c.step_us);
  }
}

}  // namespace

static moe::cli::Registrar reg(70, [](CLI::App& app) {
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand("bench", "Time the fused-MoE CUDA kernels against the measured floor");
  sub->add_option("source", a->source, "Shard-set directory or checkpoint (else synthetic weights)");
  sub->add_option("--shape", a->shape, "Synthetic shape: mixtral, qwen3-30b, deepseek-v3-tp8, gpt-oss-120b");
  sub->add_option("--experts", a->experts, "Synthetic: routed experts")->check(CLI::PositiveNumber);
  sub->add_option("--top-k", a->top_k, "Synthetic: experts per token")->check(CLI::PositiveNumber);
  sub->add_option("--hidden", a->hidden, "Synthetic: hidden size")->check(CLI::PositiveNumber);
  sub->add_option("--intermediate", a->inter, "Synthetic: expert intermediate size")->check(CLI::PositiveNumber);
  sub->add_option("--tokens", a->tokens, "Comma-separated token counts")->capture_default_str();
  sub->add_option("--dtype", a->dtype, "bf16 or fp16 (synthetic weights)")->capture_default_str()
      ->check(CLI::IsMember({"bf16", "fp16"}));
  sub->add_option("--layer", a->layer, "Model layer of SOURCE (default: first MoE layer)");
  sub->add_option("--rank", a->rank, "Rank of SOURCE whose experts are timed")->capture_default_str();
  sub->add_option("--weight-sets", a->weight_sets, "Weight sets rotated when they fit")
      ->check(CLI::Range(1, 8));
  sub->add_option("--check-max-tokens", a->check_max_tokens,
                  "Compare with the naive kernel up to this many tokens")
      ->capture_default_str();
  sub->add_flag("--sweep", a->sweep,
                "Also time, per block height near the cell, every gate-up row, then every down "
                "row and split with the best of them (tuning)");
  sub->add_option("--settle", a->settle,
                  "Seconds each ceiling, cell and --breakdown stage runs before it is timed: "
                  "steady clocks under the power limit, whatever ran before (default 0: two "
                  "warm-up calls; --sweep rows are not settled)")
      ->check(CLI::Range(0.0, 60.0))->capture_default_str();
  sub->add_flag("--breakdown", a->breakdown,
                "Also time the alignment, gate-up and down launches, each alone");
  sub->add_option("--sweep-rows", a->sweep_rows,
                  "With --sweep: only rows whose name starts with one of these prefixes")
      ->delimiter(',');
  sub->add_option("--pairs", a->pairs,
                  "Also time these GATE_UP+DOWN row pairs in turn after each cell, e.g. "
                  "tma_m192n96+tma_m192n192,tma_m192n96b+tma_m192n192r (repeat to alternate)")
      ->delimiter(',');
  sub->add_option("--gpus", a->gpus,
                  "N GPUs, 'all', or 'env' (one process per GPU from launcher variables): "
                  "per-rank kernel time and NCCL all-reduce time side by side");
  sub->add_option("--nccl-timeout", a->nccl_timeout, "Seconds any NCCL wait may take")
      ->check(CLI::PositiveNumber)->capture_default_str();
  sub->add_option("--gpu-timeout", a->gpu_timeout,
                  "Seconds any wait on the GPU may take before the command fails (a hung "
                  "kernel); 0 = no limit")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  sub->add_flag("--json", a->json, "Print the report as JSON");
  sub->add_flag("--quiet", a->quiet, "No progress line");
  return std::make_pair(sub, std::function<int()>([a] {
    moe::set_gpu_wait_timeout(a->gpu_timeout);
    moe::BenchOptions o;
    if (a->source.empty()) {
      if (!a->shape.empty()) {
        const moe::BenchShape* s = moe::find_bench_shape(a->shape);
        MOE_CHECK(s, InvalidArgument, "", "", "unknown --shape '" + a->shape + "'");
        o.shape = *s;
      } else {
        MOE_CHECK(a->experts && a->top_k && a->hidden && a->inter, InvalidArgument, "", "",
                  "give SHARDS_OR_CKPT, --shape, or all of --experts --top-k --hidden --intermediate");
        o.shape = {"custom", a->experts, a->top_k, a->hidden, a->inter};
      }
    }
    o.source = a->source;
    o.layer = a->layer;
    o.rank = a->rank;
    o.tokens = parse_tokens(a->tokens);
    o.dtype = a->dtype;
    o.weight_sets = a->weight_sets;
    o.sweep = a->sweep;
    o.sweep_rows = a->sweep_rows;
    o.pairs = a->pairs;
    o.breakdown = a->breakdown;
    o.check_max_tokens = a->check_max_tokens;
    o.settle_s = a->settle;
    o.quiet = a->quiet || a->json;
    if (!a->gpus.empty()) {
      MOE_CHECK(a->settle == 0, InvalidArgument, "", "", "--settle times one GPU; not with --gpus");
      moe::MultiGpuOptions mg = moe::parse_gpus_option(a->gpus, std::getenv);
      mg.timeout_s = a->nccl_timeout;
      const moe::MultiGpuBenchReport mr = moe::run_multi_gpu_bench(o, mg);
      if (mr.world.process_rank != 0) return 0;  // launcher mode: process 0 prints the world
      if (a->json) moe::cli::print_json(moe::multi_gpu_bench_to_json(mr));
      else print_multi_gpu_table(mr);
      return 0;
    }
    const moe::BenchReport r = moe::run_bench(o);
    if (a->json) moe::cli::print_json(moe::bench_to_json(r));
    else print_table(r);
    for (const auto& c : r.cells)
      if (c.check_rel_l2 > kCheckTolerance) {
        std::fprintf(stderr, "moe-tool bench: %d tokens: kernel differs from the naive oracle (rel L2 %.2e)\n",
                     c.tokens, c.check_rel_l2);
        return 1;
      }
    return 0;
  }));
});
