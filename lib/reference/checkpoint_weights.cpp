#include "reference/checkpoint_weights.h"

namespace moe {

CheckpointLayerWeights::CheckpointLayerWeights(const Checkpoint& ckpt,
                                               const ExpertMapping& mapping, int layer)
    : ckpt_(ckpt), mapping_(mapping), layer_(layer) {}

std::string CheckpointLayerWeights::label(const std::string& what) const {
  return "layer " + std::to_string(layer_) + " " + what;
}

DenseMatrix CheckpointLayerWeights::router_weight() const {
  return decode_dense(mapping_.router_weight(layer_), ckpt_.root(), label("router weight"));
}

std::optional<FloatVec> CheckpointLayerWeights::router_bias() const {
  auto v = mapping_.router_bias(layer_);
  if (!v) return std::nullopt;
  return as_vector(decode_dense(*v, ckpt_.root(), label("router bias")));
}

std::optional<FloatVec> CheckpointLayerWeights::correction_bias() const {
  auto v = mapping_.correction_bias(layer_);
  if (!v) return std::nullopt;
  return as_vector(decode_dense(*v, ckpt_.root(), label("e_score_correction_bias")));
}

void CheckpointLayerWeights::expert_into(int e, Proj p, DenseMatrix& out) const {
  decode_dense(mapping_.expert_weight(layer_, e, p), out, ckpt_.root(),
               label("expert " + std::to_string(e) + " " + proj_name(p)));
}

std::optional<FloatVec> CheckpointLayerWeights::expert_bias(int e, Proj p) const {
  auto v = mapping_.expert_bias(layer_, e, p);
  if (!v) return std::nullopt;
  return as_vector(decode_dense(
      *v, ckpt_.root(), label("expert " + std::to_string(e) + " " + proj_name(p) + " bias")));
}

std::optional<DenseMatrix> CheckpointLayerWeights::shared(Proj p) const {
  auto v = mapping_.shared_weight(layer_, p);
  if (!v) return std::nullopt;
  return decode_dense(*v, ckpt_.root(), label(std::string("shared expert ") + proj_name(p)));
}

std::optional<FloatVec> CheckpointLayerWeights::shared_expert_gate() const {
  auto v = mapping_.shared_expert_gate(layer_);
  if (!v) return std::nullopt;
  return as_vector(decode_dense(*v, ckpt_.root(), label("shared_expert_gate")));
}

uint64_t CheckpointLayerWeights::expert_bytes() const {
  uint64_t bytes = 0;
  for (Proj p : {Proj::Gate, Proj::Up, Proj::Down}) {
    MatrixView v = mapping_.expert_weight(layer_, 0, p);
    bytes += static_cast<uint64_t>(v.rows * v.cols * v.elem_bytes());
  }
  return bytes;
}

}  // namespace moe
