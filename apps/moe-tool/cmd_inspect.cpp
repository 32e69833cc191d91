// `moe-tool inspect CKPT`: what a checkpoint (or a shard set) holds: family, MoE layers, experts,
// top-k, sizes, shared experts, routing, activation, dtypes, quantization and bytes per layer.
#include <filesystem>
#include <string>

#include "command.h"
#include "core/progress.h"
#include "io/checkpoint.h"
#include "model/inspect.h"
#include "shard/shard_check.h"

namespace {

struct Args {
  std::string path;
  bool json = false, quiet = false;
};

std::string routing_str(const nlohmann::json& r) {
  std::string s = r["score"].get<std::string>();
  if (r["has_router_bias"].get<bool>()) s += " (+router bias)";
  if (r["has_correction_bias"].get<bool>()) s += ", correction bias (selection only)";
  if (r["n_group"].get<int>() > 1)
    s += ", " + std::to_string(r["n_group"].get<int>()) + " groups keep " +
         std::to_string(r["topk_group"].get<int>()) + " by " + r["group_score"].get<std::string>();
  s += ", top-k";
  if (r["renormalize"].get<bool>()) s += ", renormalize";
  if (r["renorm_min"].get<double>() > 0) s += " (min " + r["renorm_min"].dump() + ")";
  if (r["routed_scaling_factor"].get<double>() != 1.0) s += ", x" + r["routed_scaling_factor"].dump();
  if (r["weight_on_input"].get<bool>()) s += ", weight on input";
  return s;
}

void print_text(const nlohmann::json& j) {
  auto line = [](const char* k, const std::string& v) { std::printf("%-14s %s\n", k, v.c_str()); };
  line("checkpoint", j["path"].get<std::string>());
  line("family", j["family"].get<std::string>() + " (model_type " + j["model_type"].get<std::string>() + ")");
  line("moe layers", moe::layer_list_str(j["moe_layers"].get<std::vector<int>>()) + " of " +
                         std::to_string(j["num_layers"].get<int>()) + " layers");
  line("experts", std::to_string(j["num_experts"].get<int>()) + " routed, top-" +
                      std::to_string(j["top_k"].get<int>()));
  line("hidden", std::to_string(j["hidden_size"].get<int>()));
  line("intermediate", std::to_string(j["moe_intermediate_size"].get<int>()) + " per expert");
  int shared = j["shared_intermediate_size"].get<int>();
  line("shared", shared ? std::to_string(shared) + (j["has_shared_expert_gate"].get<bool>() ? " (sigmoid gate)" : "")
                        : "none");
  line("routing", routing_str(j["routing"]));
  std::string act = j["activation"].get<std::string>();
  if (act == "swiglu_oai")
    act += " (alpha " + j["swiglu_alpha"].dump() + ", limit " + j["swiglu_limit"].dump() + ")";
  if (j["has_expert_bias"].get<bool>()) act += ", expert biases";
  line("activation", act);
  line("quantization", j["quantization"]["name"].get<std::string>());
  std::string dtypes;
  for (auto it = j["moe_dtypes"].begin(); it != j["moe_dtypes"].end(); ++it)
    dtypes += (dtypes.empty() ? "" : ", ") + it.key() + " " + moe::human_bytes(it.value().get<double>());
  line("moe dtypes", dtypes.empty() ? "none" : dtypes);
  line("files", std::to_string(j["files"].size()) + ", tensors " +
                    moe::human_bytes(j["total_bytes"].get<double>()) + " (MoE " +
                    moe::human_bytes(j["moe_bytes"].get<double>()) + ")");
  std::printf("%-8s %8s %12s  %s\n", "layer", "tensors", "bytes", "dtypes");
  for (const auto& l : j["layers"]) {
    std::string d;
    for (const auto& t : l["dtypes"]) d += (d.empty() ? "" : ",") + t.get<std::string>();
    std::printf("%-8d %8d %12s  %s\n", l["layer"].get<int>(), l["tensors"].get<int>(),
                moe::human_bytes(l["bytes"].get<double>()).c_str(), d.c_str());
  }
}

}  // namespace

static moe::cli::Registrar reg(10, [](CLI::App& app) {
  auto args = std::make_shared<Args>();
  auto* sub = app.add_subcommand("inspect", "Show what a checkpoint or shard set holds");
  sub->add_option("checkpoint", args->path, "Checkpoint directory, .safetensors file or shard set")
      ->required();
  sub->add_flag("--json", args->json, "Print the result as JSON");
  sub->add_flag("--quiet", args->quiet, "No progress line (inspect reads headers only)");
  return std::make_pair(sub, std::function<int()>([args] {
    // A shard set (manifest.json) is described by lib/shard (engineer "convert").
    if (std::filesystem::is_regular_file(std::filesystem::path(args->path) / "manifest.json")) {
      nlohmann::json j = moe::inspect_shard_set(args->path);
      if (args->json) moe::cli::print_json(j);
      else std::printf("%s\n", j.dump(2).c_str());
      return 0;
    }
    const moe::Checkpoint ck = moe::Checkpoint::open(args->path);
    const nlohmann::json j = moe::inspect_checkpoint(ck);
    if (args->json) moe::cli::print_json(j);
    else print_text(j);
    return 0;
  }));
});
