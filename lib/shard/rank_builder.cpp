#include "shard/rank_builder.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace moe {

namespace {

// Dense encodings convert takes today; quantized payloads get "not supported yet".
constexpr DType kDenseTypes[] = {DType::BF16, DType::F16, DType::F32};

bool is_dense(DType t) {
  return std::find(std::begin(kDenseTypes), std::end(kDenseTypes), t) != std::end(kDenseTypes);
}

// Copies rows [r0, r1) of v (all columns) into dst rows of dst_row_bytes bytes.
template <size_t kEb>
void copy_rows(const MatrixView& v, int64_t r0, int64_t r1, uint8_t* dst, uint64_t dst_row_bytes) {
  if (v.contiguous_rows()) {
    const size_t n = static_cast<size_t>(v.cols) * kEb;
    for (int64_t r = r0; r < r1; ++r) std::memcpy(dst + (r - r0) * dst_row_bytes, v.ptr(r, 0), n);
    return;
  }
  // A transposed or interleaved source (fused 3-D inputs stored in x out). Scattering elements
  // straight into output rows a power of two apart (H = 2048 bf16: 4 KiB) keeps hitting one
  // L1 set; so each 64 x 64 tile is transposed into a small buffer whose rows are not a power
  // of two apart, then written out as contiguous pieces of the output rows. On a Llama-4
  // layout this took the gather from 0.27 to ~2 GB/s (docs/perf.md "convert").
  constexpr int64_t kTile = 64;
  constexpr size_t kTileRowBytes = kTile * kEb + 64;
  alignas(64) uint8_t tile[kTile * kTileRowBytes];
  const uint8_t* base = v.data;
  for (int64_t rt = r0; rt < r1; rt += kTile) {
    const int64_t re = std::min(rt + kTile, r1);
    for (int64_t ct = 0; ct < v.cols; ct += kTile) {
      const int64_t ce = std::min(ct + kTile, v.cols);
      for (int64_t c = ct; c < ce; ++c) {
        const uint8_t* src = base + (rt * v.row_stride + c * v.col_stride) * kEb;
        uint8_t* t = tile + (c - ct) * kEb;
        for (int64_t r = rt; r < re; ++r, src += v.row_stride * kEb, t += kTileRowBytes)
          std::memcpy(t, src, kEb);
      }
      for (int64_t r = rt; r < re; ++r)
        std::memcpy(dst + (r - r0) * dst_row_bytes + ct * kEb, tile + (r - rt) * kTileRowBytes,
                    static_cast<size_t>(ce - ct) * kEb);
    }
  }
}

using CopyFn = void (*)(const MatrixView&, int64_t, int64_t, uint8_t*, uint64_t);
CopyFn copy_fn(int elem_bytes) {
  switch (elem_bytes) {
    case 1: return copy_rows<1>;
    case 2: return copy_rows<2>;
    case 4: return copy_rows<4>;
    case 8: return copy_rows<8>;
    default: return nullptr;
  }
}

MatrixView literal_row(const std::vector<uint8_t>& bytes, size_t offset, int64_t count) {
  return {bytes.data() + offset, DType::I32, 1, count, count, 1};
}

// Source names for errors (the fused styles name the fused tensor).
std::string source_name(const ExpertMapping& m, const FamilyLayout& layout, int layer, int expert,
                        Proj p) {
  const char* tmpl = p == Proj::Gate ? layout.gate : p == Proj::Up ? layout.up : layout.down;
  if (!*tmpl) tmpl = layout.gate;
  return m.name(tmpl, layer, expert);
}

void check_shape(const MatrixView& v, int64_t rows, int64_t cols, const std::string& tensor,
                 const std::string& what) {
  MOE_CHECK(v.rows == rows && v.cols == cols, ShapeMismatch, "", tensor,
            what + " is [" + std::to_string(v.rows) + ", " + std::to_string(v.cols) +
                "], expected [" + std::to_string(rows) + ", " + std::to_string(cols) +
                "] from config.json");
}

void check_dense(DType t, const std::string& tensor) {
  MOE_CHECK(is_dense(t), UnsupportedQuantization, "", tensor,
            std::string("dtype ") + dtype_name(t) +
                " is not dense bf16/fp16/fp32; quantized experts are not supported by convert yet");
}

void check_same_dtype(DType got, DType want, const std::string& tensor, const std::string& out) {
  MOE_CHECK(got == want, DTypeMismatch, "", tensor,
            std::string("dtype ") + dtype_name(got) + " differs from " + dtype_name(want) +
                " of the other tensors packed into " + out);
}

struct LayerContext {
  const ExpertMapping& mapping;
  const FamilyLayout& layout;
  const ModelProfile& profile;
  const Plan& plan;
  int layer;
};

// The w13 / w2 pair of the routed experts of one rank.
void add_routed(const LayerContext& c, const RankPlan& rank, std::vector<TensorBuild>& out) {
  const auto& local = rank.local_to_physical;
  const auto& p2l = c.plan.physical_to_logical.at(c.layer);
  const TpSlice s = c.plan.intermediate.slice(rank.tp_rank);
  const int64_t H = c.plan.hidden_size, Hp = c.plan.hidden_size_padded, I = c.plan.intermediate.size;
  const int64_t El = static_cast<int64_t>(local.size());
  const bool up_first = c.plan.w13_order == W13Order::UpGate;

  struct Expert {
    MatrixView gate, up, down;
    std::optional<MatrixView> gate_bias, up_bias, down_bias;
  };
  std::vector<Expert> experts;
  DType dtype = DType::kCount;
  const std::string w13 = shard_tensor_name(c.layer, "w13_weight");
  for (int32_t p : local) {
    const int e = p2l.at(p);
    Expert x{c.mapping.expert_weight(c.layer, e, Proj::Gate),
             c.mapping.expert_weight(c.layer, e, Proj::Up),
             c.mapping.expert_weight(c.layer, e, Proj::Down), std::nullopt, std::nullopt,
             std::nullopt};
    const Proj projs[] = {Proj::Gate, Proj::Up, Proj::Down};
    const MatrixView* views[] = {&x.gate, &x.up, &x.down};
    for (int k = 0; k < 3; ++k) {
      const std::string name = source_name(c.mapping, c.layout, c.layer, e, projs[k]);
      const bool down = projs[k] == Proj::Down;
      check_shape(*views[k], down ? H : I, down ? I : H, name,
                  std::string("expert ") + std::to_string(e) + " " + proj_name(projs[k]));
      check_dense(views[k]->dtype, name);
      if (dtype == DType::kCount) dtype = views[k]->dtype;
      check_same_dtype(views[k]->dtype, dtype, name, w13 + " / w2_weight");
    }
    if (c.profile.has_expert_bias) {
      x.gate_bias = c.mapping.expert_bias(c.layer, e, Proj::Gate);
      x.up_bias = c.mapping.expert_bias(c.layer, e, Proj::Up);
      x.down_bias = c.mapping.expert_bias(c.layer, e, Proj::Down);
      const std::string bname = c.mapping.name(c.layout.gate_up_bias, c.layer, e);
      MOE_CHECK(x.gate_bias && x.up_bias && x.down_bias, MissingTensor, "", bname,
                "expert " + std::to_string(e) + " has no bias although the family has biases");
      check_shape(*x.gate_bias, 1, I, bname, "gate bias");
      check_shape(*x.up_bias, 1, I, bname, "up bias");
      check_shape(*x.down_bias, 1, H, c.mapping.name(c.layout.down_bias, c.layer, e), "down bias");
    }
    experts.push_back(x);
  }

  const uint64_t eb = dtype_bits(dtype) / 8;
  TensorBuild w13b(w13, dtype, {El, 2 * s.padded, Hp}, Hp * eb);
  TensorBuild w2b(shard_tensor_name(c.layer, "w2_weight"), dtype, {El, Hp, s.padded}, s.padded * eb);
  for (const Expert& x : experts) {
    const MatrixView first = up_first ? x.up : x.gate, second = up_first ? x.gate : x.up;
    w13b.add(s.padded, first.row_block(s.begin, s.count), true);
    w13b.add(s.padded, second.row_block(s.begin, s.count), true);
    w2b.add(Hp, x.down.col_block(s.begin, s.count), true);
  }
  out.push_back(std::move(w13b));
  out.push_back(std::move(w2b));

  if (!c.profile.has_expert_bias) return;
  const DType bt = experts.front().gate_bias->dtype;
  const uint64_t bb = dtype_bits(bt) / 8;
  TensorBuild w13_bias(shard_tensor_name(c.layer, "w13_bias"), bt, {El, 2 * s.padded}, s.padded * bb);
  TensorBuild w2_bias(shard_tensor_name(c.layer, "w2_bias"), bt, {El, Hp}, Hp * bb);
  for (const Expert& x : experts) {
    for (const auto* v : {&*x.gate_bias, &*x.up_bias, &*x.down_bias})
      check_same_dtype(v->dtype, bt, c.mapping.name(c.layout.gate_up_bias, c.layer, -1),
                       w13_bias.name());
    const MatrixView first = up_first ? *x.up_bias : *x.gate_bias;
    const MatrixView second = up_first ? *x.gate_bias : *x.up_bias;
    w13_bias.add(1, first.col_block(s.begin, s.count), true);
    w13_bias.add(1, second.col_block(s.begin, s.count), true);
    // vLLM loads the down bias on TP rank 0 only, so the all-reduce adds it once.
    if (rank.tp_rank == 0) w2_bias.add(1, *x.down_bias, true);
    else w2_bias.add_zeros(1);
  }
  out.push_back(std::move(w13_bias));
  out.push_back(std::move(w2_bias));
}

// A tensor copied as is (1-D tensors as one row); shape given by the output.
void add_whole(std::vector<TensorBuild>& out, const std::string& name, const MatrixView& v,
               const Shape& shape) {
  TensorBuild t(name, v.dtype, shape, static_cast<uint64_t>(v.cols) * v.elem_bytes());
  t.add(v.rows, v, true);
  out.push_back(std::move(t));
}

void add_router(const LayerContext& c, std::vector<TensorBuild>& out) {
  const int64_t E = c.plan.num_experts, H = c.plan.hidden_size;
  const MatrixView w = c.mapping.router_weight(c.layer);
  check_shape(w, E, H, c.mapping.name(c.layout.router_weight, c.layer), "router weight");
  add_whole(out, shard_tensor_name(c.layer, "router_weight"), w, {E, H});
  // Present exactly when the profile says so, so the manifest's encodings list is the truth.
  if (c.profile.routing.has_router_bias) {
    const std::string name = c.mapping.name(c.layout.router_bias, c.layer);
    auto b = c.mapping.router_bias(c.layer);
    MOE_CHECK(b.has_value(), MissingTensor, "", name, "router bias missing");
    check_shape(*b, 1, E, name, "router bias");
    add_whole(out, shard_tensor_name(c.layer, "router_bias"), *b, {E});
  }
  if (c.profile.routing.has_correction_bias) {
    const std::string name = c.mapping.name(c.layout.correction_bias, c.layer);
    auto b = c.mapping.correction_bias(c.layer);
    MOE_CHECK(b.has_value(), MissingTensor, "", name, "e_score_correction_bias missing");
    check_shape(*b, 1, E, name, "correction bias");
    add_whole(out, shard_tensor_name(c.layer, "e_score_correction_bias"), *b, {E});
  }
}

void add_maps(const LayerContext& c, const RankPlan& rank, std::vector<TensorBuild>& out) {
  const auto map = c.plan.expert_map(rank.rank);
  const auto& p2l = c.plan.physical_to_logical.at(c.layer);
  const auto& local = rank.local_to_physical;
  auto owned = std::make_shared<std::vector<uint8_t>>((map.size() + p2l.size() + local.size()) * 4);
  size_t off = 0;
  const std::pair<const char*, const std::vector<int32_t>*> maps[] = {
      {"expert_map", &map}, {"physical_to_logical", &p2l}, {"local_to_physical", &local}};
  for (const auto& [name, values] : maps) {
    const int64_t n = static_cast<int64_t>(values->size());
    std::memcpy(owned->data() + off, values->data(), n * 4);
    TensorBuild t(shard_tensor_name(c.layer, name), DType::I32, {n}, n * 4);
    t.add(1, literal_row(*owned, off, n), false);
    t.owned = owned;
    out.push_back(std::move(t));
    off += n * 4;
  }
}

void add_shared(const LayerContext& c, const RankPlan& rank, std::vector<TensorBuild>& out) {
  if (c.plan.shared.size == 0) return;
  const int64_t H = c.plan.hidden_size, Hp = c.plan.hidden_size_padded, Is = c.plan.shared.size;
  const TpSlice s = c.plan.shared.slice(rank.tp_rank);
  auto gate = c.mapping.shared_weight(c.layer, Proj::Gate);
  auto up = c.mapping.shared_weight(c.layer, Proj::Up);
  auto down = c.mapping.shared_weight(c.layer, Proj::Down);
  const std::string gname = c.mapping.name(c.layout.shared_gate, c.layer);
  MOE_CHECK(gate && up && down, MissingTensor, "", gname,
            "shared expert missing although config.json gives it width " + std::to_string(Is));
  check_shape(*gate, Is, H, gname, "shared gate_proj");
  check_shape(*up, Is, H, c.mapping.name(c.layout.shared_up, c.layer), "shared up_proj");
  check_shape(*down, H, Is, c.mapping.name(c.layout.shared_down, c.layer), "shared down_proj");
  for (const auto* v : {&*gate, &*up, &*down}) {
    check_dense(v->dtype, gname);
    check_same_dtype(v->dtype, gate->dtype, gname, shard_tensor_name(c.layer, "shared_w13_weight"));
  }
  const uint64_t eb = gate->elem_bytes();
  const bool up_first = c.plan.w13_order == W13Order::UpGate;
  TensorBuild w13(shard_tensor_name(c.layer, "shared_w13_weight"), gate->dtype, {2 * s.padded, Hp},
                  Hp * eb);
  w13.add(s.padded, (up_first ? *up : *gate).row_block(s.begin, s.count), true);
  w13.add(s.padded, (up_first ? *gate : *up).row_block(s.begin, s.count), true);
  TensorBuild w2(shard_tensor_name(c.layer, "shared_w2_weight"), gate->dtype, {Hp, s.padded},
                 s.padded * eb);
  w2.add(Hp, down->col_block(s.begin, s.count), true);
  out.push_back(std::move(w13));
  out.push_back(std::move(w2));
}

void add_shared_gate(const LayerContext& c, std::vector<TensorBuild>& out) {
  if (!c.profile.has_shared_expert_gate) return;
  auto g = c.mapping.shared_expert_gate(c.layer);
  const std::string name = c.mapping.name(c.layout.shared_expert_gate, c.layer);
  MOE_CHECK(g.has_value(), MissingTensor, "", name, "shared_expert_gate missing");
  check_shape(*g, 1, c.plan.hidden_size, name, "shared_expert_gate");
  add_whole(out, shard_tensor_name(c.layer, "shared_expert_gate"), *g, {1, c.plan.hidden_size});
}

}  // namespace

TensorBuild::TensorBuild(std::string name, DType dtype, Shape shape, uint64_t row_bytes)
    : name_(std::move(name)), dtype_(dtype), shape_(std::move(shape)), row_bytes_(row_bytes) {}

void TensorBuild::add(int64_t rows, const MatrixView& src, bool from_source) {
  MOE_ASSERT(src.rows <= rows || src.data == nullptr);
  MOE_ASSERT(static_cast<uint64_t>(src.cols) * src.elem_bytes() <= row_bytes_ || src.data == nullptr);
  starts_.push_back(total_rows_);
  segments_.push_back({rows, src, from_source});
  total_rows_ += rows;
}

void TensorBuild::add_zeros(int64_t rows) { add(rows, MatrixView{}, false); }

size_t TensorBuild::segment_of(int64_t row) const {
  return std::upper_bound(starts_.begin(), starts_.end(), row) - starts_.begin() - 1;
}

void TensorBuild::fill_segment(const Segment& seg, const MatrixView& src, int64_t first, int64_t a,
                               int64_t b, uint8_t* d) const {
  const int64_t src_rows = seg.src.data ? std::min(seg.src.rows, b) : 0;
  if (a < src_rows) {
    const uint64_t used = static_cast<uint64_t>(seg.src.cols) * seg.src.elem_bytes();
    CopyFn copy = copy_fn(seg.src.elem_bytes());
    MOE_ASSERT(copy != nullptr);
    copy(src, a - first, src_rows - first, d, row_bytes_);
    if (used < row_bytes_)
      for (int64_t k = a; k < src_rows; ++k)
        std::memset(d + (k - a) * row_bytes_ + used, 0, row_bytes_ - used);
  }
  const int64_t zero_from = std::max(a, src_rows);
  if (zero_from < b) std::memset(d + (zero_from - a) * row_bytes_, 0, (b - zero_from) * row_bytes_);
}

void TensorBuild::fill(int64_t row_begin, int64_t row_end, uint8_t* dst) const {
  MOE_ASSERT(row_begin >= 0 && row_begin <= row_end && row_end <= total_rows_);
  for (int64_t r = row_begin, s = segment_of(row_begin); r < row_end; ++s) {
    MOE_ASSERT(static_cast<size_t>(s) < segments_.size());
    const Segment& seg = segments_[s];
    const int64_t a = r - starts_[s];  // segment-local
    const int64_t b = std::min(seg.rows, row_end - starts_[s]);
    fill_segment(seg, seg.src, 0, a, b, dst + (r - row_begin) * row_bytes_);
    r = starts_[s] + b;
  }
}

MatrixView TensorBuild::source_rows(int64_t row_begin, int64_t row_end) const {
  const size_t s = segment_of(row_begin);
  const Segment& seg = segments_[s];
  const int64_t a = row_begin - starts_[s], b = row_end - starts_[s];
  MOE_ASSERT(a >= 0 && a <= b && b <= seg.rows);  // inside one segment
  const int64_t end = std::min(b, seg.src.rows);
  if (!seg.from_source || !seg.src.data || seg.src.cols == 0 || a >= end) return MatrixView{};
  return seg.src.row_block(a, end - a);
}

void TensorBuild::fill_from(int64_t row_begin, int64_t row_end, const MatrixView& staged,
                            uint8_t* dst) const {
  const size_t s = segment_of(row_begin);
  const Segment& seg = segments_[s];
  const int64_t a = row_begin - starts_[s], b = row_end - starts_[s];
  MOE_ASSERT(a >= 0 && a <= b && b <= seg.rows);
  if (source_rows(row_begin, row_end).rows == 0) return fill_segment(seg, seg.src, 0, a, b, dst);
  fill_segment(seg, staged, a, a, b, dst);
}

const uint8_t* TensorBuild::direct_span(int64_t row_begin, int64_t row_end) const {
  if (row_begin >= row_end) return nullptr;
  const size_t s = std::upper_bound(starts_.begin(), starts_.end(), row_begin) - starts_.begin() - 1;
  const Segment& seg = segments_[s];
  const int64_t a = row_begin - starts_[s], b = row_end - starts_[s];
  const MatrixView& v = seg.src;
  const bool dense_rows = v.col_stride == 1 && (v.row_stride == v.cols || b - a == 1);
  if (!v.data || b > std::min(seg.rows, v.rows) || !dense_rows ||
      static_cast<uint64_t>(v.cols) * v.elem_bytes() != row_bytes_)
    return nullptr;
  return v.ptr(a, 0);
}

std::string shard_tensor_name(int layer, const char* name) {
  return "layers." + std::to_string(layer) + "." + name;
}

void check_convertible(const ModelProfile& profile, const std::string& config_path) {
  MOE_CHECK(profile.quant.method == QuantMethod::None, UnsupportedQuantization, config_path, "",
            "quantized checkpoint (" + profile.quant.name +
                "): convert supports dense bf16/fp16/fp32 only; quantized inputs are not "
                "supported yet");
}

std::vector<TensorBuild> build_rank_layer(const ExpertMapping& mapping, const ModelProfile& profile,
                                          const Plan& plan, int rank, int layer) {
  check_convertible(profile, "config.json");
  const LayerContext c{mapping, family_layout(profile.family), profile, plan, layer};
  const RankPlan& r = plan.ranks.at(rank);
  std::vector<TensorBuild> out;
  add_routed(c, r, out);
  add_router(c, out);
  add_maps(c, r, out);
  add_shared(c, r, out);
  add_shared_gate(c, out);
  for (const auto& t : out) {
    auto expect = dtype_bytes(t.dtype(), static_cast<uint64_t>(shape_numel(t.shape())));
    MOE_ASSERT(expect && *expect == t.nbytes());
  }
  return out;
}

std::vector<TensorBuild> build_non_moe(const Checkpoint& ckpt, const ModelProfile& profile,
                                       const ExpertMapping& mapping) {
  std::set<std::string> moe;
  for (int layer : profile.moe_layers)
    for (auto& n : mapping.layer_tensor_names(layer)) moe.insert(std::move(n));
  std::vector<TensorBuild> out;
  for (const auto& name : ckpt.names()) {
    if (moe.count(name)) continue;
    const TensorView v = ckpt.view(name);
    // Bytes as a U8 matrix, one row per index of dim 0 where that divides the bytes evenly, so
    // large tensors can be copied in bounded chunks.
    int64_t rows = 1;
    if (!v.shape.empty() && v.shape[0] > 0 && v.nbytes % static_cast<uint64_t>(v.shape[0]) == 0)
      rows = v.shape[0];
    if (v.nbytes == 0) rows = 0;
    const int64_t cols = rows ? static_cast<int64_t>(v.nbytes / rows) : 0;
    TensorBuild t(name, v.dtype, v.shape, static_cast<uint64_t>(cols));
    if (rows) t.add(rows, MatrixView{v.data, DType::U8, rows, cols, cols, 1}, true);
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace moe
