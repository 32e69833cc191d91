// `moe-tool bench`: see gpu_bench.h. The timed region is what vLLM's fused_experts covers for
// the peers in perf-anchors.md: given top-k ids and weights, align, gate-up (+activation),
// down (+weights, top-k sum), including zeroing the float32 output.
#include "runtime/gpu_bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "core/error.h"

#ifdef MOE_HAVE_CUDA
#include <cublas_v2.h>  // types only: the library is opened at run time (CublasApi below)
#include <dlfcn.h>

#include <filesystem>
#include <functional>
#include <set>

#include "core/progress.h"
#include "runtime/device_info.h"
#include "runtime/gpu_moe.h"
#include "shard/shard_set.h"
#endif

namespace moe {

const std::vector<BenchShape>& bench_shapes() {
  static const std::vector<BenchShape> kShapes = {
      {"mixtral", 8, 2, 4096, 14336},
      {"qwen3-30b", 128, 8, 2048, 768},
      {"deepseek-v3-tp8", 256, 8, 7168, 256},
      {"gpt-oss-120b", 128, 4, 2880, 2880},
  };
  return kShapes;
}

const BenchShape* find_bench_shape(const std::string& name) {
  for (const auto& s : bench_shapes())
    if (s.name == name) return &s;
  return nullptr;
}

nlohmann::json bench_to_json(const BenchReport& r) {
  nlohmann::json j;
  j["shape"] = {{"name", r.shape.name}, {"experts", r.shape.experts}, {"top_k", r.shape.top_k},
                {"hidden", r.shape.hidden}, {"intermediate", r.shape.inter}};
  j["dtype"] = r.dtype;
  j["device"] = r.device;
  j["ceilings"] = {{"hbm_gbs", r.hbm_gbs}, {"tensor_tflops", r.tensor_tflops}};
  j["weight_sets"] = r.weight_sets;
  j["settle_s"] = r.settle_s;
  j["wgmma"] = r.wgmma;
  j["cells"] = nlohmann::json::array();
  for (const auto& c : r.cells) {
    nlohmann::json jc = {{"tokens", c.tokens},          {"us", c.us},
                         {"us_spread", c.us_spread},    {"tflops", c.tflops},
                         {"weight_gbs", c.weight_gbs},  {"floor_us", c.floor_us},
                         {"x_floor", c.x_floor},        {"experts_touched", c.experts_touched},
                         {"bytes_touched", c.bytes_touched}, {"gate_up_cfg", c.gate_up_cfg},
                         {"down_cfg", c.down_cfg},      {"split_k", c.split_k},
                         {"gather_by_token", c.gather_by_token}, {"down_rows", c.down_rows}};
    if (c.gate_up_us > 0)
      jc["breakdown"] = {{"align_us", c.align_us},         {"gate_up_us", c.gate_up_us},
                         {"down_us", c.down_us},           {"gate_up_tflops", c.gate_up_tflops},
                         {"down_tflops", c.down_tflops}};
    if (c.check_rel_l2 >= 0) jc["check"] = {{"rel_l2", c.check_rel_l2}, {"max_abs", c.check_max_abs}};
    for (const auto* list : {&c.sweep, &c.pairs}) {
      if (list->empty()) continue;
      nlohmann::json& out = jc[list == &c.sweep ? "sweep" : "pairs"];
      out = nlohmann::json::array();
      for (const auto& s : *list)
        out.push_back({{"gate_up", s.gate_up}, {"down", s.down}, {"split_k", s.split_k},
                       {"gather_by_token", s.gather_by_token}, {"down_rows", s.down_rows},
                       {"us", s.us}});
    }
    j["cells"].push_back(jc);
  }
  return j;
}

#ifndef MOE_HAVE_CUDA

BenchReport run_bench(const BenchOptions&) {
  fail(ErrorCode::Cuda, "", "", "moe-tool was built without CUDA");
}

#else

namespace {

void cublas_check(cublasStatus_t st, const char* what) {
  MOE_CHECK(st == CUBLAS_STATUS_SUCCESS, Cuda, "", "",
            std::string(what) + ": cuBLAS status " + std::to_string(int(st)));
}

// cuBLAS serves only the tensor-core ceiling of `bench`, so it is opened here, when that is
// measured, not linked: linking it makes every command load cuBLASLt at start (~200 MiB of
// resident pages and ~0.1 s for `moe-tool --version`, and the same on top of convert's RSS).
struct CublasApi {
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasDestroy_v2) destroy = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  // Spelled out: cublas_api.h overloads cublasGemmEx with an inline wrapper, so decltype is ambiguous.
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                            const void*, const void*, cudaDataType, int, const void*, cudaDataType,
                            int, const void*, void*, cudaDataType, int, cublasComputeType_t,
                            cublasGemmAlgo_t) = nullptr;
};

const CublasApi& cublas_api() {
  static const CublasApi api = [] {
    const std::string soname = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
    std::vector<std::string> tried = {soname};
#ifdef MOE_CUDA_LIBDIR
    tried.push_back(std::string(MOE_CUDA_LIBDIR) + "/" + soname);
#endif
    void* lib = nullptr;
    std::string why;
    for (const auto& name : tried) {
      lib = ::dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (lib) break;
      const char* e = ::dlerror();
      why = e ? e : "not found";
    }
    MOE_CHECK(lib != nullptr, Cuda, soname, "",
              "cannot load cuBLAS, which `bench` uses for the tensor-core ceiling: " + why);
    CublasApi a;
    auto sym = [&](const char* name) {
      void* f = ::dlsym(lib, name);
      MOE_CHECK(f != nullptr, Cuda, soname, "", std::string("has no symbol ") + name);
      return f;
    };
    a.create = reinterpret_cast<decltype(a.create)>(sym("cublasCreate_v2"));
    a.destroy = reinterpret_cast<decltype(a.destroy)>(sym("cublasDestroy_v2"));
    a.set_stream = reinterpret_cast<decltype(a.set_stream)>(sym("cublasSetStream_v2"));
    a.gemm_ex = reinterpret_cast<decltype(a.gemm_ex)>(sym("cublasGemmEx"));
    return a;  // the library stays open for the process
  }();
  return api;
}

float elapsed_ms(const CudaEvent& a, const CudaEvent& b) {
  float ms = 0;
  cuda_check(cudaEventElapsedTime(&ms, a.get(), b.get()), "cudaEventElapsedTime");
  return ms;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}
double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[size_t(q * double(v.size() - 1))];
}

// Runs `launch` (asynchronous work on s) again and again for `seconds` of wall time, waiting
// for each, so the clocks the power limit allows have settled when the timing starts.
void settle(const std::function<void()>& launch, cudaStream_t s, double seconds) {
  if (seconds <= 0) return;
  const auto t0 = std::chrono::steady_clock::now();
  do {
    launch();
    wait_stream(s, "settle");
  } while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < seconds);
}

// Bytes read + written by a large device-to-device copy, per second.
double measure_hbm_gbs(cudaStream_t s, double settle_s) {
  size_t free_b = 0, total_b = 0;
  cuda_check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
  const size_t bytes = std::min<size_t>(size_t(2) << 30, free_b / 4) & ~size_t(4095);
  DeviceBuffer a(bytes), b(bytes);
  cuda_check(kernels::launch_fill_normal(a.data(), kernels::ElemType::BF16, int64_t(bytes / 2),
                                         1.0f, 7, s),
             "fill copy source");
  auto copy = [&] {
    cuda_check(cudaMemcpyAsync(b.data(), a.data(), bytes, cudaMemcpyDeviceToDevice, s), "d2d copy");
  };
  CudaEvent e0, e1;
  for (int i = 0; i < 2; ++i) copy();
  settle(copy, s, settle_s);
  std::vector<double> gbs;
  for (int i = 0; i < 10; ++i) {
    cuda_check(cudaEventRecord(e0.get(), s), "event");
    copy();
    cuda_check(cudaEventRecord(e1.get(), s), "event");
    wait_event(e1.get(), "event sync");
    gbs.push_back(2.0 * double(bytes) / (elapsed_ms(e0, e1) * 1e-3) / 1e9);
  }
  return median(gbs);
}

// bf16 8192^3 GEMM through cuBLAS on random data.
double measure_tensor_tflops(cudaStream_t s, double settle_s) {
  const int n = 8192;
  const size_t elems = size_t(n) * n;
  DeviceBuffer a(elems * 2), b(elems * 2), c(elems * 2);
  cuda_check(kernels::launch_fill_normal(a.data(), kernels::ElemType::BF16, int64_t(elems), 1.0f, 11, s), "fill A");
  cuda_check(kernels::launch_fill_normal(b.data(), kernels::ElemType::BF16, int64_t(elems), 1.0f, 12, s), "fill B");
  const CublasApi& blas = cublas_api();
  cublasHandle_t h = nullptr;
  cublas_check(blas.create(&h), "cublasCreate");
  std::vector<double> tf;
  try {
    cublas_check(blas.set_stream(h, s), "cublasSetStream");
    const float alpha = 1.0f, beta = 0.0f;
    auto gemm = [&] {
      cublas_check(blas.gemm_ex(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, a.data(), CUDA_R_16BF,
                                n, b.data(), CUDA_R_16BF, n, &beta, c.data(), CUDA_R_16BF, n,
                                CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                   "cublasGemmEx");
    };
    for (int i = 0; i < 3; ++i) gemm();
    settle(gemm, s, settle_s);
    CudaEvent e0, e1;
    for (int i = 0; i < 10; ++i) {
      cuda_check(cudaEventRecord(e0.get(), s), "event");
      gemm();
      cuda_check(cudaEventRecord(e1.get(), s), "event");
      wait_event(e1.get(), "event sync");
      tf.push_back(2.0 * double(n) * n * n / (elapsed_ms(e0, e1) * 1e-3) / 1e12);
    }
  } catch (...) {
    blas.destroy(h);
    throw;
  }
  blas.destroy(h);
  return median(tf);
}

struct Timing {
  double us = 0, spread = 0;
};

// Captures `calls` invocations of body into one CUDA graph, replays it, returns the median
// time per call.
Timing time_graph(const std::function<void(cudaStream_t, int)>& body, cudaStream_t s,
                  int calls = 10, double budget_s = 0.25, double settle_s = 0) {
  cudaGraph_t graph = nullptr;
  cuda_check(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "begin graph capture");
  try {
    for (int i = 0; i < calls; ++i) body(s, i);
  } catch (...) {
    cudaStreamEndCapture(s, &graph);
    if (graph) cudaGraphDestroy(graph);
    throw;
  }
  cuda_check(cudaStreamEndCapture(s, &graph), "end graph capture");
  cudaGraphExec_t exec = nullptr;
  const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  cuda_check(inst, "cudaGraphInstantiate");
  Timing t;
  try {
    CudaEvent e0, e1;
    for (int i = 0; i < 2; ++i) cuda_check(cudaGraphLaunch(exec, s), "graph launch (warm-up)");
    settle([&] { cuda_check(cudaGraphLaunch(exec, s), "graph launch (settle)"); }, s, settle_s);
    cuda_check(cudaEventRecord(e0.get(), s), "event");
    cuda_check(cudaGraphLaunch(exec, s), "graph launch");
    cuda_check(cudaEventRecord(e1.get(), s), "event");
    wait_event(e1.get(), "graph replay");
    const double first_ms = elapsed_ms(e0, e1);
    const int replays = std::clamp(int(budget_s * 1e3 / std::max(first_ms, 1e-3)), 7, 60);
    std::vector<double> us;
    for (int r = 0; r < replays; ++r) {
      cuda_check(cudaEventRecord(e0.get(), s), "event");
      cuda_check(cudaGraphLaunch(exec, s), "graph launch");
      cuda_check(cudaEventRecord(e1.get(), s), "event");
      wait_event(e1.get(), "graph replay");
      us.push_back(elapsed_ms(e0, e1) * 1e3 / calls);
    }
    t.us = median(us);
    t.spread = t.us > 0 ? (quantile(us, 0.9) - quantile(us, 0.1)) / t.us : 0;
  } catch (...) {
    cudaGraphExecDestroy(exec);
    throw;
  }
  cudaGraphExecDestroy(exec);
  return t;
}

struct WeightSet {
  GpuExperts experts;
};

GpuExperts synthetic_experts(const BenchShape& sh, kernels::ElemType dtype, uint64_t seed,
                             cudaStream_t s) {
  GpuExperts e;
  e.dtype = dtype;
  e.num_local = sh.experts;
  e.inter = sh.inter;
  e.inter_ld = round_up8(sh.inter);
  e.hidden = sh.hidden;
  e.hidden_ld = round_up8(sh.hidden);
  const int64_t n13 = int64_t(sh.experts) * 2 * e.inter * e.hidden_ld;
  const int64_t n2 = int64_t(sh.experts) * e.hidden * e.inter_ld;
  e.w13.ensure(size_t(n13) * 2);
  e.w2.ensure(size_t(n2) * 2);
  cuda_check(kernels::launch_fill_normal(e.w13.data(), dtype, n13, 0.02f, seed, s), "fill w13");
  cuda_check(kernels::launch_fill_normal(e.w2.data(), dtype, n2, 0.02f, seed + 1, s), "fill w2");
  return e;
}

bool sweep_row_selected(const BenchOptions& o, const char* name) {
  if (o.sweep_rows.empty()) return true;
  for (const std::string& prefix : o.sweep_rows)
    if (std::strncmp(name, prefix.c_str(), prefix.size()) == 0) return true;
  return false;
}

// The first row of the table (gate-up or down) with this block height that the device runs.
int first_row(int count, kernels::GemmConfigInfo (*row)(int), int block_m, bool wgmma) {
  for (int i = 0; i < count; ++i) {
    const kernels::GemmConfigInfo c = row(i);
    if (c.block_m == block_m && (!c.wgmma || wgmma)) return i;
  }
  return -1;
}

// --pairs: "GATE_UP+DOWN" -> row indices of the two tables, same block height.
std::vector<std::pair<int, int>> resolve_pairs(const std::vector<std::string>& pairs, bool wgmma) {
  std::vector<std::pair<int, int>> out;
  for (const std::string& pair : pairs) {
    const size_t plus = pair.find('+');
    const std::string gu = pair.substr(0, plus);
    const std::string dn = plus == std::string::npos ? "" : pair.substr(plus + 1);
    const int g = kernels::gate_up_config_named(gu.c_str());
    const int d = kernels::down_config_named(dn.c_str());
    MOE_CHECK(plus != std::string::npos && g >= 0 && d >= 0, InvalidArgument, "", "",
              "--pairs '" + pair + "': not GATE_UP+DOWN of known rows (" +
                  (g < 0 ? "gate-up '" + gu + "'" : "down '" + dn + "'") + " unknown)");
    MOE_CHECK(kernels::gate_up_config(g).block_m == kernels::down_config(d).block_m,
              InvalidArgument, "", "", "--pairs '" + pair + "': the rows' block heights differ");
    MOE_CHECK(wgmma || (!kernels::gate_up_config(g).wgmma && !kernels::down_config(d).wgmma),
              InvalidArgument, "", "", "--pairs '" + pair + "': needs wgmma, which this GPU lacks");
    out.emplace_back(g, d);
  }
  return out;
}

std::vector<int> candidate_block_m(double per_expert) {
  std::vector<int> out;
  for (int bm : {8, 16, 32, 48, 64, 80, 128, 192})
    if (bm <= 4 * std::max(per_expert, 4.0) && bm >= per_expert / 8) out.push_back(bm);
  return out;
}

}  // namespace

BenchReport run_bench(const BenchOptions& opts) {
  const GpuInfo info = query_gpu();
  MOE_CHECK(info.available, Cuda, "", "", info.reason);
  MOE_CHECK(opts.dtype == "bf16" || opts.dtype == "fp16", InvalidArgument, "", "",
            "--dtype must be bf16 or fp16, not '" + opts.dtype + "'");
  BenchReport rep;
  rep.device = info.name;
  rep.wgmma = kernels::wgmma_available();
  const std::vector<std::pair<int, int>> pairs = resolve_pairs(opts.pairs, rep.wgmma);
  CudaStream stream;
  cudaStream_t s = stream.get();

  if (opts.measure_ceilings) {
    rep.hbm_gbs = measure_hbm_gbs(s, opts.settle_s);
    rep.tensor_tflops = measure_tensor_tflops(s, opts.settle_s);
  }

  // Weights: synthetic sets, or one rank-layer of a real shard set / checkpoint.
  std::vector<WeightSet> sets;
  GpuRouteTable table;
  BenchShape shape = opts.shape;
  kernels::ElemType dtype =
      opts.dtype == "fp16" ? kernels::ElemType::F16 : kernels::ElemType::BF16;
  kernels::ActKind act = kernels::ActKind::SiluAndMul;
  float alpha = 1.702f, limit = 7.0f;
  if (!opts.source.empty()) {
    const bool is_set = std::filesystem::exists(std::filesystem::path(opts.source) / "manifest.json");
    ShardSet set = is_set ? ShardSet::open(opts.source) : ShardSet::from_checkpoint(opts.source);
    const ModelProfile& prof = set.profile();
    MOE_CHECK(!prof.moe_layers.empty(), InvalidArgument, opts.source, "", "no MoE layers");
    const int layer = opts.layer >= 0 ? opts.layer : prof.moe_layers.front();
    MOE_CHECK(opts.rank >= 0 && opts.rank < int(set.ranks().size()), InvalidArgument,
              opts.source, "", "--rank " + std::to_string(opts.rank) + " out of range");
    const RankInfo& ri = set.ranks()[size_t(opts.rank)];
    const RankLayer& rl = set.layer(ri.rank, layer);
    StagingLoader loader;
    Progress progress("upload", 0, opts.quiet);
    WeightSet w{upload_routed_experts(rl, set.geometry(), loader, ri.file)};
    progress.add(loader.bytes_uploaded());
    progress.finish();
    table = upload_route_table(rl, prof.num_experts, s, ri.file);
    dtype = w.experts.dtype;
    shape = {prof.model_type + " layer " + std::to_string(layer) + " rank " +
                 std::to_string(ri.rank),
             prof.num_experts, prof.top_k, w.experts.hidden, w.experts.inter};
    act = act_kind_of(prof.activation);
    alpha = prof.swiglu_alpha;
    limit = prof.swiglu_limit;
    sets.push_back(std::move(w));
  } else {
    MOE_CHECK(shape.experts > 0 && shape.top_k > 0 && shape.top_k <= shape.experts &&
                  shape.hidden > 0 && shape.inter > 0,
              InvalidArgument, "", "", "bench shape needs experts, top-k, hidden, intermediate > 0");
    const double set_bytes = double(shape.experts) * 3.0 * shape.hidden * shape.inter * 2.0;
    size_t free_b = 0, total_b = 0;
    cuda_check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
    int n = std::max(1, opts.weight_sets);
    while (n > 1 && double(n) * set_bytes > 0.7 * double(free_b)) --n;
    for (int i = 0; i < n; ++i) sets.push_back({synthetic_experts(shape, dtype, 1000 + 17 * i, s)});
    table = identity_route_table(shape.experts, s);
  }
  rep.shape = shape;
  rep.dtype = dtype == kernels::ElemType::BF16 ? "bf16" : "fp16";
  rep.weight_sets = int(sets.size());
  rep.settle_s = opts.settle_s;
  const GpuExperts& w0 = sets.front().experts;
  const int E = shape.experts, K = shape.top_k;

  MoeWorkspace ws;
  DeviceBuffer x, logits, ids, weights, out, naive_out, scratch;
  for (int T : opts.tokens) {
    MOE_CHECK(T > 0, InvalidArgument, "", "", "--tokens entries must be positive");
    BenchCell cell;
    cell.tokens = T;
    x.ensure(size_t(T) * w0.hidden_ld * 2);
    logits.ensure(size_t(T) * E * 4);
    ids.ensure(size_t(T) * K * 4);
    weights.ensure(size_t(T) * K * 4);
    out.ensure(size_t(T) * w0.hidden * 4);
    cuda_check(kernels::launch_fill_normal(x.data(), dtype, int64_t(T) * w0.hidden_ld, 1.0f,
                                           5000 + T, s), "fill x");
    // Softmax top-k on random logits (renormalized), as perf-anchors.md.
    cuda_check(kernels::launch_fill_normal_f32(logits.as<float>(), int64_t(T) * E, 1.0f, 9000 + T, s),
               "fill logits");
    kernels::RoutingParams rp;
    cuda_check(kernels::launch_topk(logits.as<float>(), nullptr, rp, T, E, K, ids.as<int32_t>(),
                                    weights.as<float>(), s),
               "top-k");
    ExpertInputs in;
    in.ldx = w0.hidden_ld;
    in.x = x.data();
    in.tokens = T;
    in.top_k = K;
    in.topk_ids = ids.as<int32_t>();
    in.topk_weights = weights.as<float>();
    in.act = act;
    in.swiglu_alpha = alpha;
    in.swiglu_limit = limit;
    in.out = out.as<float>();
    in.ldo = w0.hidden;

    // A whole call writes the output from zero (run_routed_experts zeroes it, or the
    // token-order sum of the down rows writes every row); a stage alone adds to what is there.
    ExpertInputs in_stage = in;
    in.zero_out = true;
    auto call = [&](cudaStream_t st, int i, const kernels::TileChoice& tc,
                    unsigned stages = kStageAll) {
      run_routed_experts(sets[size_t(i) % sets.size()].experts, table,
                         stages == kStageAll ? in : in_stage, ws, st, &tc, stages);
    };
    const kernels::TileChoice tc = default_tiles(w0, T, K);
    // Untimed run with set 0: sizes the workspace (nothing allocates inside the graph), gives
    // the slot -> local expert map for the bytes touched, and the output for the check.
    cuda_check(kernels::launch_fill_nan_f32(out.as<float>(), int64_t(T) * w0.hidden, s), "poison");
    call(s, 0, tc);
    std::vector<int32_t> slot_expert(size_t(T) * K);
    copy_to_host(slot_expert.data(), ws.slot_expert.data(), slot_expert.size() * 4, s);
    std::set<int32_t> touched;
    int64_t local_slots = 0;
    for (int32_t e : slot_expert)
      if (e >= 0) {
        touched.insert(e);
        ++local_slots;
      }
    cell.experts_touched = int(touched.size());
    cell.bytes_touched = double(touched.size()) * 3.0 * shape.hidden * shape.inter * 2.0;
    const double flops = 2.0 * double(local_slots) * 3.0 * shape.hidden * shape.inter;

    if (T <= opts.check_max_tokens) {
      std::vector<float> fast(size_t(T) * w0.hidden), ref(fast.size());
      copy_to_host(fast.data(), out.data(), fast.size() * 4, s);
      naive_out.ensure(fast.size() * 4);
      scratch.ensure(size_t(T) * K * w0.inter * 4);
      cuda_check(cudaMemsetAsync(naive_out.data(), 0, fast.size() * 4, s), "zero naive output");
      kernels::NaiveMoeArgs na;
      na.dtype = dtype;
      na.act = act;
      na.swiglu_alpha = alpha;
      na.swiglu_limit = limit;
      na.x = x.data();
      na.ldx = w0.hidden_ld;
      na.w13 = w0.w13.data();
      na.w2 = w0.w2.data();
      na.w13_bias = w0.w13_bias.empty() ? nullptr : w0.w13_bias.data();
      na.w2_bias = w0.w2_bias.empty() ? nullptr : w0.w2_bias.data();
      na.up_first = w0.up_first;
      na.inter = w0.inter;
      na.hidden = w0.hidden;
      na.ld_w13 = w0.hidden_ld;
      na.ld_w2 = w0.inter_ld;
      na.tokens = T;
      na.top_k = K;
      na.slot_expert = ws.slot_expert.as<int32_t>();
      na.slot_weights = weights.as<float>();
      na.scratch = scratch.as<float>();
      na.out = naive_out.as<float>();
      na.ldo = w0.hidden;
      cuda_check(kernels::launch_naive_moe(na, s), "naive oracle");
      copy_to_host(ref.data(), naive_out.data(), ref.size() * 4, s);
      double num = 0, den = 0, mx = 0;
      for (size_t i = 0; i < ref.size(); ++i) {
        const double d = double(fast[i]) - double(ref[i]);
        num += d * d;
        den += double(ref[i]) * ref[i];
        mx = std::max(mx, std::isfinite(d) ? std::fabs(d) : INFINITY);
      }
      cell.check_rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
      if (!std::isfinite(num)) cell.check_rel_l2 = INFINITY;
      cell.check_max_abs = mx;
    }

    for (size_t i = 1; i < sets.size(); ++i) call(s, int(i), tc);  // warm every set
    const Timing t =
        time_graph([&](cudaStream_t st, int i) { call(st, i, tc); }, s, 10, 0.25, opts.settle_s);
    cell.us = t.us;
    cell.us_spread = t.spread;
    cell.gate_up_cfg = kernels::gate_up_config(tc.gate_up_cfg).name;
    cell.down_cfg = kernels::down_config(tc.down_cfg).name;
    cell.split_k = tc.down_split_k;
    cell.gather_by_token = tc.gather_by_token;
    cell.down_rows = tc.down_rows;
    cell.tflops = flops / (t.us * 1e-6) / 1e12;
    cell.weight_gbs = cell.bytes_touched / (t.us * 1e-6) / 1e9;
    if (rep.hbm_gbs > 0 && rep.tensor_tflops > 0) {
      cell.floor_us = std::max(cell.bytes_touched / (rep.hbm_gbs * 1e9),
                               flops / (rep.tensor_tflops * 1e12)) * 1e6;
      cell.x_floor = cell.us / cell.floor_us;
    }
    if (opts.breakdown) {  // the workspace holds this cell's alignment from the calls above
      auto stage_us = [&](unsigned st) {
        return time_graph([&](cudaStream_t s2, int i) { call(s2, i, tc, st); }, s, 10, 0.25,
                          opts.settle_s).us;
      };
      cell.align_us = stage_us(kStageAlign);
      cell.gate_up_us = stage_us(kStageGateUp);
      cell.down_us = stage_us(kStageDown);
      cell.gate_up_tflops = flops * 2.0 / 3.0 / (cell.gate_up_us * 1e-6) / 1e12;
      cell.down_tflops = flops / 3.0 / (cell.down_us * 1e-6) / 1e12;
    }

    // One tile choice of the sweep or --pairs, timed like the cell; its down rows are summed by
    // token (the cell's flag) only where the down row can, and `c` keeps the flag as timed.
    auto time_choice = [&](kernels::TileChoice& c) {
      c.down_rows = c.down_rows && down_rows_possible(c, K);
      call(s, 0, c);  // first use outside the graph
      const Timing tt = time_graph([&](cudaStream_t st, int i) { call(st, i, c); }, s, 10, 0.05);
      return BenchSweepEntry{kernels::gate_up_config(c.gate_up_cfg).name,
                             kernels::down_config(c.down_cfg).name, c.down_split_k,
                             c.gather_by_token, c.down_rows, tt.us};
    };
    if (opts.sweep) {
      // Two stages per block height: best gate-up with the default down, then best down/split.
      const double per_expert = double(T) * K / std::max(1, w0.num_local);
      std::vector<int> heights = candidate_block_m(per_expert);
      if (std::find(heights.begin(), heights.end(), tc.block_m) == heights.end())
        heights.push_back(tc.block_m);
      for (int bm : heights) {
        // From the cell's own choice where it has this height, so the sweep times it too.
        kernels::TileChoice base =
            tc.block_m == bm ? tc
                             : kernels::choose_tiles(bm * w0.num_local, w0.num_local, w0.inter_ld,
                                                     w0.hidden, info.sm_count, rep.wgmma,
                                                     kernels::hbm_peak_tbs());
        // The cell's gather order and down-row sum carry to the other heights (try_tc drops the
        // sum where a pair cannot).
        base.gather_by_token = tc.gather_by_token;
        base.down_rows = tc.down_rows;
        if (base.block_m != bm) {  // the first rows of that height, to sweep from
          base.block_m = bm;
          base.gate_up_cfg = first_row(kernels::gate_up_config_count(), kernels::gate_up_config, bm,
                                       rep.wgmma);
          base.down_cfg = first_row(kernels::down_config_count(), kernels::down_config, bm,
                                    rep.wgmma);
          if (base.gate_up_cfg < 0 || base.down_cfg < 0) continue;
          base.down_split_k = 1;
        }
        double best = 1e30;
        kernels::TileChoice best_tc = base;
        auto try_tc = [&](kernels::TileChoice c) {
          cell.sweep.push_back(time_choice(c));
          if (cell.sweep.back().us < best) {
            best = cell.sweep.back().us;
            best_tc = c;
          }
        };
        for (int g = 0; g < kernels::gate_up_config_count(); ++g) {
          const auto gi = kernels::gate_up_config(g);
          if (gi.block_m != bm || (gi.wgmma && !rep.wgmma) || !sweep_row_selected(opts, gi.name))
            continue;
          kernels::TileChoice c = base;
          c.gate_up_cfg = g;
          try_tc(c);
        }
        // Each down row with the cell's row sum where it can (best_tc's flag may have been
        // dropped for a gate-up stage whose down row cannot sum rows).
        kernels::TileChoice with_gu = best_tc;
        with_gu.down_rows = base.down_rows;
        for (int d = 0; d < kernels::down_config_count(); ++d) {
          const auto di = kernels::down_config(d);
          if (di.block_m != bm || (di.wgmma && !rep.wgmma) || !sweep_row_selected(opts, di.name))
            continue;
          for (int split : {1, 2, 4}) {
            if (split > 1 && w0.inter_ld / split < 256) continue;
            kernels::TileChoice c = with_gu;
            c.down_cfg = d;
            c.down_split_k = split;
            if (d == with_gu.down_cfg && split == with_gu.down_split_k) continue;
            try_tc(c);
          }
        }
        // The best pair of this height with x gathered in the other order (sorted_a rows),
        // then with the down rows summed the other way (atomics or by token).
        if (kernels::gate_up_config(best_tc.gate_up_cfg).sorted_a && K <= 32) {
          kernels::TileChoice c = best_tc;
          c.gather_by_token = !c.gather_by_token;
          try_tc(c);
        }
        if (K > 1 && down_rows_possible(best_tc, K)) {
          kernels::TileChoice c = best_tc;
          c.down_rows = !c.down_rows;
          try_tc(c);
        }
      }
    }
    for (const auto& [g, d] : pairs) {
      kernels::TileChoice c = tc;
      c.gate_up_cfg = g;
      c.down_cfg = d;
      c.block_m = kernels::gate_up_config(g).block_m;
      c.down_split_k = 1;
      cell.pairs.push_back(time_choice(c));
    }
    rep.cells.push_back(std::move(cell));
  }
  return rep;
}

#endif

}  // namespace moe
