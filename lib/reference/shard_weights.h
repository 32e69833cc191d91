// A shard set's layer read back as LOGICAL weights: each expert reassembled from its first
// physical replica's TP slices (unpadded, vLLM's slice rule), so `diff` can compare a shard set
// with a checkpoint or with another shard set of any plan.
#pragma once
#include "reference/layer_weights.h"
#include "shard/shard_set.h"

namespace moe {

class ShardLayerWeights : public LayerWeights {
 public:
  ShardLayerWeights(const ShardSet& set, int layer);
  DenseMatrix router_weight() const override;
  std::optional<FloatVec> router_bias() const override;
  std::optional<FloatVec> correction_bias() const override;
  void expert_into(int e, Proj p, DenseMatrix& out) const override;
  std::optional<FloatVec> expert_bias(int e, Proj p) const override;
  std::optional<DenseMatrix> shared(Proj p) const override;
  std::optional<FloatVec> shared_expert_gate() const override;
  uint64_t expert_bytes() const override;

 private:
  // The rank holding TP slice `tp_rank` of physical expert `physical` (ep_rank 0 for shared
  // tensors, physical = -1), and the local index there.
  struct Holder {
    const RankLayer* rl;
    const std::string* file;
    int local;
  };
  Holder holder(int physical, int tp_rank) const;
  int first_replica(int logical) const;
  std::optional<FloatVec> rank0_vector(const TensorView RankLayer::*member, const char* name) const;
  // One projection of a gated MLP stored as w13 [2*Ir, Hp] / w2 [Hp, Ir] slices per TP rank.
  void assemble(int physical, Proj p, int64_t size, int64_t per_rank, int64_t per_rank_padded,
                bool shared, DenseMatrix& out) const;

  const ShardSet& set_;
  int layer_;
};

}  // namespace moe
