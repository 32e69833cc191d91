// The grouped-GEMM launchers: the tile table (mma.sync rows, then wgmma rows), the choice of a
// row from the expected rows per expert, argument checks, and the GemmParams each row's kernel
// receives.
#include <algorithm>
#include <cstring>
#include <vector>

#include "tile_configs.h"

namespace moe::kernels {
namespace {

struct Tables {
  std::vector<TileConfig> gate_up, down;
};
const Tables& tables() {
  static const Tables t = [] {
    Tables r;
    r.gate_up.assign(kMmaGateUpConfigs, kMmaGateUpConfigs + kMmaGateUpConfigCount);
    r.gate_up.insert(r.gate_up.end(), kWgmmaGateUpConfigs,
                     kWgmmaGateUpConfigs + kWgmmaGateUpConfigCount);
    r.down.assign(kMmaDownConfigs, kMmaDownConfigs + kMmaDownConfigCount);
    r.down.insert(r.down.end(), kWgmmaDownConfigs, kWgmmaDownConfigs + kWgmmaDownConfigCount);
    r.gate_up.insert(r.gate_up.end(), kTmaGateUpConfigs, kTmaGateUpConfigs + kTmaGateUpConfigCount);
    r.down.insert(r.down.end(), kTmaDownConfigs, kTmaDownConfigs + kTmaDownConfigCount);
    r.gate_up.insert(r.gate_up.end(), kPingGateUpConfigs, kPingGateUpConfigs + kPingGateUpConfigCount);
    r.down.insert(r.down.end(), kPingDownConfigs, kPingDownConfigs + kPingDownConfigCount);
    r.gate_up.insert(r.gate_up.end(), kCoopGateUpConfigs, kCoopGateUpConfigs + kCoopGateUpConfigCount);
    r.down.insert(r.down.end(), kCoopDownConfigs, kCoopDownConfigs + kCoopDownConfigCount);
    r.gate_up.insert(r.gate_up.end(), kSwapGateUpConfigs,
                     kSwapGateUpConfigs + kSwapGateUpConfigCount);
    r.down.insert(r.down.end(), kSwapDownConfigs, kSwapDownConfigs + kSwapDownConfigCount);
    return r;
  }();
  return t;
}
int find(const std::vector<TileConfig>& rows, const char* name) {
  for (size_t i = 0; i < rows.size(); ++i)
    if (std::strcmp(rows[i].name, name) == 0) return int(i);
  return -1;  // a name missing from the table: the launch then fails with cudaErrorInvalidValue
}
GemmConfigInfo info(const TileConfig& c) {
  return {c.name, c.block_m, c.out_cols, c.wgmma, c.sorted_a, c.rows_out};
}
int ceil_div(int64_t a, int64_t b) { return int((a + b - 1) / b); }

// Down GEMM split-K: enough CTAs for two waves, each split still a few K tiles long.
int pick_split(int64_t ctas, int k, int block_k, int sm_count) {
  int split = 1;
  while (ctas * split < 2 * int64_t(sm_count) && k / (2 * split) >= 4 * block_k && split < 16)
    split *= 2;
  return split;
}

}  // namespace

int gate_up_config_count() { return int(tables().gate_up.size()); }
int down_config_count() { return int(tables().down.size()); }
GemmConfigInfo gate_up_config(int id) { return info(tables().gate_up.at(size_t(id))); }
GemmConfigInfo down_config(int id) { return info(tables().down.at(size_t(id))); }
int gate_up_config_named(const char* name) { return find(tables().gate_up, name); }
int down_config_named(const char* name) { return find(tables().down, name); }

bool dependent_launch_supported() {
  static const bool supported = [] {
    int dev = 0, major = 0;
    const bool ok = cudaGetDevice(&dev) == cudaSuccess &&
                    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) ==
                        cudaSuccess;
    cudaGetLastError();
    return ok && major >= 9;
  }();
  return supported;
}

double hbm_peak_tbs() {
  static const double tbs = [] {
    int dev = 0, khz = 0, bits = 0;
    const bool ok = cudaGetDevice(&dev) == cudaSuccess &&
                    cudaDeviceGetAttribute(&khz, cudaDevAttrMemoryClockRate, dev) == cudaSuccess &&
                    cudaDeviceGetAttribute(&bits, cudaDevAttrGlobalMemoryBusWidth, dev) ==
                        cudaSuccess;
    cudaGetLastError();
    return ok ? 2.0 * khz * 1e3 * (bits / 8.0) / 1e12 : 0.0;  // double data rate
  }();
  return tbs;
}

bool wgmma_available() {
  static const bool available = [] {
    int* d_flag = nullptr;
    int flag = 0;
    if (cudaMalloc(&d_flag, sizeof(int)) != cudaSuccess) return false;
    bool ok = cudaMemset(d_flag, 0, sizeof(int)) == cudaSuccess &&
              launch_wgmma_probe(d_flag, nullptr) == cudaSuccess &&
              cudaMemcpy(&flag, d_flag, sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess;
    cudaFree(d_flag);
    cudaGetLastError();  // a device without the sm_90a image fails the probe: not an error here
    return ok && flag == 1;
  }();
  return available;
}

namespace {

// Hopper (sm_90a): the rows and boundaries are the winners of `moe-tool bench --sweep` on an H200
// for the four perf-anchors.md shapes (docs/perf.md, "tile choice"). Few slots per expert: the
// swapped-operand TMA rows (weights as wgmma's M), token tiles of 8, 16 or 32; more: the TMA
// warp-specialized rows with 64- then 128-row tiles, the persistent cooperative rows (tma_c*)
// for few experts or many slots per expert.
TileChoice choose_hopper(const Tables& t, int slots, int64_t active, int num_local, int inter,
                         int hidden, int sm_count, double hbm_tbs) {
  const double per_expert = double(slots) / std::max(1, num_local);
  // H100-class memory (3.35 TB/s; also when unknown): where its own sweeps (docs/perf.md, "H100,
  // 2026-12-06") chose other rows than the H200's, below.
  const bool h100 = hbm_tbs < 4.0;
  const bool few_experts = num_local <= 16;
  const bool wide_hidden = hidden >= 6144;
  const bool narrow = inter < 512;    // DeepSeek-V3 TP8: few N tiles
  const bool short_k = inter <= 768;  // down's K: more CTAs per SM pay off
  TileChoice c;
  if (per_expert <= 12) {
    c.block_m = per_expert <= 4 && !wide_hidden ? 8 : 16;
    c.gate_up_cfg = find(t.gate_up, c.block_m == 8 ? "swap_t8n64" : "swap_t16n64");
    // A wide hidden size (DeepSeek-V3 TP8) has a short down K: four stages, more CTAs per SM.
    c.down_cfg = find(t.down, c.block_m == 8 ? "swap_t8n64" : (wide_hidden ? "swap_t16n64s4" : "swap_t16n64"));
    const int64_t tiles = std::max<int64_t>(active, ceil_div(slots, c.block_m));
    c.down_split_k = pick_split(tiles * ceil_div(hidden, 64), inter, 64, sm_count);
  } else if (narrow && per_expert <= 96) {
    // A narrow intermediate with a wide hidden size (DeepSeek-V3 TP8): gate-up reads x in place
    // (a gather pass would copy 14 KB rows), down walks its short-K tiles persistently.
    c.block_m = 64;
    c.gate_up_cfg = find(t.gate_up, "tma_m64n64x");
    c.down_cfg = find(t.down, "tma_p64n128");
  } else if (per_expert <= 24 || (few_experts && per_expert <= 40)) {
    c.block_m = 32;
    c.gate_up_cfg = find(t.gate_up, "swap_t32n64");
    c.down_cfg = find(t.down, "swap_t32n64s6");
  } else if (per_expert <= 40 || (few_experts && per_expert <= 72)) {
    // 32 or 64 expected slots per expert (gpt-oss 1024 tokens, Mixtral 256): one 48- or 80-token
    // tile holds an expert's slots and their spread, where 64-row tiles would give about half
    // the experts a second tile of padding (or 128-row tiles half a tile of it).
    c.block_m = per_expert <= 40 ? 48 : 80;
    c.gate_up_cfg = find(t.gate_up, c.block_m == 48 ? "swap_t48n64" : "swap_t80n64");
    c.down_cfg = find(t.down, c.block_m == 48 ? "swap_t48n128" : "swap_t80n128");
  } else if (per_expert <= 56 && !few_experts) {
    c.block_m = 64;  // two CTAs per SM: one's epilogue overlaps the other's main loop
    c.gate_up_cfg = find(t.gate_up, "tma_m64n64");
    c.down_cfg = find(t.down, short_k ? "tma_m64n128s3" : "tma_m64n128");
  } else if (per_expert <= 96 && !few_experts) {
    // About 64 slots per expert (qwen3 1024 tokens): one 128-row tile holds an expert's slots
    // and their spread (its upper A box skipped when empty), where 64-row tiles give about half
    // the experts a second tile that reads the weights again; two CTAs per SM both.
    c.block_m = 128;
    c.gate_up_cfg = find(t.gate_up, "tma_m128n64s3");
    c.down_cfg = find(t.down, short_k ? "tma_m128n128s3" : "tma_m128n128");
  } else {
    c.block_m = 128;
    if (few_experts && h100 && per_expert > 512) {
      // Mixtral 4096 tokens on an H100: 192 x 192 tiles (gate-up 96 + 96 weight rows), the long
      // down K split in four (5392 us against 5768 for the H200's choice in one sweep).
      c.block_m = 192;
      c.gate_up_cfg = find(t.gate_up, "tma_m192n96");
      c.down_cfg = find(t.down, "tma_m192n192");
      c.down_split_k = inter >= 4096 ? 4 : 1;
    } else if (few_experts && h100) {
      // Mixtral 1024 tokens on an H100: non-persistent 128 x 128 gate-up tiles, the down rows
      // added by bulk reduces (1825 us against 2028).
      c.gate_up_cfg = find(t.gate_up, "tma_m128n128");
      c.down_cfg = find(t.down, "tma_m128n256r");
      c.down_split_k = inter >= 4096 ? 2 : 1;
    } else if (few_experts) {
      // Few experts (Mixtral): 128 x 128 persistent gate-up tiles; a long down K split in two,
      // its 128 x 256 tiles a few waves only.
      c.gate_up_cfg = find(t.gate_up, "tma_c128n128");
      c.down_cfg = find(t.down, "tma_m128n256");
      c.down_split_k = inter >= 4096 ? 2 : 1;
    } else if (h100 && narrow && per_expert <= 160) {
      // About 128 slots per expert and a narrow intermediate on an H100 (DeepSeek-V3 TP8 4096
      // tokens): the 192-row pair, one tile per expert (2067-2069 us against 2123-2140 for the
      // 128-row pair below, both with the down rows summed by token; 2275-2278 against
      // 2309-2420 with the reds; docs/perf.md, "H100, 2026-12-06, second session").
      c.block_m = 192;
      c.gate_up_cfg = find(t.gate_up, "tma_m192n96");
      c.down_cfg = find(t.down, "tma_m192n192r");
    } else if (!short_k && per_expert > 96 && per_expert <= 160) {
      // About 128 slots per expert and a long down K (gpt-oss 4096 tokens): one 192-row tile
      // per expert reads its weights once, where 128-row tiles read them twice for about half
      // the experts; 192 x 192 tiles (gate-up: 96 + 96 weight rows) load fewer bytes per FLOP.
      // On an H100 the down rows (summed by token there: the output passes 0.6 of the L2) go
      // out by bulk copies (2667-2714 us against 2691-2774 for the per-lane stores, one
      // process, rounds alternating; docs/perf.md).
      c.block_m = 192;
      c.gate_up_cfg = find(t.gate_up, "tma_m192n96");
      c.down_cfg = find(t.down, h100 ? "tma_m192n192r" : "tma_m192n192");
    } else if (short_k && (per_expert > 512 || (h100 && per_expert > 160))) {
      // qwen3 16384 tokens (about 1024 slots per expert): the densest tiles; on an H100 from
      // 4096 tokens (256) on (1001 us against 1023 for the 128-row pair below), the down rows
      // added by bulk reduces (16384: 3319 us against 3425; 4096: 1012 against 1023).
      c.block_m = 192;
      c.gate_up_cfg = find(t.gate_up, "tma_m192n96");
      c.down_cfg = find(t.down, h100 ? "tma_m192n192r" : "tma_m192n192");
    } else {
      // 64-column gate-up tiles, two CTAs per SM; 128 x 256 down tiles (the 16-byte atomics of
      // the epilogue made the wide down tile the faster one for a short K too). On an H100 a
      // short K's down rows are added by bulk reduces (DeepSeek-V3 TP8 4096 tokens: 2331 us
      // against 2441).
      c.gate_up_cfg = find(t.gate_up, "tma_m128n64s3");
      c.down_cfg = find(t.down, h100 && short_k ? "tma_m128n256r" : "tma_m128n256");
    }
  }
  return c;
}

}  // namespace

// Before Hopper: the mma.sync rows, boundaries from the same sweep on an H100; per_expert is
// the expected number of slots per local expert, which decides the tile height.
TileChoice choose_tiles(int slots, int num_local, int inter, int hidden, int sm_count,
                        bool wgmma, double hbm_tbs) {
  const Tables& t = tables();
  const double per_expert = double(slots) / std::max(1, num_local);
  const int64_t active = std::max(1, std::min(num_local, slots));
  TileChoice c;
  if (wgmma) {
    c = choose_hopper(t, slots, active, num_local, inter, hidden, sm_count, hbm_tbs);
  } else if (per_expert <= 16) {
    // Weight-bandwidth bound: 16-row tiles, as many loads in flight as the SM holds.
    c.block_m = 16;
    const int64_t tiles = std::max<int64_t>(active, ceil_div(slots, 16));
    c.gate_up_cfg = find(t.gate_up, per_expert <= 1 ? "mma_m16n16k128w8" : "mma_m16n16k256");
    const bool wide = tiles * ceil_div(hidden, 128) >= 2 * int64_t(sm_count);
    c.down_cfg = find(t.down, wide ? "mma_m16n128k64w8" : "mma_m16n64k128w8");
    c.down_split_k = pick_split(tiles * ceil_div(hidden, wide ? 128 : 64), inter, 128, sm_count);
  } else {
    c.block_m = per_expert <= 40 ? 32 : (per_expert <= 96 ? 64 : 128);
    const char* gu[] = {"mma_m32n32k64", "mma_m64n64k64", "mma_m128n64k32"};
    const char* dn[] = {"mma_m32n64k64", "mma_m64n128k64", "mma_m128n128k32"};
    const int i = c.block_m == 32 ? 0 : (c.block_m == 64 ? 1 : 2);
    c.gate_up_cfg = find(t.gate_up, gu[i]);
    c.down_cfg = find(t.down, dn[i]);
    c.down_split_k = 1;
  }
  // A row whose height differs from the alignment block would read the layout wrongly: refuse.
  if (c.gate_up_cfg >= 0 && t.gate_up[size_t(c.gate_up_cfg)].block_m != c.block_m) c.gate_up_cfg = -1;
  if (c.down_cfg >= 0 && t.down[size_t(c.down_cfg)].block_m != c.block_m) c.down_cfg = -1;
  return c;
}

cudaError_t launch_gate_up(const GateUpArgs& a, int cfg, cudaStream_t stream) {
  const Tables& t = tables();
  if (cfg < 0 || cfg >= int(t.gate_up.size())) return cudaErrorInvalidValue;
  const TileConfig& row = t.gate_up[size_t(cfg)];
  if (row.wgmma && !wgmma_available()) return cudaErrorInvalidDeviceFunction;
  if (a.n <= 0 || a.k <= 0 || a.k % 8 != 0 || a.ldx % 8 != 0 || a.ldx < a.k || a.top_k <= 0 ||
      a.ld_act < a.n || a.ld_act % 8 != 0 || a.max_tiles <= 0 || !a.x || !a.w13 ||
      !a.sorted_slots || !a.tile_expert || !a.num_tiles || !a.act_out)
    return cudaErrorInvalidValue;
  GemmParams p{};
  p.a = a.x;
  p.lda = a.ldx;
  p.b = a.w13;
  p.b_expert_stride = int64_t(2) * a.n * a.k;
  p.num_experts = a.num_experts;
  p.ldb = a.k;
  p.bias = a.w13_bias;
  p.bias_expert_stride = 2 * a.n;
  p.sorted_slots = a.sorted_slots;
  p.tile_expert = a.tile_expert;
  p.num_tiles = a.num_tiles;
  p.max_tiles = a.max_tiles;
  p.n_tiles = ceil_div(a.n, row.out_cols);
  p.n = a.n;
  p.k = a.k;
  p.k_per_split = a.k;
  p.top_k = a.top_k;
  p.gate_row0 = a.up_first ? a.n : 0;
  p.up_row0 = a.up_first ? 0 : a.n;
  p.slot_weights = a.input_weights;
  p.act = int(a.act);
  p.alpha = a.swiglu_alpha;
  p.limit = a.swiglu_limit;
  p.act_out = a.act_out;
  p.ld_act = a.ld_act;
  if (row.sorted_a) {
    if (!a.x_sorted) return cudaErrorInvalidValue;
    const cudaError_t e =
        a.slot_pos && a.top_k <= 32
            ? launch_gather_tokens(a.x, a.ldx, a.k, a.tokens, a.top_k, a.sorted_slots,
                                   a.num_tiles, row.block_m, a.max_tiles, a.slot_pos,
                                   a.slot_pos_ready, a.x_sorted, stream)
            : launch_gather_sorted(a.x, a.ldx, a.k, a.top_k, a.sorted_slots, a.num_tiles,
                                   row.block_m, a.max_tiles, a.x_sorted, stream);
    if (e != cudaSuccess) return e;
    p.a = a.x_sorted;
    p.lda = a.k;
  }
  return (a.dtype == ElemType::BF16 ? row.bf16 : row.f16)(p, 1, stream);
}

cudaError_t launch_down(const DownArgs& a, int cfg, cudaStream_t stream) {
  const Tables& t = tables();
  if (cfg < 0 || cfg >= int(t.down.size())) return cudaErrorInvalidValue;
  const TileConfig& row = t.down[size_t(cfg)];
  if (row.wgmma && !wgmma_available()) return cudaErrorInvalidDeviceFunction;
  if (a.n <= 0 || a.k <= 0 || a.k % 8 != 0 || a.ld_act % 8 != 0 || a.ld_act < a.k ||
      a.top_k <= 0 || a.ldo < a.n || a.max_tiles <= 0 || a.split_k <= 0 || !a.act || !a.w2 ||
      !a.sorted_slots || !a.tile_expert || !a.num_tiles || !a.out)
    return cudaErrorInvalidValue;
  if (a.rows_out && (!row.rows_out || a.split_k != 1 || a.ld_rows < a.n || a.ld_rows % 8 != 0 ||
                     !a.slot_pos || a.tokens <= 0 || a.top_k > 32))
    return cudaErrorInvalidValue;
  GemmParams p{};
  p.a = a.act;
  p.lda = a.ld_act;
  p.b = a.w2;
  p.b_expert_stride = int64_t(a.n) * a.k;
  p.num_experts = a.num_experts;
  p.ldb = a.k;
  p.bias = a.w2_bias;
  p.bias_expert_stride = a.n;
  p.sorted_slots = a.sorted_slots;
  p.tile_expert = a.tile_expert;
  p.num_tiles = a.num_tiles;
  p.max_tiles = a.max_tiles;
  p.n_tiles = ceil_div(a.n, row.out_cols);
  p.n = a.n;
  p.k = a.k;
  const int per = ceil_div(ceil_div(a.k, a.split_k), row.block_k) * row.block_k;
  p.k_per_split = per;
  p.top_k = a.top_k;
  p.slot_weights = a.slot_weights;
  p.out = a.out;
  p.ldo = a.ldo;
  p.rows_out = a.rows_out;
  p.ld_rows = a.ld_rows;
  cudaError_t e = (a.dtype == ElemType::BF16 ? row.bf16 : row.f16)(p, ceil_div(a.k, per), stream);
  if (e != cudaSuccess || !a.rows_out) return e;
  if (!a.slot_pos_ready)
    e = launch_slot_positions(a.sorted_slots, a.num_tiles, row.block_m, a.max_tiles, a.slot_pos,
                              stream);
  return e == cudaSuccess ? launch_sum_rows(a, row.block_m, stream) : e;
}

}  // namespace moe::kernels
