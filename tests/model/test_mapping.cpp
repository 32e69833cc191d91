// The synthetic writer against hf-layouts.md (tensor names, dtypes, shapes and config fields,
// copied literally from the observed transformers 5.17 output), and ExpertMapping against the
// generator: every value read through the mapping equals the value the generator wrote.
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <set>

#include "core/error.h"
#include "io/checkpoint.h"
#include "mapping/expert_mapping.h"
#include "model/synthetic.h"
#include "support/temp_dir.h"

using namespace moe;
using nlohmann::json;

namespace {

uint64_t fresh_seed() {
  static const uint64_t seed = (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  return seed;
}

struct HfLayout {
  Family family;
  int experts, intermediate, shared, dense_mlp;
  const char* config_fields;  // "config.json MoE fields" of hf-layouts.md
  std::vector<std::pair<std::string, std::vector<int64_t>>> tensors;  // layer 1, E -> each expert
};

// hf-layouts.md, H = 64, two layers, BF16.
const std::vector<HfLayout>& hf_layouts() {
  static const std::vector<HfLayout> k = {
      {Family::Mixtral, 4, 96, 0, 96,
       R"({"hidden_size": 64, "intermediate_size": 96, "num_experts_per_tok": 2, "num_local_experts": 4, "output_router_logits": false, "router_aux_loss_coef": 0.001, "router_jitter_noise": 0.0})",
       {{"model.layers.1.block_sparse_moe.experts.E.w1.weight", {96, 64}},
        {"model.layers.1.block_sparse_moe.experts.E.w2.weight", {64, 96}},
        {"model.layers.1.block_sparse_moe.experts.E.w3.weight", {96, 64}},
        {"model.layers.1.block_sparse_moe.gate.weight", {4, 64}}}},
      {Family::Qwen2Moe, 4, 32, 48, 96,
       R"({"decoder_sparse_step": 1, "hidden_size": 64, "intermediate_size": 96, "mlp_only_layers": [], "moe_intermediate_size": 32, "norm_topk_prob": false, "num_experts": 4, "num_experts_per_tok": 2, "output_router_logits": false, "router_aux_loss_coef": 0.001, "shared_expert_intermediate_size": 48})",
       {{"model.layers.1.mlp.experts.E.down_proj.weight", {64, 32}},
        {"model.layers.1.mlp.experts.E.gate_proj.weight", {32, 64}},
        {"model.layers.1.mlp.experts.E.up_proj.weight", {32, 64}},
        {"model.layers.1.mlp.gate.weight", {4, 64}},
        {"model.layers.1.mlp.shared_expert.down_proj.weight", {64, 48}},
        {"model.layers.1.mlp.shared_expert.gate_proj.weight", {48, 64}},
        {"model.layers.1.mlp.shared_expert.up_proj.weight", {48, 64}},
        {"model.layers.1.mlp.shared_expert_gate.weight", {1, 64}}}},
      {Family::Qwen3Moe, 4, 32, 0, 96,
       R"({"decoder_sparse_step": 1, "hidden_size": 64, "intermediate_size": 96, "mlp_only_layers": [], "moe_intermediate_size": 32, "norm_topk_prob": false, "num_experts_per_tok": 2, "num_local_experts": 4, "output_router_logits": false, "router_aux_loss_coef": 0.001})",
       {{"model.layers.1.mlp.experts.E.down_proj.weight", {64, 32}},
        {"model.layers.1.mlp.experts.E.gate_proj.weight", {32, 64}},
        {"model.layers.1.mlp.experts.E.up_proj.weight", {32, 64}},
        {"model.layers.1.mlp.gate.weight", {4, 64}}}},
      {Family::DeepseekV3, 8, 32, 32, 96,
       R"({"first_k_dense_replace": 1, "hidden_size": 64, "intermediate_size": 96, "moe_intermediate_size": 32, "n_group": 2, "n_routed_experts": 8, "n_shared_experts": 1, "norm_topk_prob": true, "num_experts_per_tok": 2, "rope_interleave": true, "routed_scaling_factor": 2.5, "topk_group": 1})",
       {{"model.layers.1.mlp.experts.E.down_proj.weight", {64, 32}},
        {"model.layers.1.mlp.experts.E.gate_proj.weight", {32, 64}},
        {"model.layers.1.mlp.experts.E.up_proj.weight", {32, 64}},
        {"model.layers.1.mlp.gate.e_score_correction_bias", {8}},
        {"model.layers.1.mlp.gate.weight", {8, 64}},
        {"model.layers.1.mlp.shared_experts.down_proj.weight", {64, 32}},
        {"model.layers.1.mlp.shared_experts.gate_proj.weight", {32, 64}},
        {"model.layers.1.mlp.shared_experts.up_proj.weight", {32, 64}}}},
      {Family::GptOss, 4, 96, 0, 96,
       R"({"hidden_size": 64, "intermediate_size": 96, "num_experts_per_tok": 2, "num_local_experts": 4, "output_router_logits": false, "router_aux_loss_coef": 0.001})",
       {{"model.layers.1.mlp.experts.down_proj", {4, 96, 64}},
        {"model.layers.1.mlp.experts.down_proj_bias", {4, 64}},
        {"model.layers.1.mlp.experts.gate_up_proj", {4, 64, 192}},
        {"model.layers.1.mlp.experts.gate_up_proj_bias", {4, 192}},
        {"model.layers.1.mlp.router.bias", {4}},
        {"model.layers.1.mlp.router.weight", {4, 64}}}},
      {Family::Olmoe, 4, 96, 0, 96,
       R"({"hidden_size": 64, "intermediate_size": 96, "norm_topk_prob": false, "num_experts": 4, "num_experts_per_tok": 2, "output_router_logits": false, "router_aux_loss_coef": 0.01})",
       {{"model.layers.1.mlp.experts.E.down_proj.weight", {64, 96}},
        {"model.layers.1.mlp.experts.E.gate_proj.weight", {96, 64}},
        {"model.layers.1.mlp.experts.E.up_proj.weight", {96, 64}},
        {"model.layers.1.mlp.gate.weight", {4, 64}}}},
      {Family::GraniteMoe, 4, 96, 0, 96,
       R"({"hidden_size": 64, "intermediate_size": 96, "logits_scaling": 1.0, "num_experts_per_tok": 2, "num_local_experts": 4, "output_router_logits": false, "router_aux_loss_coef": 0.001})",
       {{"model.layers.1.block_sparse_moe.input_linear.weight", {4, 192, 64}},
        {"model.layers.1.block_sparse_moe.output_linear.weight", {4, 64, 96}},
        {"model.layers.1.block_sparse_moe.router.layer.weight", {4, 64}}}},
      {Family::Llama4, 4, 32, 32, 64,
       R"({"hidden_size": 64, "interleave_moe_layer_step": 1, "intermediate_size": 32, "intermediate_size_mlp": 64, "moe_layers": [0, 1], "num_experts_per_tok": 1, "num_local_experts": 4, "output_router_logits": false, "router_aux_loss_coef": 0.001, "router_jitter_noise": 0.0})",
       {{"model.layers.1.feed_forward.experts.down_proj", {4, 32, 64}},
        {"model.layers.1.feed_forward.experts.gate_up_proj", {4, 64, 64}},
        {"model.layers.1.feed_forward.router.weight", {4, 64}},
        {"model.layers.1.feed_forward.shared_expert.down_proj.weight", {64, 32}},
        {"model.layers.1.feed_forward.shared_expert.gate_proj.weight", {32, 64}},
        {"model.layers.1.feed_forward.shared_expert.up_proj.weight", {32, 64}}}},
      {Family::Glm4Moe, 8, 32, 32, 96,
       R"({"first_k_dense_replace": 1, "hidden_size": 64, "intermediate_size": 96, "moe_intermediate_size": 32, "n_group": 2, "n_routed_experts": 8, "n_shared_experts": 1, "norm_topk_prob": true, "num_experts_per_tok": 2, "routed_scaling_factor": 1.0, "topk_group": 1})",
       {{"model.layers.1.mlp.experts.E.down_proj.weight", {64, 32}},
        {"model.layers.1.mlp.experts.E.gate_proj.weight", {32, 64}},
        {"model.layers.1.mlp.experts.E.up_proj.weight", {32, 64}},
        {"model.layers.1.mlp.gate.e_score_correction_bias", {8}},
        {"model.layers.1.mlp.gate.weight", {8, 64}},
        {"model.layers.1.mlp.shared_experts.down_proj.weight", {64, 32}},
        {"model.layers.1.mlp.shared_experts.gate_proj.weight", {32, 64}},
        {"model.layers.1.mlp.shared_experts.up_proj.weight", {32, 64}}}},
      {Family::Ernie45Moe, 4, 32, 64, 96,
       R"({"hidden_size": 64, "intermediate_size": 96, "moe_intermediate_size": 32, "moe_k": 2, "moe_layer_end_index": 1, "moe_layer_interval": 1, "moe_layer_start_index": 1, "moe_norm_min": 1e-12, "moe_num_experts": 4, "moe_num_shared_experts": 2, "output_router_logits": false, "router_aux_loss_coef": 0.001})",
       {{"model.layers.1.mlp.experts.E.down_proj.weight", {64, 32}},
        {"model.layers.1.mlp.experts.E.gate_proj.weight", {32, 64}},
        {"model.layers.1.mlp.experts.E.up_proj.weight", {32, 64}},
        {"model.layers.1.mlp.gate.weight", {4, 64}},
        {"model.layers.1.mlp.moe_statics.e_score_correction_bias", {1, 4}},
        {"model.layers.1.mlp.shared_experts.down_proj.weight", {64, 64}},
        {"model.layers.1.mlp.shared_experts.gate_proj.weight", {64, 64}},
        {"model.layers.1.mlp.shared_experts.up_proj.weight", {64, 64}}}},
  };
  return k;
}

// Compares a mapped view against the generator's values: max abs error and relative L2 in
// float64 (the mapping is lossless, so both must be exactly 0).
void check_same(const MatrixView& v, const std::vector<float>& want, const std::string& what) {
  CAPTURE(what);
  REQUIRE(static_cast<size_t>(v.rows * v.cols) == want.size());
  double max_abs = 0, num = 0, den = 0;
  bool all_zero = true;
  for (int64_t r = 0; r < v.rows; ++r)
    for (int64_t c = 0; c < v.cols; ++c) {
      double got = v.at(r, c), ref = want[r * v.cols + c];
      max_abs = std::max(max_abs, std::fabs(got - ref));
      num += (got - ref) * (got - ref);
      den += ref * ref;
      all_zero = all_zero && ref == 0.0;
    }
  CHECK_FALSE(all_zero);
  CHECK(max_abs == 0.0);
  CHECK(std::sqrt(num / den) == 0.0);
}

}  // namespace

TEST_CASE("synthetic checkpoints match hf-layouts.md names, shapes, dtypes and config fields",
          "[model][synthetic]") {
  for (const auto& hf : hf_layouts()) {
    CAPTURE(family_name(hf.family));
    test::TempDir dir;
    SyntheticSpec s;
    s.family = hf.family;
    s.num_layers = 2;
    s.hidden_size = 64;
    s.num_experts = hf.experts;
    s.top_k = hf.family == Family::Llama4 ? 1 : 2;
    s.moe_intermediate_size = hf.intermediate;
    s.shared_intermediate_size = hf.shared;
    s.dense_intermediate_size = hf.dense_mlp;
    s.seed = fresh_seed();
    write_synthetic_checkpoint(dir.path(), s);
    Checkpoint ck = Checkpoint::open(dir.path());
    // config fields exactly as transformers writes them
    json want = json::parse(hf.config_fields);
    for (auto it = want.begin(); it != want.end(); ++it) {
      CAPTURE(it.key());
      REQUIRE(ck.config().contains(it.key()));
      CHECK(ck.config().at(it.key()) == it.value());
    }
    // the MoE tensors of layer 1: exactly the listed ones
    std::set<std::string> expected;
    for (const auto& [tmpl, shape] : hf.tensors) {
      for (int e = 0; e < (tmpl.find(".E.") != std::string::npos ? hf.experts : 1); ++e) {
        std::string name = tmpl;
        auto pos = name.find(".E.");
        if (pos != std::string::npos) name.replace(pos, 3, "." + std::to_string(e) + ".");
        expected.insert(name);
        CAPTURE(name);
        REQUIRE(ck.has(name));
        auto v = ck.view(name);
        CHECK(v.dtype == DType::BF16);
        CHECK(v.shape == Shape(shape.begin(), shape.end()));
      }
    }
    const std::string block = hf.tensors.back().first.substr(0, hf.tensors.back().first.find('.', 15) + 1);
    std::set<std::string> present;  // everything under the MoE block of layer 1
    for (const auto& n : ck.names())
      if (n.rfind(block, 0) == 0) present.insert(n);
    CHECK(present == expected);
  }
}

TEST_CASE("ExpertMapping reads back exactly what the generator wrote, every family",
          "[model][mapping]") {
  const DType dtypes[] = {DType::BF16, DType::F16, DType::F32};
  for (int f = 0; f < static_cast<int>(Family::kCount); ++f) {
    for (bool multimodal : {false, true}) {
      if (multimodal && static_cast<Family>(f) != Family::Llama4) continue;
      SyntheticSpec s;
      s.family = static_cast<Family>(f);
      s.dtype = dtypes[f % 3];
      s.num_layers = 3;
      s.hidden_size = 24;  // odd-ish sizes so rows / columns cannot be confused
      s.moe_intermediate_size = 20;
      s.dense_intermediate_size = 36;
      s.num_experts = 6;
      s.top_k = 2;
      s.num_shards = 1 + f % 3;
      s.multimodal = multimodal;
      s.seed = fresh_seed() + f;
      CAPTURE(family_name(s.family), dtype_name(s.dtype), s.num_shards, multimodal, s.seed);
      test::TempDir dir;
      write_synthetic_checkpoint(dir.path(), s);
      Checkpoint ck = Checkpoint::open(dir.path());
      ModelProfile p = profile_from_config(ck.config(), dir / "config.json");
      SyntheticSpec r = resolve_spec(s);
      CHECK(p.num_experts == 6);
      CHECK(p.shared_intermediate_size == r.shared_intermediate_size);
      ExpertMapping m(ck, p);
      REQUIRE_FALSE(p.moe_layers.empty());
      for (int L : p.moe_layers) {
        for (int e = 0; e < p.num_experts; ++e)
          for (Proj pr : {Proj::Gate, Proj::Up, Proj::Down}) {
            MatrixView v = m.expert_weight(L, e, pr);
            CHECK(v.rows == (pr == Proj::Down ? 24 : 20));
            check_same(v, synthetic_values(s, SynthTensor::ExpertWeight, L, e, pr),
                       "expert " + std::to_string(e) + " " + proj_name(pr));
            auto b = m.expert_bias(L, e, pr);
            CHECK(b.has_value() == p.has_expert_bias);
            if (b) check_same(*b, synthetic_values(s, SynthTensor::ExpertBias, L, e, pr), "bias");
          }
        check_same(m.router_weight(L), synthetic_values(s, SynthTensor::Router, L), "router");
        auto rb = m.router_bias(L);
        CHECK(rb.has_value() == p.routing.has_router_bias);
        if (rb) check_same(*rb, synthetic_values(s, SynthTensor::RouterBias, L), "router bias");
        auto cb = m.correction_bias(L);
        CHECK(cb.has_value() == p.routing.has_correction_bias);
        if (cb) check_same(*cb, synthetic_values(s, SynthTensor::CorrectionBias, L), "correction");
        for (Proj pr : {Proj::Gate, Proj::Up, Proj::Down}) {
          auto sw = m.shared_weight(L, pr);
          CHECK(sw.has_value() == (p.shared_intermediate_size > 0));
          if (sw) check_same(*sw, synthetic_values(s, SynthTensor::SharedWeight, L, -1, pr), "shared");
        }
        auto sg = m.shared_expert_gate(L);
        CHECK(sg.has_value() == p.has_shared_expert_gate);
        if (sg) check_same(*sg, synthetic_values(s, SynthTensor::SharedExpertGate, L), "shared gate");
        for (const auto& n : m.layer_tensor_names(L)) {
          CAPTURE(n);
          CHECK(ck.has(n));
          CHECK((n.rfind("language_model.", 0) == 0) == multimodal);
        }
      }
    }
  }
}

TEST_CASE("ExpertMapping rejects missing tensors and wrong shapes by name", "[model][mapping]") {
  test::TempDir dir;
  SyntheticSpec s;
  s.family = Family::GptOss;
  s.num_layers = 1;
  s.seed = fresh_seed();
  write_synthetic_checkpoint(dir.path(), s);
  Checkpoint ck = Checkpoint::open(dir.path());
  ModelProfile p = profile_from_config(ck.config(), "config.json");
  ModelProfile wrong_i = p;
  wrong_i.moe_intermediate_size += 1;
  ExpertMapping m(ck, wrong_i);
  try {
    m.expert_weight(0, 1, Proj::Up);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::ShapeMismatch);
    CHECK(e.tensor() == "model.layers.0.mlp.experts.gate_up_proj");
    CHECK_THAT(e.what(), Catch::Contains("[8, 64, 64]"));
  }
  ModelProfile two_layers = p;
  two_layers.moe_layers = {0, 1};
  ExpertMapping m2(ck, two_layers);
  try {
    m2.router_weight(1);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::MissingTensor);
    CHECK_THAT(e.what(), Catch::Contains("model.layers.1.mlp.router.weight"));
  }
}
