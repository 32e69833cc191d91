#include "runtime/nccl_backend.h"

#include <algorithm>
#include <string>
#include <vector>

#include "core/error.h"
#include "runtime/gpu_moe.h"
#include "runtime/nccl_world.h"

namespace moe {

namespace {

// One member's device state; created and used only on that member's thread.
struct MemberState {
  StagingLoader loader;  // its stream is the member's compute stream
  DeviceBuffer x_f32, x_elem, ids, weights, logits, out, gate_vec;
  MoeWorkspace ws;
};

class NcclBackend final : public MultiGpuBackend {
 public:
  NcclBackend(const ShardSet& set, const WorldPlan& plan, double timeout_s)
      : num_ranks_(int(set.ranks().size())), world_(plan, timeout_s) {
    state_.resize(world_.size());
    world_.run([&](WorldMember&, size_t i) { state_[i] = std::make_unique<MemberState>(); });
  }

  ~NcclBackend() override {
    // Device memory and streams go back with their device current.
    try {
      world_.run([&](WorldMember&, size_t i) { state_[i].reset(); });
    } catch (...) {
    }
  }

  // The numerics are the single-GPU backend's (same kernels, fp32 partial sums), so `run` judges
  // it by the "cuda" rows of the tolerance table.
  std::string name() const override { return "cuda"; }
  const WorldPlan& world() const override { return world_.plan(); }
  std::string nccl_version() const override { return nccl_version_string(); }

  void run_layer(const ShardSet& set, int layer, const float* x, int tokens,
                 const LayerOutputs& outputs) override {
    MOE_CHECK(!world_.broken(), Nccl, "", "",
              "the NCCL world was aborted after an earlier error; start a new run");
    MOE_CHECK(int(set.ranks().size()) == num_ranks_, InvalidArgument, set.source_path(), "",
              "the NCCL world was formed for " + std::to_string(num_ranks_) +
                  " ranks; this shard set has " + std::to_string(set.ranks().size()));
    if (tokens <= 0) return;
    const int K = set.profile().top_k, H = set.geometry().hidden_size;
    const int Hp = set.geometry().hidden_size_padded > 0 ? set.geometry().hidden_size_padded : H;
    world_.run([&](WorldMember& m, size_t i) {
      MemberState& st = *state_[i];
      const cudaStream_t s = st.loader.stream();
      partial_sum(set, layer, x, tokens, m, st);
      m.comm.all_reduce_sum(st.out.as<float>(), size_t(tokens) * Hp, s, m.wd);
      m.comm.wait(s, m.wd, "all-reduce of layer " + std::to_string(layer));
      if (i != 0) return;  // every member now holds the sum; the first one hands it back
      copy_to_host(outputs.topk_ids, st.ids.data(), size_t(tokens) * K * 4, s);
      copy_to_host(outputs.topk_weights, st.weights.data(), size_t(tokens) * K * 4, s);
      std::vector<float> full(size_t(tokens) * Hp);
      copy_to_host(full.data(), st.out.data(), full.size() * 4, s);
      for (int t = 0; t < tokens; ++t)
        std::copy(full.begin() + size_t(t) * Hp, full.begin() + size_t(t) * Hp + H,
                  outputs.out + size_t(t) * H);
    });
  }

 private:
  // Routes the tokens (every member with rank 0's router, as the single-GPU backend) and adds
  // the member's ranks, in turn, into st.out [tokens, H_p].
  static void partial_sum(const ShardSet& set, int layer, const float* x, int tokens,
                          WorldMember& m, MemberState& st) {
    const ModelProfile& prof = set.profile();
    const ShardGeometry& geo = set.geometry();
    const int E = prof.num_experts, K = prof.top_k, H = geo.hidden_size;
    const int Hp = geo.hidden_size_padded > 0 ? geo.hidden_size_padded : H;
    const cudaStream_t s = st.loader.stream();
    const std::string& file0 = set.ranks().front().file;
    const RankLayer& first = set.layer(set.ranks().front().rank, layer);

    st.x_f32.ensure(size_t(tokens) * H * 4);
    copy_to_device(st.x_f32.data(), x, size_t(tokens) * H * 4, s);
    const GpuRouter router = upload_router(first, E, H, s, file0);
    st.ids.ensure(size_t(tokens) * K * 4);
    st.weights.ensure(size_t(tokens) * K * 4);
    run_routing(router, prof.routing, st.x_f32.as<float>(), tokens, K, st.logits,
                st.ids.as<int32_t>(), st.weights.as<float>(), s);

    const kernels::ElemType dtype = elem_type_of(first.w13.dtype, file0, "w13_weight");
    const int ldx = round_up8(Hp);
    st.x_elem.ensure(size_t(tokens) * ldx * 2);
    cuda_check(kernels::launch_convert_input(st.x_f32.as<float>(), tokens, H, dtype,
                                             st.x_elem.data(), ldx, s),
               "input conversion kernel");
    st.out.ensure(size_t(tokens) * Hp * 4);
    cuda_check(cudaMemsetAsync(st.out.data(), 0, size_t(tokens) * Hp * 4, s), "zero the output");

    ExpertInputs in;
    in.x = st.x_elem.data();
    in.ldx = ldx;
    in.tokens = tokens;
    in.top_k = K;
    in.topk_ids = st.ids.as<int32_t>();
    in.topk_weights = st.weights.as<float>();
    in.act = act_kind_of(prof.activation);
    in.swiglu_alpha = prof.swiglu_alpha;
    in.swiglu_limit = prof.swiglu_limit;
    in.weight_on_input = prof.routing.weight_on_input;
    in.out = st.out.as<float>();
    in.ldo = Hp;

    for (int pos : m.ranks) {
      const RankInfo& r = set.ranks()[size_t(pos)];
      const RankLayer& rl = set.layer(r.rank, layer);
      const GpuExperts experts = upload_routed_experts(rl, geo, st.loader, r.file);
      MOE_CHECK(experts.hidden == Hp, ShapeMismatch, r.file, "w13_weight",
                "hidden width " + std::to_string(experts.hidden) + " != manifest H_p " +
                    std::to_string(Hp));
      MOE_CHECK(experts.num_local == 0 || experts.dtype == dtype, DTypeMismatch, r.file,
                "w13_weight", "ranks of one set hold different dtypes");
      const GpuRouteTable table = upload_route_table(rl, E, s, r.file);
      run_routed_experts(experts, table, in, st.ws, s);
      if (r.ep_rank == 0 && rl.shared_w13.data) {
        const GpuExperts shared = upload_shared_expert(rl, geo, st.loader, r.file);
        const float* gate = nullptr;
        if (rl.shared_expert_gate.data) {
          MOE_CHECK(rl.shared_expert_gate.numel() == H, InvalidShard, r.file, "shared_expert_gate",
                    "shape " + shape_str(rl.shared_expert_gate.shape));
          std::vector<float> g(static_cast<size_t>(H));
          for (int i = 0; i < H; ++i) g[size_t(i)] = float(rl.shared_expert_gate.at(i));
          st.gate_vec.ensure(size_t(H) * 4);
          copy_to_device(st.gate_vec.data(), g.data(), g.size() * 4, s);
          st.ws.shared_weights.ensure(size_t(tokens) * 4);
          cuda_check(kernels::launch_shared_gate(st.x_f32.as<float>(), st.gate_vec.as<float>(),
                                                 tokens, H, st.ws.shared_weights.as<float>(), s),
                     "shared-expert gate kernel");
          gate = st.ws.shared_weights.as<float>();
        }
        run_shared_expert(shared, in, gate, st.ws, s);
      }
      // The next rank's upload reuses device memory only after this rank's kernels finish.
      m.comm.wait(s, m.wd, "rank " + std::to_string(r.rank) + " kernels");
    }
  }

  int num_ranks_;
  NcclWorld world_;
  std::vector<std::unique_ptr<MemberState>> state_;
};

}  // namespace

std::unique_ptr<MultiGpuBackend> make_nccl_backend(const ShardSet& set, const WorldPlan& plan,
                                                   double timeout_s) {
  return std::make_unique<NcclBackend>(set, plan, timeout_s);
}

}  // namespace moe
