// `diff`: two checkpoints or shard sets of one model compared per MoE layer and projection
// (router, gate, up, down, biases, shared expert) on their logical weights, and optionally by
// the reference MoE block outputs of both on the same random inputs.
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "model/profile.h"
#include "reference/layer_weights.h"
#include "reference/metrics.h"

namespace moe {

// "" when a and b describe the same MoE model (quantization may differ), else the first
// differing field, "num_experts 8 vs 16".
std::string model_difference(const ModelProfile& a, const ModelProfile& b);

// One side of a diff: a checkpoint directory/file or a shard-set directory.
class ModelSource {
 public:
  static std::unique_ptr<ModelSource> open(const std::string& path);
  virtual ~ModelSource() = default;
  virtual const ModelProfile& profile() const = 0;        // moe_layers: the layers it holds
  virtual std::unique_ptr<LayerWeights> layer(int l) const = 0;
  virtual std::string kind() const = 0;                   // "checkpoint" / "shards"
};

struct DiffOptions {
  bool outputs = false;  // also compare reference block outputs
  int tokens = 32;
  uint64_t seed = 0;
  int threads = 0;  // 0 = all cores
  bool quiet = false;
};

struct TensorDiff {
  std::string what;  // "router", "gate", "up", "down", "gate_bias", ..., "shared_down"
  ErrorMetrics metrics;  // B against A (A is the reference side)
};

struct LayerDiff {
  int layer = 0;
  std::vector<TensorDiff> weights;
  std::optional<ErrorMetrics> output;       // with --outputs
  std::optional<double> routing_agreement;  // with --outputs: A's vs B's own routing
};

struct DiffReport {
  std::string a, b, a_kind, b_kind;
  std::vector<LayerDiff> layers;
  nlohmann::json to_json() const;
  std::string table() const;
};

// Throws InvalidArgument for models that differ (exit 2) or share no MoE layer.
DiffReport diff_models(const std::string& a, const std::string& b, const DiffOptions& options);

}  // namespace moe
