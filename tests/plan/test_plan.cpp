// Pure plan tests: placement, redundancy, TP slices and padding, layer lists, expert maps.
// No files: every rule of docs/shard-format.md "Physical experts and placement" and "Slicing and
// padding" is checked on profiles built in code.
#include <catch2/catch.hpp>
#include <random>
#include <set>

#include "core/error.h"
#include "plan/plan.h"

using namespace moe;

namespace {

ModelProfile profile(int experts, int hidden, int inter, int shared = 0) {
  ModelProfile p;
  p.family = Family::Qwen3Moe;
  p.model_type = "qwen3_moe";
  p.num_layers = 4;
  p.moe_layers = {0, 1, 2, 3};
  p.num_experts = experts;
  p.top_k = 2;
  p.hidden_size = hidden;
  p.moe_intermediate_size = inter;
  p.shared_intermediate_size = shared;
  return p;
}

ErrorCode code_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.code();
  }
  return ErrorCode::kCount;  // nothing thrown
}

}  // namespace

TEST_CASE("linear placement gives contiguous blocks, the first E_p mod ep ranks one more",
          "[plan]") {
  for (int np = 1; np <= 40; ++np)
    for (int ep = 1; ep <= np; ++ep) {
      std::vector<int> owner(np, -1);
      int prev_end = 0;
      for (int e = 0; e < ep; ++e) {
        auto x = ep_rank_experts(np, ep, e, Placement::Linear);
        REQUIRE(!x.empty());
        CHECK(x.front() == prev_end);  // contiguous, in order
        for (size_t i = 1; i < x.size(); ++i) CHECK(x[i] == x[i - 1] + 1);
        CHECK(static_cast<int>(x.size()) == np / ep + (e < np % ep ? 1 : 0));
        prev_end = x.back() + 1;
        for (int p : x) owner[p] = e;
      }
      CHECK(prev_end == np);
      for (int o : owner) CHECK(o >= 0);
    }
}

TEST_CASE("round_robin gives rank e the experts p with p mod ep == e", "[plan]") {
  for (int np : {1, 7, 10, 64, 67})
    for (int ep = 1; ep <= std::min(np, 9); ++ep) {
      std::set<int> all;
      for (int e = 0; e < ep; ++e)
        for (int p : ep_rank_experts(np, ep, e, Placement::RoundRobin)) {
          CHECK(p % ep == e);
          CHECK(all.insert(p).second);
        }
      CHECK(static_cast<int>(all.size()) == np);
    }
}

TEST_CASE("plan: redundant experts map p -> p mod E, maps are consistent per rank", "[plan]") {
  PlanOptions o;
  o.tp = 2;
  o.ep = 3;
  o.redundant_experts = 3;
  o.placement = Placement::RoundRobin;
  Plan plan = plan_placement(profile(8, 64, 32), o);
  CHECK(plan.num_physical_experts == 11);
  CHECK(plan.world_size == 6);
  CHECK(plan.uneven);
  for (int layer : plan.moe_layers) {
    const auto& m = plan.physical_to_logical.at(layer);
    REQUIRE(m.size() == 11u);
    for (int p = 0; p < 11; ++p) CHECK(m[p] == p % 8);
  }
  REQUIRE(plan.ranks.size() == 6u);
  std::vector<int> holders(11, 0);
  for (const auto& r : plan.ranks) {
    CHECK(r.rank == r.ep_rank * 2 + r.tp_rank);
    CHECK(r.local_to_physical == plan.ranks[r.ep_rank * 2].local_to_physical);
    auto em = plan.expert_map(r.rank);
    int local = 0;
    for (int p = 0; p < 11; ++p) {
      if (em[p] >= 0) {
        CHECK(r.local_to_physical.at(em[p]) == p);
        ++local;
        if (r.tp_rank == 0) ++holders[p];
      }
    }
    CHECK(local == static_cast<int>(r.local_to_physical.size()));
  }
  for (int h : holders) CHECK(h == 1);  // each physical expert on exactly one EP rank
  CHECK(plan.placement_summary().find("4, 4, 3 (uneven)") != std::string::npos);
}

TEST_CASE("plan: TP slices follow vLLM's rule, with and without padding", "[plan]") {
  SECTION("tp divides I") {
    PlanOptions o;
    o.tp = 4;
    Plan plan = plan_placement(profile(4, 64, 32), o);
    CHECK(plan.intermediate.per_rank == 8);
    CHECK(plan.intermediate.per_rank_padded == 8);
    for (int t = 0; t < 4; ++t) {
      auto s = plan.intermediate.slice(t);
      CHECK(s.begin == 8 * t);
      CHECK(s.count == 8);
    }
  }
  SECTION("tp does not divide I: error without padding, zero tail with it") {
    PlanOptions o;
    o.tp = 4;
    CHECK(code_of([&] { plan_placement(profile(4, 64, 9), o); }) == ErrorCode::InvalidPlan);
    o.pad_intermediate_to = 4;
    Plan plan = plan_placement(profile(4, 64, 9), o);
    CHECK(plan.intermediate.per_rank == 3);          // ceil(9 / 4)
    CHECK(plan.intermediate.per_rank_padded == 4);   // round_up(3, 4)
    int64_t covered = 0;
    std::vector<int64_t> counts;
    for (int t = 0; t < 4; ++t) {
      auto s = plan.intermediate.slice(t);
      CHECK(s.begin == std::min<int64_t>(3 * t, 9));
      counts.push_back(s.count);
      covered += s.count;
      CHECK(s.padded == 4);
    }
    CHECK(counts == std::vector<int64_t>{3, 3, 3, 0});  // the last rank reads nothing
    CHECK(covered == 9);
  }
  SECTION("hidden padding") {
    PlanOptions o;
    o.pad_hidden_to = 128;
    Plan plan = plan_placement(profile(4, 100, 32), o);
    CHECK(plan.hidden_size == 100);
    CHECK(plan.hidden_size_padded == 128);
  }
  SECTION("shared experts use the same rule on their own width") {
    PlanOptions o;
    o.tp = 2;
    CHECK(code_of([&] { plan_placement(profile(4, 64, 32, 47), o); }) == ErrorCode::InvalidPlan);
    o.pad_intermediate_to = 16;
    Plan plan = plan_placement(profile(4, 64, 32, 47), o);
    CHECK(plan.shared.per_rank == 24);
    CHECK(plan.shared.per_rank_padded == 32);
    CHECK(plan.shared.slice(1).begin == 24);
    CHECK(plan.shared.slice(1).count == 23);
  }
}

TEST_CASE("plan: random option spreads keep every invariant", "[plan]") {
  std::mt19937 rng(7);
  for (int iter = 0; iter < 300; ++iter) {
    int E = 1 + rng() % 20, R = rng() % 6, I = 1 + rng() % 50;
    PlanOptions o;
    o.tp = 1 + rng() % 5;
    o.ep = 1 + rng() % (E + R);
    o.redundant_experts = R;
    o.placement = rng() % 2 ? Placement::Linear : Placement::RoundRobin;
    o.pad_intermediate_to = rng() % 3 == 0 ? 0 : 1 + rng() % 16;
    if (o.pad_intermediate_to == 0 && I % o.tp) {
      CHECK(code_of([&] { plan_placement(profile(E, 16, I), o); }) == ErrorCode::InvalidPlan);
      continue;
    }
    Plan plan = plan_placement(profile(E, 16, I), o);
    // The TP slices tile [0, I) in order; padded sizes are multiples of B and hold the slice.
    int64_t next = 0;
    for (int t = 0; t < o.tp; ++t) {
      auto s = plan.intermediate.slice(t);
      CHECK(s.begin == next);
      CHECK(s.count >= 0);
      CHECK(s.count <= s.padded);
      if (o.pad_intermediate_to) CHECK(s.padded % o.pad_intermediate_to == 0);
      next += s.count;
    }
    CHECK(next == I);
    std::vector<int> seen(E + R, 0);
    for (const auto& r : plan.ranks)
      if (r.tp_rank == 0)
        for (int p : r.local_to_physical) ++seen[p];
    for (int s : seen) CHECK(s == 1);
    CHECK(plan.uneven == ((E + R) % o.ep != 0));
  }
}

TEST_CASE("plan: errors name the problem", "[plan]") {
  PlanOptions o;
  o.ep = 9;
  CHECK(code_of([&] { plan_placement(profile(8, 64, 32), o); }) == ErrorCode::InvalidPlan);
  o.redundant_experts = 1;  // 9 physical experts now fit 9 EP ranks
  CHECK(code_of([&] { plan_placement(profile(8, 64, 32), o); }) == ErrorCode::kCount);
  PlanOptions bad_layer;
  bad_layer.layers = {7};
  CHECK(code_of([&] { plan_placement(profile(8, 64, 32), bad_layer); }) ==
        ErrorCode::InvalidArgument);
  PlanOptions tp0;
  tp0.tp = 0;
  CHECK(code_of([&] { plan_placement(profile(8, 64, 32), tp0); }) == ErrorCode::InvalidArgument);
  try {
    PlanOptions t3;
    t3.tp = 3;
    plan_placement(profile(8, 64, 32), t3);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("--tp 3 does not divide moe_intermediate_size 32") !=
          std::string::npos);
  }
}

TEST_CASE("expert map files: whole-model and per-layer maps, checked", "[plan]") {
  auto spec = parse_expert_map(nlohmann::json::parse(R"({"physical_to_logical": [3,2,1,0,0,1]})"),
                               "map.json");
  PlanOptions o;
  o.expert_map = spec;
  o.expert_map_file = "map.json";
  Plan plan = plan_placement(profile(4, 64, 32), o);
  CHECK(plan.redundant_experts == 2);  // implied by the length
  CHECK(plan.physical_to_logical.at(2) == std::vector<int32_t>{3, 2, 1, 0, 0, 1});

  o.redundant_experts = 3;  // contradicts the map
  CHECK(code_of([&] { plan_placement(profile(4, 64, 32), o); }) == ErrorCode::InvalidPlan);

  auto per_layer = parse_expert_map(
      nlohmann::json::parse(R"({"layers": {"1": [0,1,2,3,3], "3": [1,0,3,2,2]}})"), "m.json");
  PlanOptions pl;
  pl.expert_map = per_layer;
  Plan p2 = plan_placement(profile(4, 64, 32), pl);
  CHECK(p2.physical_to_logical.at(0) == std::vector<int32_t>{0, 1, 2, 3, 0});  // default p mod E
  CHECK(p2.physical_to_logical.at(3) == std::vector<int32_t>{1, 0, 3, 2, 2});

  // A logical expert without a replica, an out-of-range id, malformed JSON shapes.
  PlanOptions missing;
  missing.expert_map = parse_expert_map(nlohmann::json::parse(R"({"physical_to_logical": [0,1,2,2]})"), "x");
  CHECK(code_of([&] { plan_placement(profile(4, 64, 32), missing); }) == ErrorCode::InvalidPlan);
  PlanOptions range;
  range.expert_map = parse_expert_map(nlohmann::json::parse(R"({"physical_to_logical": [0,1,2,4]})"), "x");
  CHECK(code_of([&] { plan_placement(profile(4, 64, 32), range); }) == ErrorCode::InvalidPlan);
  CHECK(code_of([&] { parse_expert_map(nlohmann::json::parse("[1,2]"), "x"); }) ==
        ErrorCode::InvalidArgument);
  CHECK(code_of([&] { parse_expert_map(nlohmann::json::parse(R"({"layers": {"a": [0]}})"), "x"); }) ==
        ErrorCode::InvalidArgument);
}

TEST_CASE("layer lists", "[plan]") {
  CHECK(parse_layer_list("1,3-5") == std::vector<int>{1, 3, 4, 5});
  CHECK(parse_layer_list("5,1,1") == std::vector<int>{1, 5});
  CHECK(code_of([] { parse_layer_list("1,,2"); }) == ErrorCode::InvalidArgument);
  CHECK(code_of([] { parse_layer_list("3-1"); }) == ErrorCode::InvalidArgument);
  CHECK(code_of([] { parse_layer_list("x"); }) == ErrorCode::InvalidArgument);
  PlanOptions o;
  o.layers = parse_layer_list("1,3");
  CHECK(plan_placement(profile(4, 64, 32), o).moe_layers == std::vector<int>{1, 3});
}

TEST_CASE("enum names round-trip", "[plan]") {
  for (auto p : {Placement::Linear, Placement::RoundRobin})
    CHECK(placement_from_name(placement_name(p)) == p);
  for (auto w : {W13Order::GateUp, W13Order::UpGate})
    CHECK(w13_order_from_name(w13_order_name(w)) == w);
  CHECK_FALSE(placement_from_name("random").has_value());
}
