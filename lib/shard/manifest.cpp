#include "shard/manifest.h"

#include <cstdio>

#include "core/error.h"

namespace moe {

namespace {

// Tensor name in a rank file -> encoding. Dense is all convert writes today; the quantized
// encodings add their scale tensors here.
std::vector<std::pair<const char*, bool>> dense_tensors(const Plan& plan, const ModelProfile& p) {
  return {{"w13_weight", true},
          {"w2_weight", true},
          {"w13_bias", p.has_expert_bias},
          {"w2_bias", p.has_expert_bias},
          {"router_weight", true},
          {"router_bias", p.routing.has_router_bias},
          {"e_score_correction_bias", p.routing.has_correction_bias},
          {"shared_w13_weight", plan.shared.size > 0},
          {"shared_w2_weight", plan.shared.size > 0},
          {"shared_expert_gate", p.has_shared_expert_gate}};
}

const nlohmann::json& field(const nlohmann::json& m, const char* key, const std::string& path) {
  MOE_CHECK(m.is_object() && m.contains(key), InvalidShard, path, "",
            std::string("manifest has no \"") + key + "\"");
  return m.at(key);
}

int int_field(const nlohmann::json& m, const char* key, const std::string& path, int min_value) {
  const auto& v = field(m, key, path);
  MOE_CHECK(v.is_number_integer() && v.get<int64_t>() >= min_value && v.get<int64_t>() < (1ll << 31),
            InvalidShard, path, "", std::string("manifest \"") + key + "\" is not a valid integer");
  return v.get<int>();
}

}  // namespace

std::string rank_file_name(int rank, int world_size) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "rank-%05d-of-%05d.safetensors", rank, world_size);
  return buf;
}

nlohmann::json manifest_from_plan(const Plan& plan, const ModelProfile& profile) {
  nlohmann::json m = nlohmann::json::object();
  m["format"] = kManifestFormat;
  m["version"] = kManifestVersion;
  m["family"] = family_name(profile.family);
  m["profile"] = profile_to_json(profile);
  m["tp"] = plan.tp;
  m["ep"] = plan.ep;
  m["world_size"] = plan.world_size;
  m["rank_order"] = "rank = ep_rank * tp + tp_rank";
  m["num_experts"] = plan.num_experts;
  m["redundant_experts"] = plan.redundant_experts;
  m["num_physical_experts"] = plan.num_physical_experts;
  m["placement"] = placement_name(plan.placement);
  m["uneven_placement"] = plan.uneven;
  m["placement_summary"] = plan.placement_summary();
  m["w13_order"] = w13_order_name(plan.w13_order);
  m["hidden_size"] = plan.hidden_size;
  m["hidden_size_padded"] = plan.hidden_size_padded;
  m["intermediate_size"] = plan.intermediate.size;
  m["intermediate_per_rank"] = plan.intermediate.per_rank;
  m["intermediate_per_rank_padded"] = plan.intermediate.per_rank_padded;
  m["shared_intermediate_size"] = plan.shared.size;
  m["shared_per_rank"] = plan.shared.per_rank;
  m["shared_per_rank_padded"] = plan.shared.per_rank_padded;
  // What was asked for (0 = none); the *_padded sizes above are what it gave.
  m["padding"] = {{"pad_hidden_to", plan.pad_hidden_to},
                  {"pad_intermediate_to", plan.pad_intermediate_to},
                  {"pads", "zero"}};
  m["moe_layers"] = plan.moe_layers;
  nlohmann::json p2l = nlohmann::json::object();
  for (const auto& [layer, map] : plan.physical_to_logical) p2l[std::to_string(layer)] = map;
  m["physical_to_logical"] = p2l;
  nlohmann::json enc = nlohmann::json::object();
  for (const auto& [t, present] : dense_tensors(plan, profile))
    if (present) enc[t] = "dense";
  m["encodings"] = enc;
  nlohmann::json ranks = nlohmann::json::array();
  for (const auto& r : plan.ranks)
    ranks.push_back({{"rank", r.rank},
                     {"tp_rank", r.tp_rank},
                     {"ep_rank", r.ep_rank},
                     {"file", rank_file_name(r.rank, plan.world_size)},
                     {"num_local_experts", r.local_to_physical.size()},
                     {"local_to_physical", r.local_to_physical},
                     {"expert_map", plan.expert_map(r.rank)}});
  m["ranks"] = ranks;
  return m;
}

std::map<std::string, std::string> rank_metadata(const Plan& plan, int rank) {
  const RankPlan& r = plan.ranks.at(rank);
  return {{"format", kShardFileFormat},
          {"rank", std::to_string(r.rank)},
          {"world_size", std::to_string(plan.world_size)},
          {"tp_rank", std::to_string(r.tp_rank)},
          {"ep_rank", std::to_string(r.ep_rank)},
          {"tp", std::to_string(plan.tp)},
          {"ep", std::to_string(plan.ep)}};
}

ShardGeometry geometry_from_manifest(const nlohmann::json& m, const std::string& path) {
  MOE_CHECK(m.is_object() && m.value("format", "") == kManifestFormat, InvalidShard, path, "",
            std::string("not a shard-set manifest (\"format\" is not \"") + kManifestFormat + "\")");
  MOE_CHECK(m.value("version", 0) == kManifestVersion, InvalidShard, path, "",
            "unsupported manifest version");
  ShardGeometry g;
  g.tp = int_field(m, "tp", path, 1);
  g.ep = int_field(m, "ep", path, 1);
  g.world_size = int_field(m, "world_size", path, 1);
  MOE_CHECK(g.world_size == g.tp * g.ep, InvalidShard, path, "", "world_size != tp * ep");
  g.num_physical_experts = int_field(m, "num_physical_experts", path, 1);
  g.hidden_size = int_field(m, "hidden_size", path, 1);
  g.hidden_size_padded = int_field(m, "hidden_size_padded", path, g.hidden_size);
  g.intermediate_per_rank = int_field(m, "intermediate_per_rank", path, 1);
  g.intermediate_per_rank_padded = int_field(m, "intermediate_per_rank_padded", path, g.intermediate_per_rank);
  g.shared_per_rank = int_field(m, "shared_per_rank", path, 0);
  g.shared_per_rank_padded = int_field(m, "shared_per_rank_padded", path, g.shared_per_rank);
  const std::string order = field(m, "w13_order", path).is_string() ? m["w13_order"].get<std::string>() : "";
  auto o = w13_order_from_name(order);
  MOE_CHECK(o.has_value(), InvalidShard, path, "", "manifest \"w13_order\" '" + order + "' is unknown");
  g.w13_up_first = *o == W13Order::UpGate;
  return g;
}

std::vector<RankInfo> ranks_from_manifest(const nlohmann::json& m, const std::string& path) {
  const auto& ranks = field(m, "ranks", path);
  const int world = int_field(m, "world_size", path, 1);
  const int tp = int_field(m, "tp", path, 1);
  MOE_CHECK(ranks.is_array() && static_cast<int>(ranks.size()) == world, InvalidShard, path, "",
            "manifest \"ranks\" must list world_size ranks");
  std::vector<RankInfo> out;
  for (size_t i = 0; i < ranks.size(); ++i) {
    const auto& r = ranks[i];
    RankInfo info;
    info.rank = int_field(r, "rank", path, 0);
    info.tp_rank = int_field(r, "tp_rank", path, 0);
    info.ep_rank = int_field(r, "ep_rank", path, 0);
    MOE_CHECK(info.rank == static_cast<int>(i) && info.rank == info.ep_rank * tp + info.tp_rank &&
                  info.tp_rank < tp,
              InvalidShard, path, "", "manifest rank " + std::to_string(i) + " is out of order");
    const auto& f = field(r, "file", path);
    MOE_CHECK(f.is_string() && !f.get<std::string>().empty() &&
                  f.get<std::string>().find('/') == std::string::npos,
              InvalidShard, path, "", "manifest rank " + std::to_string(i) + " has a bad \"file\"");
    info.file = f.get<std::string>();
    out.push_back(info);
  }
  return out;
}

std::vector<int> layers_from_manifest(const nlohmann::json& m, const std::string& path) {
  const auto& l = field(m, "moe_layers", path);
  MOE_CHECK(l.is_array(), InvalidShard, path, "", "manifest \"moe_layers\" is not an array");
  std::vector<int> out;
  for (const auto& v : l) {
    MOE_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0, InvalidShard, path, "",
              "manifest \"moe_layers\" holds a non-index");
    out.push_back(v.get<int>());
  }
  return out;
}

}  // namespace moe
