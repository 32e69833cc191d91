#include "model/family_table.h"

#include "core/error.h"
#include "model/config_fields.h"

namespace moe {

namespace {

int positive_or(const nlohmann::json& cfg, const char* field, int dflt, const std::string& path) {
  auto v = config_int(cfg, field, path);
  if (!v) return dflt;
  MOE_CHECK(*v >= 1 && *v <= 1 << 20, InvalidConfig, path, "",
            std::string("field '") + field + "' must be >= 1, got " + std::to_string(*v));
  return static_cast<int>(*v);
}

// ---- MoE-layer rules (formats.md 9.1) ------------------------------------------------------

std::vector<int> all_layers(const nlohmann::json&, int num_layers, const std::string&) {
  std::vector<int> out;
  for (int i = 0; i < num_layers; ++i) out.push_back(i);
  return out;
}

// Qwen2/3-MoE: MoE iff i not in mlp_only_layers and (i + 1) % decoder_sparse_step == 0.
std::vector<int> sparse_step_layers(const nlohmann::json& cfg, int num_layers,
                                    const std::string& path) {
  auto dense = config_int_list(cfg, "mlp_only_layers", path).value_or(std::vector<int>{});
  int step = positive_or(cfg, "decoder_sparse_step", 1, path);
  std::vector<int> out;
  for (int i = 0; i < num_layers; ++i) {
    bool is_dense = false;
    for (int d : dense) is_dense = is_dense || d == i;
    if (!is_dense && (i + 1) % step == 0) out.push_back(i);
  }
  return out;
}

// DeepSeek-V2/V3, GLM-4.5: MoE iff i >= first_k_dense_replace and i % moe_layer_freq == 0.
// MTP layers (num_nextn_predict_layers, stored after num_hidden_layers) are not model layers.
std::vector<int> first_k_dense_layers(const nlohmann::json& cfg, int num_layers,
                                      const std::string& path) {
  auto first = config_int(cfg, "first_k_dense_replace", path).value_or(0);
  MOE_CHECK(first >= 0, InvalidConfig, path, "", "field 'first_k_dense_replace' must be >= 0");
  int freq = positive_or(cfg, "moe_layer_freq", 1, path);
  std::vector<int> out;
  for (int i = 0; i < num_layers; ++i)
    if (i >= first && i % freq == 0) out.push_back(i);
  return out;
}

// Llama-4: the moe_layers list, else range(step - 1, L, step) with interleave_moe_layer_step.
std::vector<int> llama4_layers(const nlohmann::json& cfg, int num_layers,
                               const std::string& path) {
  if (auto list = config_int_list(cfg, "moe_layers", path)) return *list;
  int step = positive_or(cfg, "interleave_moe_layer_step", 1, path);
  std::vector<int> out;
  for (int i = step - 1; i < num_layers; i += step) out.push_back(i);
  return out;
}

// ERNIE-4.5: MoE iff (i + 1) % interval == 0 and start <= i <= end (end -1 = last layer).
std::vector<int> ernie_layers(const nlohmann::json& cfg, int num_layers,
                              const std::string& path) {
  auto start = config_int(cfg, "moe_layer_start_index", path).value_or(1);
  auto end = config_int(cfg, "moe_layer_end_index", path).value_or(-1);
  if (end == -1) end = num_layers - 1;
  int interval = positive_or(cfg, "moe_layer_interval", 1, path);
  std::vector<int> out;
  for (int i = 0; i < num_layers; ++i)
    if ((i + 1) % interval == 0 && i >= start && i <= end) out.push_back(i);
  return out;
}

// ---- shared-expert widths ------------------------------------------------------------------

int no_shared(const nlohmann::json&, int, const std::string&) { return 0; }

int nonneg(std::optional<int64_t> v, const char* field, const std::string& path) {
  if (!v) return 0;
  MOE_CHECK(*v >= 0 && *v <= 1 << 24, InvalidConfig, path, "",
            std::string("field '") + field + "' must be >= 0, got " + std::to_string(*v));
  return static_cast<int>(*v);
}

int qwen2_shared(const nlohmann::json& cfg, int, const std::string& path) {
  const char* f = "shared_expert_intermediate_size";
  return nonneg(config_int(cfg, f, path), f, path);
}

int deepseek_shared(const nlohmann::json& cfg, int moe_width, const std::string& path) {
  const char* f = "n_shared_experts";
  return nonneg(config_int(cfg, f, path), f, path) * moe_width;
}

int ernie_shared(const nlohmann::json& cfg, int moe_width, const std::string& path) {
  const char* f = "moe_num_shared_experts";
  return nonneg(config_int(cfg, f, path), f, path) * moe_width;
}

// Llama-4: one always-on shared expert as wide as a routed one.
int llama4_shared(const nlohmann::json&, int moe_width, const std::string&) { return moe_width; }

// ---- the table -----------------------------------------------------------------------------

constexpr Spellings kTopK{{"num_experts_per_tok", "moe_k", "experts_per_token", nullptr}};
constexpr Spellings kIntermediate{{"intermediate_size", nullptr, nullptr, nullptr}};
constexpr Spellings kMoeIntermediate{{"moe_intermediate_size", nullptr, nullptr, nullptr}};
constexpr Spellings kLocalExperts{{"num_local_experts", "num_experts", nullptr, nullptr}};
constexpr Spellings kQwenExperts{{"num_experts", "num_local_experts", nullptr, nullptr}};
constexpr Spellings kRoutedExperts{{"n_routed_experts", "num_experts", nullptr, nullptr}};
constexpr Spellings kErnieExperts{{"moe_num_experts", "num_experts", nullptr, nullptr}};

// clang-format off
constexpr FamilyRow kFamilies[] = {
  // family, name, model_types, experts, top-k, width, MoE layers, shared width, shared gate,
  // score, scoring_func field, renorm field, renorm default, renorm_min field, grouped,
  // group score, scaling, correction bias, router bias, weight on input, expert bias, swiglu-oai
  {Family::Mixtral, "mixtral", {{"mixtral"}}, kLocalExperts, kTopK, kIntermediate,
   all_layers, no_shared, false,
   ScoreFunc::Softmax, false, nullptr, true, nullptr, false, GroupScore::Max,
   false, false, false, false, false, false},
  {Family::Qwen2Moe, "qwen2_moe", {{"qwen2_moe"}}, kQwenExperts, kTopK, kMoeIntermediate,
   sparse_step_layers, qwen2_shared, true,
   ScoreFunc::Softmax, false, "norm_topk_prob", false, nullptr, false, GroupScore::Max,
   false, false, false, false, false, false},
  {Family::Qwen3Moe, "qwen3_moe", {{"qwen3_moe"}}, kQwenExperts, kTopK, kMoeIntermediate,
   sparse_step_layers, no_shared, false,
   ScoreFunc::Softmax, false, "norm_topk_prob", false, nullptr, false, GroupScore::Max,
   false, false, false, false, false, false},
  {Family::DeepseekV2, "deepseek_v2", {{"deepseek_v2"}}, kRoutedExperts, kTopK, kMoeIntermediate,
   first_k_dense_layers, deepseek_shared, false,
   ScoreFunc::Softmax, true, "norm_topk_prob", false, nullptr, true, GroupScore::Max,
   true, false, false, false, false, false},
  {Family::DeepseekV3, "deepseek_v3", {{"deepseek_v3"}}, kRoutedExperts, kTopK, kMoeIntermediate,
   first_k_dense_layers, deepseek_shared, false,
   ScoreFunc::Sigmoid, true, "norm_topk_prob", true, nullptr, true, GroupScore::SumTop2,
   true, true, false, false, false, false},
  {Family::Glm4Moe, "glm4_moe", {{"glm4_moe"}}, kRoutedExperts, kTopK, kMoeIntermediate,
   first_k_dense_layers, deepseek_shared, false,
   ScoreFunc::Sigmoid, false, "norm_topk_prob", true, nullptr, true, GroupScore::SumTop2,
   true, true, false, false, false, false},
  {Family::Olmoe, "olmoe", {{"olmoe"}}, kQwenExperts, kTopK, kIntermediate,
   all_layers, no_shared, false,
   ScoreFunc::Softmax, false, "norm_topk_prob", false, nullptr, false, GroupScore::Max,
   false, false, false, false, false, false},
  {Family::GraniteMoe, "granitemoe", {{"granitemoe"}}, kLocalExperts, kTopK, kIntermediate,
   all_layers, no_shared, false,
   ScoreFunc::Softmax, false, nullptr, true, nullptr, false, GroupScore::Max,
   false, false, false, false, false, false},
  {Family::Llama4, "llama4", {{"llama4_text", "llama4"}}, kLocalExperts, kTopK, kIntermediate,
   llama4_layers, llama4_shared, false,
   ScoreFunc::Sigmoid, false, nullptr, false, nullptr, false, GroupScore::Max,
   false, false, false, true, false, false},
  {Family::GptOss, "gpt_oss", {{"gpt_oss"}}, kLocalExperts, kTopK, kIntermediate,
   all_layers, no_shared, false,
   ScoreFunc::Softmax, false, nullptr, true, nullptr, false, GroupScore::Max,
   false, false, true, false, true, true},
  {Family::Ernie45Moe, "ernie4_5_moe", {{"ernie4_5_moe"}}, kErnieExperts, kTopK, kMoeIntermediate,
   ernie_layers, ernie_shared, false,
   ScoreFunc::Softmax, false, nullptr, true, "moe_norm_min", false, GroupScore::Max,
   false, true, false, false, false, false},
};
// clang-format on

constexpr size_t kFamilyCount = static_cast<size_t>(Family::kCount);
static_assert(sizeof(kFamilies) / sizeof(kFamilies[0]) == kFamilyCount,
              "one family row per Family enum value");

constexpr bool rows_follow_enum() {
  for (size_t i = 0; i < kFamilyCount; ++i)
    if (static_cast<size_t>(kFamilies[i].family) != i) return false;
  return true;
}
static_assert(rows_follow_enum(), "kFamilies rows must follow the Family enum order");

}  // namespace

const FamilyRow& family_row(Family f) {
  auto i = static_cast<size_t>(f);
  MOE_ASSERT(i < kFamilyCount);
  return kFamilies[i];
}

const FamilyRow* family_row_for_model_type(const std::string& model_type) {
  for (const auto& row : kFamilies)
    for (const char* t : row.model_types.names)
      if (t && model_type == t) return &row;
  return nullptr;
}

}  // namespace moe
