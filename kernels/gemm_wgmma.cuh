// Grouped GEMM on Hopper's warpgroup MMA (wgmma, sm_90a): one or two consumer warpgroups of 64
// rows each, B tiles of 128 or 256 rows, BK = 64 (one 128-byte swizzle atom per row). Tiles are
// loaded with cp.async into the 128B-swizzled layout that the wgmma shared-memory descriptors
// read (16-byte chunk c of row r stored at chunk c ^ (r mod 8)); a STAGES-deep pipeline keeps
// one wgmma group in flight while the next tiles load. Same epilogues as gemm_mma.cuh.
#pragma once
#include "device_utils.cuh"

namespace moe::kernels {

template <typename T>
__device__ __forceinline__ void wgmma_m64n128k16(float* d, uint64_t desc_a, uint64_t desc_b);

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
template <>
__device__ __forceinline__ void wgmma_m64n128k16<__nv_bfloat16>(float* d, uint64_t desc_a, uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
      "%64, %65, p, 1, 1, 0, 0;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), 
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), 
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), 
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), 
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), 
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), 
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), 
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(desc_a), "l"(desc_b), "r"(1));
}

template <>
__device__ __forceinline__ void wgmma_m64n128k16<__half>(float* d, uint64_t desc_a, uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
      "%64, %65, p, 1, 1, 0, 0;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), 
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), 
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), 
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), 
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), 
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), 
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), 
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(desc_a), "l"(desc_b), "r"(1));
}
#else
template <typename T>
__device__ __forceinline__ void wgmma_m64n128k16(float*, uint64_t, uint64_t) {
  __trap();  // never launched: wgmma_available() is false without the sm_90a instance
}
#endif

__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// cp.async writes through the generic proxy; wgmma reads through the async proxy.
__device__ __forceinline__ void fence_proxy_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
// K-major operand, 128-byte swizzle: 8-row groups 1024 bytes apart (SBO); LBO unused.
__device__ __forceinline__ uint64_t sw128_desc(uint32_t addr) {
  return uint64_t((addr & 0x3FFFF) >> 4) | (uint64_t(1) << 16) | (uint64_t(1024 >> 4) << 32) |
         (uint64_t(1) << 62);
}
__device__ __forceinline__ void reg_fence(float& r) { asm volatile("" : "+f"(r)::"memory"); }

// One BK = 64 K tile of A (BM rows of the sorted layout) and B (BN weight rows) into the
// 128B-swizzled layout at shared address sa (A) and sa + BM * 128 (B); NTHREADS threads share it.
template <typename T, int BM, int BN, bool GATE_UP, int NTHREADS>
__device__ __forceinline__ void wg_load_tile(const GemmParams& p, uint32_t sa,
                                             const int32_t* s_slot, const T* A, const T* B,
                                             int m_tile, int col0, int k0, int k_end, int tid) {
  constexpr int kOutCols = GATE_UP ? BN / 2 : BN;
  const uint32_t sb = sa + BM * 128;
#pragma unroll
  for (int c = tid; c < BM * 8; c += NTHREADS) {
    const int row = c >> 3, ch = c & 7;
    const int k = k0 + ch * 8;
    const int slot = s_slot[row];
    const bool valid = slot >= 0 && k < k_end;
    const T* src = A;
    if (valid)
      src = GATE_UP ? A + int64_t(slot / p.top_k) * p.lda + k
                    : A + (int64_t(m_tile) * BM + row) * p.lda + k;
    cp_async_16(sa + row * 128 + ((ch ^ (row & 7)) << 4), src, valid);
  }
#pragma unroll
  for (int c = tid; c < BN * 8; c += NTHREADS) {
    const int row = c >> 3, ch = c & 7;
    const int k = k0 + ch * 8;
    int col, wrow;
    if (GATE_UP) {
      col = col0 + row % kOutCols;
      wrow = (row < kOutCols ? p.gate_row0 : p.up_row0) + col;
    } else {
      col = col0 + row;
      wrow = col;
    }
    const bool valid = col < p.n && k < k_end;
    const T* src = valid ? B + int64_t(wrow) * p.ldb + k : B;
    cp_async_16(sb + row * 128 + ((ch ^ (row & 7)) << 4), src, valid);
  }
}

// Lanes l and l ^ 1 of an m64 fragment hold columns c, c + 1 (l even) and c + 2, c + 3 (l odd)
// of rows r (pair lo) and r + 8 (pair hi). One exchange leaves the even lane with row r's four
// columns and the odd lane with row r + 8's, in order: 16-byte atomics and 8-byte stores instead
// of twice as many of half the width.
__device__ __forceinline__ void rows_to_quads(int lane, float lo0, float lo1, float hi0, float hi1,
                                              float (&q)[4]) {
  const bool odd = lane & 1;
  const float r0 = __shfl_xor_sync(0xffffffffu, odd ? lo0 : hi0, 1);
  const float r1 = __shfl_xor_sync(0xffffffffu, odd ? lo1 : hi1, 1);
  q[0] = odd ? r0 : lo0;
  q[1] = odd ? r1 : lo1;
  q[2] = odd ? hi0 : r0;
  q[3] = odd ? hi1 : r1;
}

// Four consecutive floats added into out (16-byte aligned when vec), or those below `limit`
// one by one.
__device__ __forceinline__ void add_quad(float* out, const float (&q)[4], bool vec, int limit) {
  if (vec && limit >= 4) {
    atomic_add4(out, q[0], q[1], q[2], q[3]);
    return;
  }
#pragma unroll
  for (int j = 0; j < 4; ++j)
    if (j < limit) atomicAdd(out + j, q[j]);
}
// Four consecutive 16-bit elements stored (8-byte aligned when vec), or those below `limit`.
template <typename T>
__device__ __forceinline__ void store_quad(T* out, const float (&q)[4], bool vec, int limit) {
  if (vec && limit >= 4) {
    *reinterpret_cast<uint2*>(out) = make_uint2(ElemOps<T>::pack2(q[0], q[1]), ElemOps<T>::pack2(q[2], q[3]));
    return;
  }
#pragma unroll
  for (int j = 0; j < 4; ++j)
    if (j < limit) out[j] = ElemOps<T>::from_float(q[j]);
}

// gate * weight (+ bias), up * weight (+ bias) -> the activation of output column col, or 0 for a
// padding row or a column past n.
template <int ACT = kActAny, typename T>
__device__ __forceinline__ float gate_up_value(const GemmParams& p, const T* bias, bool row_valid,
                                               float w, float g, float u, int col) {
  if (!row_valid || col >= p.n) return 0.0f;
  g *= w;
  u *= w;
  if (bias) {
    g += ElemOps<T>::to_float(bias[p.gate_row0 + col]);
    u += ElemOps<T>::to_float(bias[p.up_row0 + col]);
  }
  return act_fast<ACT>(p.act, g, u, p.alpha, p.limit);
}

// The two rows of a consumer thread's fragments (row_lo and row_lo + 8 of warpgroup `wg`'s 64,
// ctid = thread index within it): their slots and routing weights. The TMA rows read them
// before the main loop, so that the epilogue waits on no global load (a persistent tile's slots
// are in global memory, and the weight read depends on the slot read).
struct EpilogueRows {
  int slot_lo, slot_hi;
  float w_lo, w_hi;
};
__device__ __forceinline__ EpilogueRows epilogue_rows(const GemmParams& p, const int32_t* slots,
                                                      int wg, int ctid) {
  const int row_lo = wg * 64 + (ctid / 32) * 16 + (ctid % 32) / 4;
  EpilogueRows r;
  r.slot_lo = slots[row_lo];
  r.slot_hi = slots[row_lo + 8];
  r.w_lo = r.slot_lo >= 0 && p.slot_weights ? p.slot_weights[r.slot_lo] : 1.0f;
  r.w_hi = r.slot_hi >= 0 && p.slot_weights ? p.slot_weights[r.slot_hi] : 1.0f;
  return r;
}

// Down epilogue, accumulator step f (fragments f .. f + 3 of m64 x BN): the routing-weighted
// values (bias on split 0) of four consecutive columns of this lane's row, by rows_to_quads.
template <typename T>
__device__ __forceinline__ void down_quad(const GemmParams& p, const T* bias, bool add_bias,
                                          const EpilogueRows& rows, const float* acc, int f,
                                          int col0, int lane, float (&q)[4]) {
  const int c = col0 + 8 * (f / 4) + 2 * (lane % 4);
  const float b0 = add_bias && c < p.n ? ElemOps<T>::to_float(bias[c]) : 0.0f;
  const float b1 = add_bias && c + 1 < p.n ? ElemOps<T>::to_float(bias[c + 1]) : 0.0f;
  rows_to_quads(lane, rows.w_lo * (acc[f] + b0), rows.w_lo * (acc[f + 1] + b1),
                rows.w_hi * (acc[f + 2] + b0), rows.w_hi * (acc[f + 3] + b1), q);
}

// The epilogue of one consumer warpgroup `wg` (64 rows; ctid = thread index within it) holding
// the m64 x BN accumulator fragment `acc`, its rows `rows` (epilogue_rows): gate-up applies
// bias + activation and stores the intermediate row; down scales by the routing weight and adds
// into the fp32 output (with p.rows_out: stores the row at its sorted row instead). Fragment f:
// row 16 * warp + lane / 4 + 8 * ((f % 4) / 2), column 8 * (f / 4) + 2 * (lane % 4) + f % 2;
// rows_to_quads pairs f and f + 2 so each lane writes four consecutive columns of one row.
template <typename T, int BM, int BN, bool GATE_UP>
__device__ __forceinline__ void wg_epilogue(const GemmParams& p, const float* acc, int wg,
                                            int ctid, const EpilogueRows& rows, int m_tile,
                                            int col0, int expert, int split) {
  constexpr int kAcc = BN / 2;  // (BN / 128) n128 blocks x 64 floats
  const int lane = ctid % 32, warp_in_wg = ctid / 32;
  const T* bias =
      p.bias ? static_cast<const T*>(p.bias) + int64_t(expert) * p.bias_expert_stride : nullptr;
  const int row_lo = wg * 64 + warp_in_wg * 16 + lane / 4;
  const int slot_lo = rows.slot_lo, slot_hi = rows.slot_hi;
  const float w_lo = rows.w_lo, w_hi = rows.w_hi;
  const int slot = lane & 1 ? slot_hi : slot_lo;  // the row this lane writes
  const int col_off = 4 * ((lane % 4) / 2);
  const bool add_bias = bias && split == 0;  // down: the bias once, on K split 0
  if constexpr (GATE_UP) {
    const int64_t prow = int64_t(m_tile) * BM + row_lo + 8 * (lane & 1);
    T* dst = static_cast<T*>(p.act_out) + prow * p.ld_act;
    const bool vec = p.ld_act % 4 == 0 && (reinterpret_cast<uintptr_t>(p.act_out) & 7) == 0;
    auto store_all = [&](auto act) {  // silu's loop has no per-element switch
      constexpr int ACT = decltype(act)::value;
#pragma unroll
      for (int f = 0; f < kAcc / 2; f += 4) {
        const int c = col0 + 8 * (f / 4) + 2 * (lane % 4);
        const float* up = acc + kAcc / 2;
        float q[4];
        rows_to_quads(lane, gate_up_value<ACT>(p, bias, slot_lo >= 0, w_lo, acc[f], up[f], c),
                      gate_up_value<ACT>(p, bias, slot_lo >= 0, w_lo, acc[f + 1], up[f + 1], c + 1),
                      gate_up_value<ACT>(p, bias, slot_hi >= 0, w_hi, acc[f + 2], up[f + 2], c),
                      gate_up_value<ACT>(p, bias, slot_hi >= 0, w_hi, acc[f + 3], up[f + 3], c + 1),
                      q);
        const int c4 = col0 + 8 * (f / 4) + col_off;
        if (c4 < p.ld_act) store_quad(dst + c4, q, vec, p.ld_act - c4);
      }
    };
    if (p.act == int(ActKind::SiluAndMul))
      store_all(std::integral_constant<int, int(ActKind::SiluAndMul)>{});
    else
      store_all(std::integral_constant<int, kActAny>{});
  } else if (p.rows_out) {  // the slot's weighted row at its sorted row (launch_down then sums)
    const int64_t prow = int64_t(m_tile) * BM + row_lo + 8 * (lane & 1);
    T* dst = slot >= 0 ? static_cast<T*>(p.rows_out) + prow * p.ld_rows : nullptr;
    const bool vec = p.ld_rows % 4 == 0 && (reinterpret_cast<uintptr_t>(p.rows_out) & 7) == 0;
#pragma unroll
    for (int f = 0; f < kAcc; f += 4) {
      float q[4];
      down_quad(p, bias, add_bias, rows, acc, f, col0, lane, q);
      const int c4 = col0 + 8 * (f / 4) + col_off;
      if (dst && c4 < p.n) store_quad(dst + c4, q, vec, p.n - c4);
    }
  } else {
    float* dst = slot >= 0 ? p.out + int64_t(slot / p.top_k) * p.ldo : nullptr;
    const bool vec = p.ldo % 4 == 0 && (reinterpret_cast<uintptr_t>(p.out) & 15) == 0;
#pragma unroll
    for (int f = 0; f < kAcc; f += 4) {
      float q[4];
      down_quad(p, bias, add_bias, rows, acc, f, col0, lane, q);
      const int c4 = col0 + 8 * (f / 4) + col_off;
      if (dst && c4 < p.n) add_quad(dst + c4, q, vec, p.n - c4);
    }
  }
}

template <typename T, int BM, int BN, int STAGES, bool GATE_UP>
struct WgTile {
  static constexpr int BK = 64;
  static constexpr int kWarpGroups = BM / 64;
  static constexpr int kThreads = kWarpGroups * 128;
  static constexpr int kNB = BN / 128;
  static constexpr int kAcc = kNB * 64;
  static constexpr int kOutCols = GATE_UP ? BN / 2 : BN;
  static constexpr int kABytes = BM * 128, kBBytes = BN * 128;
  static constexpr int kStageBytes = kABytes + kBBytes;
  static constexpr size_t kSmemBytes = size_t(STAGES) * kStageBytes + BM * 4 + 1024;
  static_assert(BM == 64 || BM == 128, "one or two warpgroups");
  static_assert(BN % 128 == 0, "B tile is whole n128 blocks");
  static_assert(STAGES >= 3, "one wgmma group in flight needs three stages");
  static_assert(sizeof(T) == 2, "16-bit operands");
};

template <typename T, int BM, int BN, int STAGES, bool GATE_UP>
__global__ void __launch_bounds__(BM * 2, 1) wgmma_gemm_kernel(const GemmParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = WgTile<T, BM, BN, STAGES, GATE_UP>;
  extern __shared__ uint8_t smem_raw[];
  uint32_t base = smem_addr(smem_raw);
  const uint32_t pad = (1024u - (base & 1023u)) & 1023u;  // swizzle atoms need 1024-alignment
  base += pad;
  int32_t* s_slot = reinterpret_cast<int32_t*>(smem_raw + pad + size_t(STAGES) * C::kStageBytes);

  TileWork work;
  if (!tile_work(p, work)) return;
  const int m_tile = work.m_tile, n_tile = work.n_tile, split = work.split;
  const int k_begin = work.k_begin, k_end = work.k_end, expert = work.expert;
  const int tid = threadIdx.x, wg = tid / 128;
  for (int r = tid; r < BM; r += C::kThreads) s_slot[r] = p.sorted_slots[int64_t(m_tile) * BM + r];
  __syncthreads();

  const T* A = static_cast<const T*>(p.a);
  const T* B = static_cast<const T*>(p.b) + expert * p.b_expert_stride;
  const int col0 = n_tile * C::kOutCols;

  auto load_tile = [&](int stage, int k0) {
    wg_load_tile<T, BM, BN, GATE_UP, C::kThreads>(p, base + stage * C::kStageBytes, s_slot, A, B,
                                                    m_tile, col0, k0, k_end, tid);
  };

  float acc[C::kAcc];
#pragma unroll
  for (int i = 0; i < C::kAcc; ++i) acc[i] = 0.0f;

  const int KT = k_end > k_begin ? (k_end - k_begin + C::BK - 1) / C::BK : 0;
#pragma unroll
  for (int s = 0; s < STAGES - 2; ++s) {
    if (s < KT) load_tile(s, k_begin + s * C::BK);
    cp_async_commit();
  }
  for (int kt = 0; kt < KT; ++kt) {
    cp_async_wait<STAGES - 3>();
    fence_proxy_async();
    __syncthreads();  // tile kt visible to all; every warpgroup finished wgmma kt-2
    const int nt = kt + STAGES - 2;
    if (nt < KT) load_tile(nt % STAGES, k_begin + nt * C::BK);
    cp_async_commit();
    const uint32_t sa = base + (kt % STAGES) * C::kStageBytes + wg * 64 * 128;
    const uint32_t sb = base + (kt % STAGES) * C::kStageBytes + C::kABytes;
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
#pragma unroll
      for (int nb = 0; nb < C::kNB; ++nb)
        wgmma_m64n128k16<T>(acc + nb * 64, sw128_desc(sa + kk * 32),
                            sw128_desc(sb + nb * 128 * 128 + kk * 32));
    wgmma_commit();
    wgmma_wait<1>();
  }
  wgmma_wait<0>();
  cp_async_wait<0>();
#pragma unroll
  for (int i = 0; i < C::kAcc; ++i) reg_fence(acc[i]);

  wg_epilogue<T, BM, BN, GATE_UP>(p, acc, wg, tid % 128, epilogue_rows(p, s_slot, wg, tid % 128),
                                  m_tile, col0, expert, split);
#endif
}

template <typename T, int BM, int BN, int STAGES, bool GATE_UP>
cudaError_t launch_wgmma_gemm(const GemmParams& p, int split_k, cudaStream_t stream) {
  using C = WgTile<T, BM, BN, STAGES, GATE_UP>;
  auto kernel = wgmma_gemm_kernel<T, BM, BN, STAGES, GATE_UP>;
  static const cudaError_t attr = cudaFuncSetAttribute(
      kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(C::kSmemBytes));
  if (attr != cudaSuccess) return attr;
  const dim3 grid(unsigned(p.max_tiles) * unsigned(p.n_tiles), unsigned(split_k));
  kernel<<<grid, C::kThreads, C::kSmemBytes, stream>>>(p);
  return cudaGetLastError();
}

// ---- warp-specialized variant ---------------------------------------------------------------
// One producer warpgroup streams K tiles with cp.async into a STAGES-deep ring while BM / 64
// consumer warpgroups only issue wgmma: loads and tensor-core work no longer share warps, and
// the ring is handed over through mbarriers (full: tile landed; empty: tile consumed) instead
// of a block-wide barrier per K tile. The producer keeps STAGES - 2 tiles in flight and, for
// each landed tile, fences the generic-proxy writes for the async proxy before signalling.
__device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count));
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, int parity) {
  asm volatile(
      "{\n.reg .pred done;\nwait_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait_%=;\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}

template <typename T, int BM, int BN, int STAGES, bool GATE_UP>
struct WsTile : WgTile<T, BM, BN, STAGES, GATE_UP> {
  using Base = WgTile<T, BM, BN, STAGES, GATE_UP>;
  static constexpr int kConsumers = Base::kThreads;
  static constexpr int kThreadsWs = kConsumers + 128;
  static constexpr int kLag = STAGES - 2;  // tiles the producer keeps in flight
  static constexpr size_t kSmemBytesWs = Base::kSmemBytes + 2 * STAGES * 8;
};

template <typename T, int BM, int BN, int STAGES, bool GATE_UP>
__global__ void __launch_bounds__(BM * 2 + 128, 1) wgmma_ws_gemm_kernel(const GemmParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = WsTile<T, BM, BN, STAGES, GATE_UP>;
  extern __shared__ uint8_t smem_raw[];
  uint32_t base = smem_addr(smem_raw);
  const uint32_t pad = (1024u - (base & 1023u)) & 1023u;
  base += pad;
  int32_t* s_slot = reinterpret_cast<int32_t*>(smem_raw + pad + size_t(STAGES) * C::kStageBytes);
  const uint32_t full0 = base + STAGES * C::kStageBytes + BM * 4;  // BM * 4 keeps 8-alignment
  const uint32_t empty0 = full0 + STAGES * 8;

  TileWork work;
  if (!tile_work(p, work)) return;
  const int m_tile = work.m_tile, n_tile = work.n_tile, split = work.split;
  const int k_begin = work.k_begin, k_end = work.k_end, expert = work.expert;
  const int tid = threadIdx.x;
  if (tid == 0) {
    for (int s = 0; s < STAGES; ++s) {
      mbar_init(full0 + 8 * s, 128);
      mbar_init(empty0 + 8 * s, C::kConsumers);
    }
  }
  for (int r = tid; r < BM; r += C::kThreadsWs) s_slot[r] = p.sorted_slots[int64_t(m_tile) * BM + r];
  __syncthreads();

  const T* A = static_cast<const T*>(p.a);
  const T* B = static_cast<const T*>(p.b) + expert * p.b_expert_stride;
  const int col0 = n_tile * C::kOutCols;
  const int KT = k_end > k_begin ? (k_end - k_begin + C::BK - 1) / C::BK : 0;

  if (tid < 128) {  // producer warpgroup
    for (int kt = 0; kt < KT; ++kt) {
      const int s = kt % STAGES;
      if (kt >= STAGES) mbar_wait(empty0 + 8 * s, ((kt / STAGES) - 1) & 1);
      wg_load_tile<T, BM, BN, GATE_UP, 128>(p, base + s * C::kStageBytes, s_slot, A, B, m_tile,
                                            col0, k_begin + kt * C::BK, k_end, tid);
      cp_async_commit();
      if (kt >= C::kLag) {
        cp_async_wait<C::kLag>();  // tile kt - kLag has landed
        fence_proxy_async();
        mbar_arrive(full0 + 8 * ((kt - C::kLag) % STAGES));
      }
    }
    cp_async_wait<0>();
    fence_proxy_async();
    for (int j = max(0, KT - C::kLag); j < KT; ++j) mbar_arrive(full0 + 8 * (j % STAGES));
    return;
  }

  const int ctid = tid - 128, wg = ctid / 128;
  float acc[C::kAcc];
#pragma unroll
  for (int i = 0; i < C::kAcc; ++i) acc[i] = 0.0f;
  for (int kt = 0; kt < KT; ++kt) {
    const int s = kt % STAGES;
    mbar_wait(full0 + 8 * s, (kt / STAGES) & 1);
    const uint32_t sa = base + s * C::kStageBytes + wg * 64 * 128;
    const uint32_t sb = base + s * C::kStageBytes + C::kABytes;
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
#pragma unroll
      for (int nb = 0; nb < C::kNB; ++nb)
        wgmma_m64n128k16<T>(acc + nb * 64, sw128_desc(sa + kk * 32),
                            sw128_desc(sb + nb * 128 * 128 + kk * 32));
    wgmma_commit();
    wgmma_wait<1>();  // wgmma kt - 1 done: its stage goes back to the producer
    if (kt > 0) mbar_arrive(empty0 + 8 * ((kt - 1) % STAGES));
  }
  wgmma_wait<0>();
#pragma unroll
  for (int i = 0; i < C::kAcc; ++i) reg_fence(acc[i]);
  wg_epilogue<T, BM, BN, GATE_UP>(p, acc, wg, ctid % 128, epilogue_rows(p, s_slot, wg, ctid % 128),
                                  m_tile, col0, expert, split);
#endif
}

template <typename T, int BM, int BN, int STAGES, bool GATE_UP>
cudaError_t launch_wgmma_ws_gemm(const GemmParams& p, int split_k, cudaStream_t stream) {
  using C = WsTile<T, BM, BN, STAGES, GATE_UP>;
  auto kernel = wgmma_ws_gemm_kernel<T, BM, BN, STAGES, GATE_UP>;
  static const cudaError_t attr = cudaFuncSetAttribute(
      kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(C::kSmemBytesWs));
  if (attr != cudaSuccess) return attr;
  const dim3 grid(unsigned(p.max_tiles) * unsigned(p.n_tiles), unsigned(split_k));
  kernel<<<grid, C::kThreadsWs, C::kSmemBytesWs, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace moe::kernels
