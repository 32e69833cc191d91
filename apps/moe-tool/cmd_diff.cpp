// `moe-tool diff A B`: per-layer, per-projection weight differences between two checkpoints or
// shard sets of one model (B against A), and with --outputs the reference block outputs of both
// on the same random inputs. Exit 0 when compared, 2 for unusable input or different models.
#include <cstdio>
#include <memory>

#include "command.h"
#include "reference/diff.h"

namespace {

struct Args {
  std::string a, b;
  bool outputs = false, json = false, quiet = false;
  int tokens = 32, threads = 0;
  uint64_t seed = 0;
};

}  // namespace

static moe::cli::Registrar reg(50, [](CLI::App& app) {
  auto args = std::make_shared<Args>();
  auto* sub = app.add_subcommand(
      "diff", "Per-layer weight (and --outputs: reference output) differences of two models");
  sub->add_option("a", args->a, "Checkpoint or shard set taken as the reference side")->required();
  sub->add_option("b", args->b, "Checkpoint or shard set compared against A")->required();
  sub->add_flag("--outputs", args->outputs, "Also compare reference MoE block outputs");
  sub->add_option("--tokens", args->tokens, "Random tokens per layer for --outputs")
      ->check(CLI::PositiveNumber);
  sub->add_option("--seed", args->seed, "Seed of the random inputs");
  sub->add_option("--threads", args->threads, "CPU threads (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  sub->add_flag("--json", args->json, "Print the report as JSON");
  sub->add_flag("--quiet", args->quiet, "No progress line");
  return std::make_pair(sub, std::function<int()>([args] {
    moe::DiffOptions o;
    o.outputs = args->outputs;
    o.tokens = args->tokens;
    o.seed = args->seed;
    o.threads = args->threads;
    o.quiet = args->quiet || args->json;
    const moe::DiffReport report = moe::diff_models(args->a, args->b, o);
    if (args->json) moe::cli::print_json(report.to_json());
    else std::fputs(report.table().c_str(), stdout);
    return 0;
  }));
});
