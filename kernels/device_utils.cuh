// Device helpers shared by the kernels: element types, cp.async, ldmatrix, mma.sync, the
// activations, and the kernel-side parameter block of the grouped GEMMs.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>
#include <utility>

#include "moe_kernels.h"

namespace moe::kernels {

// ---- element types ------------------------------------------------------------------------
template <typename T>
struct ElemOps;
template <>
struct ElemOps<__nv_bfloat16> {
  static __device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __device__ __forceinline__ __nv_bfloat16 from_float(float v) { return __float2bfloat16_rn(v); }
  static __device__ __forceinline__ uint32_t pack2(float a, float b) {
    __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<uint32_t*>(&h);
  }
  static __device__ __forceinline__ float2 unpack2(uint32_t u) {
    return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u));
  }
};
template <>
struct ElemOps<__half> {
  static __device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half from_float(float v) { return __float2half_rn(v); }
  static __device__ __forceinline__ uint32_t pack2(float a, float b) {
    __half2 h = __floats2half2_rn(a, b);
    return *reinterpret_cast<uint32_t*>(&h);
  }
  static __device__ __forceinline__ float2 unpack2(uint32_t u) {
    return __half22float2(*reinterpret_cast<const __half2*>(&u));
  }
};

// ---- activations (model/profile.h) ---------------------------------------------------------
// One instance per kind. FAST: the sigmoid's division by the fast reciprocal (__fdividef, 2 ulp
// of float, far below the result's bf16/fp16 rounding), as the GEMM epilogues do, where an IEEE
// division takes about ten instructions an element; the naive oracle divides exactly. A
// denominator past 2^126 (g below -87) gives the limit, -0.
template <int ACT, bool FAST>
__device__ __forceinline__ float act_value(float g, float u, float alpha, float limit) {
  auto sigmoid_times = [](float v, float neg_z) {  // v * sigmoid(z)
    return FAST ? __fdividef(v, 1.0f + __expf(neg_z)) : v / (1.0f + __expf(neg_z));
  };
  if constexpr (ACT == int(ActKind::GeluAndMul)) {
    return 0.5f * g * (1.0f + erff(g * 0.70710678118654752f)) * u;
  } else if constexpr (ACT == int(ActKind::SwigluOai)) {
    // gpt-oss: g = min(gate, limit), u = clamp(up, -limit, limit), g * sigmoid(alpha g) (u + 1)
    g = fminf(g, limit);
    u = fminf(fmaxf(u, -limit), limit);
    return sigmoid_times(g, -alpha * g) * (u + 1.0f);
  } else {
    return sigmoid_times(g, -g) * u;
  }
}
// The kind chosen at run time, per element.
template <bool FAST>
__device__ __forceinline__ float act_any(int act, float g, float u, float alpha, float limit) {
  switch (act) {
    case int(ActKind::GeluAndMul): return act_value<int(ActKind::GeluAndMul), FAST>(g, u, alpha, limit);
    case int(ActKind::SwigluOai): return act_value<int(ActKind::SwigluOai), FAST>(g, u, alpha, limit);
    default: return act_value<int(ActKind::SiluAndMul), FAST>(g, u, alpha, limit);
  }
}
__device__ __forceinline__ float apply_act(int act, float g, float u, float alpha, float limit) {
  return act_any<false>(act, g, u, alpha, limit);
}
// The GEMM epilogues' activations: ACT, or kActAny for the kind of `act` per element (the
// rarely chosen rows; wg_epilogue's silu loop takes ACT and so switches once a tile).
constexpr int kActAny = -1;
template <int ACT>
__device__ __forceinline__ float act_fast(int act, float g, float u, float alpha, float limit) {
  if constexpr (ACT == kActAny)
    return act_any<true>(act, g, u, alpha, limit);
  else
    return act_value<ACT, true>(g, u, alpha, limit);
}

// ---- async copies, fragments, mma ------------------------------------------------------------
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// 16-byte global -> shared copy; zero-fills the destination when !valid (no bytes are read).
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2,
                                            uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}
template <typename T>
__device__ __forceinline__ void mma_16816(float* c, const uint32_t* a, const uint32_t* b);
template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float* c, const uint32_t* a,
                                                         const uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
template <>
__device__ __forceinline__ void mma_16816<__half>(float* c, const uint32_t* a, const uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// out[0..1] += v[0..1]; one 8-byte vector atomic on sm_90 (both columns in range, 8-aligned).
__device__ __forceinline__ void atomic_add2(float* out, float v0, float v1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  atomicAdd(reinterpret_cast<float2*>(out), make_float2(v0, v1));
#else
  atomicAdd(out, v0);
  atomicAdd(out + 1, v1);
#endif
}
// out[0..3] += v[0..3]; one 16-byte vector atomic on sm_90 (all four in range, 16-aligned).
__device__ __forceinline__ void atomic_add4(float* out, float v0, float v1, float v2, float v3) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  atomicAdd(reinterpret_cast<float4*>(out), make_float4(v0, v1, v2, v3));
#else
  atomic_add2(out, v0, v1);
  atomic_add2(out + 2, v2, v3);
#endif
}

// ---- streaming stores ---------------------------------------------------------------------
// A 16-byte store whose L2 lines go first when the L2 needs room: for copies far larger than
// the L2 (the token-order gather's sorted rows), so they do not push out what is read again.
__device__ __forceinline__ uint64_t l2_evict_first_policy() {
  uint64_t policy = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));
#endif
  return policy;
}
__device__ __forceinline__ void store_evict_first(uint4* p, const uint4& v, uint64_t policy) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("st.global.L2::cache_hint.v4.u32 [%0], {%1, %2, %3, %4}, %5;\n" ::"l"(p),
               "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w), "l"(policy)
               : "memory");
#else
  (void)policy;
  *p = v;
#endif
}

// ---- programmatic dependent launch (sm_90) ----------------------------------------------------
// A kernel started by launch_dependent() may begin while the kernel before it in the stream is
// still finishing. It calls grid_dependency_wait() before it reads anything that kernel wrote
// (the wait returns once the predecessor has completed and its writes are visible), and
// allow_dependents() once the kernel after it may start. What kernels earlier than the
// predecessor wrote is complete before the predecessor's own wait returned, provided that
// predecessor allows its dependents only after its wait, as every dependent kernel here does
// (the alignment's last kernel, launched plainly, allows them at its start: everything before
// it was complete when it started).
__device__ __forceinline__ void grid_dependency_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void allow_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
bool dependent_launch_supported();  // compute capability 9.0 or later (gemm_launch.cu)
template <typename... KArgs, typename... Args>
cudaError_t launch_dependent(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
                             cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = dependent_launch_supported() ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

// ---- the grouped-GEMM parameter block (one struct for gate-up and down) --------------------
struct GemmParams {
  const void* a;  // gate-up: x [T, lda] gathered by token; down: act [rows, lda] by position
  int lda;
  const void* b;  // weights [E_local, rows, ldb]
  int64_t b_expert_stride;
  int num_experts;  // E_local (the TMA rows' weight tensor maps)
  int ldb;
  const void* bias;  // [E_local, bias_expert_stride] or null
  int bias_expert_stride;
  const int32_t* sorted_slots;
  const int32_t* tile_expert;
  const int32_t* num_tiles;
  int max_tiles, n_tiles;
  int n, k, k_per_split;
  int top_k;
  int gate_row0, up_row0;     // gate-up: first weight row of the gate / up halves
  const float* slot_weights;  // down: routing weight; gate-up: weight on input; or null
  int act;
  float alpha, limit;
  void* act_out;
  int ld_act;
  float* out;
  int ldo;
  void* rows_out;  // down, or null: each slot's row in the elements' type at its sorted row
  int ld_rows;
};

// Grouped rasterization: 8 consecutive M tiles (mostly one expert) share each N tile, so a
// weight tile is read from HBM once and then hit in L2 by its neighbours.
__device__ __forceinline__ void tile_coords(int bid, int m_tiles, int n_tiles, int& m, int& n) {
  constexpr int kGroup = 8;
  const int per_group = kGroup * n_tiles;
  const int g = bid / per_group;
  const int first_m = g * kGroup;
  const int gsize = min(m_tiles - first_m, kGroup);
  const int r = bid - g * per_group;
  m = first_m + r % gsize;
  n = r / gsize;
}

// The tile of one CTA: blockIdx.x -> (M tile, N tile) as above, blockIdx.y -> its K split.
// False for M tiles past the alignment's count and for empty splits (the CTA has no work).
struct TileWork {
  int m_tile, n_tile, split, k_begin, k_end, expert;
};
__device__ __forceinline__ bool tile_work(const GemmParams& p, TileWork& w) {
  tile_coords(blockIdx.x, p.max_tiles, p.n_tiles, w.m_tile, w.n_tile);
  if (w.m_tile >= *p.num_tiles) return false;
  w.split = blockIdx.y;
  w.k_begin = w.split * p.k_per_split;
  w.k_end = min(p.k, w.k_begin + p.k_per_split);
  if (w.k_begin >= w.k_end && w.split > 0) return false;
  w.expert = p.tile_expert[w.m_tile];
  return true;
}

}  // namespace moe::kernels
