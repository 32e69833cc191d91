// The rows of the grouped-GEMM tile table: one row per template instance, with its launch
// function per element type. kernels/gemm_launch.cu concatenates the mma.sync rows
// (gemm_mma.cu), the wgmma rows (gemm_wgmma.cu) and the TMA rows (gemm_tma.cu) and picks among
// them.
#pragma once
#include "device_utils.cuh"

namespace moe::kernels {

using GemmLaunchFn = cudaError_t (*)(const GemmParams& p, int split_k, cudaStream_t stream);

struct TileConfig {
  const char* name;
  int block_m;   // sorted rows per tile
  int out_cols;  // output columns per tile (gate-up: activation columns)
  int block_k;
  bool wgmma;
  GemmLaunchFn bf16, f16;
  bool sorted_a = false;  // gate-up reads x gathered into sorted order (GateUpArgs::x_sorted)
  bool rows_out = false;  // down can write each slot's row in sorted order (DownArgs::rows_out)
};

extern const TileConfig kMmaGateUpConfigs[];
extern const int kMmaGateUpConfigCount;
extern const TileConfig kMmaDownConfigs[];
extern const int kMmaDownConfigCount;
extern const TileConfig kWgmmaGateUpConfigs[];
extern const int kWgmmaGateUpConfigCount;
extern const TileConfig kWgmmaDownConfigs[];
extern const int kWgmmaDownConfigCount;
extern const TileConfig kTmaGateUpConfigs[];
extern const int kTmaGateUpConfigCount;
extern const TileConfig kTmaDownConfigs[];
extern const int kTmaDownConfigCount;
extern const TileConfig kPingGateUpConfigs[];
extern const int kPingGateUpConfigCount;
extern const TileConfig kPingDownConfigs[];
extern const int kPingDownConfigCount;
extern const TileConfig kCoopGateUpConfigs[];
extern const int kCoopGateUpConfigCount;
extern const TileConfig kCoopDownConfigs[];
extern const int kCoopDownConfigCount;
extern const TileConfig kSwapGateUpConfigs[];
extern const int kSwapGateUpConfigCount;
extern const TileConfig kSwapDownConfigs[];
extern const int kSwapDownConfigCount;

// x rows of the sorted slots [max_tiles * block_m, k] (slot s reads token s / top_k; padding
// rows are not written: the GEMMs mask them): the A operand of the sorted_a rows.
cudaError_t launch_gather_sorted(const void* x, int ldx, int k, int top_k,
                                 const int32_t* sorted_slots, const int32_t* num_tiles,
                                 int block_m, int max_tiles, void* out, cudaStream_t stream);

// The same rows in token order (top_k <= 32): each token's row of x read once and written to
// the sorted rows of its slots, found through slot_pos [tokens * top_k]: filled here first
// unless positions_ready (the alignment filled it: AlignBuffers::slot_pos).
cudaError_t launch_gather_tokens(const void* x, int ldx, int k, int tokens, int top_k,
                                 const int32_t* sorted_slots, const int32_t* num_tiles,
                                 int block_m, int max_tiles, int32_t* slot_pos,
                                 bool positions_ready, void* out, cudaStream_t stream);

// Each sorted row's slot records its row: slot_pos[slot] = r ([tokens * top_k]; slots not on
// this rank keep what an earlier call left, so a reader checks sorted[pos] == slot).
cudaError_t launch_slot_positions(const int32_t* sorted_slots, const int32_t* num_tiles,
                                  int block_m, int max_tiles, int32_t* slot_pos,
                                  cudaStream_t stream);

// The token-order sum of the down rows of `a` (DownArgs::rows_out), whose tiles are block_m
// rows high (launch_down, after the GEMM and the slot positions).
cudaError_t launch_sum_rows(const DownArgs& a, int block_m, cudaStream_t stream);

// Writes 1 to *flag when the running device executes the sm_90a instances.
cudaError_t launch_wgmma_probe(int* flag, cudaStream_t stream);

}  // namespace moe::kernels
