// The wgmma rows of the tile table (sm_90a; kernels/tile_configs.h), and the probe that says
// whether the running device executes them. Names: wg_m<BM>n<output cols>.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "gemm_wgmma.cuh"
#include "tile_configs.h"

namespace moe::kernels {

namespace {
__global__ void wgmma_probe_kernel(int* flag) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  *flag = 1;
#else
  *flag = 0;
#endif
}
}  // namespace

cudaError_t launch_wgmma_probe(int* flag, cudaStream_t stream) {
  wgmma_probe_kernel<<<1, 1, 0, stream>>>(flag);
  return cudaGetLastError();
}

#define MOE_WS_ROW(NAME, BM, BN, S, GU)                                                     \
  TileConfig {                                                                             \
    NAME, BM, (GU) ? (BN) / 2 : (BN), 64, true,                                            \
        &launch_wgmma_ws_gemm<__nv_bfloat16, BM, BN, S, GU>,                               \
        &launch_wgmma_ws_gemm<__half, BM, BN, S, GU>                                       \
  }
#define MOE_WG_ROW(NAME, BM, BN, S, GU)                                                     \
  TileConfig {                                                                             \
    NAME, BM, (GU) ? (BN) / 2 : (BN), 64, true,                                            \
        &launch_wgmma_gemm<__nv_bfloat16, BM, BN, S, GU>, &launch_wgmma_gemm<__half, BM, BN, S, GU> \
  }

const TileConfig kWgmmaGateUpConfigs[] = {
    MOE_WG_ROW("wg_m64n64", 64, 128, 4, true),
    MOE_WG_ROW("wg_m128n64", 128, 128, 5, true),
    MOE_WG_ROW("wg_m128n128", 128, 256, 4, true),
    // 3 stages: small enough for two CTAs per SM (one loads while the other multiplies).
    MOE_WG_ROW("wg_m128n64s3", 128, 128, 3, true),
    MOE_WG_ROW("wg_m64n64s3", 64, 128, 3, true),
    MOE_WG_ROW("wg_m64n128s3", 64, 256, 3, true),
    // 6 stages: four K tiles in flight ahead of the tensor cores.
    MOE_WG_ROW("wg_m128n64s6", 128, 128, 6, true),
    // Warp-specialized: a producer warpgroup feeds the consumers through mbarriers.
    MOE_WS_ROW("ws_m128n64", 128, 128, 6, true),
    MOE_WS_ROW("ws_m128n128", 128, 256, 4, true),
};
const int kWgmmaGateUpConfigCount = sizeof(kWgmmaGateUpConfigs) / sizeof(kWgmmaGateUpConfigs[0]);

const TileConfig kWgmmaDownConfigs[] = {
    MOE_WG_ROW("wg_m64n128", 64, 128, 4, false),
    MOE_WG_ROW("wg_m128n128", 128, 128, 5, false),
    MOE_WG_ROW("wg_m128n256", 128, 256, 4, false),
    MOE_WG_ROW("wg_m128n128s3", 128, 128, 3, false),
    MOE_WG_ROW("wg_m64n128s3", 64, 128, 3, false),
    MOE_WG_ROW("wg_m64n256s3", 64, 256, 3, false),
    MOE_WG_ROW("wg_m128n128s6", 128, 128, 6, false),
    MOE_WS_ROW("ws_m128n128", 128, 128, 6, false),
    MOE_WS_ROW("ws_m128n256", 128, 256, 4, false),
};
const int kWgmmaDownConfigCount = sizeof(kWgmmaDownConfigs) / sizeof(kWgmmaDownConfigs[0]);

#undef MOE_WG_ROW
#undef MOE_WS_ROW

}  // namespace moe::kernels
