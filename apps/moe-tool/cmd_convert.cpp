// `moe-tool convert CKPT -o OUT`: a checkpoint -> one packed shard per rank + manifest.json
// (docs/shard-format.md). Parses, calls lib/shard/convert, prints a summary or --json.
#include <array>
#include <atomic>
#include <csignal>
#include <cstdio>

#include "command.h"
#include "core/error.h"
#include "core/progress.h"
#include "shard/convert.h"

namespace {

// Ctrl-C / SIGTERM / SIGHUP ask convert to stop at the next chunk, so the temporary output is
// removed (a plain kill would leave OUT.tmp-* behind). A second signal kills as usual.
std::atomic<bool> g_stop_requested{false};
extern "C" void request_stop(int) { g_stop_requested.store(true); }

class StopOnSignal {
 public:
  StopOnSignal() {
    struct sigaction sa {};
    sa.sa_handler = request_stop;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    for (size_t i = 0; i < kSignals.size(); ++i) ::sigaction(kSignals[i], &sa, &old_[i]);
  }
  ~StopOnSignal() {
    for (size_t i = 0; i < kSignals.size(); ++i) ::sigaction(kSignals[i], &old_[i], nullptr);
  }
  StopOnSignal(const StopOnSignal&) = delete;
  StopOnSignal& operator=(const StopOnSignal&) = delete;

 private:
  static constexpr std::array<int, 3> kSignals = {SIGINT, SIGTERM, SIGHUP};
  std::array<struct sigaction, 3> old_{};
};

struct Args {
  std::string ckpt, out, placement = "linear", w13_order = "gate-up", layers, expert_map;
  int tp = 1, ep = 1, redundant = -1, threads = 0;
  int64_t pad_hidden = 0, pad_inter = 0;
  bool moe_only = false, verify = false, force = false, quiet = false, json = false, no_fsync = false;
};

void print_summary(const moe::ConvertResult& r) {
  const auto& m = r.manifest;
  std::printf("wrote %s: %s, tp=%d ep=%d (%d ranks), %s\n", r.output.c_str(),
              m["family"].get<std::string>().c_str(), m["tp"].get<int>(), m["ep"].get<int>(),
              m["world_size"].get<int>(), m["w13_order"].get<std::string>().c_str());
  std::printf("  placement: %s\n", r.placement_summary.c_str());
  std::printf("  hidden %lld -> %lld, intermediate per rank %lld -> %lld, MoE layers: %zu\n",
              m["hidden_size"].get<long long>(), m["hidden_size_padded"].get<long long>(),
              m["intermediate_per_rank"].get<long long>(),
              m["intermediate_per_rank_padded"].get<long long>(), m["moe_layers"].size());
  std::printf("  %s in %.2f s (%s/s), peak RSS %s\n", moe::human_bytes(r.bytes_written).c_str(),
              r.seconds, moe::human_bytes(r.seconds > 0 ? r.bytes_written / r.seconds : 0).c_str(),
              moe::human_bytes(static_cast<double>(r.peak_rss_bytes)).c_str());
  if (r.verified) {
    if (r.verify_problems.empty()) {
      std::printf("  verify: ok (checksums, structure, every expert byte-equal to the source)\n");
    } else {
      std::printf("  verify: %zu problem(s)\n", r.verify_problems.size());
      for (const auto& p : r.verify_problems) std::printf("    %s\n", p.c_str());
    }
  }
}

}  // namespace

static moe::cli::Registrar reg(20, [](CLI::App& app) {
  auto args = std::make_shared<Args>();
  auto* sub = app.add_subcommand("convert", "Write one packed shard per TP x EP rank + manifest.json");
  sub->add_option("checkpoint", args->ckpt, "Checkpoint directory or .safetensors file")->required();
  sub->add_option("-o,--output", args->out, "Output directory (created; must not exist)")->required();
  sub->add_option("--tp", args->tp, "Tensor-parallel size (slices the intermediate dim)")->check(CLI::PositiveNumber);
  sub->add_option("--ep", args->ep, "Expert-parallel size")->check(CLI::PositiveNumber);
  sub->add_option("--redundant-experts", args->redundant, "Extra physical experts R (replicas p -> p mod E)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--expert-map", args->expert_map,
                  "JSON {\"physical_to_logical\": [...]} or {\"layers\": {\"L\": [...]}}");
  sub->add_option("--placement", args->placement, "EP placement")
      ->check(CLI::IsMember({"linear", "round_robin"}));
  sub->add_option("--pad-hidden-to", args->pad_hidden, "Pad the hidden size to a multiple of A")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--pad-intermediate-to", args->pad_inter,
                  "Pad each rank's intermediate slice to a multiple of B")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--w13-order", args->w13_order, "Row order inside w13")
      ->check(CLI::IsMember({"gate-up", "up-gate"}));
  sub->add_option("--layers", args->layers, "MoE layers to write, e.g. \"1,3-5\" (default: all)");
  sub->add_option("--threads", args->threads, "Worker threads (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  sub->add_flag("--moe-only", args->moe_only, "Skip non-moe.safetensors");
  sub->add_flag("--verify", args->verify, "Re-read the output: checksums and every expert vs the source");
  sub->add_flag("--force", args->force, "Replace an existing output shard set");
  sub->add_flag("--no-fsync", args->no_fsync,
                "Do not wait for the disk: still atomic if convert fails or is killed, not "
                "after a power loss");
  sub->add_flag("--quiet", args->quiet, "No progress line");
  sub->add_flag("--json", args->json, "Print the result as JSON");
  return std::make_pair(sub, std::function<int()>([args] {
    moe::ConvertOptions o;
    o.plan.tp = args->tp;
    o.plan.ep = args->ep;
    o.plan.redundant_experts = args->redundant;
    o.plan.placement = *moe::placement_from_name(args->placement);
    o.plan.w13_order = *moe::w13_order_from_name(args->w13_order);
    o.plan.pad_hidden_to = args->pad_hidden;
    o.plan.pad_intermediate_to = args->pad_inter;
    if (!args->layers.empty()) o.plan.layers = moe::parse_layer_list(args->layers);
    if (!args->expert_map.empty()) {
      o.plan.expert_map = moe::read_expert_map_file(args->expert_map);
      o.plan.expert_map_file = args->expert_map;
    }
    o.threads = args->threads;
    o.moe_only = args->moe_only;
    o.verify = args->verify;
    o.force = args->force;
    o.durable = !args->no_fsync;
    o.quiet = args->quiet || args->json;
    o.should_stop = [] { return g_stop_requested.load(); };
    StopOnSignal stop_on_signal;
    const moe::ConvertResult r = moe::convert_checkpoint(args->ckpt, args->out, o);
    if (args->json) moe::cli::print_json(r.to_json());
    else if (!args->quiet) print_summary(r);
    return r.verified && !r.verify_problems.empty() ? 1 : 0;
  }));
});
