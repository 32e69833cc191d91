// The CUDA backend of `run` (runtime/backend.h): routing on the GPU from rank 0's router, then
// every rank of the shard set in turn on one GPU, each adding its experts (and, on ep_rank 0,
// the shared expert) into one float32 output: the sum a TP all-reduce / EP combine produces.
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "runtime/backend.h"

#ifdef MOE_HAVE_CUDA
#include "runtime/device_info.h"
#include "runtime/gpu_moe.h"
#endif

namespace moe {

#ifndef MOE_HAVE_CUDA

std::unique_ptr<MoeBackend> make_cuda_backend() {
  fail(ErrorCode::Cuda, "", "", "moe-tool was built without CUDA");
}

#else

namespace {

class CudaBackend final : public MoeBackend {
 public:
  std::string name() const override { return "cuda"; }

  void run_layer(const ShardSet& set, int layer, const float* x, int tokens,
                 const LayerOutputs& outputs) override {
    const ModelProfile& prof = set.profile();
    const ShardGeometry& geo = set.geometry();
    MOE_CHECK(!set.ranks().empty(), InvalidShard, set.source_path(), "", "shard set has no ranks");
    const int E = prof.num_experts, K = prof.top_k, H = geo.hidden_size;
    const int Hp = geo.hidden_size_padded > 0 ? geo.hidden_size_padded : H;
    if (tokens <= 0) return;
    cudaStream_t s = loader_.stream();
    const std::string& file0 = set.ranks().front().file;
    const RankLayer& first = set.layer(set.ranks().front().rank, layer);

    // Inputs and routing (every rank holds the same router; rank 0's is used).
    x_f32_.ensure(size_t(tokens) * H * 4);
    copy_to_device(x_f32_.data(), x, size_t(tokens) * H * 4, s);
    GpuRouter router = upload_router(first, E, H, s, file0);
    ids_.ensure(size_t(tokens) * K * 4);
    weights_.ensure(size_t(tokens) * K * 4);
    run_routing(router, prof.routing, x_f32_.as<float>(), tokens, K, logits_, ids_.as<int32_t>(),
                weights_.as<float>(), s);

    // Experts read x in their dtype with zero columns up to H_p (and to a multiple of 8).
    const kernels::ElemType dtype = elem_type_of(first.w13.dtype, file0, "w13_weight");
    const int ldx = round_up8(Hp);
    x_elem_.ensure(size_t(tokens) * ldx * 2);
    cuda_check(kernels::launch_convert_input(x_f32_.as<float>(), tokens, H, dtype, x_elem_.data(),
                                             ldx, s),
               "input conversion kernel");
    out_.ensure(size_t(tokens) * Hp * 4);
    cuda_check(cudaMemsetAsync(out_.data(), 0, size_t(tokens) * Hp * 4, s), "zero the output");

    ExpertInputs in;
    in.x = x_elem_.data();
    in.ldx = ldx;
    in.tokens = tokens;
    in.top_k = K;
    in.topk_ids = ids_.as<int32_t>();
    in.topk_weights = weights_.as<float>();
    in.act = act_kind_of(prof.activation);
    in.swiglu_alpha = prof.swiglu_alpha;
    in.swiglu_limit = prof.swiglu_limit;
    in.weight_on_input = prof.routing.weight_on_input;
    in.out = out_.as<float>();
    in.ldo = Hp;

    for (const RankInfo& r : set.ranks()) {
      const RankLayer& rl = set.layer(r.rank, layer);
      GpuExperts experts = upload_routed_experts(rl, geo, loader_, r.file);
      MOE_CHECK(experts.hidden == Hp, ShapeMismatch, r.file, "w13_weight",
                "hidden width " + std::to_string(experts.hidden) + " != manifest H_p " +
                    std::to_string(Hp));
      MOE_CHECK(experts.num_local == 0 || experts.dtype == dtype, DTypeMismatch, r.file,
                "w13_weight", "ranks of one set hold different dtypes");
      GpuRouteTable table = upload_route_table(rl, E, s, r.file);
      run_routed_experts(experts, table, in, ws_, s);
      if (r.ep_rank == 0 && rl.shared_w13.data) {
        GpuExperts shared = upload_shared_expert(rl, geo, loader_, r.file);
        const float* gate = nullptr;
        if (rl.shared_expert_gate.data) {
          MOE_CHECK(rl.shared_expert_gate.numel() == H, InvalidShard, r.file,
                    "shared_expert_gate", "shape " + shape_str(rl.shared_expert_gate.shape));
          std::vector<float> g(static_cast<size_t>(H));
          for (int i = 0; i < H; ++i) g[size_t(i)] = float(rl.shared_expert_gate.at(i));
          gate_vec_.ensure(size_t(H) * 4);
          copy_to_device(gate_vec_.data(), g.data(), g.size() * 4, s);
          ws_.shared_weights.ensure(size_t(tokens) * 4);
          cuda_check(kernels::launch_shared_gate(x_f32_.as<float>(), gate_vec_.as<float>(), tokens,
                                                 H, ws_.shared_weights.as<float>(), s),
                     "shared-expert gate kernel");
          gate = ws_.shared_weights.as<float>();
        }
        run_shared_expert(shared, in, gate, ws_, s);
      }
      // The next rank's upload reuses device memory only after this rank's kernels finish.
      wait_stream(s, "rank " + std::to_string(r.rank) + " kernels");
    }

    copy_to_host(outputs.topk_ids, ids_.data(), size_t(tokens) * K * 4, s);
    copy_to_host(outputs.topk_weights, weights_.data(), size_t(tokens) * K * 4, s);
    std::vector<float> full(size_t(tokens) * Hp);
    copy_to_host(full.data(), out_.data(), full.size() * 4, s);
    for (int t = 0; t < tokens; ++t)
      std::copy(full.begin() + size_t(t) * Hp, full.begin() + size_t(t) * Hp + H,
                outputs.out + size_t(t) * H);
  }

 private:
  StagingLoader loader_;
  DeviceBuffer x_f32_, x_elem_, ids_, weights_, logits_, out_, gate_vec_;
  MoeWorkspace ws_;
};

}  // namespace

std::unique_ptr<MoeBackend> make_cuda_backend() {
  const GpuInfo info = query_gpu();
  MOE_CHECK(info.available, Cuda, "", "", info.reason);
  return std::make_unique<CudaBackend>();
}

#endif

}  // namespace moe
