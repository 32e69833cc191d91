// Launchers of the fused-MoE CUDA kernels (docs/kernels.md): raw device pointers, sizes and a
// stream in, a cudaError_t out. Each launcher checks its arguments, picks the template instance
// and checks the launch. Nothing from lib/ is included; lib/runtime/ is the only caller.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace moe::kernels {

enum class ElemType : int32_t { BF16 = 0, F16 = 1 };
enum class ActKind : int32_t { SiluAndMul = 0, GeluAndMul = 1, SwigluOai = 2 };
enum class ScoreKind : int32_t { Softmax = 0, Sigmoid = 1 };
enum class GroupKind : int32_t { Max = 0, SumTop2 = 1 };

inline int elem_bytes(ElemType) { return 2; }

// ---- inputs ------------------------------------------------------------------------------
// x [T, hidden] float32 -> x_elem [T, ld] in `dtype`, columns [hidden, ld) set to zero.
cudaError_t launch_convert_input(const float* x, int tokens, int hidden, ElemType dtype,
                                 void* x_elem, int ld, cudaStream_t stream);
// Fills n elements with a quiet NaN (poison before a kernel writes: unwritten output shows).
cudaError_t launch_fill_nan_f32(float* p, int64_t n, cudaStream_t stream);
cudaError_t launch_fill_nan_elem(void* p, ElemType dtype, int64_t n, cudaStream_t stream);
// Deterministic pseudo-random normal(0, stddev) values (counter-based hash + Box-Muller).
cudaError_t launch_fill_normal(void* p, ElemType dtype, int64_t n, float stddev, uint64_t seed,
                               cudaStream_t stream);
cudaError_t launch_fill_normal_f32(float* p, int64_t n, float stddev, uint64_t seed,
                                   cudaStream_t stream);
// One thread that waits until *flag (host-mapped memory the host writes) is non-zero: the GPU
// tests' stand-in for a kernel that never finishes, released by the host afterwards.
cudaError_t launch_wait_for_flag(const int* flag, cudaStream_t stream);

// ---- routing (model/profile.h RoutingSpec, order of operations as documented there) --------
constexpr int kMaxRoutedExperts = 1024;
constexpr int kMaxTopK = 32;
struct RoutingParams {
  ScoreKind score = ScoreKind::Softmax;
  bool renormalize = true;
  float renorm_min = 0.0f;
  float routed_scaling_factor = 1.0f;
  int n_group = 1, topk_group = 1;
  GroupKind group_score = GroupKind::Max;
};
// logits [T, E] = x [T, H] . router_weight [E, H]^T (+ router_bias [E] when not null); fp32.
cudaError_t launch_router_logits(const float* x, const float* router_weight,
                                 const float* router_bias, int tokens, int hidden,
                                 int num_experts, float* logits, cudaStream_t stream);
// Scores, selection (correction_bias may be null), grouped top-k, renormalize, scaling.
cudaError_t launch_topk(const float* logits, const float* correction_bias,
                        const RoutingParams& params, int tokens, int num_experts, int top_k,
                        int32_t* topk_ids, float* topk_weights, cudaStream_t stream);
// w[t] = sigmoid(x[t] . gate) (Qwen2-MoE shared_expert_gate), or 1 when gate is null.
cudaError_t launch_shared_gate(const float* x, const float* gate, int tokens, int hidden,
                               float* weights, cudaStream_t stream);

// ---- token-slot to expert alignment -------------------------------------------------------
// A slot is (token t, choice k), index t * top_k + k. Replica choice (runtime/backend.h): slot
// of token t routed to logical l goes to physical[offsets[l] + t mod (offsets[l+1]-offsets[l])];
// expert_map turns that physical id into this rank's local expert, or -1 (adds nothing here).
struct ReplicaTable {
  const int32_t* offsets;     // [E + 1]
  const int32_t* physical;    // [E_p], grouped by logical expert, increasing ids
  const int32_t* expert_map;  // [E_p] physical -> local or -1
};
// Sorted layout: slots grouped by local expert, each group padded to block_m rows with -1.
struct AlignBuffers {
  int32_t* slot_expert;   // [T * top_k] local expert of each slot or -1
  int32_t* counts;        // [align_scratch_ints(T * top_k, num_local)] scratch
  int32_t* sorted_slots;  // [align_capacity]
  int32_t* tile_expert;   // [align_max_tiles]
  int32_t* num_tiles;     // [1]
  // [T * top_k] or null: slot_pos[s] = the sorted row of each slot s on this rank (slots of
  // other ranks keep what was there), for the token-order gather and sum (slot_pos_ready)
  int32_t* slot_pos = nullptr;
};
int align_max_tiles(int slots, int num_local, int block_m);
int64_t align_scratch_ints(int slots, int num_local);
inline int64_t align_capacity(int slots, int num_local, int block_m) {
  return int64_t(align_max_tiles(slots, num_local, block_m)) * block_m;
}
cudaError_t launch_align(const int32_t* topk_ids, const ReplicaTable& table, int tokens,
                         int top_k, int num_local, int block_m, const AlignBuffers& buffers,
                         cudaStream_t stream);
// Identity layout for a dense MLP (shared experts): slot t = token t, one expert.
cudaError_t launch_identity_align(int tokens, int block_m, int32_t* sorted_slots,
                                  int32_t* tile_expert, int32_t* num_tiles, cudaStream_t stream);

// ---- grouped GEMMs --------------------------------------------------------------------------
// Both GEMMs read weights [E_local, rows, K] row-major (K contiguous, K and every leading
// dimension a multiple of 8 elements: lib/runtime pads) and rows of the sorted layout.
struct GateUpArgs {
  ElemType dtype = ElemType::BF16;
  ActKind act = ActKind::SiluAndMul;
  float swiglu_alpha = 1.702f, swiglu_limit = 7.0f;
  const void* x = nullptr;    // [T, ldx]; row of slot s is token s / top_k
  int ldx = 0;
  const void* w13 = nullptr;  // [E_local, 2 * n, k]: gate rows then up rows (or up first)
  const void* w13_bias = nullptr;  // [E_local, 2 * n] or null
  bool up_first = false;
  int n = 0, k = 0, top_k = 1;  // n = I (activation columns), k = H_p
  const int32_t* sorted_slots = nullptr;
  const int32_t* tile_expert = nullptr;
  const int32_t* num_tiles = nullptr;
  int max_tiles = 0;
  const float* input_weights = nullptr;  // [T * top_k] applied to x before the expert, or null
  void* act_out = nullptr;  // [max_tiles * block_m, ld_act]; columns [n, ld_act) written 0
  int ld_act = 0;
  int num_experts = 0;       // E_local: the extent of w13
  void* x_sorted = nullptr;  // [max_tiles * block_m, k] scratch, for rows with sorted_a
  // With slot_pos ([tokens * top_k] scratch) the sorted_a rows' gather runs in token order,
  // each row of x read once (TileChoice::gather_by_token); past top_k 32, in slot order. The
  // positions are filled here unless slot_pos_ready (AlignBuffers::slot_pos of this alignment).
  int32_t* slot_pos = nullptr;
  bool slot_pos_ready = false;
  int tokens = 0;
};
struct DownArgs {
  ElemType dtype = ElemType::BF16;
  const void* act = nullptr;  // [max_tiles * block_m, ld_act]
  int ld_act = 0;
  const void* w2 = nullptr;       // [E_local, n, k]
  const void* w2_bias = nullptr;  // [E_local, n] or null
  int n = 0, k = 0, top_k = 1;    // n = H_p, k = I (padded to 8)
  const int32_t* sorted_slots = nullptr;
  const int32_t* tile_expert = nullptr;
  const int32_t* num_tiles = nullptr;
  int max_tiles = 0;
  const float* slot_weights = nullptr;  // [T * top_k] or null (weight 1)
  float* out = nullptr;                 // [T, ldo] float32, accumulated (atomic adds)
  int ldo = 0;
  int split_k = 1;
  int num_experts = 0;  // E_local: the extent of w2
  // With rows_out ([max_tiles * block_m, ld_rows] in dtype; split_k 1, top_k <= 32, rows whose
  // GemmConfigInfo::rows_out is set): each slot's weighted row (bias added) is stored at its
  // sorted row instead of added into out, then one block per token adds its slots' rows into
  // out (writes them, with overwrite_out), found through slot_pos ([tokens * top_k] scratch,
  // filled here unless slot_pos_ready: the alignment or the token-order gather filled them)
  // and checked against the sorted table (another rank's slot keeps a stale position there).
  void* rows_out = nullptr;
  int ld_rows = 0;
  int32_t* slot_pos = nullptr;
  bool slot_pos_ready = false;
  int tokens = 0;
  bool overwrite_out = false;
};

// The table of tile configurations (kernels/tile_configs.h has the rows).
struct GemmConfigInfo {
  const char* name;
  int block_m;       // rows of the sorted layout per tile (the alignment block)
  int block_n;       // output columns per tile
  bool wgmma;        // needs sm_90a
  bool sorted_a;     // gate-up: needs GateUpArgs::x_sorted
  bool rows_out;     // down: can store rows in sorted order (DownArgs::rows_out)
};
int gate_up_config_count();
int down_config_count();
GemmConfigInfo gate_up_config(int id);
GemmConfigInfo down_config(int id);
// The table index of the row called `name`, or -1.
int gate_up_config_named(const char* name);
int down_config_named(const char* name);
// True when this device runs the sm_90a (wgmma) instances (probed once by a tiny kernel).
bool wgmma_available();

struct TileChoice {
  int block_m = 16;
  int gate_up_cfg = 0;
  int down_cfg = 0;
  int down_split_k = 1;
  bool gather_by_token = false;  // sorted_a gate-up rows: x gathered in token order
  bool down_rows = false;  // down stores rows in sorted order, summed by token (DownArgs::rows_out)
};
// Picks tiles from the expected rows per expert (slots / num_local), the GEMM sizes and the
// device: its SM count, whether it runs the sm_90a rows, and its peak memory bandwidth in TB/s
// (hbm_peak_tbs(); the Hopper choices differ between H100-class memory, about 3.35 TB/s, and
// H200-class, 4.8 TB/s, each measured on its own machine).
TileChoice choose_tiles(int slots, int num_local, int inter, int hidden, int sm_count,
                        bool wgmma, double hbm_tbs);
// The current device's peak memory bandwidth from its attributes (memory clock x bus width),
// TB/s; 0 when they cannot be read.
double hbm_peak_tbs();
cudaError_t launch_gate_up(const GateUpArgs& args, int cfg, cudaStream_t stream);
cudaError_t launch_down(const DownArgs& args, int cfg, cudaStream_t stream);
// Tests: the persistent rows (tma_p*) launch at most `ctas` CTAs, so each walks many tiles
// (0, the default: one CTA per SM). Not thread-safe; set it between launches.
void set_persistent_ctas(int ctas);

// ---- the in-tree oracle: one thread per output element, fp32, no tiling --------------------
struct NaiveMoeArgs {
  ElemType dtype = ElemType::BF16;
  ActKind act = ActKind::SiluAndMul;
  float swiglu_alpha = 1.702f, swiglu_limit = 7.0f;
  const void* x = nullptr;  // [T, ldx]
  int ldx = 0;
  const void* w13 = nullptr;
  const void* w13_bias = nullptr;
  const void* w2 = nullptr;
  const void* w2_bias = nullptr;
  bool up_first = false;
  int inter = 0, hidden = 0;  // I (w13 rows 2*I, w2 cols ld_w2), H_p (w13 cols ld_w13)
  int ld_w13 = 0, ld_w2 = 0;
  int tokens = 0, top_k = 1;
  const int32_t* slot_expert = nullptr;  // [T * top_k] local expert or -1
  const float* slot_weights = nullptr;   // or null (1)
  bool weight_on_input = false;
  float* scratch = nullptr;  // [T * top_k, inter] float32
  float* out = nullptr;      // [T, ldo] accumulated (+=)
  int ldo = 0;
};
cudaError_t launch_naive_moe(const NaiveMoeArgs& args, cudaStream_t stream);

}  // namespace moe::kernels
