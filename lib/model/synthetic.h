// Synthetic checkpoints of every family, written in the exact on-disk layouts of hf-layouts.md
// (config.json fields and tensor names as transformers writes them), with seeded random values.
// Used by tests (values can be regenerated for comparison), `make-example` and benchmarks.
// Large sizes stream through the safetensors writer, so RAM use stays small.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "mapping/expert_mapping.h"
#include "model/profile.h"

namespace moe {

struct SyntheticSpec {
  Family family = Family::Qwen3Moe;
  DType dtype = DType::BF16;  // BF16, F16 or F32
  int num_layers = 2;
  int hidden_size = 64;
  int moe_intermediate_size = 32;
  int dense_intermediate_size = 96;  // dense MLP layers
  int num_experts = 8;
  int top_k = 2;
  // -1 = the family's default: Qwen2-MoE 2*I, DeepSeek/GLM 1*I (n_shared_experts = 1), ERNIE
  // 2*I, Llama-4 I (always exactly one shared expert), 0 elsewhere. DeepSeek/GLM/ERNIE need a
  // multiple of moe_intermediate_size.
  int shared_intermediate_size = -1;
  // Leading dense layers; -1 = family default (1 for DeepSeek/GLM/ERNIE when num_layers > 1,
  // else 0). Must be 0 for families whose every layer is MoE (Mixtral, OLMoE, GraniteMoE, gpt-oss).
  int first_dense_layers = -1;
  int n_group = -1, topk_group = -1;  // grouped routing (DeepSeek/GLM); -1 = 2 groups / 1 kept when E is even
  int vocab_size = 256;
  int num_shards = 1;            // > 1: model-0000i-of-0000N.safetensors + index
  bool multimodal = false;       // Llama-4 only: "llama4" config with text_config, "language_model." names
  bool non_moe_tensors = true;   // embed_tokens, norms, q_proj, dense MLPs, lm_head
  uint64_t seed = 1;
  int threads = 0;               // value generation threads; 0 = default_threads()
  bool quiet = true;             // no progress line (it is drawn only on a terminal anyway)
};

// Fills in the -1 defaults and checks the spec (InvalidArgument naming the field).
SyntheticSpec resolve_spec(const SyntheticSpec& spec);

// The config.json the spec writes, and the profile it reads back as.
nlohmann::json synthetic_config(const SyntheticSpec& spec);

// Writes config.json and the safetensors file(s) into `dir` (created if missing). Each file is
// written to a temporary name and renamed when complete; config.json comes last.
void write_synthetic_checkpoint(const std::string& dir, const SyntheticSpec& spec);

// The logical values the generator writes, regenerated from the seed, exactly as stored (rounded
// to spec.dtype), row-major, in PyTorch [out, in] orientation whatever the storage:
//   ExpertWeight [I, H] (gate, up) / [H, I] (down); ExpertBias [I] / [H] (gpt-oss);
//   Router [E, H]; RouterBias [E]; CorrectionBias [E]; SharedWeight [S, H] / [H, S];
//   SharedExpertGate [H].
enum class SynthTensor {
  ExpertWeight, ExpertBias, Router, RouterBias, CorrectionBias, SharedWeight, SharedExpertGate
};
std::vector<float> synthetic_values(const SyntheticSpec& spec, SynthTensor what, int layer,
                                    int expert = -1, Proj proj = Proj::Gate);

}  // namespace moe
