// How many 2-CTA clusters of a 416-thread, 198 KB CTA can be resident at once on this GPU.
#include <cstdio>
#include <cuda_runtime.h>
__global__ void __launch_bounds__(416, 1) k(int* p) { extern __shared__ int s[]; if (p) p[0] = s[threadIdx.x]; }
int main() {
  for (int smem : {198 * 1024 + 2048, 150 * 1024, 100 * 1024}) {
    cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    for (int cl : {1, 2}) {
      cudaLaunchConfig_t cfg{};
      cfg.gridDim = dim3(264); cfg.blockDim = dim3(416); cfg.dynamicSmemBytes = smem;
      cudaLaunchAttribute a[1]; a[0].id = cudaLaunchAttributeClusterDimension;
      a[0].val.clusterDim.x = cl; a[0].val.clusterDim.y = 1; a[0].val.clusterDim.z = 1;
      cfg.attrs = a; cfg.numAttrs = 1;
      int n = -1; cudaError_t e = cudaOccupancyMaxActiveClusters(&n, k, &cfg);
      printf("smem %d KB cluster %d: max active clusters %d (%s)\n", smem / 1024, cl, n, cudaGetErrorString(e));
    }
  }
}
