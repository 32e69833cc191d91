// `run`: a backend's MoE block on a shard set (or a checkpoint planned in memory) against the
// float64 reference from the SOURCE checkpoint, per layer; experts are checked under the
// backend's own selection and routing agreement is reported apart (docs/numerics.md).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "reference/metrics.h"
#include "runtime/backend.h"
#include "shard/shard_set.h"

namespace moe {

struct RunOptions {
  int tokens = 64;                 // random inputs: tokens per layer
  uint64_t seed = 0;
  std::string inputs_file;         // safetensors with layers.{L}.hidden_states [T, H]; "" = random
  std::string dump_file;           // "" = no dump
  std::vector<int> layers;         // empty = every MoE layer the set holds
  int ref_tokens = 0;              // tokens the reference checks per layer; 0 = all
  std::optional<double> rtol, atol;
  int threads = 0;                 // 0 = all cores
  bool quiet = false;              // no progress line
};

struct LayerResult {
  int layer = 0;
  int tokens = 0, ref_tokens = 0;
  ErrorMetrics metrics;            // backend output vs reference, on the checked tokens
  double routing_agreement = 0;    // share of checked tokens whose top-k sets agree
  double weight_max_abs = 0;       // backend routing weights vs the reference's, same ids
  double backend_seconds = 0;      // the backend's run_layer on all tokens
  double reference_seconds = 0;    // the reference (routing + block) on the checked tokens
  double reference_cpu_seconds = 0;  // CPU time of the same, all threads: robust to a busy box
  double rtol = 0, atol = 0;
  bool pass = false;
  std::string note;                // why it failed, when not a plain tolerance miss
};

struct RunReport {
  std::string target, source, backend, encoding, tolerance_basis;
  std::string reference_precision = "float64";
  std::vector<LayerResult> layers;
  bool pass = false;
  double seconds = 0;
  nlohmann::json to_json() const;
  std::string table() const;  // the human-readable per-layer table
};

// A shard-set directory (manifest.json inside) opens as one; anything else as a checkpoint
// planned in memory (one rank).
ShardSet open_run_target(const std::string& path);

// The weight encoding the tolerance table is keyed by: the dense dtype ("BF16") or the
// manifest's canonical encoding ("fp8", ...).
std::string weight_encoding(const ShardSet& set);

// Rows the reference checks: all tokens, or `ref_tokens` of them drawn without replacement
// from (seed, layer), ascending.
std::vector<int> sample_tokens(int tokens, int ref_tokens, uint64_t seed, int layer);

// Seeded N(0, 1) hidden states [T, H] for one layer (independent of which other layers run).
std::vector<float> random_hidden_states(int tokens, int hidden, uint64_t seed, int layer);

// Runs every selected layer through `backend` and the reference. Throws moe::Error for unusable
// input (exit 2); a numeric mismatch is a failed layer in the report (exit 1).
RunReport run_check(const ShardSet& set, MoeBackend& backend, const std::string& target,
                    const RunOptions& options);

}  // namespace moe
