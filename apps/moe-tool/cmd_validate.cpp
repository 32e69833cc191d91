// `moe-tool validate CKPT`: every expert of every MoE layer present with consistent shapes and
// dtypes, config consistent with the tensors, and with --scan-values no NaN/Inf. Exit 0 valid,
// 1 invalid (all problems listed), 2 unusable input.
#include <filesystem>
#include <string>

#include "command.h"
#include "core/progress.h"
#include "io/checkpoint.h"
#include "model/inspect.h"
#include "model/validate.h"
#include "shard/shard_check.h"

namespace {

struct Args {
  std::string path;
  bool json = false, quiet = false, scan = false;
  int threads = 0;
};

void print_text(const moe::ValidateReport& r, bool quiet) {
  const auto& p = r.profile;
  std::printf("validate %s: %s, MoE layers %s, %d experts, top-%d\n", r.path.c_str(),
              moe::family_name(p.family), moe::layer_list_str(p.moe_layers).c_str(), p.num_experts,
              p.top_k);
  if (!quiet) {
    std::printf("  %-6s %8s %8s %12s  %-12s %s\n", "layer", "experts", "tensors", "bytes", "dtypes",
                "problems");
    for (const auto& l : r.layers) {
      std::string d;
      for (const auto& t : l.dtypes) d += (d.empty() ? "" : ",") + t;
      std::printf("  %-6d %8d %8d %12s  %-12s %d\n", l.layer, l.experts_present, l.tensors,
                  moe::human_bytes(static_cast<double>(l.bytes)).c_str(), d.c_str(), l.problems);
    }
    for (const auto& n : r.notes) std::printf("  note: %s\n", n.c_str());
  }
  if (r.scanned)
    std::printf("  scan-values: %llu tensors, %s in %.2f s (%s/s), %zu with NaN/Inf\n",
                static_cast<unsigned long long>(r.scanned_tensors),
                moe::human_bytes(static_cast<double>(r.scanned_bytes)).c_str(), r.scan_seconds,
                moe::human_bytes(r.scan_seconds > 0 ? r.scanned_bytes / r.scan_seconds : 0).c_str(),
                r.nonfinite.size());
  for (const auto& pr : r.problems) {
    std::string where = pr.layer >= 0 ? "layer " + std::to_string(pr.layer) + ": " : "";
    if (!pr.tensor.empty()) where += pr.tensor + ": ";
    std::printf("  problem: %s%s\n", where.c_str(), pr.text.c_str());
  }
  if (r.ok()) std::printf("OK\n");
  else std::printf("INVALID: %zu problem(s)\n", r.problems.size());
}

}  // namespace

static moe::cli::Registrar reg(12, [](CLI::App& app) {
  auto args = std::make_shared<Args>();
  auto* sub = app.add_subcommand("validate", "Check a checkpoint (or shard set) against its config");
  sub->add_option("checkpoint", args->path, "Checkpoint directory, .safetensors file or shard set")
      ->required();
  sub->add_flag("--scan-values", args->scan, "Also scan every MoE tensor for NaN/Inf");
  sub->add_option("--threads", args->threads, "Scan threads (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  sub->add_flag("--json", args->json, "Print the report as JSON");
  sub->add_flag("--quiet", args->quiet, "No progress line and no per-layer table");
  return std::make_pair(sub, std::function<int()>([args] {
    // A shard set (manifest.json) is checked by lib/shard (engineer "convert").
    if (std::filesystem::is_regular_file(std::filesystem::path(args->path) / "manifest.json")) {
      const moe::CheckReport r = moe::validate_shard_set(args->path);
      if (args->json) {
        moe::cli::print_json(r.to_json());
      } else {
        std::printf("validate %s: shard set, %s\n", args->path.c_str(), r.stats.dump().c_str());
        for (const auto& p : r.problems) std::printf("  problem: %s\n", p.c_str());
        std::printf("%s\n", r.ok() ? "OK" : "INVALID");
      }
      return r.ok() ? 0 : 1;
    }
    const moe::Checkpoint ck = moe::Checkpoint::open(args->path);
    moe::ValidateOptions o;
    o.scan_values = args->scan;
    o.threads = args->threads;
    o.quiet = args->quiet || args->json;
    const moe::ValidateReport r = moe::validate(ck, o);
    if (args->json) moe::cli::print_json(moe::report_to_json(r));
    else print_text(r, args->quiet);
    return r.ok() ? 0 : 1;
  }));
});
