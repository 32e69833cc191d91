// Reading config.json into a ModelProfile by asking the family table (family_table.cpp), plus
// the profile's JSON form (manifests, `inspect --json`).
#include "model/profile.h"

#include <array>

#include "core/error.h"
#include "model/config_fields.h"
#include "model/family_table.h"
#include "model/quant_config.h"

namespace moe {

namespace {

// ---- enum <-> name tables ------------------------------------------------------------------

constexpr std::array<const char*, 3> kActivationNames = {"silu_and_mul", "gelu_and_mul",
                                                         "swiglu_oai"};
constexpr std::array<const char*, 2> kScoreNames = {"softmax", "sigmoid"};
constexpr std::array<const char*, 2> kGroupScoreNames = {"max", "sum_top2"};
static_assert(static_cast<size_t>(Activation::SwigluOai) + 1 == kActivationNames.size());
static_assert(static_cast<size_t>(ScoreFunc::Sigmoid) + 1 == kScoreNames.size());
static_assert(static_cast<size_t>(GroupScore::SumTop2) + 1 == kGroupScoreNames.size());

template <typename Enum, size_t N>
std::optional<Enum> enum_from(const std::array<const char*, N>& names, std::string_view s) {
  for (size_t i = 0; i < N; ++i)
    if (s == names[i]) return static_cast<Enum>(i);
  return std::nullopt;
}

// hidden_act -> gated activation. Matched by prefix so gelu_pytorch_tanh, gelu_new, ... count
// as gelu (the reference uses exact gelu for all of them).
struct ActRow {
  const char* prefix;
  Activation act;
};
constexpr ActRow kHiddenActs[] = {
    {"silu", Activation::SiluAndMul}, {"swish", Activation::SiluAndMul},
    {"gelu", Activation::GeluAndMul}};

Activation activation_from_hidden_act(const std::string& act, const std::string& path) {
  for (const auto& row : kHiddenActs)
    if (act.rfind(row.prefix, 0) == 0) return row.act;
  fail(ErrorCode::InvalidConfig, path, "", "unsupported hidden_act '" + act + "'");
}

std::string supported_model_types() {
  std::string s;
  for (int i = 0; i < static_cast<int>(Family::kCount); ++i)
    for (const char* t : family_row(static_cast<Family>(i)).model_types.names)
      if (t) s += (s.empty() ? "" : ", ") + std::string(t);
  return s;
}

RoutingSpec routing_from_config(const FamilyRow& row, const nlohmann::json& cfg,
                                const std::string& path) {
  RoutingSpec r;
  r.score = row.score;
  if (row.scoring_func_field) {
    if (auto s = config_string(cfg, "scoring_func", path)) {
      auto score = enum_from<ScoreFunc>(kScoreNames, *s);
      MOE_CHECK(score.has_value(), InvalidConfig, path, "",
                "field 'scoring_func' must be softmax or sigmoid, got '" + *s + "'");
      r.score = *score;
    }
  }
  r.renormalize = row.renorm_field ? config_bool(cfg, row.renorm_field, path).value_or(row.renormalize)
                                   : row.renormalize;
  if (row.renorm_min_field)
    r.renorm_min = static_cast<float>(config_number(cfg, row.renorm_min_field, path).value_or(1e-12));
  if (row.scaling)
    r.routed_scaling_factor =
        static_cast<float>(config_number(cfg, "routed_scaling_factor", path).value_or(1.0));
  // DeepSeek's topk_method "greedy" ignores n_group; group_limited_greedy / noaux_tc use it.
  auto method = config_string(cfg, "topk_method", path);
  if (row.grouped && method.value_or("") != "greedy") {
    auto n_group = config_int(cfg, "n_group", path).value_or(1);
    auto topk_group = config_int(cfg, "topk_group", path).value_or(1);
    MOE_CHECK(n_group >= 1 && n_group <= 1 << 16, InvalidConfig, path, "",
              "field 'n_group' must be >= 1, got " + std::to_string(n_group));
    MOE_CHECK(topk_group >= 1 && topk_group <= 1 << 16, InvalidConfig, path, "",
              "field 'topk_group' must be >= 1, got " + std::to_string(topk_group));
    r.n_group = static_cast<int>(n_group);
    r.topk_group = static_cast<int>(topk_group);
  }
  r.group_score = row.group_score;
  r.has_correction_bias = row.correction_bias;
  r.has_router_bias = row.router_bias;
  r.weight_on_input = row.weight_on_input;
  return r;
}

// ---- profile JSON helpers ------------------------------------------------------------------

const nlohmann::json& field(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  MOE_CHECK(it != j.end(), InvalidConfig, "profile", "", std::string("missing field '") + key + "'");
  return *it;
}

template <typename T>
T get(const nlohmann::json& j, const char* key) {
  try {
    return field(j, key).get<T>();
  } catch (const nlohmann::json::exception&) {
    fail(ErrorCode::InvalidConfig, "profile", "",
         std::string("field '") + key + "' has the wrong type: " + field(j, key).dump());
  }
}

template <typename Enum, size_t N>
Enum get_enum(const nlohmann::json& j, const char* key, const std::array<const char*, N>& names) {
  auto s = get<std::string>(j, key);
  auto e = enum_from<Enum>(names, s);
  MOE_CHECK(e.has_value(), InvalidConfig, "profile", "",
            std::string("field '") + key + "' has unknown value '" + s + "'");
  return *e;
}

}  // namespace

const char* family_name(Family f) { return family_row(f).name; }

std::optional<Family> family_from_name(std::string_view name) {
  const FamilyRow* row = family_row_for_model_type(std::string(name));
  if (!row) return std::nullopt;
  return row->family;
}

const char* activation_name(Activation a) { return kActivationNames.at(static_cast<size_t>(a)); }

ModelProfile profile_from_config(const nlohmann::json& config, const std::string& path) {
  MOE_CHECK(config.is_object(), InvalidConfig, path, "", "config is not a JSON object");
  auto model_type = config_string(config, "model_type", path);
  MOE_CHECK(model_type.has_value(), InvalidConfig, path, "", "missing field 'model_type'");
  const FamilyRow* row = family_row_for_model_type(*model_type);
  MOE_CHECK(row != nullptr, UnsupportedFamily, path, "",
            "unsupported model_type '" + *model_type + "' (supported: " + supported_model_types() +
                ")");
  // Multimodal wrappers (Llama-4's "llama4") keep the text model's fields under text_config.
  const nlohmann::json* cfg = &config;
  auto tc = config.find("text_config");
  if (tc != config.end() && tc->is_object() && !config.contains("hidden_size")) cfg = &*tc;

  ModelProfile p;
  p.family = row->family;
  p.model_type = *model_type;
  p.num_layers = config_required_int(*cfg, {{"num_hidden_layers"}}, 1, path);
  p.hidden_size = config_required_int(*cfg, {{"hidden_size"}}, 1, path);
  p.num_experts = config_required_int(*cfg, row->num_experts, 1, path);
  p.top_k = config_required_int(*cfg, row->top_k, 1, path);
  p.moe_intermediate_size = config_required_int(*cfg, row->expert_width, 1, path);
  p.moe_layers = row->moe_layers(*cfg, p.num_layers, path);
  p.shared_intermediate_size = row->shared_width(*cfg, p.moe_intermediate_size, path);
  p.has_shared_expert_gate = row->shared_expert_gate && p.shared_intermediate_size > 0;
  p.has_expert_bias = row->expert_bias;
  p.routing = routing_from_config(*row, *cfg, path);
  if (row->swiglu_oai) {
    p.activation = Activation::SwigluOai;
    p.swiglu_limit = static_cast<float>(config_number(*cfg, "swiglu_limit", path).value_or(7.0));
  } else {
    p.activation = activation_from_hidden_act(config_string(*cfg, "hidden_act", path).value_or("silu"), path);
  }
  // quantization_config sits at the top level, also for multimodal wrappers.
  nlohmann::json qc;
  if (auto top = config.find("quantization_config"); top != config.end()) qc = *top;
  else if (auto inner = cfg->find("quantization_config"); inner != cfg->end()) qc = *inner;
  p.quant = quant_info_from_config(qc, path);
  return p;
}

nlohmann::json profile_to_json(const ModelProfile& p) {
  const RoutingSpec& r = p.routing;
  return {
      {"family", family_name(p.family)},
      {"model_type", p.model_type},
      {"num_layers", p.num_layers},
      {"moe_layers", p.moe_layers},
      {"num_experts", p.num_experts},
      {"top_k", p.top_k},
      {"hidden_size", p.hidden_size},
      {"moe_intermediate_size", p.moe_intermediate_size},
      {"shared_intermediate_size", p.shared_intermediate_size},
      {"has_shared_expert_gate", p.has_shared_expert_gate},
      {"has_expert_bias", p.has_expert_bias},
      {"routing",
       {{"score", kScoreNames[static_cast<size_t>(r.score)]},
        {"renormalize", r.renormalize},
        {"renorm_min", r.renorm_min},
        {"routed_scaling_factor", r.routed_scaling_factor},
        {"n_group", r.n_group},
        {"topk_group", r.topk_group},
        {"group_score", kGroupScoreNames[static_cast<size_t>(r.group_score)]},
        {"has_correction_bias", r.has_correction_bias},
        {"has_router_bias", r.has_router_bias},
        {"weight_on_input", r.weight_on_input}}},
      {"activation", activation_name(p.activation)},
      {"swiglu_alpha", p.swiglu_alpha},
      {"swiglu_limit", p.swiglu_limit},
      {"quantization",
       {{"method", quant_method_name(p.quant.method)},
        {"name", p.quant.name},
        {"config", p.quant.raw}}},
  };
}

ModelProfile profile_from_json(const nlohmann::json& j) {
  MOE_CHECK(j.is_object(), InvalidConfig, "profile", "", "profile is not a JSON object");
  ModelProfile p;
  auto family = family_from_name(get<std::string>(j, "family"));
  MOE_CHECK(family.has_value(), UnsupportedFamily, "profile", "",
            "unknown family '" + get<std::string>(j, "family") + "'");
  p.family = *family;
  p.model_type = get<std::string>(j, "model_type");
  p.num_layers = get<int>(j, "num_layers");
  p.moe_layers = get<std::vector<int>>(j, "moe_layers");
  p.num_experts = get<int>(j, "num_experts");
  p.top_k = get<int>(j, "top_k");
  p.hidden_size = get<int>(j, "hidden_size");
  p.moe_intermediate_size = get<int>(j, "moe_intermediate_size");
  p.shared_intermediate_size = get<int>(j, "shared_intermediate_size");
  p.has_shared_expert_gate = get<bool>(j, "has_shared_expert_gate");
  p.has_expert_bias = get<bool>(j, "has_expert_bias");
  const auto& r = field(j, "routing");
  p.routing.score = get_enum<ScoreFunc>(r, "score", kScoreNames);
  p.routing.renormalize = get<bool>(r, "renormalize");
  p.routing.renorm_min = get<float>(r, "renorm_min");
  p.routing.routed_scaling_factor = get<float>(r, "routed_scaling_factor");
  p.routing.n_group = get<int>(r, "n_group");
  p.routing.topk_group = get<int>(r, "topk_group");
  p.routing.group_score = get_enum<GroupScore>(r, "group_score", kGroupScoreNames);
  p.routing.has_correction_bias = get<bool>(r, "has_correction_bias");
  p.routing.has_router_bias = get<bool>(r, "has_router_bias");
  p.routing.weight_on_input = get<bool>(r, "weight_on_input");
  p.activation = get_enum<Activation>(j, "activation", kActivationNames);
  p.swiglu_alpha = get<float>(j, "swiglu_alpha");
  p.swiglu_limit = get<float>(j, "swiglu_limit");
  const auto& q = field(j, "quantization");
  auto method = quant_method_from_name(get<std::string>(q, "method"));
  MOE_CHECK(method.has_value(), UnsupportedQuantization, "profile", "",
            "unsupported quantization " + get<std::string>(q, "method"));
  p.quant.method = *method;
  p.quant.name = get<std::string>(q, "name");
  p.quant.raw = q.value("config", nlohmann::json());
  return p;
}

}  // namespace moe
