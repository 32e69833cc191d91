#include "reference/layer_weights.h"

#include "core/error.h"

namespace moe {

namespace {

std::optional<FloatVec> optional_vec(const FloatVec& v) {
  if (v.empty()) return std::nullopt;
  return v;
}

}  // namespace

FloatVec as_vector(DenseMatrix m) { return std::move(m.data); }

// ---- in memory -------------------------------------------------------------------------------

std::optional<FloatVec> DenseLayerWeights::router_bias() const { return optional_vec(router_b); }
std::optional<FloatVec> DenseLayerWeights::correction_bias() const {
  return optional_vec(correction_b);
}

void DenseLayerWeights::expert_into(int e, Proj p, DenseMatrix& out) const {
  MOE_ASSERT(e >= 0 && e < static_cast<int>(experts.size()));
  const DenseExpert& x = experts[e];
  const DenseMatrix* by_proj[] = {&x.gate, &x.up, &x.down};
  out = *by_proj[static_cast<int>(p)];
}

std::optional<FloatVec> DenseLayerWeights::expert_bias(int e, Proj p) const {
  MOE_ASSERT(e >= 0 && e < static_cast<int>(experts.size()));
  const DenseExpert& x = experts[e];
  const FloatVec* by_proj[] = {&x.gate_bias, &x.up_bias, &x.down_bias};
  return optional_vec(*by_proj[static_cast<int>(p)]);
}

std::optional<DenseMatrix> DenseLayerWeights::shared(Proj p) const {
  const std::optional<DenseMatrix>* by_proj[] = {&shared_gate, &shared_up, &shared_down};
  return *by_proj[static_cast<int>(p)];
}

std::optional<FloatVec> DenseLayerWeights::shared_expert_gate() const {
  return optional_vec(shared_gate_w);
}

uint64_t DenseLayerWeights::expert_bytes() const {
  if (experts.empty()) return 0;
  const DenseExpert& x = experts[0];
  return 4 * static_cast<uint64_t>(x.gate.data.size() + x.up.data.size() + x.down.data.size());
}

}  // namespace moe
