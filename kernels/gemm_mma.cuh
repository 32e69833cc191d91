// Grouped GEMM on mma.sync m16n8k16 (sm_80+): ldmatrix fragments from padded shared memory
// (row stride BK + 8 elements: conflict-free ldmatrix), a STAGES-deep cp.async pipeline, and
// optionally warps splitting the K of a tile (WARPS_K > 1, reduced through shared memory) so
// that a 16-row tile still has 4 warps issuing loads when few tokens reach an expert.
// GATE_UP: B holds BN/2 gate rows then BN/2 up rows; the epilogue applies the activation and
// stores the intermediate row. Down: the epilogue scales by the routing weight and adds into
// the fp32 output of the slot's token (the top-k reduction, and split-K, by atomic adds).
#pragma once
#include "device_utils.cuh"

namespace moe::kernels {

template <typename T, int BM, int BN, int BK, int WARPS_M, int WARPS_N, int WARPS_K, int STAGES,
          bool GATE_UP>
struct MmaTile {
  static constexpr int kThreads = WARPS_M * WARPS_N * WARPS_K * 32;
  static constexpr int kLd = BK + 8;
  static constexpr int kOutCols = GATE_UP ? BN / 2 : BN;
  static constexpr int kHalves = GATE_UP ? 2 : 1;
  static constexpr int WM = BM / WARPS_M, MI = WM / 16;
  static constexpr int WN = kOutCols / WARPS_N, NI = WN / 8;
  static constexpr int kKSteps = BK / 16;
  static constexpr int kChunksPerRow = BK / 8;
  static constexpr int kAccPerThread = kHalves * MI * NI * 4;
  static constexpr size_t kTileBytes = size_t(STAGES) * (BM + BN) * kLd * sizeof(T);
  static constexpr size_t kReduceBytes = size_t(kThreads) * kAccPerThread * sizeof(float);
  static constexpr size_t kSmemBytes =
      (kTileBytes > kReduceBytes ? kTileBytes : kReduceBytes) + BM * sizeof(int32_t);
  static_assert(WM % 16 == 0 && WN % 16 == 0, "warp tile must be a multiple of 16x16");
  static_assert(kKSteps % WARPS_K == 0, "K steps must split evenly over WARPS_K");
  static_assert(STAGES >= 2, "pipeline needs two stages");
};

template <typename T, int BM, int BN, int BK, int WARPS_M, int WARPS_N, int WARPS_K, int STAGES,
          bool GATE_UP>
__global__ void __launch_bounds__(WARPS_M* WARPS_N* WARPS_K * 32)
    mma_gemm_kernel(const GemmParams p) {
  using C = MmaTile<T, BM, BN, BK, WARPS_M, WARPS_N, WARPS_K, STAGES, GATE_UP>;
  extern __shared__ __align__(16) uint8_t smem[];
  T* sA = reinterpret_cast<T*>(smem);
  T* sB = sA + STAGES * BM * C::kLd;
  int32_t* s_slot =
      reinterpret_cast<int32_t*>(smem + (C::kTileBytes > C::kReduceBytes ? C::kTileBytes
                                                                          : C::kReduceBytes));

  grid_dependency_wait();  // launched dependent: the alignment or gate-up may still be finishing
  allow_dependents();
  TileWork work;
  if (!tile_work(p, work)) return;
  const int m_tile = work.m_tile, n_tile = work.n_tile, split = work.split;
  const int k_begin = work.k_begin, k_end = work.k_end, expert = work.expert;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int warp_k = warp % WARPS_K;
  const int warp_n = (warp / WARPS_K) % WARPS_N;
  const int warp_m = warp / (WARPS_K * WARPS_N);
  for (int r = tid; r < BM; r += C::kThreads) s_slot[r] = p.sorted_slots[int64_t(m_tile) * BM + r];
  __syncthreads();

  const T* A = static_cast<const T*>(p.a);
  const T* B = static_cast<const T*>(p.b) + expert * p.b_expert_stride;
  const int col0 = n_tile * C::kOutCols;

  auto load_tile = [&](int stage, int k0) {
    T* dA = sA + stage * BM * C::kLd;
    T* dB = sB + stage * BN * C::kLd;
#pragma unroll
    for (int c = tid; c < BM * C::kChunksPerRow; c += C::kThreads) {
      const int row = c / C::kChunksPerRow, ch = c % C::kChunksPerRow;
      const int k = k0 + ch * 8;
      const int slot = s_slot[row];
      const bool valid = slot >= 0 && k < k_end;
      const T* src = A;
      if (valid)
        src = GATE_UP ? A + int64_t(slot / p.top_k) * p.lda + k
                      : A + (int64_t(m_tile) * BM + row) * p.lda + k;
      cp_async_16(smem_addr(dA + row * C::kLd + ch * 8), src, valid);
    }
#pragma unroll
    for (int c = tid; c < BN * C::kChunksPerRow; c += C::kThreads) {
      const int row = c / C::kChunksPerRow, ch = c % C::kChunksPerRow;
      const int k = k0 + ch * 8;
      int col, wrow;
      if (GATE_UP) {
        col = col0 + row % C::kOutCols;
        wrow = (row < C::kOutCols ? p.gate_row0 : p.up_row0) + col;
      } else {
        col = col0 + row;
        wrow = col;
      }
      const bool valid = col < p.n && k < k_end;
      const T* src = valid ? B + int64_t(wrow) * p.ldb + k : B;
      cp_async_16(smem_addr(dB + row * C::kLd + ch * 8), src, valid);
    }
  };

  float acc[C::kHalves][C::MI][C::NI][4];
#pragma unroll
  for (int h = 0; h < C::kHalves; ++h)
#pragma unroll
    for (int mi = 0; mi < C::MI; ++mi)
#pragma unroll
      for (int ni = 0; ni < C::NI; ++ni)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[h][mi][ni][j] = 0.0f;

  const int KT = k_end > k_begin ? (k_end - k_begin + BK - 1) / BK : 0;
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < KT) load_tile(s, k_begin + s * BK);
    cp_async_commit();
  }
  for (int kt = 0; kt < KT; ++kt) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();
    const int nt = kt + STAGES - 1;
    if (nt < KT) load_tile(nt % STAGES, k_begin + nt * BK);
    cp_async_commit();
    const T* tA = sA + (kt % STAGES) * BM * C::kLd;
    const T* tB = sB + (kt % STAGES) * BN * C::kLd;
#pragma unroll
    for (int ks = 0; ks < C::kKSteps / WARPS_K; ++ks) {
      const int kk = (ks * WARPS_K + warp_k) * 16;
      uint32_t af[C::MI][4];
#pragma unroll
      for (int mi = 0; mi < C::MI; ++mi) {
        const int row = warp_m * C::WM + mi * 16 + (lane % 16);
        ldmatrix_x4(smem_addr(tA + row * C::kLd + kk + (lane / 16) * 8), af[mi][0], af[mi][1],
                    af[mi][2], af[mi][3]);
      }
#pragma unroll
      for (int h = 0; h < C::kHalves; ++h) {
        uint32_t bf[C::NI][2];
#pragma unroll
        for (int np = 0; np < C::NI / 2; ++np) {
          const int row = h * C::kOutCols + warp_n * C::WN + np * 16 + (lane % 8) + (lane / 16) * 8;
          ldmatrix_x4(smem_addr(tB + row * C::kLd + kk + ((lane / 8) % 2) * 8), bf[2 * np][0],
                      bf[2 * np][1], bf[2 * np + 1][0], bf[2 * np + 1][1]);
        }
#pragma unroll
        for (int mi = 0; mi < C::MI; ++mi)
#pragma unroll
          for (int ni = 0; ni < C::NI; ++ni) mma_16816<T>(acc[h][mi][ni], af[mi], bf[ni]);
      }
    }
  }
  cp_async_wait<0>();

  if constexpr (WARPS_K > 1) {
    // Sum the K-split warps' partial tiles; warp_k == 0 keeps the total.
    __syncthreads();
    float* red = reinterpret_cast<float*>(smem);
    if (warp_k != 0) {
      int j = 0;
#pragma unroll
      for (int h = 0; h < C::kHalves; ++h)
#pragma unroll
        for (int mi = 0; mi < C::MI; ++mi)
#pragma unroll
          for (int ni = 0; ni < C::NI; ++ni)
#pragma unroll
            for (int q = 0; q < 4; ++q, ++j) red[(j * C::kThreads) + tid] = acc[h][mi][ni][q];
    }
    __syncthreads();
    if (warp_k != 0) return;
#pragma unroll
    for (int w = 1; w < WARPS_K; ++w) {
      int j = 0;
#pragma unroll
      for (int h = 0; h < C::kHalves; ++h)
#pragma unroll
        for (int mi = 0; mi < C::MI; ++mi)
#pragma unroll
          for (int ni = 0; ni < C::NI; ++ni)
#pragma unroll
            for (int q = 0; q < 4; ++q, ++j) acc[h][mi][ni][q] += red[j * C::kThreads + tid + w * 32];
    }
  }

  const T* bias =
      p.bias ? static_cast<const T*>(p.bias) + int64_t(expert) * p.bias_expert_stride : nullptr;
#pragma unroll
  for (int mi = 0; mi < C::MI; ++mi) {
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      const int row = warp_m * C::WM + mi * 16 + lane / 4 + hr * 8;
      const int slot = s_slot[row];
      const int64_t prow = int64_t(m_tile) * BM + row;
#pragma unroll
      for (int ni = 0; ni < C::NI; ++ni) {
        const int col = col0 + warp_n * C::WN + ni * 8 + 2 * (lane % 4);
        if constexpr (GATE_UP) {
          if (col >= p.ld_act) continue;
          float v0 = 0.0f, v1 = 0.0f;
          if (slot >= 0) {
            const float w = p.slot_weights ? p.slot_weights[slot] : 1.0f;
            float g0 = acc[0][mi][ni][hr * 2] * w, g1 = acc[0][mi][ni][hr * 2 + 1] * w;
            float u0 = acc[1][mi][ni][hr * 2] * w, u1 = acc[1][mi][ni][hr * 2 + 1] * w;
            if (bias) {
              if (col < p.n) {
                g0 += ElemOps<T>::to_float(bias[p.gate_row0 + col]);
                u0 += ElemOps<T>::to_float(bias[p.up_row0 + col]);
              }
              if (col + 1 < p.n) {
                g1 += ElemOps<T>::to_float(bias[p.gate_row0 + col + 1]);
                u1 += ElemOps<T>::to_float(bias[p.up_row0 + col + 1]);
              }
            }
            v0 = col < p.n ? act_fast<kActAny>(p.act, g0, u0, p.alpha, p.limit) : 0.0f;
            v1 = col + 1 < p.n ? act_fast<kActAny>(p.act, g1, u1, p.alpha, p.limit) : 0.0f;
          }
          T* dst = static_cast<T*>(p.act_out) + prow * p.ld_act + col;
          if (col + 1 < p.ld_act)
            *reinterpret_cast<uint32_t*>(dst) = ElemOps<T>::pack2(v0, v1);
          else
            *dst = ElemOps<T>::from_float(v0);
        } else {
          if (slot < 0 || col >= p.n) continue;
          const float w = p.slot_weights ? p.slot_weights[slot] : 1.0f;
          const bool add_bias = bias && split == 0;
          const float b0 = add_bias ? ElemOps<T>::to_float(bias[col]) : 0.0f;
          const float b1 = add_bias && col + 1 < p.n ? ElemOps<T>::to_float(bias[col + 1]) : 0.0f;
          const float v0 = w * (acc[0][mi][ni][hr * 2] + b0);
          const float v1 = w * (acc[0][mi][ni][hr * 2 + 1] + b1);
          float* o = p.out + int64_t(slot / p.top_k) * p.ldo + col;
          if (col + 1 < p.n && (p.ldo % 2) == 0) {
            atomic_add2(o, v0, v1);
          } else {
            atomicAdd(o, v0);
            if (col + 1 < p.n) atomicAdd(o + 1, v1);
          }
        }
      }
    }
  }
}

template <typename T, int BM, int BN, int BK, int WARPS_M, int WARPS_N, int WARPS_K, int STAGES,
          bool GATE_UP>
cudaError_t launch_mma_gemm(const GemmParams& p, int split_k, cudaStream_t stream) {
  using C = MmaTile<T, BM, BN, BK, WARPS_M, WARPS_N, WARPS_K, STAGES, GATE_UP>;
  auto kernel = mma_gemm_kernel<T, BM, BN, BK, WARPS_M, WARPS_N, WARPS_K, STAGES, GATE_UP>;
  static const cudaError_t attr = cudaFuncSetAttribute(
      kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(C::kSmemBytes));
  if (attr != cudaSuccess) return attr;
  const dim3 grid(unsigned(p.max_tiles) * unsigned(p.n_tiles), unsigned(split_k));
  return launch_dependent(kernel, grid, dim3(C::kThreads), C::kSmemBytes, stream, p);
}

}  // namespace moe::kernels
