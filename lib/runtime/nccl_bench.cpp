// `moe-tool bench --gpus N`: see nccl_bench.h. Kernel times are taken with events around 10
// back-to-back calls (zero the output, align, gate-up, down), the median of the repeats; the
// all-reduce is timed alone after a one-float all-reduce that lines the members up, so a slow
// peer's kernels do not count as all-reduce time. Every member's figures reach every process
// through one ncclAllGather, so launcher mode reports the whole world too.
#include "runtime/nccl_bench.h"

#include <algorithm>
#include <functional>
#include <memory>

#include "core/error.h"

#ifdef MOE_HAVE_NCCL
#include <filesystem>

#include "runtime/device_info.h"
#include "runtime/gpu_moe.h"
#include "runtime/nccl_world.h"
#include "shard/shard_set.h"
#endif

namespace moe {

nlohmann::json multi_gpu_bench_to_json(const MultiGpuBenchReport& r) {
  nlohmann::json j;
  j["shape"] = {{"name", r.shape.name},
                {"experts", r.shape.experts},
                {"top_k", r.shape.top_k},
                {"hidden", r.shape.hidden},
                {"intermediate", r.shape.inter}};
  j["dtype"] = r.dtype;
  j["device"] = r.device;
  j["nccl_version"] = r.nccl_version;
  j["world"] = world_json(r.world);
  j["cells"] = nlohmann::json::array();
  for (const auto& c : r.cells) {
    nlohmann::json jc = {{"tokens", c.tokens},
                         {"allreduce_bytes", c.allreduce_bytes},
                         {"allreduce_us", c.allreduce_us},
                         {"busbw_gbs", c.busbw_gbs},
                         {"step_us", c.step_us}};
    jc["ranks"] = nlohmann::json::array();
    for (const auto& rk : c.ranks)
      jc["ranks"].push_back({{"rank", rk.rank},
                             {"member", rk.member},
                             {"experts", rk.experts},
                             {"kernel_us", rk.kernel_us}});
    jc["members"] = nlohmann::json::array();
    for (const auto& m : c.members)
      jc["members"].push_back({{"member", m.member},
                               {"device", m.device},
                               {"kernel_us_sum", m.kernel_us_sum},
                               {"allreduce_us", m.allreduce_us}});
    j["cells"].push_back(jc);
  }
  return j;
}

#ifndef MOE_HAVE_NCCL

MultiGpuBenchReport run_multi_gpu_bench(const BenchOptions&, const MultiGpuOptions&) {
#ifndef MOE_HAVE_CUDA
  fail(ErrorCode::Cuda, "", "", "bench --gpus: moe-tool was built without CUDA");
#else
  fail(ErrorCode::Nccl, "", "", "bench --gpus: moe-tool was built without NCCL (see README)");
#endif
}

#else

namespace {

constexpr int kCallsPerBlock = 10;
constexpr int kAllReduceRepeats = 20;  // the same on every member: collectives must pair up

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

struct RankWeights {
  GpuExperts experts;
  GpuRouteTable table;
};

// One member's device state; created and used only on that member's thread.
struct MemberState {
  StagingLoader loader;  // its stream is the member's stream
  std::vector<RankWeights> ranks;
  MoeWorkspace ws;
  DeviceBuffer x, logits, ids, weights, out, one, gather_send, gather_recv;
  CudaEvent e0, e1;
};

// Experts [lo, hi) of E live on this rank (EP, linear): expert_map maps them to 0..hi-lo-1.
GpuRouteTable block_route_table(int num_experts, int lo, int hi, cudaStream_t s) {
  const size_t n = static_cast<size_t>(num_experts);
  std::vector<int32_t> offsets(n + 1), physical(n), map(n, -1);
  for (int e = 0; e <= num_experts; ++e) offsets[size_t(e)] = e;
  for (int e = 0; e < num_experts; ++e) physical[size_t(e)] = e;
  for (int e = lo; e < hi; ++e) map[size_t(e)] = e - lo;
  GpuRouteTable t;
  t.num_logical = num_experts;
  auto up = [&](DeviceBuffer& d, const std::vector<int32_t>& v) {
    d.ensure(v.size() * 4);
    copy_to_device(d.data(), v.data(), v.size() * 4, s);
  };
  up(t.offsets, offsets);
  up(t.physical, physical);
  up(t.expert_map, map);
  return t;
}

GpuExperts synthetic_block(const BenchShape& sh, int experts, kernels::ElemType dtype,
                           uint64_t seed, cudaStream_t s) {
  GpuExperts e;
  e.dtype = dtype;
  e.num_local = experts;
  e.inter = sh.inter;
  e.inter_ld = round_up8(sh.inter);
  e.hidden = sh.hidden;
  e.hidden_ld = round_up8(sh.hidden);
  const int64_t n13 = int64_t(experts) * 2 * e.inter * e.hidden_ld;
  const int64_t n2 = int64_t(experts) * e.hidden * e.inter_ld;
  e.w13.ensure(size_t(n13) * 2);
  e.w2.ensure(size_t(n2) * 2);
  cuda_check(kernels::launch_fill_normal(e.w13.data(), dtype, n13, 0.02f, seed, s), "fill w13");
  cuda_check(kernels::launch_fill_normal(e.w2.data(), dtype, n2, 0.02f, seed + 1, s), "fill w2");
  return e;
}

float elapsed_ms(const CudaEvent& a, const CudaEvent& b) {
  float ms = 0;
  cuda_check(cudaEventElapsedTime(&ms, a.get(), b.get()), "cudaEventElapsedTime");
  return ms;
}

// Median microseconds per call of `fn` (repeats sized to about 0.1 s, 3 to 20 blocks).
double time_calls(const std::function<void()>& fn, WorldMember& m, MemberState& st) {
  const cudaStream_t s = st.loader.stream();
  auto block = [&] {
    cuda_check(cudaEventRecord(st.e0.get(), s), "event");
    for (int i = 0; i < kCallsPerBlock; ++i) fn();
    cuda_check(cudaEventRecord(st.e1.get(), s), "event");
    m.comm.wait(s, m.wd, "bench kernels");
    return double(elapsed_ms(st.e0, st.e1)) * 1e3 / kCallsPerBlock;
  };
  const double first = block();
  const int repeats = std::clamp(int(1e5 / std::max(first * kCallsPerBlock, 1.0)), 3, 20);
  std::vector<double> us;
  for (int r = 0; r < repeats; ++r) us.push_back(block());
  return median(us);
}

}  // namespace

MultiGpuBenchReport run_multi_gpu_bench(const BenchOptions& opts, const MultiGpuOptions& gpus) {
  const GpuInfo info = query_gpu();
  MOE_CHECK(info.available, Cuda, "", "", "bench --gpus: " + info.reason);
  MOE_CHECK(opts.dtype == "bf16" || opts.dtype == "fp16", InvalidArgument, "", "",
            "--dtype must be bf16 or fp16, not '" + opts.dtype + "'");
  MultiGpuBenchReport rep;
  rep.device = info.name;
  rep.nccl_version = nccl_version_string();

  // What each shard rank runs: a real set's rank-layers, or an EP split of synthetic experts.
  std::unique_ptr<ShardSet> set;
  int layer = -1;
  BenchShape shape = opts.shape;
  std::vector<int> rank_experts;
  kernels::ElemType dtype = opts.dtype == "fp16" ? kernels::ElemType::F16 : kernels::ElemType::BF16;
  kernels::ActKind act = kernels::ActKind::SiluAndMul;
  float alpha = 1.702f, limit = 7.0f;
  if (!opts.source.empty()) {
    const bool is_set =
        std::filesystem::exists(std::filesystem::path(opts.source) / "manifest.json");
    set = std::make_unique<ShardSet>(is_set ? ShardSet::open(opts.source)
                                            : ShardSet::from_checkpoint(opts.source));
    const ModelProfile& prof = set->profile();
    MOE_CHECK(!prof.moe_layers.empty(), InvalidArgument, opts.source, "", "no MoE layers");
    layer = opts.layer >= 0 ? opts.layer : prof.moe_layers.front();
    const RankLayer& l0 = set->layer(set->ranks().front().rank, layer);
    dtype = elem_type_of(l0.w13.dtype, set->ranks().front().file, "w13_weight");
    for (const RankInfo& r : set->ranks()) {
      const TensorView& w13 = set->layer(r.rank, layer).w13;
      rank_experts.push_back(w13.shape.empty() ? 0 : int(w13.shape[0]));
    }
    const ShardGeometry& g = set->geometry();
    shape = {prof.model_type + " layer " + std::to_string(layer), prof.num_experts, prof.top_k,
             g.hidden_size_padded > 0 ? g.hidden_size_padded : g.hidden_size,
             g.intermediate_per_rank_padded > 0 ? g.intermediate_per_rank_padded
                                                : g.intermediate_per_rank};
    act = act_kind_of(prof.activation);
    alpha = prof.swiglu_alpha;
    limit = prof.swiglu_limit;
    rep.world = plan_world(int(set->ranks().size()), info.device_count, gpus);
  } else {
    MOE_CHECK(shape.experts > 0 && shape.top_k > 0 && shape.top_k <= shape.experts &&
                  shape.hidden > 0 && shape.inter > 0,
              InvalidArgument, "", "",
              "bench shape needs experts, top-k, hidden, intermediate > 0");
    // One rank per GPU, each a contiguous block of experts (at most one GPU per expert).
    rep.world = plan_world(shape.experts, info.device_count, gpus);
    const int W = rep.world.world_size;
    rep.world.ranks_of_member = assign_ranks(W, W);
    for (int r = 0; r < W; ++r)
      rank_experts.push_back(shape.experts * (r + 1) / W - shape.experts * r / W);
  }
  rep.shape = shape;
  rep.dtype = dtype == kernels::ElemType::BF16 ? "bf16" : "fp16";
  const WorldPlan& plan = rep.world;
  const int W = plan.world_size, E = shape.experts, K = shape.top_k, Hp = shape.hidden;
  size_t slots = 0;  // kernel times per member in the gather: the most ranks any member runs
  for (const auto& rs : plan.ranks_of_member) slots = std::max(slots, rs.size());
  const size_t pack = slots + 2;  // device, kernel_us per rank slot, all-reduce us

  NcclWorld world(plan, gpus.timeout_s);
  std::vector<std::unique_ptr<MemberState>> state(world.size());
  // Device memory and streams go back with their device current, also after an error.
  struct Release {
    NcclWorld& world;
    std::vector<std::unique_ptr<MemberState>>& state;
    ~Release() {
      try {
        world.run([this](WorldMember&, size_t i) { state[i].reset(); });
      } catch (...) {
      }
    }
  } release{world, state};

  world.run([&](WorldMember& m, size_t i) {
    state[i] = std::make_unique<MemberState>();
    MemberState& st = *state[i];
    const cudaStream_t s = st.loader.stream();
    for (int pos : m.ranks) {
      RankWeights w;
      if (set) {
        const RankInfo& ri = set->ranks()[size_t(pos)];
        const RankLayer& rl = set->layer(ri.rank, layer);
        w.experts = upload_routed_experts(rl, set->geometry(), st.loader, ri.file);
        w.table = upload_route_table(rl, E, s, ri.file);
      } else {
        const int lo = E * pos / W, hi = E * (pos + 1) / W;
        w.experts = synthetic_block(shape, hi - lo, dtype, 1000 + 17 * uint64_t(pos), s);
        w.table = block_route_table(E, lo, hi, s);
      }
      st.ranks.push_back(std::move(w));
    }
    m.comm.wait(s, m.wd, "weight upload");
  });

  for (int T : opts.tokens) {
    MOE_CHECK(T > 0, InvalidArgument, "", "", "--tokens entries must be positive");
    MultiGpuBenchCell cell;
    cell.tokens = T;
    cell.allreduce_bytes = double(T) * Hp * 4;
    std::vector<float> gathered(pack * size_t(W));
    world.run([&](WorldMember& m, size_t i) {
      MemberState& st = *state[i];
      const cudaStream_t s = st.loader.stream();
      const int ldx = round_up8(Hp);
      st.x.ensure(size_t(T) * ldx * 2);
      st.logits.ensure(size_t(T) * E * 4);
      st.ids.ensure(size_t(T) * K * 4);
      st.weights.ensure(size_t(T) * K * 4);
      st.out.ensure(size_t(T) * Hp * 4);
      // Same seeds on every member: every GPU routes the tokens identically.
      cuda_check(kernels::launch_fill_normal(st.x.data(), dtype, int64_t(T) * ldx, 1.0f,
                                             5000 + uint64_t(T), s),
                 "fill x");
      cuda_check(kernels::launch_fill_normal_f32(st.logits.as<float>(), int64_t(T) * E, 1.0f,
                                                 9000 + uint64_t(T), s),
                 "fill logits");
      cuda_check(kernels::launch_topk(st.logits.as<float>(), nullptr, kernels::RoutingParams{}, T,
                                      E, K, st.ids.as<int32_t>(), st.weights.as<float>(), s),
                 "top-k");
      ExpertInputs in;
      in.x = st.x.data();
      in.ldx = ldx;
      in.tokens = T;
      in.top_k = K;
      in.topk_ids = st.ids.as<int32_t>();
      in.topk_weights = st.weights.as<float>();
      in.act = act;
      in.swiglu_alpha = alpha;
      in.swiglu_limit = limit;
      in.out = st.out.as<float>();
      in.ldo = Hp;

      std::vector<float> mine(pack, -1.0f);
      mine[0] = float(m.device);
      for (size_t j = 0; j < st.ranks.size(); ++j) {
        const RankWeights& w = st.ranks[j];
        auto call = [&] {
          cuda_check(cudaMemsetAsync(st.out.data(), 0, size_t(T) * Hp * 4, s), "zero output");
          run_routed_experts(w.experts, w.table, in, st.ws, s);
        };
        call();  // sizes the workspace outside the timed blocks
        mine[1 + j] = float(time_calls(call, m, st));
      }

      // All-reduce of the layer output, alone: a one-float all-reduce lines the members up.
      cuda_check(cudaMemsetAsync(st.out.data(), 0, size_t(T) * Hp * 4, s), "zero output");
      st.one.ensure(4);
      for (int r = 0; r < 2; ++r)
        m.comm.all_reduce_sum(st.out.as<float>(), size_t(T) * Hp, s, m.wd);
      m.comm.wait(s, m.wd, "all-reduce warm-up");
      std::vector<double> us;
      for (int r = 0; r < kAllReduceRepeats; ++r) {
        m.comm.all_reduce_sum(st.one.as<float>(), 1, s, m.wd);
        m.comm.wait(s, m.wd, "barrier");
        cuda_check(cudaEventRecord(st.e0.get(), s), "event");
        m.comm.all_reduce_sum(st.out.as<float>(), size_t(T) * Hp, s, m.wd);
        cuda_check(cudaEventRecord(st.e1.get(), s), "event");
        m.comm.wait(s, m.wd, "timed all-reduce");
        us.push_back(double(elapsed_ms(st.e0, st.e1)) * 1e3);
      }
      mine[pack - 1] = float(median(us));

      st.gather_send.ensure(pack * 4);
      st.gather_recv.ensure(pack * size_t(W) * 4);
      copy_to_device(st.gather_send.data(), mine.data(), pack * 4, s);
      m.comm.all_gather(st.gather_send.as<float>(), st.gather_recv.as<float>(), pack, s, m.wd);
      m.comm.wait(s, m.wd, "gather of the timings");
      if (i == 0) copy_to_host(gathered.data(), st.gather_recv.data(), gathered.size() * 4, s);
    });

    double slowest_kernels = 0;
    for (int mm = 0; mm < W; ++mm) {
      const float* g = gathered.data() + pack * size_t(mm);
      MultiGpuBenchMember mem;
      mem.member = mm;
      mem.device = int(g[0]);
      const auto& rs = plan.ranks_of_member[size_t(mm)];
      for (size_t j = 0; j < rs.size(); ++j) {
        const int pos = rs[j];
        const int rank = set ? set->ranks()[size_t(pos)].rank : pos;
        cell.ranks.push_back({rank, mm, rank_experts[size_t(pos)], double(g[1 + j])});
        mem.kernel_us_sum += double(g[1 + j]);
      }
      mem.allreduce_us = double(g[pack - 1]);
      slowest_kernels = std::max(slowest_kernels, mem.kernel_us_sum);
      cell.allreduce_us = std::max(cell.allreduce_us, mem.allreduce_us);
      cell.members.push_back(mem);
    }
    std::sort(
        cell.ranks.begin(), cell.ranks.end(),
        [](const MultiGpuBenchRank& a, const MultiGpuBenchRank& b) { return a.rank < b.rank; });
    cell.step_us = slowest_kernels + cell.allreduce_us;
    if (cell.allreduce_us > 0)
      cell.busbw_gbs = cell.allreduce_bytes * 2.0 * (W - 1) / W / (cell.allreduce_us * 1e-6) / 1e9;
    rep.cells.push_back(std::move(cell));
  }
  return rep;
}

#endif

}  // namespace moe
