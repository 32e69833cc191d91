// The rows of the grouped-GEMM tile table: one row per template instance, with its launch
// function per element type. kernels/gemm_launch.cu concatenates the mma.sync rows
// (gemm_mma.cu) and the wgmma rows (gemm_wgmma.cu) and picks among them.
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
};

extern const TileConfig kMmaGateUpConfigs[];
extern const int kMmaGateUpConfigCount;
extern const TileConfig kMmaDownConfigs[];
extern const int kMmaDownConfigCount;
extern const TileConfig kWgmmaGateUpConfigs[];
extern const int kWgmmaGateUpConfigCount;
extern const TileConfig kWgmmaDownConfigs[];
extern const int kWgmmaDownConfigCount;

// Writes 1 to *flag when the running device executes the sm_90a instances.
cudaError_t launch_wgmma_probe(int* flag, cudaStream_t stream);

}  // namespace moe::kernels
