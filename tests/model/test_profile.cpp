// Profiles of every family from config.json: released spellings (formats.md 9.1) and the
// spellings transformers 5.17 writes (hf-layouts.md), MoE-layer rules, routing, quantization
// recognition, config errors and the JSON round trip.
#include <catch2/catch.hpp>
#include <string>

#include "core/error.h"
#include "model/profile.h"
#include "model/synthetic.h"

using namespace moe;
using nlohmann::json;

namespace {

ModelProfile read(const json& cfg) { return profile_from_config(cfg, "/m/config.json"); }

// Runs f, expects a moe::Error with `code` whose message contains every string of `parts`.
template <typename F>
void expect_error(F&& f, ErrorCode code, std::initializer_list<const char*> parts) {
  try {
    f();
    FAIL("no error thrown");
  } catch (const Error& e) {
    CHECK(e.code() == code);
    for (const char* p : parts) CHECK_THAT(e.what(), Catch::Contains(p));
  }
}

std::vector<int> range(int b, int e, int step = 1) {
  std::vector<int> v;
  for (int i = b; i < e; i += step) v.push_back(i);
  return v;
}

}  // namespace

TEST_CASE("released configs of every family read into the expected profile", "[model][profile]") {
  SECTION("mixtral") {
    auto p = read({{"model_type", "mixtral"}, {"num_hidden_layers", 32}, {"hidden_size", 4096},
                   {"intermediate_size", 14336}, {"num_local_experts", 8}, {"num_experts_per_tok", 2},
                   {"hidden_act", "silu"}});
    CHECK(p.family == Family::Mixtral);
    CHECK(p.num_experts == 8);
    CHECK(p.top_k == 2);
    CHECK(p.moe_intermediate_size == 14336);
    CHECK(p.moe_layers == range(0, 32));
    CHECK(p.shared_intermediate_size == 0);
    CHECK(p.routing.score == ScoreFunc::Softmax);
    CHECK(p.routing.renormalize);
    CHECK(p.activation == Activation::SiluAndMul);
    CHECK(p.quant.method == QuantMethod::None);
    CHECK(p.quant.name == "none");
  }
  SECTION("qwen2_moe: shared expert with gate, renorm off by default") {
    auto p = read({{"model_type", "qwen2_moe"}, {"num_hidden_layers", 24}, {"hidden_size", 2048},
                   {"intermediate_size", 5632}, {"moe_intermediate_size", 1408}, {"num_experts", 60},
                   {"num_experts_per_tok", 4}, {"shared_expert_intermediate_size", 5632},
                   {"decoder_sparse_step", 1}, {"mlp_only_layers", json::array()}});
    CHECK(p.family == Family::Qwen2Moe);
    CHECK(p.num_experts == 60);
    CHECK(p.moe_intermediate_size == 1408);
    CHECK(p.shared_intermediate_size == 5632);
    CHECK(p.has_shared_expert_gate);
    CHECK_FALSE(p.routing.renormalize);
    CHECK(p.moe_layers.size() == 24);
  }
  SECTION("qwen3_moe: norm_topk_prob true") {
    auto p = read({{"model_type", "qwen3_moe"}, {"num_hidden_layers", 48}, {"hidden_size", 2048},
                   {"moe_intermediate_size", 768}, {"num_experts", 128}, {"num_experts_per_tok", 8},
                   {"norm_topk_prob", true}});
    CHECK(p.num_experts == 128);
    CHECK(p.top_k == 8);
    CHECK(p.routing.renormalize);
    CHECK_FALSE(p.has_shared_expert_gate);
    CHECK(p.shared_intermediate_size == 0);
  }
  SECTION("deepseek_v2: softmax, group_limited_greedy with max group score, scaling") {
    auto p = read({{"model_type", "deepseek_v2"}, {"num_hidden_layers", 60}, {"hidden_size", 5120},
                   {"moe_intermediate_size", 1536}, {"n_routed_experts", 160}, {"n_shared_experts", 2},
                   {"num_experts_per_tok", 6}, {"first_k_dense_replace", 1}, {"moe_layer_freq", 1},
                   {"topk_method", "group_limited_greedy"}, {"n_group", 8}, {"topk_group", 3},
                   {"norm_topk_prob", false}, {"routed_scaling_factor", 16.0}, {"scoring_func", "softmax"}});
    CHECK(p.family == Family::DeepseekV2);
    CHECK(p.num_experts == 160);
    CHECK(p.shared_intermediate_size == 2 * 1536);
    CHECK(p.moe_layers == range(1, 60));
    CHECK(p.routing.score == ScoreFunc::Softmax);
    CHECK(p.routing.n_group == 8);
    CHECK(p.routing.topk_group == 3);
    CHECK(p.routing.group_score == GroupScore::Max);
    CHECK_FALSE(p.routing.renormalize);
    CHECK(p.routing.routed_scaling_factor == 16.0f);
    CHECK_FALSE(p.routing.has_correction_bias);
  }
  SECTION("deepseek_v2 greedy ignores n_group (V2-Lite)") {
    auto p = read({{"model_type", "deepseek_v2"}, {"num_hidden_layers", 27}, {"hidden_size", 2048},
                   {"moe_intermediate_size", 1408}, {"n_routed_experts", 64}, {"n_shared_experts", 2},
                   {"num_experts_per_tok", 6}, {"first_k_dense_replace", 1}, {"topk_method", "greedy"},
                   {"n_group", 8}, {"topk_group", 3}});
    CHECK(p.routing.n_group == 1);
    CHECK(p.routing.topk_group == 1);
  }
  SECTION("deepseek_v3: sigmoid, correction bias, grouped sum-of-top-2, scaling 2.5") {
    auto p = read({{"model_type", "deepseek_v3"}, {"num_hidden_layers", 61}, {"hidden_size", 7168},
                   {"moe_intermediate_size", 2048}, {"n_routed_experts", 256}, {"n_shared_experts", 1},
                   {"num_experts_per_tok", 8}, {"first_k_dense_replace", 3}, {"moe_layer_freq", 1},
                   {"scoring_func", "sigmoid"}, {"topk_method", "noaux_tc"}, {"n_group", 8},
                   {"topk_group", 4}, {"norm_topk_prob", true}, {"routed_scaling_factor", 2.5},
                   {"num_nextn_predict_layers", 1}});
    CHECK(p.family == Family::DeepseekV3);
    CHECK(p.moe_layers == range(3, 61));  // MTP layer 61 is not a model layer
    CHECK(p.shared_intermediate_size == 2048);
    CHECK(p.routing.score == ScoreFunc::Sigmoid);
    CHECK(p.routing.has_correction_bias);
    CHECK(p.routing.group_score == GroupScore::SumTop2);
    CHECK(p.routing.n_group == 8);
    CHECK(p.routing.topk_group == 4);
    CHECK(p.routing.renormalize);
    CHECK(p.routing.routed_scaling_factor == 2.5f);
  }
  SECTION("glm4_moe: the DeepSeek-V3 router") {
    auto p = read({{"model_type", "glm4_moe"}, {"num_hidden_layers", 46}, {"hidden_size", 4096},
                   {"moe_intermediate_size", 1408}, {"n_routed_experts", 128}, {"n_shared_experts", 1},
                   {"num_experts_per_tok", 8}, {"first_k_dense_replace", 1}, {"n_group", 1},
                   {"topk_group", 1}, {"norm_topk_prob", true}, {"routed_scaling_factor", 1.0}});
    CHECK(p.family == Family::Glm4Moe);
    CHECK(p.moe_layers == range(1, 46));
    CHECK(p.routing.score == ScoreFunc::Sigmoid);
    CHECK(p.routing.has_correction_bias);
    CHECK(p.routing.group_score == GroupScore::SumTop2);
    CHECK(p.shared_intermediate_size == 1408);
  }
  SECTION("olmoe") {
    auto p = read({{"model_type", "olmoe"}, {"num_hidden_layers", 16}, {"hidden_size", 2048},
                   {"intermediate_size", 1024}, {"num_experts", 64}, {"num_experts_per_tok", 8}});
    CHECK(p.family == Family::Olmoe);
    CHECK(p.num_experts == 64);
    CHECK(p.moe_intermediate_size == 1024);
    CHECK_FALSE(p.routing.renormalize);
    CHECK(p.moe_layers.size() == 16);
  }
  SECTION("granitemoe: softmax over the top-k = softmax + renormalize") {
    auto p = read({{"model_type", "granitemoe"}, {"num_hidden_layers", 24}, {"hidden_size", 1024},
                   {"intermediate_size", 512}, {"num_local_experts", 32}, {"num_experts_per_tok", 8}});
    CHECK(p.family == Family::GraniteMoe);
    CHECK(p.routing.renormalize);
    CHECK(p.routing.score == ScoreFunc::Softmax);
  }
  SECTION("llama4 multimodal wrapper with text_config") {
    json text = {{"model_type", "llama4_text"}, {"num_hidden_layers", 48}, {"hidden_size", 5120},
                 {"intermediate_size", 8192}, {"intermediate_size_mlp", 16384},
                 {"num_local_experts", 16}, {"num_experts_per_tok", 1},
                 {"interleave_moe_layer_step", 1}};
    auto p = read({{"model_type", "llama4"}, {"text_config", text},
                   {"vision_config", {{"hidden_size", 1408}}}});
    CHECK(p.family == Family::Llama4);
    CHECK(p.model_type == "llama4");
    CHECK(p.num_experts == 16);
    CHECK(p.top_k == 1);
    CHECK(p.moe_intermediate_size == 8192);
    CHECK(p.shared_intermediate_size == 8192);
    CHECK(p.moe_layers == range(0, 48));
    CHECK(p.routing.score == ScoreFunc::Sigmoid);
    CHECK_FALSE(p.routing.renormalize);
    CHECK(p.routing.weight_on_input);
  }
  SECTION("gpt_oss: router bias, expert biases, clamped swiglu from swiglu_limit") {
    auto p = read({{"model_type", "gpt_oss"}, {"num_hidden_layers", 36}, {"hidden_size", 2880},
                   {"intermediate_size", 2880}, {"num_local_experts", 128}, {"experts_per_token", 4},
                   {"swiglu_limit", 6.5}, {"hidden_act", "silu"}});
    CHECK(p.family == Family::GptOss);
    CHECK(p.top_k == 4);
    CHECK(p.activation == Activation::SwigluOai);
    CHECK(p.swiglu_limit == 6.5f);
    CHECK(p.swiglu_alpha == 1.702f);
    CHECK(p.has_expert_bias);
    CHECK(p.routing.has_router_bias);
    CHECK(p.routing.renormalize);
  }
  SECTION("ernie4_5_moe: correction bias, renorm with moe_norm_min") {
    auto p = read({{"model_type", "ernie4_5_moe"}, {"num_hidden_layers", 28}, {"hidden_size", 2560},
                   {"intermediate_size", 12288}, {"moe_intermediate_size", 1536}, {"moe_num_experts", 64},
                   {"moe_k", 6}, {"moe_num_shared_experts", 2}, {"moe_layer_start_index", 1},
                   {"moe_layer_end_index", 27}, {"moe_layer_interval", 1}, {"moe_norm_min", 1e-12},
                   {"hidden_act", "silu"}});
    CHECK(p.family == Family::Ernie45Moe);
    CHECK(p.num_experts == 64);
    CHECK(p.top_k == 6);
    CHECK(p.shared_intermediate_size == 2 * 1536);
    CHECK(p.moe_layers == range(1, 28));
    CHECK(p.routing.has_correction_bias);
    CHECK(p.routing.renormalize);
    CHECK(p.routing.renorm_min == 1e-12f);
  }
}

TEST_CASE("transformers 5.17 spellings (hf-layouts.md) read the same", "[model][profile]") {
  // Qwen3-MoE as transformers 5.17 writes it: num_local_experts instead of num_experts.
  auto q3 = read({{"model_type", "qwen3_moe"}, {"num_hidden_layers", 2}, {"hidden_size", 64},
                  {"intermediate_size", 96}, {"moe_intermediate_size", 32}, {"num_local_experts", 4},
                  {"num_experts_per_tok", 2}, {"norm_topk_prob", false}, {"decoder_sparse_step", 1},
                  {"mlp_only_layers", json::array()}});
  CHECK(q3.num_experts == 4);
  CHECK(q3.moe_intermediate_size == 32);
  // ERNIE with the generic spellings.
  auto er = read({{"model_type", "ernie4_5_moe"}, {"num_hidden_layers", 3}, {"hidden_size", 64},
                  {"moe_intermediate_size", 32}, {"num_experts", 6}, {"num_experts_per_tok", 3}});
  CHECK(er.num_experts == 6);
  CHECK(er.top_k == 3);
  CHECK(er.moe_layers == range(1, 3));  // default start 1, end -1 = last layer
  // Every family's synthetic config (written with the 5.17 spellings) reads back its sizes.
  for (int f = 0; f < static_cast<int>(Family::kCount); ++f) {
    SyntheticSpec s;
    s.family = static_cast<Family>(f);
    s.num_layers = 3;
    s.hidden_size = 40;
    s.moe_intermediate_size = 24;
    s.num_experts = 6;
    s.top_k = 3;
    CAPTURE(family_name(s.family));
    auto p = read(synthetic_config(s));
    CHECK(p.family == s.family);
    CHECK(p.num_layers == 3);
    CHECK(p.hidden_size == 40);
    CHECK(p.moe_intermediate_size == 24);
    CHECK(p.num_experts == 6);
    CHECK(p.top_k == 3);
    SyntheticSpec r = resolve_spec(s);
    CHECK(p.shared_intermediate_size == r.shared_intermediate_size);
    CHECK(p.moe_layers == range(r.first_dense_layers, 3));
  }
}

TEST_CASE("MoE-layer rules", "[model][profile]") {
  json base = {{"num_hidden_layers", 10}, {"hidden_size", 64}, {"moe_intermediate_size", 32},
               {"intermediate_size", 96}, {"num_experts_per_tok", 2}};
  SECTION("qwen: mlp_only_layers and decoder_sparse_step") {
    json c = base;
    c["model_type"] = "qwen3_moe";
    c["num_experts"] = 8;
    c["decoder_sparse_step"] = 2;
    c["mlp_only_layers"] = {3, 5};
    CHECK(read(c).moe_layers == std::vector<int>{1, 7, 9});
    c["num_hidden_layers"] = 4;
    c["decoder_sparse_step"] = 1;
    c["mlp_only_layers"] = {0};
    CHECK(read(c).moe_layers == std::vector<int>{1, 2, 3});
    c["decoder_sparse_step"] = 0;
    expect_error([&] { read(c); }, ErrorCode::InvalidConfig, {"decoder_sparse_step"});
  }
  SECTION("deepseek: first_k_dense_replace and moe_layer_freq") {
    json c = base;
    c["model_type"] = "deepseek_v3";
    c["n_routed_experts"] = 8;
    c["first_k_dense_replace"] = 3;
    CHECK(read(c).moe_layers == range(3, 10));
    c["moe_layer_freq"] = 2;
    CHECK(read(c).moe_layers == std::vector<int>{4, 6, 8});
    c.erase("first_k_dense_replace");
    c.erase("moe_layer_freq");
    CHECK(read(c).moe_layers == range(0, 10));
  }
  SECTION("glm4_moe: first_k_dense_replace") {
    json c = base;
    c["model_type"] = "glm4_moe";
    c["n_routed_experts"] = 8;
    c["first_k_dense_replace"] = 1;
    CHECK(read(c).moe_layers == range(1, 10));
  }
  SECTION("llama4: moe_layers list, else interleave_moe_layer_step") {
    json c = base;
    c["model_type"] = "llama4_text";
    c["num_local_experts"] = 8;
    c["intermediate_size"] = 32;
    c["interleave_moe_layer_step"] = 2;
    CHECK(read(c).moe_layers == std::vector<int>{1, 3, 5, 7, 9});
    c["interleave_moe_layer_step"] = 4;
    CHECK(read(c).moe_layers == std::vector<int>{3, 7});
    c["moe_layers"] = {0, 2, 9};
    CHECK(read(c).moe_layers == std::vector<int>{0, 2, 9});
    c["moe_layers"] = {0, "x"};
    expect_error([&] { read(c); }, ErrorCode::InvalidConfig, {"config.json", "moe_layers"});
  }
  SECTION("ernie: start / end / interval") {
    json c = base;
    c["model_type"] = "ernie4_5_moe";
    c["moe_num_experts"] = 8;
    c["moe_k"] = 2;
    c["moe_layer_start_index"] = 2;
    c["moe_layer_end_index"] = 8;
    c["moe_layer_interval"] = 2;
    CHECK(read(c).moe_layers == std::vector<int>{3, 5, 7});
    c["moe_layer_end_index"] = -1;
    c["moe_layer_interval"] = 1;
    CHECK(read(c).moe_layers == range(2, 10));
  }
  SECTION("all layers: mixtral, olmoe, granitemoe, gpt_oss") {
    for (const char* mt : {"mixtral", "olmoe", "granitemoe", "gpt_oss"}) {
      json c = base;
      c["model_type"] = mt;
      c["num_local_experts"] = 8;
      c["num_experts"] = 8;
      CHECK(read(c).moe_layers == range(0, 10));
    }
  }
}

TEST_CASE("activation from hidden_act", "[model][profile]") {
  json c = {{"model_type", "mixtral"}, {"num_hidden_layers", 1}, {"hidden_size", 8},
            {"intermediate_size", 8}, {"num_local_experts", 2}, {"num_experts_per_tok", 1}};
  CHECK(read(c).activation == Activation::SiluAndMul);  // default
  c["hidden_act"] = "gelu_pytorch_tanh";
  CHECK(read(c).activation == Activation::GeluAndMul);
  c["hidden_act"] = "relu";
  expect_error([&] { read(c); }, ErrorCode::InvalidConfig, {"hidden_act", "relu"});
}

TEST_CASE("quantization_config recognition", "[model][profile][quant]") {
  json c = {{"model_type", "qwen3_moe"}, {"num_hidden_layers", 1}, {"hidden_size", 8},
            {"moe_intermediate_size", 8}, {"num_experts", 2}, {"num_experts_per_tok", 1}};
  struct Case {
    json qc;
    QuantMethod method;
    const char* name;
  };
  const Case cases[] = {
      {{{"quant_method", "compressed-tensors"},
        {"format", "pack-quantized"},
        {"config_groups",
         {{"group_0",
           {{"targets", {"Linear"}},
            {"weights",
             {{"num_bits", 4}, {"type", "int"}, {"symmetric", true}, {"strategy", "group"},
              {"group_size", 128}}}}}}}},
       QuantMethod::CompressedTensors, "compressed-tensors pack-quantized int4 group g128"},
      {{{"quant_method", "fp8"}, {"fmt", "e4m3"}, {"activation_scheme", "dynamic"},
        {"weight_block_size", {128, 128}}},
       QuantMethod::Fp8Block, "fp8 e4m3 block 128x128, activations dynamic"},
      {{{"quant_method", "modelopt"}, {"quant_algo", "NVFP4"}}, QuantMethod::ModelOpt, "modelopt NVFP4"},
      {{{"quant_method", "mxfp4"}}, QuantMethod::Mxfp4, "mxfp4 e2m1, e8m0 scale per 32"},
      {{{"quant_method", "bitsandbytes"}, {"load_in_4bit", true}, {"bnb_4bit_quant_type", "nf4"},
        {"bnb_4bit_use_double_quant", true}},
       QuantMethod::BitsAndBytes, "bitsandbytes nf4 double-quant"},
      {{{"quant_method", "gptq"}, {"bits", 4}, {"group_size", 128}, {"desc_act", true}, {"sym", true}},
       QuantMethod::Gptq, "gptq int4 g128 act-order"},
      {{{"quant_method", "awq"}, {"bits", 4}, {"group_size", 128}, {"version", "gemm"}},
       QuantMethod::Awq, "awq int4 g128 gemm"},
  };
  for (const auto& k : cases) {
    c["quantization_config"] = k.qc;
    auto p = read(c);
    CHECK(p.quant.method == k.method);
    CHECK(p.quant.name == k.name);
    CHECK(p.quant.raw == k.qc);
  }
  c["quantization_config"] = {{"quant_method", "hqq"}};
  expect_error([&] { read(c); }, ErrorCode::UnsupportedQuantization,
               {"/m/config.json", "unsupported quantization hqq"});
  c["quantization_config"] = {{"bits", 4}};
  expect_error([&] { read(c); }, ErrorCode::InvalidConfig, {"quant_method"});
}

TEST_CASE("missing or ill-typed fields name config.json and the field", "[model][profile]") {
  json ok = {{"model_type", "deepseek_v3"}, {"num_hidden_layers", 4}, {"hidden_size", 64},
             {"moe_intermediate_size", 32}, {"n_routed_experts", 8}, {"num_experts_per_tok", 2}};
  REQUIRE_NOTHROW(read(ok));
  for (const char* f : {"num_hidden_layers", "hidden_size", "moe_intermediate_size",
                        "n_routed_experts", "num_experts_per_tok"}) {
    json c = ok;
    c.erase(f);
    CAPTURE(f);
    expect_error([&] { read(c); }, ErrorCode::InvalidConfig, {"/m/config.json", f, "missing"});
    c[f] = "8";
    expect_error([&] { read(c); }, ErrorCode::InvalidConfig, {"/m/config.json", f, "integer"});
  }
  json c = ok;
  c["hidden_size"] = 0;
  expect_error([&] { read(c); }, ErrorCode::InvalidConfig, {"hidden_size", "out of range"});
  c = ok;
  c["norm_topk_prob"] = "yes";
  expect_error([&] { read(c); }, ErrorCode::InvalidConfig, {"norm_topk_prob"});
  c = ok;
  c["scoring_func"] = "relu";
  expect_error([&] { read(c); }, ErrorCode::InvalidConfig, {"scoring_func"});
  c = ok;
  c.erase("model_type");
  expect_error([&] { read(c); }, ErrorCode::InvalidConfig, {"model_type"});
  c["model_type"] = "llama";
  expect_error([&] { read(c); }, ErrorCode::UnsupportedFamily, {"'llama'", "mixtral"});
  expect_error([&] { read(json::array()); }, ErrorCode::InvalidConfig, {"/m/config.json"});
  // DeepSeek writes "n_shared_experts": null for none.
  c = ok;
  c["n_shared_experts"] = nullptr;
  CHECK(read(c).shared_intermediate_size == 0);
}

TEST_CASE("profile JSON round trip for every family", "[model][profile]") {
  for (int f = 0; f < static_cast<int>(Family::kCount); ++f) {
    SyntheticSpec s;
    s.family = static_cast<Family>(f);
    s.num_layers = 3;
    json cfg = synthetic_config(s);
    cfg["quantization_config"] = {{"quant_method", "fp8"}, {"weight_block_size", {128, 128}}};
    ModelProfile p = read(cfg);
    json j = profile_to_json(p);
    CAPTURE(j.dump());
    CHECK(j.at("family") == family_name(p.family));
    CHECK(j.at("quantization").at("method") == "fp8");
    ModelProfile q = profile_from_json(j);
    CHECK(profile_to_json(q) == j);
    CHECK(q.family == p.family);
    CHECK(q.moe_layers == p.moe_layers);
    CHECK(q.routing.routed_scaling_factor == p.routing.routed_scaling_factor);
    CHECK(q.routing.renorm_min == p.routing.renorm_min);
    CHECK(q.quant.raw == p.quant.raw);
    CHECK(family_from_name(family_name(p.family)) == p.family);
  }
  json bad = profile_to_json(read(synthetic_config(SyntheticSpec{})));
  bad["routing"]["score"] = "tanh";
  expect_error([&] { profile_from_json(bad); }, ErrorCode::InvalidConfig, {"score", "tanh"});
  bad = profile_to_json(read(synthetic_config(SyntheticSpec{})));
  bad.erase("top_k");
  expect_error([&] { profile_from_json(bad); }, ErrorCode::InvalidConfig, {"top_k"});
}
