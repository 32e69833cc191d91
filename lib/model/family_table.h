// The family table (formats.md 9.1, hf-layouts.md): one row per MoE family saying how its
// config.json spells each field, which layers are MoE, how wide the shared expert is and how it
// routes. profile.cpp reads a config by asking this table; adding a family is adding a row.
#pragma once
#include <array>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/profile.h"

namespace moe {

// Alternative spellings of one config field, first match wins (released checkpoints and
// transformers 5.x sometimes disagree, hf-layouts.md). Unused slots are nullptr.
struct Spellings {
  std::array<const char*, 4> names;
};

// Reads the model's MoE layer indices; `num_layers` is num_hidden_layers. Throws InvalidConfig.
using MoeLayersFn = std::vector<int> (*)(const nlohmann::json& cfg, int num_layers,
                                         const std::string& path);
// Total shared-expert width from the config and the routed expert width (0 = none).
using SharedWidthFn = int (*)(const nlohmann::json& cfg, int moe_intermediate_size,
                              const std::string& path);

struct FamilyRow {
  Family family;
  const char* name;       // family_name(): the canonical model_type
  Spellings model_types;  // every model_type that selects this row
  Spellings num_experts;
  Spellings top_k;
  Spellings expert_width;
  MoeLayersFn moe_layers;
  SharedWidthFn shared_width;
  bool shared_expert_gate;  // Qwen2-MoE's sigmoid gate on the shared expert
  // Routing defaults (RoutingSpec in profile.h is the order of operations).
  ScoreFunc score;
  bool scoring_func_field;      // DeepSeek's `scoring_func` may override `score`
  const char* renorm_field;     // nullptr: `renormalize` is fixed
  bool renormalize;             // value when the field is absent
  const char* renorm_min_field; // ERNIE moe_norm_min; nullptr = none
  bool grouped;                 // reads n_group / topk_group
  GroupScore group_score;
  bool scaling;                 // reads routed_scaling_factor
  bool correction_bias;
  bool router_bias;
  bool weight_on_input;
  bool expert_bias;
  bool swiglu_oai;  // gpt-oss clamped SwiGLU regardless of hidden_act
};

const FamilyRow& family_row(Family f);
// The row whose model_types include `model_type`, or nullptr.
const FamilyRow* family_row_for_model_type(const std::string& model_type);

}  // namespace moe
