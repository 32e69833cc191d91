// The plan of a shard set (docs/shard-format.md): physical experts and their logical ids,
// EP placement, the TP slice of the intermediate dim and the padding of hidden / intermediate.
// Pure functions of (profile, options): no files, so every rule is a unit test.
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "model/profile.h"

namespace moe {

enum class Placement { Linear, RoundRobin, kCount };
const char* placement_name(Placement p);  // "linear", "round_robin"
std::optional<Placement> placement_from_name(const std::string& name);

enum class W13Order { GateUp, UpGate, kCount };
const char* w13_order_name(W13Order o);  // "gate-up", "up-gate"
std::optional<W13Order> w13_order_from_name(const std::string& name);

// --expert-map FILE: {"physical_to_logical": [...]} for every layer, or
// {"layers": {"L": [...], ...}} per layer (layers not listed use p mod E).
struct ExpertMapSpec {
  std::vector<int32_t> all;
  std::map<int, std::vector<int32_t>> per_layer;
};
ExpertMapSpec parse_expert_map(const nlohmann::json& j, const std::string& file);

struct PlanOptions {
  int tp = 1, ep = 1;
  int redundant_experts = -1;  // -1 = not given (0, or implied by the expert map's length)
  Placement placement = Placement::Linear;
  int64_t pad_hidden_to = 0;        // 0 = no padding
  int64_t pad_intermediate_to = 0;  // 0 = no padding (then tp must divide I)
  W13Order w13_order = W13Order::GateUp;
  std::vector<int> layers;  // model layer indices to write; empty = every MoE layer
  std::optional<ExpertMapSpec> expert_map;
  std::string expert_map_file;  // names the file in errors
};

// A TP rank's share of a dimension of `size` (vLLM's rule): source range [begin, begin + count),
// count may be 0 for a rank past the end of the data; `padded` is the parameter's size.
struct TpSlice {
  int64_t begin = 0, count = 0, padded = 0;
};

// One dimension split over TP: I (routed experts) or Is (shared experts).
struct SplitDim {
  int64_t size = 0;        // I
  int64_t per_rank = 0;    // I_u = ceil(I / tp)
  int64_t per_rank_padded = 0;  // I_r = round_up(I_u, B)
  TpSlice slice(int tp_rank) const;
};

struct RankPlan {
  int rank = 0, tp_rank = 0, ep_rank = 0;
  std::vector<int32_t> local_to_physical;  // the same for every layer
};

struct Plan {
  int tp = 1, ep = 1, world_size = 1;
  int num_experts = 0;           // E, logical
  int redundant_experts = 0;     // R
  int num_physical_experts = 0;  // E + R
  Placement placement = Placement::Linear;
  W13Order w13_order = W13Order::GateUp;
  int64_t hidden_size = 0, hidden_size_padded = 0;
  int64_t pad_hidden_to = 0, pad_intermediate_to = 0;  // the options, 0 = none (manifest "padding")
  SplitDim intermediate;  // routed experts
  SplitDim shared;        // shared expert(s); size 0 = none
  std::vector<int> moe_layers;                           // written, ascending
  std::map<int, std::vector<int32_t>> physical_to_logical;  // per written layer, [E_p]
  std::vector<RankPlan> ranks;                           // index = rank = ep_rank * tp + tp_rank
  bool uneven = false;  // EP ranks hold different numbers of experts

  // [E_p]: physical id -> local index on `rank`, or -1.
  std::vector<int32_t> expert_map(int rank) const;
  // "128 physical experts over 3 EP ranks: 43, 43, 42 (uneven)".
  std::string placement_summary() const;
};

// Throws Error{InvalidPlan / InvalidArgument} naming the option (and the expert-map file).
Plan plan_placement(const ModelProfile& profile, const PlanOptions& options);

// The physical experts of EP rank `ep_rank`, ascending.
std::vector<int32_t> ep_rank_experts(int num_physical, int ep, int ep_rank, Placement placement);
// "1,3-5" -> {1, 3, 4, 5} (sorted, unique). Throws InvalidArgument.
std::vector<int> parse_layer_list(const std::string& text);
int64_t round_up(int64_t value, int64_t multiple);  // multiple <= 0: value

}  // namespace moe
