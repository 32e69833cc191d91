// The reference's weights straight from a source checkpoint: one MoE layer's logical experts
// through the family's ExpertMapping, decoded only when asked for.
#pragma once
#include <string>

#include "io/checkpoint.h"
#include "mapping/expert_mapping.h"
#include "reference/layer_weights.h"

namespace moe {

// A checkpoint's layer through its family's mapping (dense BF16/F16/F32 sources; quantized
// sources throw UnsupportedQuantization until lib/quant provides the dequantizers).
class CheckpointLayerWeights : public LayerWeights {
 public:
  CheckpointLayerWeights(const Checkpoint& ckpt, const ExpertMapping& mapping, int layer);
  DenseMatrix router_weight() const override;
  std::optional<FloatVec> router_bias() const override;
  std::optional<FloatVec> correction_bias() const override;
  void expert_into(int e, Proj p, DenseMatrix& out) const override;
  std::optional<FloatVec> expert_bias(int e, Proj p) const override;
  std::optional<DenseMatrix> shared(Proj p) const override;
  std::optional<FloatVec> shared_expert_gate() const override;
  uint64_t expert_bytes() const override;

 private:
  std::string label(const std::string& what) const;
  const Checkpoint& ckpt_;
  const ExpertMapping& mapping_;
  int layer_;
};

}  // namespace moe
