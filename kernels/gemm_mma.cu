// The mma.sync rows of the tile table (kernels/tile_configs.h). Small BM rows serve few tokens
// per expert (weight-bandwidth bound: many CTAs, 4 warps splitting K, deep pipelines); larger
// rows serve more tokens per expert. Names: m<BM>n<output cols>k<BK>.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "gemm_mma.cuh"
#include "tile_configs.h"

namespace moe::kernels {

#define MOE_MMA_ROW(NAME, BM, BN, BK, WM, WN, WK, S, GU)                                   \
  TileConfig {                                                                            \
    NAME, BM, (GU) ? (BN) / 2 : (BN), BK, false,                                          \
        &launch_mma_gemm<__nv_bfloat16, BM, BN, BK, WM, WN, WK, S, GU>,                   \
        &launch_mma_gemm<__half, BM, BN, BK, WM, WN, WK, S, GU>                           \
  }

const TileConfig kMmaGateUpConfigs[] = {
    MOE_MMA_ROW("mma_m16n16k128", 16, 32, 128, 1, 1, 4, 4, true),
    MOE_MMA_ROW("mma_m16n32k128", 16, 64, 128, 1, 1, 4, 4, true),
    MOE_MMA_ROW("mma_m32n32k64", 32, 64, 64, 2, 1, 2, 4, true),
    MOE_MMA_ROW("mma_m64n32k64", 64, 64, 64, 2, 2, 1, 4, true),
    MOE_MMA_ROW("mma_m64n64k64", 64, 128, 64, 2, 2, 1, 3, true),
    MOE_MMA_ROW("mma_m128n64k32", 128, 128, 32, 4, 2, 1, 4, true),
    // Weight-bandwidth bound rows with more loads in flight per SM: 8 warps splitting K, or
    // 256-element K tiles (512-byte bursts per weight row).
    MOE_MMA_ROW("mma_m16n16k128w8", 16, 32, 128, 1, 1, 8, 4, true),
    MOE_MMA_ROW("mma_m16n16k256", 16, 32, 256, 1, 1, 4, 3, true),
    MOE_MMA_ROW("mma_m16n32k128w8", 16, 64, 128, 1, 1, 8, 4, true),
};
const int kMmaGateUpConfigCount = sizeof(kMmaGateUpConfigs) / sizeof(kMmaGateUpConfigs[0]);

const TileConfig kMmaDownConfigs[] = {
    MOE_MMA_ROW("mma_m16n64k128", 16, 64, 128, 1, 1, 4, 4, false),
    MOE_MMA_ROW("mma_m16n128k64", 16, 128, 64, 1, 2, 2, 4, false),
    MOE_MMA_ROW("mma_m32n64k64", 32, 64, 64, 2, 1, 2, 4, false),
    MOE_MMA_ROW("mma_m64n64k64", 64, 64, 64, 2, 2, 1, 4, false),
    MOE_MMA_ROW("mma_m64n128k64", 64, 128, 64, 2, 2, 1, 3, false),
    MOE_MMA_ROW("mma_m128n128k32", 128, 128, 32, 4, 2, 1, 4, false),
    MOE_MMA_ROW("mma_m16n128k64w8", 16, 128, 64, 1, 2, 4, 4, false),
    MOE_MMA_ROW("mma_m16n64k128w8", 16, 64, 128, 1, 1, 8, 4, false),
};
const int kMmaDownConfigCount = sizeof(kMmaDownConfigs) / sizeof(kMmaDownConfigs[0]);

#undef MOE_MMA_ROW

}  // namespace moe::kernels
