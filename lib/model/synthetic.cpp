// Synthetic checkpoints: a table of per-family config writers and defaults, a deterministic
// value generator keyed by (seed, logical tensor), and a streaming writer that lays logical
// per-expert matrices out in each family's storage (per-expert, or one of the fused 3-D styles).
#include "model/synthetic.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "core/error.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "io/safetensors_writer.h"
#include "model/family_table.h"

namespace moe {

namespace {

// ---- deterministic values --------------------------------------------------------------------

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// xoshiro256**: fast, and each logical tensor gets its own stream, so values do not depend on
// the order or the thread in which tensors are generated.
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (auto& w : s_) w = splitmix64(seed);
  }
  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9, t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

constexpr float kStd = 0.02f;

// Normal(0, kStd) by Box-Muller.
void normal_fill(uint64_t key, float* out, int64_t n) {
  Rng rng(key);
  constexpr double kTwoPi = 6.283185307179586;
  for (int64_t i = 0; i < n; i += 2) {
    double u1 = (static_cast<double>(rng.next() >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
    double u2 = static_cast<double>(rng.next() >> 11) * 0x1.0p-53;
    float r = kStd * static_cast<float>(std::sqrt(-2.0 * std::log(u1)));
    float a = static_cast<float>(kTwoPi * u2);
    out[i] = r * std::cos(a);
    if (i + 1 < n) out[i + 1] = r * std::sin(a);
  }
}

uint64_t value_key(const SyntheticSpec& s, const std::string& logical) {
  uint64_t x = s.seed ^ fnv1a(logical);
  return splitmix64(x);
}

// ---- the stored element types (BF16 / F16 / F32) ---------------------------------------------

struct StoredType {
  DType dtype;
  const char* torch_dtype;  // config.json torch_dtype
  void (*encode)(const float* in, int64_t n, uint8_t* out);
  float (*round)(float v);
};

void enc_bf16(const float* in, int64_t n, uint8_t* out) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t v = f32_to_bf16(in[i]);
    std::memcpy(out + 2 * i, &v, 2);
  }
}
void enc_f16(const float* in, int64_t n, uint8_t* out) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t v = f32_to_f16(in[i]);
    std::memcpy(out + 2 * i, &v, 2);
  }
}
void enc_f32(const float* in, int64_t n, uint8_t* out) { std::memcpy(out, in, n * 4); }
float round_bf16(float v) { return bf16_to_f32(f32_to_bf16(v)); }
float round_f16(float v) { return f16_to_f32(f32_to_f16(v)); }
float round_f32(float v) { return v; }

constexpr StoredType kStoredTypes[] = {
    {DType::BF16, "bfloat16", enc_bf16, round_bf16},
    {DType::F16, "float16", enc_f16, round_f16},
    {DType::F32, "float32", enc_f32, round_f32},
};

const StoredType& stored_type(DType t) {
  for (const auto& row : kStoredTypes)
    if (row.dtype == t) return row;
  fail(ErrorCode::InvalidArgument, "", "",
       std::string("synthetic checkpoints are BF16, F16 or F32, not ") + dtype_name(t));
}

// ---- per-family config writers and defaults ---------------------------------------------------

enum class SharedKind { None, AnyWidth, MultipleOfI, ExactlyI };

std::vector<int> range(int begin, int end) {
  std::vector<int> v;
  for (int i = begin; i < end; ++i) v.push_back(i);
  return v;
}

// Each adds the family's MoE fields with the spellings transformers 5.17 writes (hf-layouts.md).
void cfg_mixtral(const SyntheticSpec& s, nlohmann::json& c) {
  c["intermediate_size"] = s.moe_intermediate_size;
  c["num_local_experts"] = s.num_experts;
  c["num_experts_per_tok"] = s.top_k;
  c["output_router_logits"] = false;
  c["router_aux_loss_coef"] = 0.001;
  c["router_jitter_noise"] = 0.0;
}
void cfg_qwen_common(const SyntheticSpec& s, nlohmann::json& c) {
  c["decoder_sparse_step"] = 1;
  c["intermediate_size"] = s.dense_intermediate_size;
  c["mlp_only_layers"] = range(0, s.first_dense_layers);
  c["moe_intermediate_size"] = s.moe_intermediate_size;
  c["norm_topk_prob"] = false;
  c["num_experts_per_tok"] = s.top_k;
  c["output_router_logits"] = false;
  c["router_aux_loss_coef"] = 0.001;
}
void cfg_qwen2(const SyntheticSpec& s, nlohmann::json& c) {
  cfg_qwen_common(s, c);
  c["num_experts"] = s.num_experts;
  c["shared_expert_intermediate_size"] = s.shared_intermediate_size;
}
void cfg_qwen3(const SyntheticSpec& s, nlohmann::json& c) {
  cfg_qwen_common(s, c);
  c["num_local_experts"] = s.num_experts;  // transformers 5.17's spelling (released: num_experts)
}
void cfg_deepseek_common(const SyntheticSpec& s, nlohmann::json& c) {
  c["first_k_dense_replace"] = s.first_dense_layers;
  c["intermediate_size"] = s.dense_intermediate_size;
  c["moe_intermediate_size"] = s.moe_intermediate_size;
  c["n_group"] = s.n_group;
  c["n_routed_experts"] = s.num_experts;
  c["n_shared_experts"] = s.shared_intermediate_size / s.moe_intermediate_size;
  c["num_experts_per_tok"] = s.top_k;
  c["topk_group"] = s.topk_group;
}
void cfg_deepseek_v2(const SyntheticSpec& s, nlohmann::json& c) {
  cfg_deepseek_common(s, c);
  c["moe_layer_freq"] = 1;
  c["norm_topk_prob"] = false;
  c["routed_scaling_factor"] = 1.0;
  c["scoring_func"] = "softmax";
  c["topk_method"] = s.n_group > 1 ? "group_limited_greedy" : "greedy";
}
void cfg_deepseek_v3(const SyntheticSpec& s, nlohmann::json& c) {
  cfg_deepseek_common(s, c);
  c["norm_topk_prob"] = true;
  c["rope_interleave"] = true;
  c["routed_scaling_factor"] = 2.5;
}
void cfg_glm4_moe(const SyntheticSpec& s, nlohmann::json& c) {
  cfg_deepseek_common(s, c);
  c["norm_topk_prob"] = true;
  c["routed_scaling_factor"] = 1.0;
  c["partial_rotary_factor"] = 0.5;
  c["use_qk_norm"] = false;
}
void cfg_olmoe(const SyntheticSpec& s, nlohmann::json& c) {
  c["intermediate_size"] = s.moe_intermediate_size;
  c["norm_topk_prob"] = false;
  c["num_experts"] = s.num_experts;
  c["num_experts_per_tok"] = s.top_k;
  c["output_router_logits"] = false;
  c["router_aux_loss_coef"] = 0.01;
}
void cfg_granitemoe(const SyntheticSpec& s, nlohmann::json& c) {
  cfg_mixtral(s, c);
  c.erase("router_jitter_noise");
  c["logits_scaling"] = 1.0;
  c["embedding_multiplier"] = 1.0;
  c["residual_multiplier"] = 1.0;
  c["attention_multiplier"] = 1.0;
}
void cfg_llama4(const SyntheticSpec& s, nlohmann::json& c) {
  c["interleave_moe_layer_step"] = 1;
  c["intermediate_size"] = s.moe_intermediate_size;
  c["intermediate_size_mlp"] = s.dense_intermediate_size;
  c["moe_layers"] = range(s.first_dense_layers, s.num_layers);
  c["num_local_experts"] = s.num_experts;
  c["num_experts_per_tok"] = s.top_k;
  c["output_router_logits"] = false;
  c["router_aux_loss_coef"] = 0.001;
  c["router_jitter_noise"] = 0.0;
}
void cfg_gpt_oss(const SyntheticSpec& s, nlohmann::json& c) {
  cfg_mixtral(s, c);
  c.erase("router_jitter_noise");
  c["swiglu_limit"] = 7.0;
}
void cfg_ernie(const SyntheticSpec& s, nlohmann::json& c) {
  c["intermediate_size"] = s.dense_intermediate_size;
  c["moe_intermediate_size"] = s.moe_intermediate_size;
  c["moe_k"] = s.top_k;
  c["moe_layer_end_index"] = s.num_layers - 1;
  c["moe_layer_interval"] = 1;
  c["moe_layer_start_index"] = s.first_dense_layers;
  c["moe_norm_min"] = 1e-12;
  c["moe_num_experts"] = s.num_experts;
  c["moe_num_shared_experts"] = s.shared_intermediate_size / s.moe_intermediate_size;
  c["output_router_logits"] = false;
  c["router_aux_loss_coef"] = 0.001;
  c["use_bias"] = false;
}

struct SynthRow {
  Family family;
  const char* architecture;
  void (*moe_fields)(const SyntheticSpec& s, nlohmann::json& cfg);
  SharedKind shared;
  int default_shared_multiple;  // default shared width = this * moe_intermediate_size
  bool all_layers_moe;          // the family has no dense-layer rule
  bool leading_dense_default;   // one leading dense layer by default (when num_layers > 1)
  bool grouped;                 // n_group / topk_group in the config
  bool correction_bias_2d;      // ERNIE's moe_statics bias is [1, E]
};

// clang-format off
constexpr SynthRow kSynthRows[] = {
  {Family::Mixtral,    "MixtralForCausalLM",     cfg_mixtral,     SharedKind::None,        0, true,  false, false, false},
  {Family::Qwen2Moe,   "Qwen2MoeForCausalLM",    cfg_qwen2,       SharedKind::AnyWidth,    2, false, false, false, false},
  {Family::Qwen3Moe,   "Qwen3MoeForCausalLM",    cfg_qwen3,       SharedKind::None,        0, false, false, false, false},
  {Family::DeepseekV2, "DeepseekV2ForCausalLM",  cfg_deepseek_v2, SharedKind::MultipleOfI, 1, false, true,  true,  false},
  {Family::DeepseekV3, "DeepseekV3ForCausalLM",  cfg_deepseek_v3, SharedKind::MultipleOfI, 1, false, true,  true,  false},
  {Family::Glm4Moe,    "Glm4MoeForCausalLM",     cfg_glm4_moe,    SharedKind::MultipleOfI, 1, false, true,  true,  false},
  {Family::Olmoe,      "OlmoeForCausalLM",       cfg_olmoe,       SharedKind::None,        0, true,  false, false, false},
  {Family::GraniteMoe, "GraniteMoeForCausalLM",  cfg_granitemoe,  SharedKind::None,        0, true,  false, false, false},
  {Family::Llama4,     "Llama4ForCausalLM",      cfg_llama4,      SharedKind::ExactlyI,    1, false, false, false, false},
  {Family::GptOss,     "GptOssForCausalLM",      cfg_gpt_oss,     SharedKind::None,        0, true,  false, false, false},
  {Family::Ernie45Moe, "Ernie4_5_MoeForCausalLM", cfg_ernie,      SharedKind::MultipleOfI, 2, false, true,  false, true},
};
// clang-format on
static_assert(sizeof(kSynthRows) / sizeof(kSynthRows[0]) == static_cast<size_t>(Family::kCount),
              "one synthetic row per family");
constexpr bool synth_rows_follow_enum() {
  for (size_t i = 0; i < static_cast<size_t>(Family::kCount); ++i)
    if (static_cast<size_t>(kSynthRows[i].family) != i) return false;
  return true;
}
static_assert(synth_rows_follow_enum(), "kSynthRows rows must follow the Family enum order");

const SynthRow& synth_row(Family f) { return kSynthRows[static_cast<size_t>(f)]; }

void check_arg(bool ok, const std::string& what) {
  MOE_CHECK(ok, InvalidArgument, "", "", "synthetic checkpoint: " + what);
}

// ---- logical tensors ---------------------------------------------------------------------------

struct Dims {
  int64_t rows, cols;
};

Dims logical_dims(const SyntheticSpec& s, SynthTensor what, Proj p) {
  const int64_t H = s.hidden_size, I = s.moe_intermediate_size, E = s.num_experts,
                S = s.shared_intermediate_size;
  switch (what) {
    case SynthTensor::ExpertWeight: return p == Proj::Down ? Dims{H, I} : Dims{I, H};
    case SynthTensor::ExpertBias: return {1, p == Proj::Down ? H : I};
    case SynthTensor::Router: return {E, H};
    case SynthTensor::RouterBias: return {1, E};
    case SynthTensor::CorrectionBias: return {1, E};
    case SynthTensor::SharedWeight: return p == Proj::Down ? Dims{H, S} : Dims{S, H};
    case SynthTensor::SharedExpertGate: return {1, H};
  }
  MOE_ASSERT(false);
  return {0, 0};
}

std::string logical_key(SynthTensor what, int layer, int expert, Proj p) {
  static constexpr const char* kWhat[] = {"expert", "expert_bias", "router", "router_bias",
                                          "correction_bias", "shared", "shared_expert_gate"};
  return "L" + std::to_string(layer) + "." + kWhat[static_cast<size_t>(what)] + ".E" +
         std::to_string(expert) + "." + proj_name(p);
}

// Unrounded values of a logical tensor; the writer rounds once while encoding.
std::vector<float> raw_values(const SyntheticSpec& s, SynthTensor what, int layer, int expert,
                              Proj p) {
  Dims d = logical_dims(s, what, p);
  std::vector<float> v(static_cast<size_t>(d.rows * d.cols));
  normal_fill(value_key(s, logical_key(what, layer, expert, p)), v.data(),
              static_cast<int64_t>(v.size()));
  return v;
}

// ---- the tensors a spec writes ------------------------------------------------------------------

// One stored tensor, produced in `parts` equal pieces (fused tensors: one per expert) so pieces
// can be generated in parallel and streamed in order.
struct Job {
  std::string name;
  Shape shape;
  int64_t parts = 1;
  std::function<void(int64_t part, float* out)> fill;
  int64_t numel() const { return shape_numel(shape); }
};

Job plain(std::string name, Shape shape, std::function<void(float*)> fill) {
  return {std::move(name), std::move(shape), 1, [f = std::move(fill)](int64_t, float* out) { f(out); }};
}

Job random_tensor(const SyntheticSpec& s, const std::string& name, Shape shape) {
  int64_t n = shape_numel(shape);
  uint64_t key = value_key(s, name);
  return plain(name, std::move(shape), [key, n](float* out) { normal_fill(key, out, n); });
}

Job logical_tensor(const SyntheticSpec& s, std::string name, Shape shape, SynthTensor what,
                   int layer, int expert = -1, Proj p = Proj::Gate) {
  return plain(std::move(name), std::move(shape), [&s, what, layer, expert, p](float* out) {
    auto v = raw_values(s, what, layer, expert, p);
    std::copy(v.begin(), v.end(), out);
  });
}

// Writes the [out, in] logical matrix `m` (rows x cols) into a stored slice: transposed when the
// storage is [in, out], at column offset `col0` with column stride `col_step` of a row of
// `row_len` elements.
void place_transposed(const std::vector<float>& m, int64_t rows, int64_t cols, float* out,
                      int64_t row_len, int64_t col0, int64_t col_step) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[c * row_len + col0 + r * col_step] = m[r * cols + c];
}

void add_experts(const SyntheticSpec& s, const FamilyLayout& lay, int L, const std::string& prefix,
                 std::vector<Job>& jobs) {
  const int64_t H = s.hidden_size, I = s.moe_intermediate_size, E = s.num_experts;
  auto nm = [&](const char* tmpl, int e = -1) { return layout_name(lay, tmpl, L, e, prefix); };
  switch (lay.storage) {
    case ExpertStorage::PerExpert:
      for (int e = 0; e < E; ++e) {
        jobs.push_back(logical_tensor(s, nm(lay.gate, e), {I, H}, SynthTensor::ExpertWeight, L, e, Proj::Gate));
        jobs.push_back(logical_tensor(s, nm(lay.up, e), {I, H}, SynthTensor::ExpertWeight, L, e, Proj::Up));
        jobs.push_back(logical_tensor(s, nm(lay.down, e), {H, I}, SynthTensor::ExpertWeight, L, e, Proj::Down));
      }
      return;
    case ExpertStorage::FusedInterleaved:   // gpt-oss [E, H, 2I]: column 2i gate, 2i+1 up
    case ExpertStorage::FusedInOutChunked: {  // Llama-4 [E, H, 2I]: columns [0, I) gate, [I, 2I) up
      const bool inter = lay.storage == ExpertStorage::FusedInterleaved;
      jobs.push_back({nm(lay.gate), {E, H, 2 * I}, E, [&s, L, I, H, inter](int64_t e, float* out) {
                        auto g = raw_values(s, SynthTensor::ExpertWeight, L, int(e), Proj::Gate);
                        auto u = raw_values(s, SynthTensor::ExpertWeight, L, int(e), Proj::Up);
                        place_transposed(g, I, H, out, 2 * I, 0, inter ? 2 : 1);
                        place_transposed(u, I, H, out, 2 * I, inter ? 1 : I, inter ? 2 : 1);
                      }});
      jobs.push_back({nm(lay.down), {E, I, H}, E, [&s, L, I, H](int64_t e, float* out) {
                        auto d = raw_values(s, SynthTensor::ExpertWeight, L, int(e), Proj::Down);
                        place_transposed(d, H, I, out, H, 0, 1);
                      }});
      if (*lay.gate_up_bias) {
        jobs.push_back({nm(lay.gate_up_bias), {E, 2 * I}, E, [&s, L, I, inter](int64_t e, float* out) {
                          auto g = raw_values(s, SynthTensor::ExpertBias, L, int(e), Proj::Gate);
                          auto u = raw_values(s, SynthTensor::ExpertBias, L, int(e), Proj::Up);
                          for (int64_t i = 0; i < I; ++i) {
                            out[inter ? 2 * i : i] = g[i];
                            out[inter ? 2 * i + 1 : I + i] = u[i];
                          }
                        }});
      }
      if (*lay.down_bias) {
        jobs.push_back({nm(lay.down_bias), {E, H}, E, [&s, L](int64_t e, float* out) {
                          auto d = raw_values(s, SynthTensor::ExpertBias, L, int(e), Proj::Down);
                          std::copy(d.begin(), d.end(), out);
                        }});
      }
      return;
    }
    case ExpertStorage::FusedOutInChunked:  // GraniteMoE input_linear [E, 2I, H], output_linear [E, H, I]
      jobs.push_back({nm(lay.gate), {E, 2 * I, H}, E, [&s, L, I, H](int64_t e, float* out) {
                        auto g = raw_values(s, SynthTensor::ExpertWeight, L, int(e), Proj::Gate);
                        auto u = raw_values(s, SynthTensor::ExpertWeight, L, int(e), Proj::Up);
                        std::copy(g.begin(), g.end(), out);
                        std::copy(u.begin(), u.end(), out + I * H);
                      }});
      jobs.push_back({nm(lay.down), {E, H, I}, E, [&s, L](int64_t e, float* out) {
                        auto d = raw_values(s, SynthTensor::ExpertWeight, L, int(e), Proj::Down);
                        std::copy(d.begin(), d.end(), out);
                      }});
      return;
  }
}

void add_moe_layer(const SyntheticSpec& s, const ModelProfile& prof, int L,
                   const std::string& prefix, std::vector<Job>& jobs) {
  const FamilyLayout& lay = family_layout(s.family);
  const int64_t H = s.hidden_size, E = s.num_experts, S = s.shared_intermediate_size;
  auto nm = [&](const char* tmpl) { return layout_name(lay, tmpl, L, -1, prefix); };
  jobs.push_back(logical_tensor(s, nm(lay.router_weight), {E, H}, SynthTensor::Router, L));
  if (*lay.router_bias)
    jobs.push_back(logical_tensor(s, nm(lay.router_bias), {E}, SynthTensor::RouterBias, L));
  if (*lay.correction_bias) {
    Shape shape = synth_row(s.family).correction_bias_2d ? Shape{1, E} : Shape{E};
    jobs.push_back(logical_tensor(s, nm(lay.correction_bias), shape, SynthTensor::CorrectionBias, L));
  }
  add_experts(s, lay, L, prefix, jobs);
  if (S > 0 && *lay.shared_gate) {
    jobs.push_back(logical_tensor(s, nm(lay.shared_gate), {S, H}, SynthTensor::SharedWeight, L, -1, Proj::Gate));
    jobs.push_back(logical_tensor(s, nm(lay.shared_up), {S, H}, SynthTensor::SharedWeight, L, -1, Proj::Up));
    jobs.push_back(logical_tensor(s, nm(lay.shared_down), {H, S}, SynthTensor::SharedWeight, L, -1, Proj::Down));
  }
  if (prof.has_shared_expert_gate && *lay.shared_expert_gate)
    jobs.push_back(logical_tensor(s, nm(lay.shared_expert_gate), {1, H}, SynthTensor::SharedExpertGate, L));
}

std::vector<Job> plan_jobs(const SyntheticSpec& s, const ModelProfile& prof) {
  const int64_t H = s.hidden_size, V = s.vocab_size, D = s.dense_intermediate_size;
  const std::string prefix = s.multimodal ? "language_model." : "";
  const FamilyLayout& lay = family_layout(s.family);
  std::vector<Job> jobs;
  auto non_moe = [&](const std::string& name, Shape shape) {
    if (s.non_moe_tensors) jobs.push_back(random_tensor(s, prefix + name, std::move(shape)));
  };
  non_moe("model.embed_tokens.weight", {V, H});
  for (int L = 0; L < s.num_layers; ++L) {
    const std::string layer = "model.layers." + std::to_string(L) + ".";
    non_moe(layer + "input_layernorm.weight", {H});
    non_moe(layer + "self_attn.q_proj.weight", {H, H});
    non_moe(layer + "post_attention_layernorm.weight", {H});
    if (std::find(prof.moe_layers.begin(), prof.moe_layers.end(), L) != prof.moe_layers.end()) {
      add_moe_layer(s, prof, L, prefix, jobs);
    } else {  // a dense MLP where the MoE block would be: {B}.gate_proj.weight, ...
      const std::string block = layout_name(lay, "{B}.", L, -1, "").substr(layer.size());
      non_moe(layer + block + "gate_proj.weight", {D, H});
      non_moe(layer + block + "up_proj.weight", {D, H});
      non_moe(layer + block + "down_proj.weight", {H, D});
    }
  }
  non_moe("model.norm.weight", {H});
  non_moe("lm_head.weight", {V, H});
  return jobs;
}

std::string shard_file_name(int i, int n) {
  if (n == 1) return "model.safetensors";
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05d-of-%05d.safetensors", i + 1, n);
  return buf;
}

void write_text_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << text;
    f.flush();
    MOE_CHECK(f.good(), Io, path, "", "cannot write");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  MOE_CHECK(!ec, Io, path, "", "cannot rename into place: " + ec.message());
}

// Streams one shard: parts are generated `window` at a time in parallel, appended in order.
void write_shard(const std::string& path, const std::vector<const Job*>& jobs, DType dtype,
                 int threads, Progress& progress) {
  const StoredType& st = stored_type(dtype);
  const int eb = dtype_bits(dtype) / 8;
  SafetensorsWriter w(path, {{"format", "pt"}});
  struct Part {
    const Job* job;
    int64_t index;
  };
  std::vector<Part> parts;
  for (const Job* j : jobs) {
    w.declare(j->name, dtype, j->shape);
    for (int64_t p = 0; p < j->parts; ++p) parts.push_back({j, p});
  }
  w.begin_data();
  const size_t window = static_cast<size_t>(std::max(1, threads)) * 2;
  std::vector<std::vector<uint8_t>> bufs(window);
  for (size_t start = 0; start < parts.size(); start += window) {
    const size_t n = std::min(window, parts.size() - start);
    parallel_for(static_cast<int64_t>(n), threads, [&](int64_t i) {
      const Part& part = parts[start + i];
      const int64_t elems = part.job->numel() / part.job->parts;
      std::vector<float> f(static_cast<size_t>(elems));
      part.job->fill(part.index, f.data());
      bufs[i].resize(static_cast<size_t>(elems) * eb);
      st.encode(f.data(), elems, bufs[i].data());
    });
    for (size_t i = 0; i < n; ++i) {
      w.append(bufs[i].data(), bufs[i].size());
      progress.add(bufs[i].size());
    }
  }
  w.commit();
}

}  // namespace

SyntheticSpec resolve_spec(const SyntheticSpec& in) {
  SyntheticSpec s = in;
  const SynthRow& row = synth_row(s.family);
  stored_type(s.dtype);
  check_arg(s.num_layers >= 1, "--layers must be >= 1");
  check_arg(s.hidden_size >= 1 && s.moe_intermediate_size >= 1 && s.dense_intermediate_size >= 1,
            "sizes must be >= 1");
  check_arg(s.num_experts >= 1, "--experts must be >= 1");
  check_arg(s.top_k >= 1 && s.top_k <= s.num_experts, "--top-k must be in [1, experts]");
  check_arg(s.vocab_size >= 1, "vocab size must be >= 1");
  check_arg(s.num_shards >= 1, "--shards must be >= 1");
  check_arg(!s.multimodal || s.family == Family::Llama4, "only Llama-4 has a multimodal layout");
  const int I = s.moe_intermediate_size;
  if (s.shared_intermediate_size < 0) s.shared_intermediate_size = row.default_shared_multiple * I;
  switch (row.shared) {
    case SharedKind::None:
      check_arg(s.shared_intermediate_size == 0, std::string(family_name(s.family)) + " has no shared expert");
      break;
    case SharedKind::AnyWidth: break;
    case SharedKind::MultipleOfI:
      check_arg(s.shared_intermediate_size % I == 0,
                "the shared width must be a multiple of the expert width for " +
                    std::string(family_name(s.family)));
      break;
    case SharedKind::ExactlyI:
      check_arg(s.shared_intermediate_size == I, "Llama-4 has one shared expert as wide as a routed one");
      break;
  }
  if (s.first_dense_layers < 0) s.first_dense_layers = row.leading_dense_default && s.num_layers > 1 ? 1 : 0;
  check_arg(s.first_dense_layers < s.num_layers, "need at least one MoE layer");
  check_arg(!row.all_layers_moe || s.first_dense_layers == 0,
            std::string(family_name(s.family)) + " has MoE in every layer");
  if (row.grouped) {
    if (s.n_group < 0) s.n_group = s.num_experts % 2 == 0 && s.num_experts >= 4 ? 2 : 1;
    if (s.topk_group < 0) s.topk_group = 1;
    check_arg(s.n_group >= 1 && s.num_experts % s.n_group == 0, "n_group must divide the experts");
    check_arg(s.topk_group >= 1 && s.topk_group <= s.n_group, "topk_group must be in [1, n_group]");
    check_arg(s.top_k <= s.topk_group * (s.num_experts / s.n_group),
              "top_k exceeds the experts of the kept groups");
  } else {
    check_arg(s.n_group <= 1 && s.topk_group <= 1, "grouped routing is DeepSeek/GLM only");
    s.n_group = s.topk_group = 1;
  }
  if (s.threads <= 0) s.threads = default_threads();
  return s;
}

nlohmann::json synthetic_config(const SyntheticSpec& spec) {
  const SyntheticSpec s = resolve_spec(spec);
  const SynthRow& row = synth_row(s.family);
  nlohmann::json c = {
      {"architectures", {row.architecture}},
      {"model_type", family_row(s.family).model_types.names[0]},
      {"hidden_size", s.hidden_size},
      {"num_hidden_layers", s.num_layers},
      {"num_attention_heads", 4},
      {"num_key_value_heads", 4},
      {"vocab_size", s.vocab_size},
      {"hidden_act", "silu"},
      {"rms_norm_eps", 1e-6},
      {"max_position_embeddings", 4096},
      {"rope_theta", 10000.0},
      {"initializer_range", 0.02},
      {"tie_word_embeddings", false},
      {"torch_dtype", stored_type(s.dtype).torch_dtype},
  };
  row.moe_fields(s, c);
  if (!s.multimodal) return c;
  // Llama-4 multimodal: the text model under text_config (model_type llama4_text).
  return {{"architectures", {"Llama4ForConditionalGeneration"}},
          {"model_type", "llama4"},
          {"text_config", c},
          {"vision_config", {{"model_type", "llama4_vision_model"}, {"hidden_size", 32}}},
          {"torch_dtype", stored_type(s.dtype).torch_dtype}};
}

void write_synthetic_checkpoint(const std::string& dir, const SyntheticSpec& spec) {
  const SyntheticSpec s = resolve_spec(spec);
  const nlohmann::json config = synthetic_config(s);
  const ModelProfile prof = profile_from_config(config, dir + "/config.json");
  const std::vector<Job> jobs = plan_jobs(s, prof);
  const int eb = dtype_bits(s.dtype) / 8;

  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  MOE_CHECK(!ec, Io, dir, "", "cannot create directory: " + ec.message());

  // Contiguous runs of tensors of about total / num_shards bytes each.
  uint64_t total = 0;
  for (const Job& j : jobs) total += static_cast<uint64_t>(j.numel()) * eb;
  const int n = std::min<int>(s.num_shards, static_cast<int>(jobs.size()));
  std::vector<std::vector<const Job*>> shards(n);
  uint64_t done = 0;
  int shard = 0;
  for (size_t i = 0; i < jobs.size(); ++i) {
    const int remaining_jobs = static_cast<int>(jobs.size() - i);
    const int target = static_cast<int>(std::min<uint64_t>(n - 1, done * n / std::max<uint64_t>(total, 1)));
    // Never skip a shard, and leave at least one tensor for every later shard.
    shard = std::max(std::min(std::max(target, shard), shard + 1), n - remaining_jobs);
    shards[shard].push_back(&jobs[i]);
    done += static_cast<uint64_t>(jobs[i].numel()) * eb;
  }
  nlohmann::json weight_map = nlohmann::json::object();
  Progress progress("writing", total, s.quiet);
  for (int i = 0; i < n; ++i) {
    const std::string file = shard_file_name(i, n);
    for (const Job* j : shards[i]) weight_map[j->name] = file;
    write_shard(dir + "/" + file, shards[i], s.dtype, s.threads, progress);
  }
  progress.finish();
  if (n > 1) {
    nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    write_text_atomic(dir + "/model.safetensors.index.json", index.dump(2) + "\n");
  }
  write_text_atomic(dir + "/config.json", config.dump(2) + "\n");
}

std::vector<float> synthetic_values(const SyntheticSpec& spec, SynthTensor what, int layer,
                                    int expert, Proj proj) {
  const SyntheticSpec s = resolve_spec(spec);
  auto v = raw_values(s, what, layer, expert, proj);
  const StoredType& st = stored_type(s.dtype);
  for (float& x : v) x = st.round(x);
  return v;
}

}  // namespace moe
