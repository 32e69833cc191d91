// The model profile: what the rest of the pipeline needs to know about a MoE model, read from
// config.json (formats.md section 9.1) through a table of families. Adding a family means one
// row in family_table.cpp, one layout row in mapping/expert_mapping.cpp and one fixture.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"

namespace moe {

enum class Family {
  Mixtral, Qwen2Moe, Qwen3Moe, DeepseekV2, DeepseekV3, Glm4Moe, Olmoe, GraniteMoe, Llama4,
  GptOss, Ernie45Moe, kCount
};
const char* family_name(Family f);  // "mixtral", "qwen2_moe", ... (the model_type)
// Any model_type of the family ("llama4" and "llama4_text" both give Llama4); nullopt if none.
std::optional<Family> family_from_name(std::string_view name);

enum class ScoreFunc { Softmax, Sigmoid };
// How a group of experts is scored for grouped top-k: DeepSeek-V2 takes the group's max score,
// DeepSeek-V3 / GLM the sum of the group's top-2 (biased) scores.
enum class GroupScore { Max, SumTop2 };
enum class Activation { SiluAndMul, GeluAndMul, SwigluOai };
const char* activation_name(Activation a);

// Everything that decides which experts a token goes to and with which weights.
// Order of operations (reference and kernels implement exactly this):
//   logits = x . router_weight^T (+ router_bias if has_router_bias)
//   scores = softmax(logits) or sigmoid(logits)            (over all E)
//   select = scores (+ correction_bias if has_correction_bias)
//   if n_group > 1: group score per group of E/n_group experts (Max or SumTop2 over `select`),
//                   keep the topk_group best groups, mask the others to -inf
//   ids = top_k of select (ties: lower expert id first)
//   w = scores[ids]; if renormalize: w /= max(sum(w), renorm_min)
//   w *= routed_scaling_factor
// Softmax over the top-k logits only (gpt-oss, GraniteMoE) equals softmax over E followed by
// renormalize, so those families are Softmax + renormalize.
struct RoutingSpec {
  ScoreFunc score = ScoreFunc::Softmax;
  bool renormalize = true;
  float renorm_min = 0.0f;  // ERNIE's moe_norm_min clamp of the sum; 0 = none
  float routed_scaling_factor = 1.0f;
  int n_group = 1, topk_group = 1;
  GroupScore group_score = GroupScore::Max;
  bool has_correction_bias = false;  // e_score_correction_bias, selection only
  bool has_router_bias = false;      // gpt-oss router.bias, added to the logits
  bool weight_on_input = false;      // Llama-4: expert(x * w) instead of w * expert(x)
};

enum class QuantMethod {
  None, CompressedTensors, Fp8Block, ModelOpt, Mxfp4, BitsAndBytes, Gptq, Awq, kCount
};
struct QuantInfo {
  QuantMethod method = QuantMethod::None;
  std::string name;    // human-readable, e.g. "none", "compressed-tensors pack-quantized int4 g128"
  nlohmann::json raw;  // the quantization_config as read
};

struct ModelProfile {
  Family family = Family::Mixtral;
  std::string model_type;
  int num_layers = 0;
  std::vector<int> moe_layers;        // model layer indices
  int num_experts = 0;                // routed, logical
  int top_k = 0;
  int hidden_size = 0;
  int moe_intermediate_size = 0;      // per routed expert
  int shared_intermediate_size = 0;   // total width of the shared expert(s); 0 = none
  bool has_shared_expert_gate = false;  // Qwen2-MoE: out += sigmoid(x . g) * shared(x)
  bool has_expert_bias = false;         // gpt-oss: gate_up and down biases
  RoutingSpec routing;
  Activation activation = Activation::SiluAndMul;
  float swiglu_alpha = 1.702f, swiglu_limit = 7.0f;  // SwigluOai only
  QuantInfo quant;
};

// Reads config.json. `config_path` only names the file in errors. Throws InvalidConfig (missing or
// bad field, naming it), UnsupportedFamily, or UnsupportedQuantization ("unsupported
// quantization X").
ModelProfile profile_from_config(const nlohmann::json& config, const std::string& config_path);

nlohmann::json profile_to_json(const ModelProfile& p);
ModelProfile profile_from_json(const nlohmann::json& j);  // inverse, for manifests

}  // namespace moe
