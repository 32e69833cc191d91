#include "reference/shard_weights.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace moe {

namespace {

std::string tensor_name(int layer, const char* name) {
  return "layers." + std::to_string(layer) + "." + name;
}

}  // namespace

ShardLayerWeights::ShardLayerWeights(const ShardSet& set, int layer) : set_(set), layer_(layer) {
  set_.layer(0, layer_);  // throws InvalidShard when the set does not hold the layer
}

int ShardLayerWeights::first_replica(int logical) const {
  const auto& p2l = set_.layer(0, layer_).physical_to_logical;
  auto it = std::find(p2l.begin(), p2l.end(), logical);
  MOE_CHECK(it != p2l.end(), InvalidShard, set_.ranks().at(0).file,
            tensor_name(layer_, "physical_to_logical"),
            "logical expert " + std::to_string(logical) + " has no physical replica");
  return static_cast<int>(it - p2l.begin());
}

ShardLayerWeights::Holder ShardLayerWeights::holder(int physical, int tp_rank) const {
  for (const RankInfo& info : set_.ranks()) {
    if (info.tp_rank != tp_rank) continue;
    const RankLayer& rl = set_.layer(info.rank, layer_);
    if (physical < 0) {
      if (info.ep_rank == 0) return {&rl, &info.file, -1};
      continue;
    }
    MOE_CHECK(physical < static_cast<int>(rl.expert_map.size()), InvalidShard, info.file,
              tensor_name(layer_, "expert_map"), "too short for physical expert " +
                                                     std::to_string(physical));
    if (rl.expert_map[physical] >= 0) return {&rl, &info.file, rl.expert_map[physical]};
  }
  fail(ErrorCode::InvalidShard, "", tensor_name(layer_, "expert_map"),
       "no rank with tp_rank " + std::to_string(tp_rank) + " holds physical expert " +
           std::to_string(physical));
}

void ShardLayerWeights::assemble(int physical, Proj p, int64_t size, int64_t per_rank,
                                 int64_t per_rank_padded, bool shared, DenseMatrix& out) const {
  const ShardGeometry& g = set_.geometry();
  const int64_t H = set_.profile().hidden_size;
  const bool down = p == Proj::Down;
  reshape(out, down ? H : size, down ? size : H);  // every element is written below
  const int64_t gate_row = g.w13_up_first ? per_rank_padded : 0;
  const int64_t up_row = g.w13_up_first ? 0 : per_rank_padded;
  for (int t = 0; t < g.tp; ++t) {
    const int64_t begin = t * per_rank;
    const int64_t count = std::max<int64_t>(0, std::min(per_rank, size - begin));
    if (count == 0) continue;  // a rank past the end of the data holds only padding
    Holder h = holder(shared ? -1 : physical, t);
    const TensorView& w13 = shared ? h.rl->shared_w13 : h.rl->w13;
    const TensorView& w2 = shared ? h.rl->shared_w2 : h.rl->w2;
    const char* name = down ? (shared ? "shared_w2_weight" : "w2_weight")
                            : (shared ? "shared_w13_weight" : "w13_weight");
    MOE_CHECK((down ? w2 : w13).data != nullptr, InvalidShard, *h.file, tensor_name(layer_, name),
              "missing");
    if (down) {
      MatrixView v = shared ? as_matrix(w2) : slice3(w2, h.local);
      DenseMatrix part = decode_dense(v.row_block(0, H).col_block(0, count), *h.file,
                                      tensor_name(layer_, name));
      for (int64_t r = 0; r < H; ++r)
        std::memcpy(out.row(r) + begin, part.row(r), static_cast<size_t>(count) * 4);
    } else {
      MatrixView v = shared ? as_matrix(w13) : slice3(w13, h.local);
      const int64_t row0 = p == Proj::Gate ? gate_row : up_row;
      decode_dense(v.row_block(row0, count).col_block(0, H), out.row(begin), *h.file,
                   tensor_name(layer_, name));
    }
  }
}

DenseMatrix ShardLayerWeights::router_weight() const {
  const RankLayer& r0 = set_.layer(0, layer_);
  return decode_dense(as_matrix(r0.router_weight), set_.ranks().at(0).file,
                      tensor_name(layer_, "router_weight"));
}

std::optional<FloatVec> ShardLayerWeights::rank0_vector(const TensorView RankLayer::*member,
                                                        const char* name) const {
  const TensorView& t = set_.layer(0, layer_).*member;
  if (!t.data) return std::nullopt;
  return as_vector(decode_dense(as_matrix(t), set_.ranks().at(0).file, tensor_name(layer_, name)));
}

std::optional<FloatVec> ShardLayerWeights::router_bias() const {
  return rank0_vector(&RankLayer::router_bias, "router_bias");
}
std::optional<FloatVec> ShardLayerWeights::correction_bias() const {
  return rank0_vector(&RankLayer::correction_bias, "e_score_correction_bias");
}
std::optional<FloatVec> ShardLayerWeights::shared_expert_gate() const {
  return rank0_vector(&RankLayer::shared_expert_gate, "shared_expert_gate");
}

void ShardLayerWeights::expert_into(int e, Proj p, DenseMatrix& out) const {
  const ShardGeometry& g = set_.geometry();
  assemble(first_replica(e), p, set_.profile().moe_intermediate_size, g.intermediate_per_rank,
           g.intermediate_per_rank_padded, false, out);
}

std::optional<FloatVec> ShardLayerWeights::expert_bias(int e, Proj p) const {
  const ShardGeometry& g = set_.geometry();
  const int physical = first_replica(e);
  if (p == Proj::Down) {  // real values on tp_rank 0 only (docs/shard-format.md)
    Holder h = holder(physical, 0);
    if (!h.rl->w2_bias.data) return std::nullopt;
    return as_vector(decode_dense(as_matrix(h.rl->w2_bias).row_block(h.local, 1).col_block(
                                      0, set_.profile().hidden_size),
                                  *h.file, tensor_name(layer_, "w2_bias")));
  }
  const int64_t size = set_.profile().moe_intermediate_size, per_rank = g.intermediate_per_rank;
  const int64_t row0 = (p == Proj::Gate) == g.w13_up_first ? g.intermediate_per_rank_padded : 0;
  FloatVec out(static_cast<size_t>(size), 0.0f);
  for (int t = 0; t < g.tp; ++t) {
    const int64_t begin = t * per_rank;
    const int64_t count = std::max<int64_t>(0, std::min(per_rank, size - begin));
    if (count == 0) continue;
    Holder h = holder(physical, t);
    if (!h.rl->w13_bias.data) return std::nullopt;
    decode_dense(as_matrix(h.rl->w13_bias).row_block(h.local, 1).col_block(row0, count),
                 out.data() + begin, *h.file, tensor_name(layer_, "w13_bias"));
  }
  return out;
}

std::optional<DenseMatrix> ShardLayerWeights::shared(Proj p) const {
  const int64_t size = set_.profile().shared_intermediate_size;
  if (size == 0) return std::nullopt;
  const ShardGeometry& g = set_.geometry();
  DenseMatrix out;
  assemble(-1, p, size, g.shared_per_rank, g.shared_per_rank_padded, true, out);
  return out;
}

uint64_t ShardLayerWeights::expert_bytes() const {
  const RankLayer& r0 = set_.layer(0, layer_);
  const ModelProfile& p = set_.profile();
  return 3ull * p.hidden_size * p.moe_intermediate_size * (dtype_bits(r0.w13.dtype) / 8);
}

}  // namespace moe
