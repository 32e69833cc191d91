// One MoE layer's LOGICAL weights (experts as the model defines them, unsharded), decoded to
// float32 on demand so a check reads only the experts it needs. Sources: in memory (below), a
// checkpoint (checkpoint_weights.h), a shard set reassembled (shard_weights.h).
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mapping/expert_mapping.h"  // Proj
#include "reference/dense_decode.h"

namespace moe {

using FloatVec = std::vector<float>;

class LayerWeights {
 public:
  virtual ~LayerWeights() = default;
  virtual DenseMatrix router_weight() const = 0;                 // [E, H]
  virtual std::optional<FloatVec> router_bias() const = 0;      // [E] (gpt-oss)
  virtual std::optional<FloatVec> correction_bias() const = 0;  // [E], selection only
  // [out, in]: gate / up [I, H], down [H, I], decoded into `out` (its buffer reused: a
  // full-size expert is 60-180 MB of float32, and fresh pages cost more than the decode).
  virtual void expert_into(int e, Proj p, DenseMatrix& out) const = 0;
  DenseMatrix expert(int e, Proj p) const {
    DenseMatrix m;
    expert_into(e, p, m);
    return m;
  }
  virtual std::optional<FloatVec> expert_bias(int e, Proj p) const = 0;  // [out]
  // The shared expert(s) as one MLP of width shared_intermediate_size; nullopt when none.
  virtual std::optional<DenseMatrix> shared(Proj p) const = 0;
  virtual std::optional<FloatVec> shared_expert_gate() const = 0;  // [H] (Qwen2-MoE)
  // Stored bytes of one routed expert (all three projections), for progress reporting.
  virtual uint64_t expert_bytes() const = 0;
};

// Everything in memory, float32: tests build these directly from random data.
struct DenseExpert {
  DenseMatrix gate, up, down;
  FloatVec gate_bias, up_bias, down_bias;  // empty = none
};
class DenseLayerWeights : public LayerWeights {
 public:
  DenseMatrix router_w;
  FloatVec router_b, correction_b;  // empty = none
  std::vector<DenseExpert> experts;
  std::optional<DenseMatrix> shared_gate, shared_up, shared_down;
  FloatVec shared_gate_w;  // empty = none

  DenseMatrix router_weight() const override { return router_w; }
  std::optional<FloatVec> router_bias() const override;
  std::optional<FloatVec> correction_bias() const override;
  void expert_into(int e, Proj p, DenseMatrix& out) const override;
  std::optional<FloatVec> expert_bias(int e, Proj p) const override;
  std::optional<DenseMatrix> shared(Proj p) const override;
  std::optional<FloatVec> shared_expert_gate() const override;
  uint64_t expert_bytes() const override;
};

// Flattens a decoded 1 x N (or N x 1) matrix.
FloatVec as_vector(DenseMatrix m);

}  // namespace moe
