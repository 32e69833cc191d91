// Expert mapping as data: for each family, where a layer's router, experts and shared experts
// live in the checkpoint, including the three fused 3-D styles (gpt-oss interleaved gate_up_proj
// [E, H, 2I] with biases, Llama-4 gate_up_proj [E, H, 2I] chunked, GraniteMoE input_linear
// [E, 2I, H] chunked). Resolution returns strided MatrixViews in PyTorch [out, in] orientation,
// so consumers never see how the source stored them.
#pragma once
#include <optional>
#include <string>

#include "core/tensor_view.h"
#include "io/checkpoint.h"
#include "model/profile.h"

namespace moe {

enum class Proj { Gate, Up, Down };  // w1, w3, w2
const char* proj_name(Proj p);

enum class ExpertStorage {
  PerExpert,          // one [out, in] tensor per expert and projection
  FusedInterleaved,   // gpt-oss: gate_up [E, H, 2I] (in x out), even cols gate / odd up; down [E, I, H]
  FusedInOutChunked,  // Llama-4: gate_up [E, H, 2I] (in x out), first I cols gate; down [E, I, H]
  FusedOutInChunked,  // GraniteMoE: input_linear [E, 2I, H], first I rows gate; output_linear [E, H, I]
};

// Name templates: {L} = layer index, {E} = expert index. "" = absent for this family.
struct FamilyLayout {
  Family family;
  const char* block;  // "model.layers.{L}.block_sparse_moe"; further names start with "{B}"
  const char* router_weight;
  const char* router_bias;
  const char* correction_bias;
  ExpertStorage storage;
  const char* gate;  // per-expert weight, or the fused gate_up tensor
  const char* up;    // per-expert weight ("" when fused)
  const char* down;
  const char* gate_up_bias;  // fused styles only
  const char* down_bias;
  const char* shared_gate;
  const char* shared_up;
  const char* shared_down;
  const char* shared_expert_gate;
};
const FamilyLayout& family_layout(Family f);
// Expands a template: {B} -> the layout's block, {L} -> layer, {E} -> expert (when >= 0), and
// puts `prefix` in front. The one place names are built (mapping and the synthetic writer).
std::string layout_name(const FamilyLayout& layout, const char* tmpl, int layer, int expert,
                        const std::string& prefix);

// Resolves names against one checkpoint (also picks the prefix variant, e.g. Llama-4's
// "language_model." multimodal prefix).
class ExpertMapping {
 public:
  ExpertMapping(const Checkpoint& ckpt, const ModelProfile& profile);

  // [N, K] in PyTorch orientation: gate/up [I, H], down [H, I]. Throws MissingTensor/ShapeMismatch.
  MatrixView expert_weight(int layer, int expert, Proj p) const;
  // Biases as 1 x N rows (gpt-oss); nullopt when the family has none.
  std::optional<MatrixView> expert_bias(int layer, int expert, Proj p) const;
  MatrixView router_weight(int layer) const;                   // [E, H]
  std::optional<MatrixView> router_bias(int layer) const;      // 1 x E
  std::optional<MatrixView> correction_bias(int layer) const;  // 1 x E (ERNIE stores [1, E])
  // Shared expert(s) as one MLP of width shared_intermediate_size; nullopt when none.
  std::optional<MatrixView> shared_weight(int layer, Proj p) const;
  std::optional<MatrixView> shared_expert_gate(int layer) const;  // 1 x H

  // Every tensor name the MoE part of `layer` uses (for validate and for --moe-only copying).
  std::vector<std::string> layer_tensor_names(int layer) const;
  std::string name(const char* tmpl, int layer, int expert = -1) const;

 private:
  const Checkpoint& ckpt_;
  const ModelProfile& profile_;
  const FamilyLayout& layout_;
  std::string prefix_;  // "" or "language_model."
};

}  // namespace moe
