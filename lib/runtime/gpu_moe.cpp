#include "runtime/gpu_moe.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "core/error.h"

namespace moe {

namespace {

void check_launch(cudaError_t err, const char* what) { cuda_check(err, what); }

int device_attribute(cudaDeviceAttr attr, const char* what) {
  int dev = 0, v = 0;
  cuda_check(cudaGetDevice(&dev), "cudaGetDevice");
  cuda_check(cudaDeviceGetAttribute(&v, attr, dev), what);
  return v;
}
int sm_count() {
  static const int n = device_attribute(cudaDevAttrMultiProcessorCount,
                                        "cudaDeviceGetAttribute(multiProcessorCount)");
  return n;
}
int64_t l2_bytes() {
  static const int64_t n =
      device_attribute(cudaDevAttrL2CacheSize, "cudaDeviceGetAttribute(l2CacheSize)");
  return n;
}

// Host copy of a tensor in `dtype` (16-bit float types only), converting when it differs.
std::vector<uint16_t> to_elem(const TensorView& v, kernels::ElemType dtype) {
  const int64_t n = v.numel();
  std::vector<uint16_t> out(size_t(std::max<int64_t>(n, 0)));
  const DType want = dtype == kernels::ElemType::BF16 ? DType::BF16 : DType::F16;
  for (int64_t i = 0; i < n; ++i) {
    if (v.dtype == want) {
      std::memcpy(&out[size_t(i)], v.data + 2 * i, 2);
    } else {
      const float f = float(v.at(i));
      out[size_t(i)] = want == DType::BF16 ? f32_to_bf16(f) : f32_to_f16(f);
    }
  }
  return out;
}

std::vector<float> to_f32(const TensorView& v) {
  const int64_t n = v.numel();
  std::vector<float> out(size_t(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = float(v.at(i));
  return out;
}

template <typename T>
void upload_vector(DeviceBuffer& dst, const std::vector<T>& v, cudaStream_t stream) {
  dst.ensure(v.size() * sizeof(T));
  copy_to_device(dst.data(), v.data(), v.size() * sizeof(T), stream);
}

void check_shape(const TensorView& v, const Shape& want, const std::string& file,
                 const std::string& name) {
  MOE_CHECK(v.shape == want, ShapeMismatch, file, name,
            "shape " + shape_str(v.shape) + ", the CUDA path expects " + shape_str(want));
}

// Uploads stacked [E, rows, cols] weights with cols padded to a multiple of 8 on the device.
void upload_stack(const TensorView& v, int64_t matrices, int rows, int cols, int ld,
                  DeviceBuffer& dst, StagingLoader& loader) {
  dst.ensure(size_t(matrices) * rows * ld * 2);
  loader.upload_rows(dst.data(), size_t(ld) * 2, v.data, size_t(cols) * 2, size_t(cols) * 2,
                     matrices * rows);
}

GpuExperts upload_experts(const TensorView& w13, const TensorView& w2, const TensorView& b13,
                          const TensorView& b2, int64_t num, bool up_first, StagingLoader& loader,
                          const std::string& file, const std::string& w13_name,
                          const std::string& w2_name) {
  GpuExperts e;
  e.dtype = elem_type_of(w13.dtype, file, w13_name);
  MOE_CHECK(w2.dtype == w13.dtype, DTypeMismatch, file, w2_name,
            std::string("dtype ") + dtype_name(w2.dtype) + " differs from " + w13_name + "'s " +
                dtype_name(w13.dtype));
  const bool stacked = w13.shape.size() == 3;
  const int64_t rows2 = stacked ? w13.shape[1] : w13.shape[0];
  MOE_CHECK(rows2 % 2 == 0 && rows2 > 0, ShapeMismatch, file, w13_name,
            "shape " + shape_str(w13.shape) + " has no gate/up halves");
  e.num_local = int(num);
  e.inter = int(rows2 / 2);
  e.hidden = int(stacked ? w13.shape[2] : w13.shape[1]);
  e.inter_ld = round_up8(e.inter);
  e.hidden_ld = round_up8(e.hidden);
  e.up_first = up_first;
  const Shape want2 = stacked ? Shape{num, e.hidden, e.inter} : Shape{e.hidden, e.inter};
  check_shape(w2, want2, file, w2_name);
  upload_stack(w13, num, 2 * e.inter, e.hidden, e.hidden_ld, e.w13, loader);
  upload_stack(w2, num, e.hidden, e.inter, e.inter_ld, e.w2, loader);
  if (b13.data) {
    check_shape(b13, stacked ? Shape{num, 2 * e.inter} : Shape{2 * e.inter}, file, "w13_bias");
    const auto h = to_elem(b13, e.dtype);
    e.w13_bias.ensure(h.size() * 2);
    loader.upload(e.w13_bias.data(), h.data(), h.size() * 2);
    loader.finish();  // `h` dies here
  }
  if (b2.data) {
    check_shape(b2, stacked ? Shape{num, e.hidden} : Shape{e.hidden}, file, "w2_bias");
    const auto h = to_elem(b2, e.dtype);
    e.w2_bias.ensure(h.size() * 2);
    loader.upload(e.w2_bias.data(), h.data(), h.size() * 2);
    loader.finish();
  }
  return e;
}

}  // namespace

uint64_t GpuExperts::weight_bytes() const {
  return uint64_t(num_local) * (uint64_t(2) * inter * hidden_ld + uint64_t(hidden) * inter_ld) * 2;
}

kernels::ElemType elem_type_of(DType t, const std::string& file, const std::string& tensor) {
  MOE_CHECK(t == DType::BF16 || t == DType::F16, DTypeMismatch, file, tensor,
            std::string("the CUDA path runs bf16/fp16 expert weights; this one is ") +
                dtype_name(t));
  return t == DType::BF16 ? kernels::ElemType::BF16 : kernels::ElemType::F16;
}

kernels::ActKind act_kind_of(Activation a) {
  static constexpr kernels::ActKind kTable[] = {kernels::ActKind::SiluAndMul,
                                                kernels::ActKind::GeluAndMul,
                                                kernels::ActKind::SwigluOai};
  static_assert(sizeof(kTable) / sizeof(kTable[0]) == 3, "one row per Activation");
  return kTable[int(a)];
}

kernels::RoutingParams routing_params_of(const RoutingSpec& r) {
  kernels::RoutingParams p;
  p.score = r.score == ScoreFunc::Softmax ? kernels::ScoreKind::Softmax : kernels::ScoreKind::Sigmoid;
  p.renormalize = r.renormalize;
  p.renorm_min = r.renorm_min;
  p.routed_scaling_factor = r.routed_scaling_factor;
  p.n_group = r.n_group;
  p.topk_group = r.topk_group;
  p.group_score = r.group_score == GroupScore::Max ? kernels::GroupKind::Max
                                                   : kernels::GroupKind::SumTop2;
  return p;
}

GpuExperts upload_routed_experts(const RankLayer& layer, const ShardGeometry& g,
                                 StagingLoader& loader, const std::string& file) {
  MOE_CHECK(layer.w13.data && layer.w13.shape.size() == 3, InvalidShard, file, "w13_weight",
            "missing or not [E_local, 2*I, H]: " + shape_str(layer.w13.shape));
  const int64_t num = layer.w13.shape[0];
  GpuExperts e = upload_experts(layer.w13, layer.w2, layer.w13_bias, layer.w2_bias, num,
                                g.w13_up_first, loader, file, "w13_weight", "w2_weight");
  loader.finish();
  return e;
}

GpuExperts upload_shared_expert(const RankLayer& layer, const ShardGeometry& g,
                                StagingLoader& loader, const std::string& file) {
  MOE_CHECK(layer.shared_w13.data && layer.shared_w13.shape.size() == 2, InvalidShard, file,
            "shared_w13_weight", "missing or not [2*Is, H]: " + shape_str(layer.shared_w13.shape));
  GpuExperts e = upload_experts(layer.shared_w13, layer.shared_w2, TensorView{}, TensorView{}, 1,
                                g.w13_up_first, loader, file, "shared_w13_weight",
                                "shared_w2_weight");
  loader.finish();
  return e;
}

GpuRouteTable upload_route_table(const RankLayer& layer, int num_logical, cudaStream_t stream,
                                 const std::string& file) {
  std::vector<int32_t> p2l = layer.physical_to_logical, map = layer.expert_map;
  const int num_local = layer.w13.shape.empty() ? 0 : int(layer.w13.shape[0]);
  if (p2l.empty())
    for (int p = 0; p < num_logical; ++p) p2l.push_back(p);
  if (map.empty()) {
    map.assign(p2l.size(), -1);
    if (!layer.local_to_physical.empty()) {
      for (size_t i = 0; i < layer.local_to_physical.size(); ++i) {
        const int32_t p = layer.local_to_physical[i];
        MOE_CHECK(p >= 0 && size_t(p) < map.size(), InvalidShard, file, "local_to_physical",
                  "physical id " + std::to_string(p) + " out of range");
        map[size_t(p)] = int32_t(i);
      }
    } else {
      for (int p = 0; p < std::min<int>(num_local, int(map.size())); ++p) map[size_t(p)] = p;
    }
  }
  MOE_CHECK(map.size() == p2l.size(), InvalidShard, file, "expert_map",
            "has " + std::to_string(map.size()) + " entries, physical_to_logical has " +
                std::to_string(p2l.size()));
  std::vector<int32_t> offsets(size_t(num_logical) + 1, 0), physical;
  for (size_t p = 0; p < p2l.size(); ++p) {
    MOE_CHECK(p2l[p] >= 0 && p2l[p] < num_logical, InvalidShard, file, "physical_to_logical",
              "logical id " + std::to_string(p2l[p]) + " out of range");
    MOE_CHECK(map[p] < num_local, InvalidShard, file, "expert_map",
              "local id " + std::to_string(map[p]) + " >= E_local " + std::to_string(num_local));
    ++offsets[size_t(p2l[p]) + 1];
  }
  for (int l = 0; l < num_logical; ++l) {
    MOE_CHECK(offsets[size_t(l) + 1] > 0, InvalidShard, file, "physical_to_logical",
              "logical expert " + std::to_string(l) + " has no physical replica");
    offsets[size_t(l) + 1] += offsets[size_t(l)];
  }
  physical.resize(p2l.size());
  std::vector<int32_t> fill(offsets.begin(), offsets.end() - 1);
  for (size_t p = 0; p < p2l.size(); ++p) physical[size_t(fill[size_t(p2l[p])]++)] = int32_t(p);
  GpuRouteTable t;
  t.num_logical = num_logical;
  upload_vector(t.offsets, offsets, stream);
  upload_vector(t.physical, physical, stream);
  upload_vector(t.expert_map, map, stream);
  return t;
}

GpuRouteTable identity_route_table(int num_experts, cudaStream_t stream) {
  std::vector<int32_t> offsets(static_cast<size_t>(num_experts) + 1), ids(static_cast<size_t>(num_experts));
  for (int i = 0; i <= num_experts; ++i) offsets[size_t(i)] = i;
  for (int i = 0; i < num_experts; ++i) ids[size_t(i)] = i;
  GpuRouteTable t;
  t.num_logical = num_experts;
  upload_vector(t.offsets, offsets, stream);
  upload_vector(t.physical, ids, stream);
  upload_vector(t.expert_map, ids, stream);
  return t;
}

GpuRouter upload_router(const RankLayer& layer, int num_experts, int hidden, cudaStream_t stream,
                        const std::string& file) {
  GpuRouter r;
  r.num_experts = num_experts;
  r.hidden = hidden;
  MOE_CHECK(layer.router_weight.data && layer.router_weight.numel() == int64_t(num_experts) * hidden,
            InvalidShard, file, "router_weight",
            "shape " + shape_str(layer.router_weight.shape) + ", expected [" +
                std::to_string(num_experts) + ", " + std::to_string(hidden) + "]");
  upload_vector(r.weight, to_f32(layer.router_weight), stream);
  if (layer.router_bias.data) {
    MOE_CHECK(layer.router_bias.numel() == num_experts, InvalidShard, file, "router_bias",
              "shape " + shape_str(layer.router_bias.shape));
    upload_vector(r.bias, to_f32(layer.router_bias), stream);
  }
  if (layer.correction_bias.data) {
    MOE_CHECK(layer.correction_bias.numel() == num_experts, InvalidShard, file,
              "e_score_correction_bias", "shape " + shape_str(layer.correction_bias.shape));
    upload_vector(r.correction_bias, to_f32(layer.correction_bias), stream);
  }
  return r;
}

void run_routing(const GpuRouter& router, const RoutingSpec& spec, const float* x_f32,
                 int tokens, int top_k, DeviceBuffer& logits, int32_t* topk_ids,
                 float* topk_weights, cudaStream_t stream) {
  if (tokens == 0) return;
  MOE_CHECK(router.num_experts <= kernels::kMaxRoutedExperts && top_k <= kernels::kMaxTopK &&
                top_k <= router.num_experts,
            InvalidArgument, "", "router",
            "E = " + std::to_string(router.num_experts) + ", top_k = " + std::to_string(top_k) +
                " beyond the GPU routing limits (E <= 1024, top_k <= 32)");
  logits.ensure(size_t(tokens) * router.num_experts * sizeof(float));
  check_launch(kernels::launch_router_logits(
                   x_f32, router.weight.as<float>(),
                   spec.has_router_bias ? router.bias.as<float>() : nullptr, tokens, router.hidden,
                   router.num_experts, logits.as<float>(), stream),
               "router logits kernel");
  check_launch(kernels::launch_topk(logits.as<float>(),
                                    spec.has_correction_bias ? router.correction_bias.as<float>()
                                                             : nullptr,
                                    routing_params_of(spec), tokens, router.num_experts, top_k,
                                    topk_ids, topk_weights, stream),
               "top-k routing kernel");
}

kernels::TileChoice default_tiles(const GpuExperts& w, int tokens, int top_k) {
  kernels::TileChoice tc =
      kernels::choose_tiles(tokens * top_k, w.num_local, w.inter_ld, w.hidden, sm_count(),
                            kernels::wgmma_available(), kernels::hbm_peak_tbs());
  // x larger than the L2: the slot-order gather would read most of its rows from HBM top_k
  // times; in token order each row is read once (H100 sweeps: qwen3 16384 tokens 3245 us
  // against 3387, DeepSeek-V3 TP8 4096 tokens 2259 against 2331; no change below the L2 size).
  if (tc.gate_up_cfg >= 0 && kernels::gate_up_config(tc.gate_up_cfg).sorted_a && top_k > 1)
    tc.gather_by_token = int64_t(tokens) * w.hidden_ld * 2 > l2_bytes();
  // A float32 output past 0.6 of the L2: the down GEMM's reds read and write a token's output
  // row from HBM for most of its slots once the output no longer stays in the L2; its rows
  // stored in sorted order and summed by token read and write it once. Below the L2 size the
  // rows already paid on an H100 (same-process sweeps: gpt-oss 4096 tokens, 47 MB, 2693-2763 us
  // against 2751-2824; qwen3 4096, 34 MB, 981-986 against 988-995, x by token in both;
  // docs/perf.md).
  if (top_k > 1 && down_rows_possible(tc, top_k))
    tc.down_rows = int64_t(tokens) * w.hidden * 4 * 5 > l2_bytes() * 3;
  return tc;
}

bool down_rows_possible(const kernels::TileChoice& tc, int top_k) {
  return tc.down_cfg >= 0 && kernels::down_config(tc.down_cfg).rows_out &&
         tc.down_split_k == 1 && top_k <= 32;
}

namespace {

// The scratch of one grouped forward: the routed experts' slot positions and sorted down rows,
// or null (the shared expert: top-k 1, neither gathered nor summed by token).
// slot_pos_ready: this call's alignment wrote the positions (AlignBuffers::slot_pos).
struct GroupedScratch {
  DeviceBuffer* act;
  DeviceBuffer* x_sorted;
  DeviceBuffer* slot_pos;
  DeviceBuffer* rows;
  bool slot_pos_ready = false;
};

// x gathered in token order: the choice asks for it and its gate-up row reads sorted rows.
bool gathers_by_token(const kernels::TileChoice& tc) {
  return tc.gather_by_token && tc.gate_up_cfg >= 0 &&
         kernels::gate_up_config(tc.gate_up_cfg).sorted_a;
}

void run_grouped(const GpuExperts& w, const ExpertInputs& in, const kernels::TileChoice& tc,
                 int top_k, const int32_t* sorted, const int32_t* tile_expert,
                 const int32_t* num_tiles, int max_tiles, const GroupedScratch& sc,
                 const float* input_weights, const float* slot_weights, cudaStream_t stream,
                 unsigned stages = kStageAll) {
  MOE_ASSERT(tc.gate_up_cfg >= 0 && tc.down_cfg >= 0);  // choose_tiles found its rows
  MOE_CHECK(kernels::gate_up_config(tc.gate_up_cfg).block_m == tc.block_m &&
                kernels::down_config(tc.down_cfg).block_m == tc.block_m,
            InvalidArgument, "", "", "gate-up and down tiles must share the alignment block");
  const bool by_token = gathers_by_token(tc);
  MOE_CHECK((!by_token && !tc.down_rows) || sc.slot_pos, InvalidArgument, "", "",
            "x gathered or down rows summed by token: only for the routed experts");
  MOE_CHECK(!tc.down_rows || (sc.rows && down_rows_possible(tc, top_k)), InvalidArgument, "", "",
            "down rows summed by token need a down row that stores rows (rows_out), split 1 and "
            "top-k <= 32");
  DeviceBuffer& act = *sc.act;
  act.ensure(size_t(max_tiles) * tc.block_m * w.inter_ld * 2);
  kernels::GateUpArgs ga;
  ga.dtype = w.dtype;
  ga.act = in.act;
  ga.swiglu_alpha = in.swiglu_alpha;
  ga.swiglu_limit = in.swiglu_limit;
  ga.x = in.x;
  ga.ldx = in.ldx;
  ga.w13 = w.w13.data();
  ga.w13_bias = w.w13_bias.empty() ? nullptr : w.w13_bias.data();
  ga.up_first = w.up_first;
  ga.n = w.inter;
  ga.k = w.hidden_ld;
  ga.top_k = top_k;
  ga.sorted_slots = sorted;
  ga.tile_expert = tile_expert;
  ga.num_tiles = num_tiles;
  ga.max_tiles = max_tiles;
  ga.input_weights = input_weights;
  ga.act_out = act.data();
  ga.ld_act = w.inter_ld;
  ga.num_experts = w.num_local;
  // run_routed_experts sized slot_pos ([tokens * top_k]) before its alignment wrote it.
  MOE_ASSERT((!by_token && !tc.down_rows) ||
             sc.slot_pos->bytes() >= size_t(in.tokens) * top_k * 4);
  MOE_ASSERT(!sc.slot_pos_ready || (by_token || tc.down_rows));
  if (kernels::gate_up_config(tc.gate_up_cfg).sorted_a) {
    sc.x_sorted->ensure(size_t(max_tiles) * tc.block_m * w.hidden_ld * 2);
    ga.x_sorted = sc.x_sorted->data();
    if (by_token) {  // launch_gate_up falls back to slot order past top_k 32
      ga.slot_pos = sc.slot_pos->as<int32_t>();
      ga.slot_pos_ready = sc.slot_pos_ready;
      ga.tokens = in.tokens;
    }
  }
  if (stages & kStageGateUp)
    check_launch(kernels::launch_gate_up(ga, tc.gate_up_cfg, stream),
                 (std::string("gate-up GEMM ") + kernels::gate_up_config(tc.gate_up_cfg).name).c_str());
  kernels::DownArgs da;
  da.dtype = w.dtype;
  da.act = act.data();
  da.ld_act = w.inter_ld;
  da.w2 = w.w2.data();
  da.w2_bias = w.w2_bias.empty() ? nullptr : w.w2_bias.data();
  da.n = w.hidden;
  da.k = w.inter_ld;
  da.top_k = top_k;
  da.sorted_slots = sorted;
  da.tile_expert = tile_expert;
  da.num_tiles = num_tiles;
  da.max_tiles = max_tiles;
  da.slot_weights = slot_weights;
  da.out = in.out;
  da.ldo = in.ldo;
  da.split_k = tc.down_split_k;
  da.num_experts = w.num_local;
  if (tc.down_rows) {
    sc.rows->ensure(size_t(max_tiles) * tc.block_m * w.hidden_ld * 2);
    da.rows_out = sc.rows->data();
    da.ld_rows = w.hidden_ld;
    da.slot_pos = sc.slot_pos->as<int32_t>();
    // this call's alignment or token-order gather filled the positions
    da.slot_pos_ready = sc.slot_pos_ready || (by_token && (stages & kStageGateUp));
    da.tokens = in.tokens;
    da.overwrite_out = in.zero_out;
  }
  if (stages & kStageDown)
    check_launch(kernels::launch_down(da, tc.down_cfg, stream),
                 (std::string("down GEMM ") + kernels::down_config(tc.down_cfg).name +
                  (tc.down_rows ? " and the token-order sum of its rows" : ""))
                     .c_str());
}

}  // namespace

void run_routed_experts(const GpuExperts& w, const GpuRouteTable& table, const ExpertInputs& in,
                        MoeWorkspace& ws, cudaStream_t stream, const kernels::TileChoice* tiles,
                        unsigned stages) {
  if (in.tokens == 0) return;
  // zero_out: the token-order sum writes every row of out; otherwise out starts at zero here.
  auto zero_output = [&] {
    if (in.zero_out && (stages & kStageDown))
      cuda_check(cudaMemsetAsync(in.out, 0, size_t(in.tokens) * in.ldo * 4, stream),
                 "zero the output");
  };
  if (w.num_local == 0) return zero_output();
  const kernels::TileChoice tc = tiles ? *tiles : default_tiles(w, in.tokens, in.top_k);
  if (!tc.down_rows) zero_output();
  MOE_ASSERT(in.ldx >= w.hidden_ld && in.ldo >= w.hidden);
  const int slots = in.tokens * in.top_k;
  const int max_tiles = kernels::align_max_tiles(slots, w.num_local, tc.block_m);
  ws.slot_expert.ensure(size_t(slots) * 4);
  ws.counts.ensure(size_t(kernels::align_scratch_ints(slots, w.num_local)) * 4);
  ws.sorted_slots.ensure(size_t(max_tiles) * tc.block_m * 4);
  ws.tile_expert.ensure(size_t(max_tiles) * 4);
  ws.num_tiles.ensure(4);
  kernels::AlignBuffers ab{ws.slot_expert.as<int32_t>(), ws.counts.as<int32_t>(),
                           ws.sorted_slots.as<int32_t>(), ws.tile_expert.as<int32_t>(),
                           ws.num_tiles.as<int32_t>()};
  // The token-order gather and sum find each slot's sorted row through slot_pos: the
  // alignment writes it as it places the slots (no pass of its own over the sorted rows).
  const bool by_token_scratch = gathers_by_token(tc) || tc.down_rows;
  if (by_token_scratch) ws.slot_pos.ensure(size_t(slots) * 4);
  const bool positions = (stages & kStageAlign) && by_token_scratch;
  if (positions) ab.slot_pos = ws.slot_pos.as<int32_t>();
  if (stages & kStageAlign)
    check_launch(kernels::launch_align(in.topk_ids, table.view(), in.tokens, in.top_k,
                                       w.num_local, tc.block_m, ab, stream),
                 "expert alignment kernels");
  run_grouped(w, in, tc, in.top_k, ab.sorted_slots, ab.tile_expert, ab.num_tiles, max_tiles,
              {&ws.act, &ws.x_sorted, &ws.slot_pos, &ws.rows, positions},
              in.weight_on_input ? in.topk_weights : nullptr,
              in.weight_on_input ? nullptr : in.topk_weights, stream, stages);
}

void run_shared_expert(const GpuExperts& w, const ExpertInputs& in, const float* gate,
                       MoeWorkspace& ws, cudaStream_t stream) {
  if (w.num_local == 0 || in.tokens == 0) return;
  const kernels::TileChoice tc = default_tiles(w, in.tokens, 1);
  const int max_tiles = (in.tokens + tc.block_m - 1) / tc.block_m;
  ws.shared_sorted.ensure(size_t(max_tiles) * tc.block_m * 4);
  ws.shared_tiles.ensure(size_t(max_tiles) * 4);
  ws.shared_num.ensure(4);
  check_launch(kernels::launch_identity_align(in.tokens, tc.block_m,
                                              ws.shared_sorted.as<int32_t>(),
                                              ws.shared_tiles.as<int32_t>(),
                                              ws.shared_num.as<int32_t>(), stream),
               "shared-expert layout kernel");
  run_grouped(w, in, tc, 1, ws.shared_sorted.as<int32_t>(), ws.shared_tiles.as<int32_t>(),
              ws.shared_num.as<int32_t>(), max_tiles,
              {&ws.shared_act, &ws.shared_x_sorted, nullptr, nullptr}, nullptr, gate, stream);
}

}  // namespace moe
