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

void line(const char* key, const std::string& value) { std::printf("%-14s %s\n", key, value.c_str()); }

void print_text(const nlohmann::json& j) {
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

// A shard set (inspect_shard_set's fields): the layout, then one line per rank file.
void print_shard_set_text(const nlohmann::json& j) {
  auto num = [&](const char* k) { return std::to_string(j[k].get<int64_t>()); };
  line("shard set", j["path"].get<std::string>());
  line("family", j["family"].get<std::string>());
  line("source", j["source"]["path"].get<std::string>());
  line("layout", "TP " + num("tp") + " x EP " + num("ep") + " = " + num("world_size") + " ranks");
  line("moe layers", moe::layer_list_str(j["moe_layers"].get<std::vector<int>>()));
  line("experts", j["placement_summary"].get<std::string>());
  auto padded = [&](const char* plain, const char* pad) {
    std::string v = num(plain);
    if (j[pad] != j[plain]) v += " (padded to " + num(pad) + ")";
    return v;
  };
  line("hidden", padded("hidden_size", "hidden_size_padded"));
  line("intermediate", num("intermediate_size") + " per expert, per rank " +
                           padded("intermediate_per_rank", "intermediate_per_rank_padded"));
  if (j["shared_intermediate_size"].get<int64_t>() > 0)
    line("shared", num("shared_intermediate_size") + ", per rank " + num("shared_per_rank_padded"));
  line("w13 order", j["w13_order"].get<std::string>());
  std::string enc;
  for (auto it = j["encodings"].begin(); it != j["encodings"].end(); ++it)
    enc += (enc.empty() ? "" : ", ") + it.key() + " " + it.value().get<std::string>();
  line("encodings", enc);
  auto row = [](const std::string& rank, const std::string& tp, const std::string& ep,
                const std::string& experts, const std::string& bytes, const std::string& hash,
                const std::string& file) {
    std::printf("%-5s %-3s %-3s %7s %12s  %-16s %s\n", rank.c_str(), tp.c_str(), ep.c_str(),
                experts.c_str(), bytes.c_str(), hash.c_str(), file.c_str());
  };
  row("rank", "tp", "ep", "experts", "bytes", "xxh64", "file");
  for (const auto& f : j["files"]) {
    auto field = [&](const char* k) { return f.contains(k) ? f[k].dump() : "-"; };  // "-": non-MoE file
    row(field("rank"), field("tp_rank"), field("ep_rank"), field("num_local_experts"),
        moe::human_bytes(f["bytes"].get<double>()), f["xxh64"].get<std::string>(),
        f["file"].get<std::string>());
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
      else print_shard_set_text(j);
      return 0;
    }
    const moe::Checkpoint ck = moe::Checkpoint::open(args->path);
    const nlohmann::json j = moe::inspect_checkpoint(ck);
    if (args->json) moe::cli::print_json(j);
    else print_text(j);
    return 0;
  }));
});
