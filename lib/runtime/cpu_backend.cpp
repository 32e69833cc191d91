// The CPU backend: runs a shard set's ranks for one MoE layer straight from their stored bytes
// (dense BF16 / F16 / F32) and sums them, as the TP all-reduce / EP combine would. It applies
// each rank's expert_map, the replica choice of backend.h, the w13 row order, the padding, the
// w2 bias as stored (real on tp_rank 0, zeros elsewhere) and the shared expert on ep_rank 0
// only (docs/shard-format.md), so a `run --device cpu` checks the conversion without a GPU.
#include <cmath>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "reference/expert_mlp.h"
#include "reference/routing.h"
#include "reference/scratch_pool.h"
#include "runtime/backend.h"

namespace moe {

namespace {

using Mat = RowMatrix<float>;

std::string tensor_name(int layer, const char* name) {
  return "layers." + std::to_string(layer) + "." + name;
}

bool present(const TensorView& t) { return t.data != nullptr; }


void check_dims(const TensorView& t, const Shape& want, const std::string& file,
                const std::string& tensor) {
  MOE_CHECK(t.shape == want, InvalidShard, file, tensor,
            "shape " + shape_str(t.shape) + ", expected " + shape_str(want));
}

// What every rank agrees on for one layer: routing tensors and the physical experts.
struct LayerContext {
  const ModelProfile& profile;
  const ShardGeometry& geo;
  int layer;
  int e_physical;
  std::vector<std::vector<int32_t>> replicas;  // logical -> physical ids, ascending
};

LayerContext layer_context(const ShardSet& set, int layer) {
  LayerContext c{set.profile(), set.geometry(), layer, 0, {}};
  const RankLayer& r0 = set.layer(0, layer);
  const std::string& file0 = set.ranks().at(0).file;
  const int E = c.profile.num_experts;
  c.e_physical = static_cast<int>(r0.physical_to_logical.size());
  MOE_CHECK(c.e_physical >= E, InvalidShard, file0, tensor_name(layer, "physical_to_logical"),
            std::to_string(c.e_physical) + " physical experts for " + std::to_string(E) +
                " logical");
  c.replicas.resize(E);
  for (int p = 0; p < c.e_physical; ++p) {
    int32_t l = r0.physical_to_logical[p];
    MOE_CHECK(l >= 0 && l < E, InvalidShard, file0, tensor_name(layer, "physical_to_logical"),
              "physical expert " + std::to_string(p) + " maps to logical " + std::to_string(l));
    c.replicas[l].push_back(p);
  }
  for (int l = 0; l < E; ++l)
    MOE_CHECK(!c.replicas[l].empty(), InvalidShard, file0,
              tensor_name(layer, "physical_to_logical"),
              "logical expert " + std::to_string(l) + " has no physical replica");
  // Every rank must route identically: the router and the physical map are copies.
  for (const RankInfo& info : set.ranks()) {
    const RankLayer& rl = set.layer(info.rank, layer);
    MOE_CHECK(rl.physical_to_logical == r0.physical_to_logical, InvalidShard, info.file,
              tensor_name(layer, "physical_to_logical"), "differs from rank 0's");
    for (auto [mine, theirs, name] :
         {std::make_tuple(&rl.router_weight, &r0.router_weight, "router_weight"),
          std::make_tuple(&rl.router_bias, &r0.router_bias, "router_bias"),
          std::make_tuple(&rl.correction_bias, &r0.correction_bias, "e_score_correction_bias")}) {
      bool same = mine->nbytes == theirs->nbytes && mine->dtype == theirs->dtype &&
                  (mine->nbytes == 0 || std::memcmp(mine->data, theirs->data, mine->nbytes) == 0);
      MOE_CHECK(same, InvalidShard, info.file, tensor_name(layer, name), "differs from rank 0's");
    }
  }
  return c;
}

Routing route_tokens(const LayerContext& c, const RankLayer& r0, const std::string& file0,
                     const float* x, int tokens) {
  const ModelProfile& p = c.profile;
  const int E = p.num_experts, H = p.hidden_size;
  check_dims(r0.router_weight, {E, H}, file0, tensor_name(c.layer, "router_weight"));
  DenseMatrix w =
      decode_dense(as_matrix(r0.router_weight), file0, tensor_name(c.layer, "router_weight"));
  FloatVec bias, corr;
  if (p.routing.has_router_bias) {
    MOE_CHECK(present(r0.router_bias), InvalidShard, file0, tensor_name(c.layer, "router_bias"),
              "missing; the profile has a router bias");
    check_dims(r0.router_bias, {E}, file0, tensor_name(c.layer, "router_bias"));
    bias = as_vector(
        decode_dense(as_matrix(r0.router_bias), file0, tensor_name(c.layer, "router_bias")));
  }
  if (p.routing.has_correction_bias) {
    const std::string name = tensor_name(c.layer, "e_score_correction_bias");
    MOE_CHECK(present(r0.correction_bias), InvalidShard, file0, name,
              "missing; the profile has a correction bias");
    check_dims(r0.correction_bias, {E}, file0, name);
    corr = as_vector(decode_dense(as_matrix(r0.correction_bias), file0, name));
  }
  std::vector<double> logits = router_logits(x, tokens, H, w.data.data(), E,
                                             bias.empty() ? nullptr : bias.data(), Precision::F32);
  return route(p.routing, p.top_k, logits.data(), corr.empty() ? nullptr : corr.data(), tokens, E,
               Precision::F32);
}

// One local expert of one rank: its TP slice of w13 / w2 (padded rows and columns included;
// they are zero and contribute nothing), gate and up halves in the manifest's order.
void local_expert(const LayerContext& c, const RankLayer& rl, const std::string& file, int local,
                  MlpWeights& w) {
  const int64_t ir = c.geo.intermediate_per_rank_padded;
  const int64_t gate_row = c.geo.w13_up_first ? ir : 0, up_row = c.geo.w13_up_first ? 0 : ir;
  const std::string w13 = tensor_name(c.layer, "w13_weight");
  const MatrixView m13 = slice3(rl.w13, local);
  decode_dense(m13.row_block(gate_row, ir), w.gate, file, w13);
  decode_dense(m13.row_block(up_row, ir), w.up, file, w13);
  decode_dense(slice3(rl.w2, local), w.down, file, tensor_name(c.layer, "w2_weight"));
  w.gate_bias = w.up_bias = w.down_bias = std::nullopt;
  if (present(rl.w13_bias)) {
    const std::string name = tensor_name(c.layer, "w13_bias");
    MatrixView b = as_matrix(rl.w13_bias).row_block(local, 1);
    w.gate_bias = as_vector(decode_dense(b.col_block(gate_row, ir), file, name));
    w.up_bias = as_vector(decode_dense(b.col_block(up_row, ir), file, name));
  }
  if (present(rl.w2_bias))
    w.down_bias = as_vector(decode_dense(as_matrix(rl.w2_bias).row_block(local, 1), file,
                                         tensor_name(c.layer, "w2_bias")));
}

void check_rank_tensors(const LayerContext& c, const RankLayer& rl, const std::string& file) {
  const int64_t el = static_cast<int64_t>(rl.local_to_physical.size());
  const int64_t hp = c.geo.hidden_size_padded, ir = c.geo.intermediate_per_rank_padded;
  check_dims(rl.w13, {el, 2 * ir, hp}, file, tensor_name(c.layer, "w13_weight"));
  check_dims(rl.w2, {el, hp, ir}, file, tensor_name(c.layer, "w2_weight"));
  if (present(rl.w13_bias))
    check_dims(rl.w13_bias, {el, 2 * ir}, file, tensor_name(c.layer, "w13_bias"));
  if (present(rl.w2_bias)) check_dims(rl.w2_bias, {el, hp}, file, tensor_name(c.layer, "w2_bias"));
  MOE_CHECK(static_cast<int>(rl.expert_map.size()) == c.e_physical, InvalidShard, file,
            tensor_name(c.layer, "expert_map"),
            std::to_string(rl.expert_map.size()) + " entries, expected " +
                std::to_string(c.e_physical));
  for (int32_t loc : rl.expert_map)
    MOE_CHECK(loc >= -1 && loc < el, InvalidShard, file, tensor_name(c.layer, "expert_map"),
              "local index " + std::to_string(loc) + " outside -1.." + std::to_string(el - 1));
}

// Adds this rank's routed partial sums to out_p [T, H_p].
void run_rank_experts(const LayerContext& c, const RankLayer& rl, const std::string& file,
                      const Mat& xp, const Routing& routing, int threads,
                      ScratchPool<MlpWeights>& scratch, Mat& out_p) {
  const int tokens = routing.tokens, K = routing.top_k;
  const int64_t el = static_cast<int64_t>(rl.local_to_physical.size());
  std::vector<std::vector<int64_t>> slots_of(el);
  for (int t = 0; t < tokens; ++t)
    for (int k = 0; k < K; ++k) {
      const int64_t slot = static_cast<int64_t>(t) * K + k;
      const auto& reps = c.replicas[routing.ids[slot]];
      const int32_t physical = reps[t % reps.size()];  // backend.h's replica choice
      const int32_t local = rl.expert_map[physical];
      if (local >= 0) slots_of[local].push_back(slot);
    }
  std::vector<int64_t> used;
  for (int64_t l = 0; l < el; ++l)
    if (!slots_of[l].empty()) used.push_back(l);

  const bool on_input = c.profile.routing.weight_on_input;
  const ActivationParams act = activation_params(c.profile);
  Mat contrib = Mat::Zero(static_cast<int64_t>(tokens) * K, xp.cols());
  parallel_for(static_cast<int64_t>(used.size()), threads, [&](int64_t i) {
    const int64_t local = used[i];
    auto lease = scratch.take();
    MlpWeights& w = *lease;
    local_expert(c, rl, file, static_cast<int>(local), w);
    const auto& slots = slots_of[local];
    Mat xe(static_cast<int64_t>(slots.size()), xp.cols());
    for (size_t j = 0; j < slots.size(); ++j)
      xe.row(j) = xp.row(slots[j] / K) *
                  (on_input ? static_cast<float>(routing.weights[slots[j]]) : 1.0f);
    Mat ye = run_mlp(w, xe, act);
    for (size_t j = 0; j < slots.size(); ++j)
      contrib.row(slots[j]) =
          ye.row(j) * (on_input ? 1.0f : static_cast<float>(routing.weights[slots[j]]));
  });
  for (int t = 0; t < tokens; ++t)
    for (int k = 0; k < K; ++k) out_p.row(t) += contrib.row(static_cast<int64_t>(t) * K + k);
}

// Adds this rank's TP slice of the shared expert(s), times Qwen2-MoE's gate.
void run_rank_shared(const LayerContext& c, const RankLayer& rl, const std::string& file,
                     const Mat& xp, ScratchPool<MlpWeights>& scratch, Mat& out_p) {
  const std::string w13 = tensor_name(c.layer, "shared_w13_weight");
  const std::string w2 = tensor_name(c.layer, "shared_w2_weight");
  if (c.profile.shared_intermediate_size == 0) return;
  MOE_CHECK(present(rl.shared_w13), InvalidShard, file, w13, "missing; the profile has shared experts");
  const int64_t hp = c.geo.hidden_size_padded, is = c.geo.shared_per_rank_padded;
  check_dims(rl.shared_w13, {2 * is, hp}, file, w13);
  MOE_CHECK(present(rl.shared_w2), InvalidShard, file, w2, "missing beside shared_w13_weight");
  check_dims(rl.shared_w2, {hp, is}, file, w2);
  const int64_t gate_row = c.geo.w13_up_first ? is : 0, up_row = c.geo.w13_up_first ? 0 : is;
  MatrixView m13 = as_matrix(rl.shared_w13);
  auto lease = scratch.take();
  MlpWeights& w = *lease;
  decode_dense(m13.row_block(gate_row, is), w.gate, file, w13);
  decode_dense(m13.row_block(up_row, is), w.up, file, w13);
  decode_dense(as_matrix(rl.shared_w2), w.down, file, w2);
  w.gate_bias = w.up_bias = w.down_bias = std::nullopt;
  Mat y = run_mlp(w, xp, activation_params(c.profile));
  if (c.profile.has_shared_expert_gate) {
    const int H = c.profile.hidden_size;
    const std::string name = tensor_name(c.layer, "shared_expert_gate");
    MOE_CHECK(present(rl.shared_expert_gate), InvalidShard, file, name,
              "missing; the profile has a shared expert gate");
    check_dims(rl.shared_expert_gate, {1, H}, file, name);
    FloatVec g = as_vector(decode_dense(as_matrix(rl.shared_expert_gate), file, name));
    Eigen::VectorXf logit = xp.leftCols(H) * Eigen::Map<const Eigen::VectorXf>(g.data(), H);
    for (int64_t t = 0; t < y.rows(); ++t) y.row(t) *= 1.0f / (1.0f + std::exp(-logit(t)));
  }
  out_p += y;
}

class CpuBackend : public MoeBackend {
 public:
  explicit CpuBackend(int threads) : threads_(threads > 0 ? threads : default_threads()) {}
  std::string name() const override { return "cpu"; }

  void run_layer(const ShardSet& set, int layer, const float* x, int tokens,
                 const LayerOutputs& outputs) override {
    const LayerContext c = layer_context(set, layer);
    const int H = c.profile.hidden_size;
    const int64_t hp = c.geo.hidden_size_padded;
    MOE_CHECK(hp >= H, InvalidShard, set.ranks().at(0).file, "hidden_size_padded",
              std::to_string(hp) + " < hidden size " + std::to_string(H));
    Routing routing = route_tokens(c, set.layer(0, layer), set.ranks().at(0).file, x, tokens);
    for (size_t i = 0; i < routing.ids.size(); ++i) {
      outputs.topk_ids[i] = routing.ids[i];
      outputs.topk_weights[i] = static_cast<float>(routing.weights[i]);
    }
    // Inputs padded with zero columns to H_p, as a runtime pads them for padded weights.
    Mat xp = Mat::Zero(tokens, hp);
    xp.leftCols(H) = Eigen::Map<const Mat>(x, tokens, H);
    Mat out_p = Mat::Zero(tokens, hp);
    for (const RankInfo& info : set.ranks()) {  // rank order: a fixed, deterministic sum
      const RankLayer& rl = set.layer(info.rank, layer);
      check_rank_tensors(c, rl, info.file);
      run_rank_experts(c, rl, info.file, xp, routing, threads_, scratch_, out_p);
      if (info.ep_rank == 0) run_rank_shared(c, rl, info.file, xp, scratch_, out_p);
    }
    Eigen::Map<Mat>(outputs.out, tokens, H) = out_p.leftCols(H);
  }

 private:
  int threads_;
  // Decode buffers, one set per worker, reused across experts, ranks and layers: fresh pages
  // for a full-size expert cost more than decoding it.
  ScratchPool<MlpWeights> scratch_;
};

}  // namespace

std::unique_ptr<MoeBackend> make_cpu_backend(int threads) {
  return std::make_unique<CpuBackend>(threads);
}

}  // namespace moe
