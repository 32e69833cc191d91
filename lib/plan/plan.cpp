#include "plan/plan.h"

#include <algorithm>
#include <array>
#include <set>

#include "core/error.h"

namespace moe {

namespace {

constexpr std::array<const char*, static_cast<size_t>(Placement::kCount)> kPlacementNames = {
    "linear", "round_robin"};
constexpr std::array<const char*, static_cast<size_t>(W13Order::kCount)> kW13OrderNames = {
    "gate-up", "up-gate"};

template <typename Enum, size_t N>
std::optional<Enum> enum_from_name(const std::array<const char*, N>& names,
                                   const std::string& name) {
  for (size_t i = 0; i < N; ++i)
    if (name == names[i]) return static_cast<Enum>(i);
  return std::nullopt;
}

std::vector<int32_t> map_from_json(const nlohmann::json& j, const std::string& file,
                                   const std::string& what) {
  MOE_CHECK(j.is_array(), InvalidArgument, file, "", what + " must be an array of integers");
  std::vector<int32_t> out;
  for (const auto& v : j) {
    MOE_CHECK(v.is_number_integer(), InvalidArgument, file, "",
              what + " must be an array of integers");
    out.push_back(v.get<int32_t>());
  }
  return out;
}

SplitDim split_dim(int64_t size, int tp, int64_t pad_to, const char* what) {
  SplitDim d;
  d.size = size;
  if (size == 0) return d;
  MOE_CHECK(pad_to > 0 || size % tp == 0, InvalidPlan, "", "",
            "--tp " + std::to_string(tp) + " does not divide " + what + " " +
                std::to_string(size) + "; pass --pad-intermediate-to to pad each rank's slice");
  d.per_rank = (size + tp - 1) / tp;
  d.per_rank_padded = round_up(d.per_rank, pad_to);
  return d;
}

// Checks one physical -> logical map and returns it.
std::vector<int32_t> checked_map(std::vector<int32_t> map, int num_experts, int num_physical,
                                 int layer, const std::string& file) {
  const std::string where = "layer " + std::to_string(layer);
  MOE_CHECK(static_cast<int>(map.size()) == num_physical, InvalidPlan, file, "",
            "expert map for " + where + " has " + std::to_string(map.size()) +
                " entries, expected " + std::to_string(num_physical) + " physical experts");
  std::vector<bool> seen(num_experts, false);
  for (size_t p = 0; p < map.size(); ++p) {
    MOE_CHECK(map[p] >= 0 && map[p] < num_experts, InvalidPlan, file, "",
              "expert map for " + where + ": physical expert " + std::to_string(p) +
                  " -> " + std::to_string(map[p]) + " is not a logical expert (0.." +
                  std::to_string(num_experts - 1) + ")");
    seen[map[p]] = true;
  }
  for (int l = 0; l < num_experts; ++l)
    MOE_CHECK(seen[l], InvalidPlan, file, "",
              "expert map for " + where + ": logical expert " + std::to_string(l) +
                  " has no physical replica");
  return map;
}

}  // namespace

const char* placement_name(Placement p) { return kPlacementNames[static_cast<size_t>(p)]; }
std::optional<Placement> placement_from_name(const std::string& name) {
  return enum_from_name<Placement>(kPlacementNames, name);
}
const char* w13_order_name(W13Order o) { return kW13OrderNames[static_cast<size_t>(o)]; }
std::optional<W13Order> w13_order_from_name(const std::string& name) {
  return enum_from_name<W13Order>(kW13OrderNames, name);
}

int64_t round_up(int64_t value, int64_t multiple) {
  if (multiple <= 0) return value;
  return (value + multiple - 1) / multiple * multiple;
}

TpSlice SplitDim::slice(int tp_rank) const {
  TpSlice s;
  s.padded = per_rank_padded;
  s.begin = std::min<int64_t>(tp_rank * per_rank, size);
  s.count = std::min<int64_t>(per_rank, size - s.begin);
  return s;
}

ExpertMapSpec parse_expert_map(const nlohmann::json& j, const std::string& file) {
  MOE_CHECK(j.is_object(), InvalidArgument, file, "",
            "expert map must be a JSON object with \"physical_to_logical\" or \"layers\"");
  ExpertMapSpec spec;
  if (j.contains("physical_to_logical"))
    spec.all = map_from_json(j["physical_to_logical"], file, "\"physical_to_logical\"");
  if (j.contains("layers")) {
    MOE_CHECK(j["layers"].is_object(), InvalidArgument, file, "",
              "\"layers\" must map layer indices to arrays");
    for (const auto& [key, value] : j["layers"].items()) {
      int layer = -1;
      try {
        size_t used = 0;
        layer = std::stoi(key, &used);
        if (used != key.size()) layer = -1;
      } catch (const std::exception&) {
        layer = -1;
      }
      MOE_CHECK(layer >= 0, InvalidArgument, file, "",
                "\"layers\" key '" + key + "' is not a layer index");
      spec.per_layer[layer] = map_from_json(value, file, "\"layers\"." + key);
    }
  }
  MOE_CHECK(!spec.all.empty() || !spec.per_layer.empty(), InvalidArgument, file, "",
            "expert map has neither \"physical_to_logical\" nor \"layers\"");
  return spec;
}

std::vector<int32_t> ep_rank_experts(int num_physical, int ep, int ep_rank, Placement placement) {
  std::vector<int32_t> out;
  if (placement == Placement::RoundRobin) {
    for (int p = ep_rank; p < num_physical; p += ep) out.push_back(p);
    return out;
  }
  // Linear: with E_p = q * ep + r the first r EP ranks hold q + 1 experts.
  const int q = num_physical / ep, r = num_physical % ep;
  const int begin = ep_rank * q + std::min(ep_rank, r);
  const int count = q + (ep_rank < r ? 1 : 0);
  for (int p = begin; p < begin + count; ++p) out.push_back(p);
  return out;
}

std::vector<int> parse_layer_list(const std::string& text) {
  std::set<int> layers;
  auto bad = [&](const std::string& why) {
    fail(ErrorCode::InvalidArgument, "", "", "--layers '" + text + "': " + why);
  };
  auto number = [&](const std::string& s) {
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos)
      bad("'" + s + "' is not a layer index");
    if (s.size() > 9) bad("'" + s + "' is too large");
    return std::stoi(s);
  };
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    std::string item = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    size_t dash = item.find('-');
    if (dash == std::string::npos) {
      layers.insert(number(item));
    } else {
      int a = number(item.substr(0, dash)), b = number(item.substr(dash + 1));
      if (a > b) bad("range " + item + " is backwards");
      for (int l = a; l <= b; ++l) layers.insert(l);
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return {layers.begin(), layers.end()};
}

std::vector<int32_t> Plan::expert_map(int rank) const {
  std::vector<int32_t> map(num_physical_experts, -1);
  const auto& local = ranks.at(rank).local_to_physical;
  for (size_t i = 0; i < local.size(); ++i) map[local[i]] = static_cast<int32_t>(i);
  return map;
}

std::string Plan::placement_summary() const {
  std::string s = std::to_string(num_physical_experts) + " physical experts (" +
                  std::to_string(num_experts) + " logical + " +
                  std::to_string(redundant_experts) + " redundant) over " + std::to_string(ep) +
                  " EP rank" + (ep == 1 ? "" : "s") + ", " + placement_name(placement) + ": ";
  for (int e = 0; e < ep; ++e)
    s += (e ? ", " : "") + std::to_string(ranks.at(e * tp).local_to_physical.size());
  s += uneven ? " (uneven)" : " (even)";
  return s;
}

Plan plan_placement(const ModelProfile& profile, const PlanOptions& o) {
  MOE_CHECK(o.tp >= 1, InvalidArgument, "", "", "--tp must be >= 1");
  MOE_CHECK(o.ep >= 1, InvalidArgument, "", "", "--ep must be >= 1");
  MOE_CHECK(o.pad_hidden_to >= 0, InvalidArgument, "", "", "--pad-hidden-to must be >= 0");
  MOE_CHECK(o.pad_intermediate_to >= 0, InvalidArgument, "", "",
            "--pad-intermediate-to must be >= 0");
  MOE_CHECK(profile.num_experts > 0 && profile.hidden_size > 0 &&
                profile.moe_intermediate_size > 0,
            InvalidPlan, "", "", "the model profile has no routed experts to plan");
  MOE_CHECK(static_cast<int64_t>(o.tp) * o.ep <= 1 << 20, InvalidArgument, "", "",
            "--tp x --ep is unreasonably large");

  Plan plan;
  plan.tp = o.tp;
  plan.ep = o.ep;
  plan.world_size = o.tp * o.ep;
  plan.num_experts = profile.num_experts;
  plan.placement = o.placement;
  plan.w13_order = o.w13_order;

  // Redundant experts: given, implied by the map's length, or none.
  int map_len = -1;
  if (o.expert_map) {
    if (!o.expert_map->all.empty()) map_len = static_cast<int>(o.expert_map->all.size());
    for (const auto& [layer, m] : o.expert_map->per_layer) {
      MOE_CHECK(map_len < 0 || static_cast<int>(m.size()) == map_len, InvalidPlan,
                o.expert_map_file, "",
                "expert map for layer " + std::to_string(layer) + " has " +
                    std::to_string(m.size()) + " entries, others have " + std::to_string(map_len));
      map_len = static_cast<int>(m.size());
    }
  }
  int r = o.redundant_experts;
  if (r < 0) r = map_len >= 0 ? map_len - profile.num_experts : 0;
  MOE_CHECK(r >= 0, InvalidPlan, o.expert_map_file, "",
            "expert map has " + std::to_string(map_len) + " physical experts, fewer than the " +
                std::to_string(profile.num_experts) + " logical experts");
  MOE_CHECK(r <= 1 << 20, InvalidArgument, "", "", "--redundant-experts is unreasonably large");
  plan.redundant_experts = r;
  plan.num_physical_experts = profile.num_experts + r;
  MOE_CHECK(o.ep <= plan.num_physical_experts, InvalidPlan, "", "",
            "--ep " + std::to_string(o.ep) + " is larger than the " +
                std::to_string(plan.num_physical_experts) + " physical experts (" +
                std::to_string(profile.num_experts) + " + " + std::to_string(r) +
                " redundant): an EP rank would hold none");

  plan.hidden_size = profile.hidden_size;
  plan.hidden_size_padded = round_up(profile.hidden_size, o.pad_hidden_to);
  plan.pad_hidden_to = o.pad_hidden_to;
  plan.pad_intermediate_to = o.pad_intermediate_to;
  plan.intermediate =
      split_dim(profile.moe_intermediate_size, o.tp, o.pad_intermediate_to, "moe_intermediate_size");
  plan.shared = split_dim(profile.shared_intermediate_size, o.tp, o.pad_intermediate_to,
                          "the shared-expert width");

  // Layers.
  std::set<int> moe(profile.moe_layers.begin(), profile.moe_layers.end());
  if (o.layers.empty()) {
    plan.moe_layers.assign(moe.begin(), moe.end());
  } else {
    for (int l : o.layers)
      MOE_CHECK(moe.count(l), InvalidArgument, "", "",
                "--layers: layer " + std::to_string(l) + " is not a MoE layer of this model");
    std::set<int> chosen(o.layers.begin(), o.layers.end());
    plan.moe_layers.assign(chosen.begin(), chosen.end());
  }
  MOE_CHECK(!plan.moe_layers.empty(), InvalidPlan, "", "", "no MoE layers to write");

  // Physical -> logical per layer.
  if (o.expert_map)
    for (const auto& [layer, m] : o.expert_map->per_layer)
      MOE_CHECK(moe.count(layer), InvalidPlan, o.expert_map_file, "",
                "expert map names layer " + std::to_string(layer) + ", which is not a MoE layer");
  std::vector<int32_t> modulo(plan.num_physical_experts);
  for (int p = 0; p < plan.num_physical_experts; ++p) modulo[p] = p % profile.num_experts;
  for (int layer : plan.moe_layers) {
    std::vector<int32_t> m = modulo;
    if (o.expert_map) {
      auto it = o.expert_map->per_layer.find(layer);
      if (it != o.expert_map->per_layer.end()) m = it->second;
      else if (!o.expert_map->all.empty()) m = o.expert_map->all;
    }
    plan.physical_to_logical[layer] =
        checked_map(std::move(m), profile.num_experts, plan.num_physical_experts, layer,
                    o.expert_map_file);
  }

  // Ranks: TP fastest; every TP rank of an EP rank holds the same experts.
  for (int e = 0; e < o.ep; ++e) {
    auto experts = ep_rank_experts(plan.num_physical_experts, o.ep, e, o.placement);
    for (int t = 0; t < o.tp; ++t)
      plan.ranks.push_back({e * o.tp + t, t, e, experts});
  }
  plan.uneven = plan.num_physical_experts % o.ep != 0;
  return plan;
}

}  // namespace moe
