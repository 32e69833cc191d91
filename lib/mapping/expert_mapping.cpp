// The layout table (one row per family, names from hf-layouts.md) and the resolution of a
// layer's router / experts / shared experts to [out, in] MatrixViews.
#include "mapping/expert_mapping.h"

#include "core/error.h"

namespace moe {

namespace {

// clang-format off
constexpr FamilyLayout kLayouts[] = {
  // family, block, router weight, router bias, correction bias, storage,
  // gate, up, down, gate_up bias, down bias, shared gate, shared up, shared down, shared gate
  {Family::Mixtral, "model.layers.{L}.block_sparse_moe", "{B}.gate.weight", "", "",
   ExpertStorage::PerExpert,
   "{B}.experts.{E}.w1.weight", "{B}.experts.{E}.w3.weight", "{B}.experts.{E}.w2.weight", "", "",
   "", "", "", ""},
  {Family::Qwen2Moe, "model.layers.{L}.mlp", "{B}.gate.weight", "", "",
   ExpertStorage::PerExpert,
   "{B}.experts.{E}.gate_proj.weight", "{B}.experts.{E}.up_proj.weight",
   "{B}.experts.{E}.down_proj.weight", "", "",
   "{B}.shared_expert.gate_proj.weight", "{B}.shared_expert.up_proj.weight",
   "{B}.shared_expert.down_proj.weight", "{B}.shared_expert_gate.weight"},
  {Family::Qwen3Moe, "model.layers.{L}.mlp", "{B}.gate.weight", "", "",
   ExpertStorage::PerExpert,
   "{B}.experts.{E}.gate_proj.weight", "{B}.experts.{E}.up_proj.weight",
   "{B}.experts.{E}.down_proj.weight", "", "",
   "", "", "", ""},
  {Family::DeepseekV2, "model.layers.{L}.mlp", "{B}.gate.weight", "", "",
   ExpertStorage::PerExpert,
   "{B}.experts.{E}.gate_proj.weight", "{B}.experts.{E}.up_proj.weight",
   "{B}.experts.{E}.down_proj.weight", "", "",
   "{B}.shared_experts.gate_proj.weight", "{B}.shared_experts.up_proj.weight",
   "{B}.shared_experts.down_proj.weight", ""},
  {Family::DeepseekV3, "model.layers.{L}.mlp", "{B}.gate.weight", "",
   "{B}.gate.e_score_correction_bias",
   ExpertStorage::PerExpert,
   "{B}.experts.{E}.gate_proj.weight", "{B}.experts.{E}.up_proj.weight",
   "{B}.experts.{E}.down_proj.weight", "", "",
   "{B}.shared_experts.gate_proj.weight", "{B}.shared_experts.up_proj.weight",
   "{B}.shared_experts.down_proj.weight", ""},
  {Family::Glm4Moe, "model.layers.{L}.mlp", "{B}.gate.weight", "",
   "{B}.gate.e_score_correction_bias",
   ExpertStorage::PerExpert,
   "{B}.experts.{E}.gate_proj.weight", "{B}.experts.{E}.up_proj.weight",
   "{B}.experts.{E}.down_proj.weight", "", "",
   "{B}.shared_experts.gate_proj.weight", "{B}.shared_experts.up_proj.weight",
   "{B}.shared_experts.down_proj.weight", ""},
  {Family::Olmoe, "model.layers.{L}.mlp", "{B}.gate.weight", "", "",
   ExpertStorage::PerExpert,
   "{B}.experts.{E}.gate_proj.weight", "{B}.experts.{E}.up_proj.weight",
   "{B}.experts.{E}.down_proj.weight", "", "",
   "", "", "", ""},
  {Family::GraniteMoe, "model.layers.{L}.block_sparse_moe", "{B}.router.layer.weight", "", "",
   ExpertStorage::FusedOutInChunked,
   "{B}.input_linear.weight", "", "{B}.output_linear.weight", "", "",
   "", "", "", ""},
  {Family::Llama4, "model.layers.{L}.feed_forward", "{B}.router.weight", "", "",
   ExpertStorage::FusedInOutChunked,
   "{B}.experts.gate_up_proj", "", "{B}.experts.down_proj", "", "",
   "{B}.shared_expert.gate_proj.weight", "{B}.shared_expert.up_proj.weight",
   "{B}.shared_expert.down_proj.weight", ""},
  {Family::GptOss, "model.layers.{L}.mlp", "{B}.router.weight", "{B}.router.bias", "",
   ExpertStorage::FusedInterleaved,
   "{B}.experts.gate_up_proj", "", "{B}.experts.down_proj",
   "{B}.experts.gate_up_proj_bias", "{B}.experts.down_proj_bias",
   "", "", "", ""},
  {Family::Ernie45Moe, "model.layers.{L}.mlp", "{B}.gate.weight", "",
   "{B}.moe_statics.e_score_correction_bias",
   ExpertStorage::PerExpert,
   "{B}.experts.{E}.gate_proj.weight", "{B}.experts.{E}.up_proj.weight",
   "{B}.experts.{E}.down_proj.weight", "", "",
   "{B}.shared_experts.gate_proj.weight", "{B}.shared_experts.up_proj.weight",
   "{B}.shared_experts.down_proj.weight", ""},
};
// clang-format on
static_assert(sizeof(kLayouts) / sizeof(kLayouts[0]) == static_cast<size_t>(Family::kCount),
              "one layout row per family");
constexpr bool layouts_follow_enum() {
  for (size_t i = 0; i < static_cast<size_t>(Family::kCount); ++i)
    if (static_cast<size_t>(kLayouts[i].family) != i) return false;
  return true;
}
static_assert(layouts_follow_enum(), "kLayouts rows must follow the Family enum order");

// How a fused style stores experts (the three fusions of formats.md 9.2 notes).
struct StorageTraits {
  ExpertStorage storage;
  bool fused;
  bool in_x_out;     // slices stored [in, out] (bmm style): transpose to get [out, in]
  bool interleaved;  // gate/up alternate along 2I (gpt-oss) instead of gate half then up half
};
constexpr StorageTraits kStorage[] = {
    {ExpertStorage::PerExpert, false, false, false},
    {ExpertStorage::FusedInterleaved, true, true, true},
    {ExpertStorage::FusedInOutChunked, true, true, false},
    {ExpertStorage::FusedOutInChunked, true, false, false},
};
const StorageTraits& storage_traits(ExpertStorage s) { return kStorage[static_cast<size_t>(s)]; }

constexpr const char* kPrefixes[] = {"", "language_model."};  // Llama-4 multimodal checkpoints

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
}

bool viewable(DType t) {
  const auto& tr = dtype_traits(t);
  return t != DType::BOOL && tr.bits >= 8 && tr.bits % 8 == 0 && tr.decode != nullptr;
}

// A 1 x n row of a contiguous [rows, n] tensor, or 1 x count elements of it with a stride.
MatrixView row_of(const TensorView& t, int64_t row, int64_t n, int64_t first, int64_t count,
                  int64_t stride) {
  const int eb = dtype_bits(t.dtype) / 8;
  return {t.data + (row * n + first) * eb, t.dtype, 1, count, n, stride};
}

}  // namespace

const char* proj_name(Proj p) {
  static constexpr const char* kNames[] = {"gate", "up", "down"};
  return kNames[static_cast<size_t>(p)];
}

const FamilyLayout& family_layout(Family f) {
  auto i = static_cast<size_t>(f);
  MOE_ASSERT(i < static_cast<size_t>(Family::kCount));
  return kLayouts[i];
}

ExpertMapping::ExpertMapping(const Checkpoint& ckpt, const ModelProfile& profile)
    : ckpt_(ckpt), profile_(profile), layout_(family_layout(profile.family)) {
  // The prefix under which the first MoE layer's router exists; "" when none does (lookups
  // then report the unprefixed names as missing).
  if (profile.moe_layers.empty()) return;
  for (const char* prefix : kPrefixes) {
    prefix_ = prefix;
    if (ckpt_.has(name(layout_.router_weight, profile.moe_layers[0]))) return;
  }
  prefix_.clear();
}

std::string layout_name(const FamilyLayout& layout, const char* tmpl, int layer, int expert,
                        const std::string& prefix) {
  std::string s = tmpl;
  replace_all(s, "{B}", layout.block);
  replace_all(s, "{L}", std::to_string(layer));
  if (expert >= 0) replace_all(s, "{E}", std::to_string(expert));
  return prefix + s;
}

std::string ExpertMapping::name(const char* tmpl, int layer, int expert) const {
  return layout_name(layout_, tmpl, layer, expert, prefix_);
}

namespace {
// Looks a tensor up and checks it can be viewed and has the expected shape.
TensorView checked_view(const Checkpoint& ckpt, const std::string& name, const Shape& expected,
                        const char* meaning) {
  TensorView t = ckpt.view(name);
  MOE_CHECK(viewable(t.dtype), DTypeMismatch, ckpt.file_of(name), name,
            std::string("dtype ") + dtype_name(t.dtype) + " is not a dense element type");
  MOE_CHECK(t.shape == expected, ShapeMismatch, ckpt.file_of(name), name,
            "shape " + shape_str(t.shape) + ", expected " + shape_str(expected) + " " + meaning);
  return t;
}
}  // namespace

MatrixView ExpertMapping::expert_weight(int layer, int expert, Proj p) const {
  MOE_ASSERT(expert >= 0 && expert < profile_.num_experts);
  const int64_t E = profile_.num_experts, H = profile_.hidden_size,
                I = profile_.moe_intermediate_size;
  const StorageTraits& st = storage_traits(layout_.storage);
  if (!st.fused) {
    const char* tmpl = p == Proj::Gate ? layout_.gate : p == Proj::Up ? layout_.up : layout_.down;
    Shape want = p == Proj::Down ? Shape{H, I} : Shape{I, H};
    return as_matrix(checked_view(ckpt_, name(tmpl, layer, expert), want,
                                  p == Proj::Down ? "[hidden_size, moe_intermediate_size]"
                                                  : "[moe_intermediate_size, hidden_size]"));
  }
  if (p == Proj::Down) {
    Shape want = st.in_x_out ? Shape{E, I, H} : Shape{E, H, I};
    MatrixView m = slice3(checked_view(ckpt_, name(layout_.down, layer), want,
                                       st.in_x_out ? "[num_experts, moe_intermediate_size, hidden_size]"
                                                   : "[num_experts, hidden_size, moe_intermediate_size]"),
                          expert);
    return st.in_x_out ? m.transposed() : m;
  }
  Shape want = st.in_x_out ? Shape{E, H, 2 * I} : Shape{E, 2 * I, H};
  MatrixView m = slice3(checked_view(ckpt_, name(layout_.gate, layer), want,
                                     st.in_x_out ? "[num_experts, hidden_size, 2*moe_intermediate_size]"
                                                 : "[num_experts, 2*moe_intermediate_size, hidden_size]"),
                        expert);
  if (st.in_x_out) m = m.transposed();  // now [2I, H]
  const bool up = p == Proj::Up;
  return st.interleaved ? m.every_other_row(up ? 1 : 0) : m.row_block(up ? I : 0, I);
}

std::optional<MatrixView> ExpertMapping::expert_bias(int layer, int expert, Proj p) const {
  MOE_ASSERT(expert >= 0 && expert < profile_.num_experts);
  const char* tmpl = p == Proj::Down ? layout_.down_bias : layout_.gate_up_bias;
  if (!*tmpl) return std::nullopt;
  const int64_t E = profile_.num_experts, H = profile_.hidden_size,
                I = profile_.moe_intermediate_size;
  if (p == Proj::Down) {
    TensorView t = checked_view(ckpt_, name(tmpl, layer), {E, H}, "[num_experts, hidden_size]");
    return row_of(t, expert, H, 0, H, 1);
  }
  TensorView t =
      checked_view(ckpt_, name(tmpl, layer), {E, 2 * I}, "[num_experts, 2*moe_intermediate_size]");
  const bool up = p == Proj::Up;
  if (storage_traits(layout_.storage).interleaved) return row_of(t, expert, 2 * I, up ? 1 : 0, I, 2);
  return row_of(t, expert, 2 * I, up ? I : 0, I, 1);
}

MatrixView ExpertMapping::router_weight(int layer) const {
  return as_matrix(checked_view(ckpt_, name(layout_.router_weight, layer),
                                {profile_.num_experts, profile_.hidden_size},
                                "[num_experts, hidden_size]"));
}

std::optional<MatrixView> ExpertMapping::router_bias(int layer) const {
  if (!*layout_.router_bias) return std::nullopt;
  return as_matrix(
      checked_view(ckpt_, name(layout_.router_bias, layer), {profile_.num_experts}, "[num_experts]"));
}

std::optional<MatrixView> ExpertMapping::correction_bias(int layer) const {
  if (!*layout_.correction_bias) return std::nullopt;
  std::string n = name(layout_.correction_bias, layer);
  // ERNIE stores [1, E] (moe_statics), DeepSeek-V3 / GLM [E]: both are one row of E.
  const bool two_d = ckpt_.has(n) && ckpt_.view(n).shape.size() == 2;
  Shape want = two_d ? Shape{1, profile_.num_experts} : Shape{profile_.num_experts};
  return as_matrix(checked_view(ckpt_, n, want, "[num_experts]"));
}

std::optional<MatrixView> ExpertMapping::shared_weight(int layer, Proj p) const {
  const char* tmpl = p == Proj::Gate ? layout_.shared_gate
                     : p == Proj::Up ? layout_.shared_up
                                     : layout_.shared_down;
  if (!*tmpl || profile_.shared_intermediate_size == 0) return std::nullopt;
  const int64_t H = profile_.hidden_size, S = profile_.shared_intermediate_size;
  Shape want = p == Proj::Down ? Shape{H, S} : Shape{S, H};
  return as_matrix(checked_view(ckpt_, name(tmpl, layer), want,
                                p == Proj::Down ? "[hidden_size, shared_intermediate_size]"
                                                : "[shared_intermediate_size, hidden_size]"));
}

std::optional<MatrixView> ExpertMapping::shared_expert_gate(int layer) const {
  if (!*layout_.shared_expert_gate || !profile_.has_shared_expert_gate) return std::nullopt;
  return as_matrix(checked_view(ckpt_, name(layout_.shared_expert_gate, layer),
                                {1, profile_.hidden_size}, "[1, hidden_size]"));
}

std::vector<std::string> ExpertMapping::layer_tensor_names(int layer) const {
  std::vector<std::string> out;
  auto add = [&](const char* tmpl, int expert = -1) {
    if (*tmpl) out.push_back(name(tmpl, layer, expert));
  };
  add(layout_.router_weight);
  add(layout_.router_bias);
  add(layout_.correction_bias);
  if (storage_traits(layout_.storage).fused) {
    add(layout_.gate);
    add(layout_.down);
  } else {
    for (int e = 0; e < profile_.num_experts; ++e) {
      add(layout_.gate, e);
      add(layout_.up, e);
      add(layout_.down, e);
    }
  }
  add(layout_.gate_up_bias);
  add(layout_.down_bias);
  if (profile_.shared_intermediate_size > 0) {
    add(layout_.shared_gate);
    add(layout_.shared_up);
    add(layout_.shared_down);
  }
  if (profile_.has_shared_expert_gate) add(layout_.shared_expert_gate);
  return out;
}

}  // namespace moe
