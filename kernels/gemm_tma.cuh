// Grouped GEMM with the Tensor Memory Accelerator (sm_90a): one producer thread streams the K
// tiles of A and B with cp.async.bulk.tensor into a STAGES-deep ring of 128B-swizzled shared
// tiles (the layout the wgmma descriptors read), BM / 64 consumer warpgroups only issue wgmma.
// The ring is handed over through mbarriers: `full` completes when a stage's bytes have landed
// (expect-tx), `empty` when every consumer thread is done with it.
//
// TMA reads rectangles, so A must be in sorted order: gate-up reads x through a gathered copy
// (launch_gather_sorted, one row per sorted slot; padding rows are not written); down reads the
// intermediate, which is in sorted order already. The weights are viewed as 3-D tensors
// [halves, rows, K] (gate-up: 2 * E halves of n rows, gate and up; down: E experts of n rows),
// so rows past n and K past k read as zeros at every expert's edge, not the next expert's rows.
// Epilogues are those of gemm_wgmma.cuh (bias, activation, routing weight, top-k sum).
//
// A is read in boxes of 64 rows, one per consumer warpgroup. In a 128-row tile whose upper 64
// rows are all padding (an expert's last tile with at most 64 slots: the alignment puts padding
// after an expert's slots), only the lower box is loaded and the upper warpgroup issues no
// wgmma and stores nothing: with about one expert in two taking such a tile at 128 slots per
// expert, that is a sixth of the tensor work and of the A bytes.
#pragma once
#include <cuda.h>

#include <type_traits>

#include "gemm_wgmma.cuh"

namespace moe::kernels {

template <typename T>
__device__ __forceinline__ void wgmma_m64n256k16(float* d, uint64_t desc_a, uint64_t desc_b);

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MOE_WGMMA_N256(TYPE, PTX)                                                          \
  template <>                                                                               \
  __device__ __forceinline__ void wgmma_m64n256k16<TYPE>(float* d, uint64_t desc_a,          \
                                                         uint64_t desc_b) {                 \
    asm volatile(                                                                           \
        "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"                                     \
        "wgmma.mma_async.sync.aligned.m64n256k16.f32." PTX "." PTX " "                     \
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, "   \
        "%128, %129, p, 1, 1, 0, 0;\n"                                                       \
        "}\n"                                                                                \
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),   \
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),   \
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),   \
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),   \
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),   \
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),   \
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),   \
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),   \
        "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),   \
        "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),   \
        "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),   \
        "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),   \
        "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),   \
        "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),   \
        "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]),   \
        "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])   \
        : "l"(desc_a), "l"(desc_b), "r"(1));                                                \
  }
MOE_WGMMA_N256(__nv_bfloat16, "bf16")
MOE_WGMMA_N256(__half, "f16")
#undef MOE_WGMMA_N256
#else
template <typename T>
__device__ __forceinline__ void wgmma_m64n256k16(float*, uint64_t, uint64_t) {
  __trap();  // never launched: wgmma_available() is false without the sm_90a instance
}
#endif

// m64nNk16 for the N that have no hand-written wrapper: the swapped rows' token tiles (8 .. 80)
// and the 192-row B tiles (gate-up's 96 + 96 weight rows, or 192 down columns, which divide
// gpt-oss's 2880 into 15 tiles).
template <int N, typename T>
__device__ __forceinline__ void wgmma_m64nNk16(float* d, uint64_t desc_a, uint64_t desc_b);

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// One specialization per width N: N / 2 accumulators per thread (REGS: their "%i"
// list, OUTS: their operands); the two descriptors and the scale-d predicate follow them.
#define MOE_WGMMA_SPEC(N, TYPE, PTX, REGS, OUTS, A, B, P)                                  \
  template <>                                                                               \
  __device__ __forceinline__ void wgmma_m64nNk16<N, TYPE>(float* d, uint64_t desc_a,        \
                                                          uint64_t desc_b) {                \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" P ", 0;\n"                            \
                 "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." PTX "." PTX " {" REGS   \
                 "}, %" A ", %" B ", p, 1, 1, 0, 0;\n}\n"                                  \
                 : OUTS                                                                     \
                 : "l"(desc_a), "l"(desc_b), "r"(1));                                       \
  }
#define MOE_WGMMA_REGS_8 "%0, %1, %2, %3"
#define MOE_WGMMA_OUTS_8 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
MOE_WGMMA_SPEC(8, __nv_bfloat16, "bf16", MOE_WGMMA_REGS_8, MOE_WGMMA_OUTS_8, "4", "5", "6")
MOE_WGMMA_SPEC(8, __half, "f16", MOE_WGMMA_REGS_8, MOE_WGMMA_OUTS_8, "4", "5", "6")
#undef MOE_WGMMA_REGS_8
#undef MOE_WGMMA_OUTS_8
#define MOE_WGMMA_REGS_16 "%0, %1, %2, %3, %4, %5, %6, %7"
#define MOE_WGMMA_OUTS_16 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
MOE_WGMMA_SPEC(16, __nv_bfloat16, "bf16", MOE_WGMMA_REGS_16, MOE_WGMMA_OUTS_16, "8", "9", "10")
MOE_WGMMA_SPEC(16, __half, "f16", MOE_WGMMA_REGS_16, MOE_WGMMA_OUTS_16, "8", "9", "10")
#undef MOE_WGMMA_REGS_16
#undef MOE_WGMMA_OUTS_16
#define MOE_WGMMA_REGS_32 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"
#define MOE_WGMMA_OUTS_32 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
MOE_WGMMA_SPEC(32, __nv_bfloat16, "bf16", MOE_WGMMA_REGS_32, MOE_WGMMA_OUTS_32, "16", "17", "18")
MOE_WGMMA_SPEC(32, __half, "f16", MOE_WGMMA_REGS_32, MOE_WGMMA_OUTS_32, "16", "17", "18")
#undef MOE_WGMMA_REGS_32
#undef MOE_WGMMA_OUTS_32
#define MOE_WGMMA_REGS_48 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23"
#define MOE_WGMMA_OUTS_48 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23])
MOE_WGMMA_SPEC(48, __nv_bfloat16, "bf16", MOE_WGMMA_REGS_48, MOE_WGMMA_OUTS_48, "24", "25", "26")
MOE_WGMMA_SPEC(48, __half, "f16", MOE_WGMMA_REGS_48, MOE_WGMMA_OUTS_48, "24", "25", "26")
#undef MOE_WGMMA_REGS_48
#undef MOE_WGMMA_OUTS_48
#define MOE_WGMMA_REGS_80 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39"
#define MOE_WGMMA_OUTS_80 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39])
MOE_WGMMA_SPEC(80, __nv_bfloat16, "bf16", MOE_WGMMA_REGS_80, MOE_WGMMA_OUTS_80, "40", "41", "42")
MOE_WGMMA_SPEC(80, __half, "f16", MOE_WGMMA_REGS_80, MOE_WGMMA_OUTS_80, "40", "41", "42")
#undef MOE_WGMMA_REGS_80
#undef MOE_WGMMA_OUTS_80
#define MOE_WGMMA_REGS_192 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95"
#define MOE_WGMMA_OUTS_192 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95])
MOE_WGMMA_SPEC(192, __nv_bfloat16, "bf16", MOE_WGMMA_REGS_192, MOE_WGMMA_OUTS_192, "96", "97", "98")
MOE_WGMMA_SPEC(192, __half, "f16", MOE_WGMMA_REGS_192, MOE_WGMMA_OUTS_192, "96", "97", "98")
#undef MOE_WGMMA_REGS_192
#undef MOE_WGMMA_OUTS_192
#undef MOE_WGMMA_SPEC
#else
template <int N, typename T>
__device__ __forceinline__ void wgmma_m64nNk16(float*, uint64_t, uint64_t) {
  __trap();  // never launched: wgmma_available() is false without the sm_90a instance
}
#endif

// One k16 step of a consumer warpgroup: m64 x BN, B as one n256, n192 or n128 instruction.
template <typename T, int BN>
__device__ __forceinline__ void wgmma_step(float* acc, uint64_t desc_a, uint64_t desc_b) {
  static_assert(BN == 128 || BN == 192 || BN == 256, "n128, n192 or n256");
  if constexpr (BN == 256)
    wgmma_m64n256k16<T>(acc, desc_a, desc_b);
  else if constexpr (BN == 192)
    wgmma_m64nNk16<192, T>(acc, desc_a, desc_b);
  else
    wgmma_m64n128k16<T>(acc, desc_a, desc_b);
}

// One K tile (64) of a consumer warpgroup from 128B-swizzled stages at sa (its 64 A rows) and
// sb (B): four k16 steps, committed; returns once the previous K tile's wgmma are done, so that
// tile's stage may go back to the producer.
template <typename T, int BN>
__device__ __forceinline__ void mma_k_tile(float* acc, uint32_t sa, uint32_t sb) {
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < 4; ++kk)
    wgmma_step<T, BN>(acc, sw128_desc(sa + kk * 32), sw128_desc(sb + kk * 32));
  wgmma_commit();
  wgmma_wait<1>();
}

__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void fence_barrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
__device__ __forceinline__ void tma_prefetch(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap* map, uint32_t bar,
                                            int c0, int c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4}], [%2];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(bar), "r"(c0), "r"(c1)
      : "memory");
}
__device__ __forceinline__ void tma_load_3d(uint32_t dst, const CUtensorMap* map, uint32_t bar,
                                            int c0, int c1, int c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4, %5}], [%2];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(bar), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}

// A boxes (64 rows each) a tile loads: those holding a slot (BM / 64 at most, the first always;
// the alignment puts an expert's padding after its slots, so box h is live if its first row is).
template <int BM>
__device__ __forceinline__ int live_a_boxes(const int32_t* tile_slots) {
  int boxes = 1;
#pragma unroll
  for (int h = 1; h < BM / 64; ++h) boxes += tile_slots[64 * h] >= 0 ? 1 : 0;
  return boxes;
}

__device__ __forceinline__ void named_bar_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_bar_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// The bulk-reduce down epilogue (kEpiReduce rows): the TMA unit adds a staged fp32 row of shared
// memory into global memory (cp.reduce.async.bulk ... add.f32), so the L2 receives whole
// 16-byte-aligned row segments from one request instead of a red.v4 per lane and quad.
__device__ __forceinline__ void bulk_reduce_add_f32(float* dst, uint32_t src, uint32_t bytes) {
  asm volatile(
      "cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n" ::"l"(dst),
      "r"(src), "r"(bytes)
      : "memory");
}
__device__ __forceinline__ void bulk_commit_and_wait_read() {
  asm volatile("cp.async.bulk.commit_group;\ncp.async.bulk.wait_group.read 0;\n" ::: "memory");
}
__device__ __forceinline__ void store_shared_f32x4(uint32_t addr, const float (&q)[4]) {
  asm volatile("st.shared.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "f"(q[0]), "f"(q[1]),
               "f"(q[2]), "f"(q[3])
               : "memory");
}

// Staged row stride of the bulk-reduce epilogue: BN floats and 16 bytes, so the 16 rows a warp
// writes per quad step start 16 bytes apart in the banks (four wavefronts, no conflicts).
template <int BN>
constexpr int bulk_row_bytes() {
  return BN * 4 + 16;
}

// A bulk copy of `bytes` (a multiple of 16, both ends 16-byte aligned) from shared to global
// memory by the TMA unit.
__device__ __forceinline__ void bulk_store(void* dst, uint32_t src, uint32_t bytes) {
  asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;\n" ::"l"(dst),
               "r"(src), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void store_shared_u32x2(uint32_t addr, uint32_t a, uint32_t b) {
  asm volatile("st.shared.v2.b32 [%0], {%1, %2};\n" ::"r"(addr), "r"(a), "r"(b) : "memory");
}

// Staged row stride of the bulk-store epilogue: COLS 16-bit elements and 16 bytes (the 16 rows
// a warp writes per quad step land in distinct 16-byte bank groups, eight at a time).
template <int COLS>
constexpr int bulk_store_row_bytes() {
  return COLS * 2 + 16;
}

// The down epilogues of the bulk rows, run by each live consumer warpgroup `wg` (a_boxes of
// them) once every consumer warpgroup has arrived on named barrier 1 (the ring is no longer
// read): the routing-weighted rows (bias on split 0) are staged in the ring's shared memory
// (stage_base), then one thread per row that holds a slot hands its row to the TMA unit.
// kEpiReduce (ROWS false): fp32 rows, added into the token's output row
// (cp.reduce.async.bulk ... add.f32). kEpiStore (ROWS true, p.rows_out): rows in the elements'
// type, copied to the slot's sorted row (cp.async.bulk), where wg_epilogue's per-lane stores
// write 16 rows x 16 bytes an instruction (H100, qwen3 16384 tokens: the down GEMM 851 us
// against 953, docs/perf.md). The caller checked that every row segment is 16-byte aligned and
// a multiple of 16 bytes long (launch_tma_gemm).
template <typename T, int BM, int BN, bool ROWS>
__device__ __forceinline__ void bulk_down_epilogue(const GemmParams& p, const float* acc, int wg,
                                                   int ctid, const EpilogueRows& rows, int m_tile,
                                                   int col0, int expert, int split,
                                                   uint32_t stage_base, const int32_t* s_slot,
                                                   int a_boxes) {
  constexpr int kAcc = BN / 2;
  constexpr int kStride = ROWS ? bulk_store_row_bytes<BN>() : bulk_row_bytes<BN>();
  constexpr int kQuad = ROWS ? 8 : 16;  // bytes of a lane's four staged values
  const int lane = ctid % 32, warp_in_wg = ctid / 32;
  const T* bias =
      p.bias ? static_cast<const T*>(p.bias) + int64_t(expert) * p.bias_expert_stride : nullptr;
  const bool add_bias = bias && split == 0;
  // rows_to_quads leaves this lane four consecutive columns of row lo (even lane) or lo + 8.
  const int row = wg * 64 + warp_in_wg * 16 + lane / 4 + 8 * (lane & 1);
  const uint32_t dst = stage_base + uint32_t(row * kStride + kQuad * ((lane % 4) / 2));
#pragma unroll
  for (int f = 0; f < kAcc; f += 4) {
    float q[4];
    down_quad(p, bias, add_bias, rows, acc, f, col0, lane, q);
    if constexpr (ROWS)
      store_shared_u32x2(dst + 2 * kQuad * (f / 4), ElemOps<T>::pack2(q[0], q[1]),
                         ElemOps<T>::pack2(q[2], q[3]));
    else
      store_shared_f32x4(dst + 2 * kQuad * (f / 4), q);
  }
  fence_proxy_async();  // generic-proxy stores, read next by the bulk copy (async proxy)
  named_bar_sync(2, 128 * a_boxes);
  const int r = wg * 128 + ctid;  // rows 0 .. 64 * a_boxes - 1: threads of live warpgroups
  if constexpr (ROWS) {
    const int cols = min(BN, p.n - col0);
    if (r < 64 * a_boxes && s_slot[r] >= 0 && cols > 0) {
      const int64_t prow = int64_t(m_tile) * BM + r;
      bulk_store(static_cast<T*>(p.rows_out) + prow * p.ld_rows + col0,
                 stage_base + uint32_t(r * kStride), uint32_t(cols * 2));
      bulk_commit_and_wait_read();  // the shared rows are read before the CTA may exit
    }
  } else if (r < 64 * a_boxes) {
    const int slot = s_slot[r];
    if (slot >= 0) {
      const int cols = min(BN, p.n - col0);
      bulk_reduce_add_f32(p.out + int64_t(slot / p.top_k) * p.ldo + col0,
                          stage_base + uint32_t(r * kStride), uint32_t(cols * 4));
      bulk_commit_and_wait_read();  // the shared rows are read before the CTA may exit
    }
  }
}

// x_direct (gate-up only): the producer warp reads A as the tile's token rows of x itself with
// cp.async (32 lanes, 16 bytes each, into the same 128B-swizzled layout), so no gather pass
// writes x in sorted order first. cp.async writes through the generic proxy and wgmma reads
// through the async proxy: each lane waits for its copies of a stage one stage later, fences
// the proxies and arrives on the stage's full barrier (with the TMA's expect-tx arrival, 33).
// The epilogue of a TmaTile: wg_epilogue's per-lane stores and atomics, or (down)
// bulk_down_epilogue's bulk reduces or its bulk copies of the rows in sorted order.
constexpr int kEpiLanes = 0, kEpiReduce = 1, kEpiStore = 2;

template <typename T, int BM, int BN, int STAGES, bool GATE_UP, int MINB = 1, bool XDIRECT = false,
          int EPI = kEpiLanes>
struct TmaTile {
  static constexpr int BK = 64;  // one 128-byte swizzle row per tile row
  static constexpr int kConsumerGroups = BM / 64;
  static constexpr int kConsumers = kConsumerGroups * 128;
  static constexpr int kThreads = kConsumers + 32;  // + the producer warp, after them
  static constexpr int kAcc = BN / 2;
  static constexpr int kOutCols = GATE_UP ? BN / 2 : BN;
  static constexpr int kBoxRowsB = GATE_UP ? BN / 2 : BN;  // gate-up: one box per half
  static constexpr int kBoxRowsA = 64, kABoxBytes = kBoxRowsA * 128;
  static constexpr int kABytes = BM * 128, kBBytes = BN * 128;
  static constexpr int kStageBytes = kABytes + kBBytes;
  static constexpr int kRowInts = XDIRECT ? 2 * BM : BM;  // slots (+ their token rows)
  static constexpr size_t kSmemBytes = size_t(STAGES) * kStageBytes + kRowInts * 4 + 2 * STAGES * 8 + 1024;
  static constexpr int kFullArrivals = XDIRECT ? 33 : 1;  // + the producer warp's 32 lanes
  static_assert(BM == 64 || BM == 128 || BM == 192, "one to three consumer warpgroups");
  static_assert(!XDIRECT || GATE_UP, "x read in place: gate-up only");
  static_assert(BN == 128 || BN == 192 || BN == 256, "B tile of one n128, n192 or n256 instruction");
  static_assert(kBoxRowsB <= 256 && BM <= 256, "TMA boxes hold at most 256 rows");
  static_assert(STAGES >= 2, "a ring");
  static_assert(MINB == 1 || kSmemBytes * MINB <= 227 * 1024, "MINB CTAs per SM must fit");
  static_assert(EPI == kEpiLanes || !GATE_UP, "the bulk epilogues: down only");
  static constexpr int kStagedBytes =
      EPI == kEpiReduce ? BM * bulk_row_bytes<BN>()
                        : EPI == kEpiStore ? BM * bulk_store_row_bytes<BN>() : 0;
  static_assert(kStagedBytes <= STAGES * kStageBytes, "the staged rows fit in the ring");
};

// MINB: CTAs per SM the registers are budgeted for (2 lets one CTA's epilogue overlap another's
// main loop; needs the n128 accumulators and 3 stages).
template <typename T, int BM, int BN, int STAGES, bool GATE_UP, int MINB, bool XDIRECT, int EPI>
__global__ void
__launch_bounds__(TmaTile<T, BM, BN, STAGES, GATE_UP, MINB, XDIRECT, EPI>::kThreads, MINB)
    tma_gemm_kernel(const __grid_constant__ GemmParams p, const __grid_constant__ CUtensorMap map_a,
                    const __grid_constant__ CUtensorMap map_b) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = TmaTile<T, BM, BN, STAGES, GATE_UP, MINB, XDIRECT, EPI>;
  extern __shared__ uint8_t smem_raw[];
  uint32_t base = smem_addr(smem_raw);
  const uint32_t pad = (1024u - (base & 1023u)) & 1023u;  // swizzle atoms need 1024-alignment
  base += pad;
  int32_t* s_slot = reinterpret_cast<int32_t*>(smem_raw + pad + size_t(STAGES) * C::kStageBytes);
  int32_t* s_tok = s_slot + BM;  // x_direct: token row of each slot, or -1
  const uint32_t full0 = base + STAGES * C::kStageBytes + C::kRowInts * 4;  // keeps 8-alignment
  const uint32_t empty0 = full0 + STAGES * 8;

  // x_direct has no gather kernel between the alignment and this one: wait for it first.
  if constexpr (XDIRECT) grid_dependency_wait();
  TileWork work;
  if (!tile_work(p, work)) return;
  const int m_tile = work.m_tile, n_tile = work.n_tile, split = work.split;
  const int k_begin = work.k_begin, k_end = work.k_end, expert = work.expert;
  const int tid = threadIdx.x;
  if (tid == 0) {
    tma_prefetch(&map_a);
    tma_prefetch(&map_b);
    for (int s = 0; s < STAGES; ++s) {
      mbar_init(full0 + 8 * s, C::kFullArrivals);
      mbar_init(empty0 + 8 * s, C::kConsumers);
    }
    fence_barrier_init();
  }
  for (int r = tid; r < BM; r += C::kThreads) {
    const int slot = p.sorted_slots[int64_t(m_tile) * BM + r];
    s_slot[r] = slot;
    if constexpr (XDIRECT) s_tok[r] = slot >= 0 ? slot / p.top_k : -1;
  }
  __syncthreads();  // the last block-wide barrier: the producer warp leaves below

  const int col0 = n_tile * C::kOutCols;
  const int KT = k_end > k_begin ? (k_end - k_begin + C::BK - 1) / C::BK : 0;
  const int a_boxes = XDIRECT ? C::kConsumerGroups : live_a_boxes<BM>(s_slot);

  if (XDIRECT && tid >= C::kConsumers) {  // producer warp: B by TMA, A by 32 lanes of cp.async
    const int lane = tid - C::kConsumers;
    const T* x = static_cast<const T*>(p.a);
    const int half_gate = 2 * expert + (p.gate_row0 == 0 ? 0 : 1);
    const int half_up = 2 * expert + (p.up_row0 == 0 ? 0 : 1);
    allow_dependents();
    for (int kt = 0; kt < KT; ++kt) {
      const int s = kt % STAGES;
      if (kt >= STAGES) mbar_wait(empty0 + 8 * s, ((kt / STAGES) - 1) & 1);
      const uint32_t sa = base + s * C::kStageBytes, bar = full0 + 8 * s;
      const int k0 = k_begin + kt * C::BK;
      if (lane == 0) {
        mbar_arrive_expect_tx(bar, C::kBBytes);
        tma_load_3d(sa + C::kABytes, &map_b, bar, k0, col0, half_gate);
        tma_load_3d(sa + C::kABytes + C::kBoxRowsB * 128, &map_b, bar, k0, col0, half_up);
      }
      // Lane l copies 16-byte chunk l % 8 of rows l / 8 + 4 j: four whole rows per instruction.
      const int ch = lane % 8, k = k0 + ch * 8;
#pragma unroll 8
      for (int row = lane / 8; row < BM; row += 4) {
        const int tok = s_tok[row];
        const bool valid = tok >= 0 && k < k_end;
        cp_async_16(sa + row * 128 + ((ch ^ (row & 7)) << 4),
                    valid ? x + int64_t(tok) * p.lda + k : x, valid);
      }
      cp_async_commit();
      if (kt > 0) {  // stage kt - 1's rows have landed: hand them to the async proxy
        cp_async_wait<1>();
        fence_proxy_async();
        mbar_arrive(full0 + 8 * ((kt - 1) % STAGES));
      }
    }
    cp_async_wait<0>();
    fence_proxy_async();
    if (KT > 0) mbar_arrive(full0 + 8 * ((KT - 1) % STAGES));
    return;
  }
  if (!XDIRECT && tid >= C::kConsumers) {  // producer warp: one thread issues every copy
    if (tid == C::kConsumers) {
      const int row_a = m_tile * BM;
      const int half_gate = GATE_UP ? 2 * expert + (p.gate_row0 == 0 ? 0 : 1) : expert;
      const int half_up = 2 * expert + (p.up_row0 == 0 ? 0 : 1);
      auto load_b = [&](int kt) {
        const uint32_t sb = base + (kt % STAGES) * C::kStageBytes + C::kABytes;
        const uint32_t bar = full0 + 8 * (kt % STAGES);
        const int k0 = k_begin + kt * C::BK;
        mbar_arrive_expect_tx(bar, C::kBBytes + a_boxes * C::kABoxBytes);
        tma_load_3d(sb, &map_b, bar, k0, col0, half_gate);
        if constexpr (GATE_UP) tma_load_3d(sb + C::kBoxRowsB * 128, &map_b, bar, k0, col0, half_up);
      };
      auto load_a = [&](int kt) {
        const uint32_t sa = base + (kt % STAGES) * C::kStageBytes, bar = full0 + 8 * (kt % STAGES);
        for (int h = 0; h < a_boxes; ++h)
          tma_load_2d(sa + h * C::kABoxBytes, &map_a, bar, k_begin + kt * C::BK,
                      row_a + h * C::kBoxRowsA);
      };
      // The first stages' weights load while the kernel before this one finishes (A is its
      // output: gate-up's gathered x, down's intermediate).
      const int pre = min(KT, STAGES);
      for (int kt = 0; kt < pre; ++kt) load_b(kt);
      grid_dependency_wait();
      allow_dependents();
      for (int kt = 0; kt < pre; ++kt) load_a(kt);
      for (int kt = pre; kt < KT; ++kt) {
        mbar_wait(empty0 + 8 * (kt % STAGES), ((kt / STAGES) - 1) & 1);
        load_b(kt);
        load_a(kt);
      }
    }
    return;
  }

  const int ctid = tid, wg = ctid / 128;
  if (wg >= a_boxes) {  // rows all padding: no wgmma and no stores, the stages still released
    for (int kt = 0; kt < KT; ++kt) {
      mbar_wait(full0 + 8 * (kt % STAGES), (kt / STAGES) & 1);
      if (kt > 0) mbar_arrive(empty0 + 8 * ((kt - 1) % STAGES));
    }
    if constexpr (EPI != kEpiLanes) named_bar_arrive(1, C::kConsumers);  // done with the ring
    return;  // (a separate loop: a branch around the wgmma would make ptxas serialize them)
  }
  const EpilogueRows rows = epilogue_rows(p, s_slot, wg, ctid % 128);  // read during the main loop
  float acc[C::kAcc];
#pragma unroll
  for (int i = 0; i < C::kAcc; ++i) acc[i] = 0.0f;
  for (int kt = 0; kt < KT; ++kt) {
    const int s = kt % STAGES;
    mbar_wait(full0 + 8 * s, (kt / STAGES) & 1);
    mma_k_tile<T, BN>(acc, base + s * C::kStageBytes + wg * C::kABoxBytes,
                      base + s * C::kStageBytes + C::kABytes);
    if (kt > 0) mbar_arrive(empty0 + 8 * ((kt - 1) % STAGES));  // wgmma kt - 1 are done
  }
  wgmma_wait<0>();
#pragma unroll
  for (int i = 0; i < C::kAcc; ++i) reg_fence(acc[i]);
  if constexpr (EPI != kEpiLanes) {
    named_bar_sync(1, C::kConsumers);  // every warpgroup's wgmma are done: the ring is free
    bulk_down_epilogue<T, BM, BN, EPI == kEpiStore>(p, acc, wg, ctid % 128, rows, m_tile, col0,
                                                    expert, split, base, s_slot, a_boxes);
  } else {
    wg_epilogue<T, BM, BN, GATE_UP>(p, acc, wg, ctid % 128, rows, m_tile, col0, expert, split);
  }
#endif
}


// ---- persistent ping-pong rows, for many tokens per expert ------------------------------------
// One CTA per SM walks the tiles blockIdx.x, blockIdx.x + gridDim.x, ... Its two consumer
// warpgroups take the tiles in turn, each a whole 64 x BN tile (m64nBNk16), so one warpgroup's
// epilogue runs while the other's main loop keeps the tensor cores busy, and the 64-row tiles
// pad each expert's slots to 64 instead of 128. One producer thread streams the K tiles of
// every tile of the CTA, in order, through one ring. A warpgroup starts its main loop only once
// the other has issued its last one (named barriers 1 and 2): the ring's mbarriers tell only
// two phases apart, so no consumer may wait more than one lap ahead of the ring.
// Register reallocation between warpgroups (whole warpgroups execute it, sm_90a).
template <int N>
__device__ __forceinline__ void warpgroup_regs_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N>
__device__ __forceinline__ void warpgroup_regs_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}

// The tile `u` of a persistent walk: u -> (M tile, N tile) by tile_coords over the alignment's
// tile count, and its K split (u % splits). False for an empty split.
__device__ __forceinline__ bool tile_work_at(const GemmParams& p, int u, int m_tiles, int splits,
                                             TileWork& w) {
  tile_coords(u / splits, m_tiles, p.n_tiles, w.m_tile, w.n_tile);
  w.split = u % splits;
  w.k_begin = w.split * p.k_per_split;
  w.k_end = min(p.k, w.k_begin + p.k_per_split);
  if (w.k_begin >= w.k_end) return false;
  w.expert = p.tile_expert[w.m_tile];
  return true;
}

// The shared memory of a persistent row's CTA: the ring's stages and barriers, the box counts.
struct PersistentRing {
  uint32_t base, full0, empty0;  // shared addresses: the stages, full and empty barriers
  int* s_boxes;                  // [STAGES]
  int m_tiles, splits, units;    // the walk: tiles, K splits, and their product with N tiles
};

// The producer thread of a persistent row (C: PingTile or CoopTile): the K tiles of every tile
// of the CTA (u = blockIdx.x, + gridDim.x, ...) in order through one ring of C::STAGES stages,
// with no break between tiles, so the next tile's first stages load during this one's epilogue.
// 128-row tiles: s_boxes[stage] tells the consumers how many A boxes the stage holds (written
// before the stage's expect-tx arrival, so visible once its full barrier completes): a read of
// the tile's slots from global memory would wait behind the previous tile's epilogue stores.
template <typename C, bool GATE_UP>
__device__ __forceinline__ void persistent_producer(const GemmParams& p, const CUtensorMap* map_a,
                                                    const CUtensorMap* map_b,
                                                    const PersistentRing& r) {
  constexpr int STAGES = C::STAGES;
  const uint32_t base = r.base, full0 = r.full0, empty0 = r.empty0;
  const int m_tiles = r.m_tiles, splits = r.splits, units = r.units;
  int* s_boxes = r.s_boxes;
  int q = 0;  // ring position of the next K tile
  bool waited = false;
  for (int u = blockIdx.x; u < units; u += gridDim.x) {
    TileWork w;
    if (!tile_work_at(p, u, m_tiles, splits, w)) continue;
    const int KT = (w.k_end - w.k_begin + C::BK - 1) / C::BK, col0 = w.n_tile * C::kOutCols;
    const int half_gate = GATE_UP ? 2 * w.expert + (p.gate_row0 == 0 ? 0 : 1) : w.expert;
    const int half_up = 2 * w.expert + (p.up_row0 == 0 ? 0 : 1);
    const int a_boxes = live_a_boxes<C::BM>(p.sorted_slots + int64_t(w.m_tile) * C::BM);
    auto load_b = [&](int kt) {
      const int s = (q + kt) % STAGES;
      const uint32_t sb = base + s * C::kStageBytes + C::kABytes, bar = full0 + 8 * s;
      const int k0 = w.k_begin + kt * C::BK;
      if constexpr (C::BM == 128) s_boxes[s] = a_boxes;
      mbar_arrive_expect_tx(bar, C::kBBytes + a_boxes * C::kABoxBytes);
      tma_load_3d(sb, map_b, bar, k0, col0, half_gate);
      if constexpr (GATE_UP) tma_load_3d(sb + C::kBoxRowsB * 128, map_b, bar, k0, col0, half_up);
    };
    auto load_a = [&](int kt) {
      const int s = (q + kt) % STAGES;
      const uint32_t sa = base + s * C::kStageBytes, bar = full0 + 8 * s;
      for (int h = 0; h < a_boxes; ++h)
        tma_load_2d(sa + h * C::kABoxBytes, map_a, bar, w.k_begin + kt * C::BK,
                    w.m_tile * C::BM + h * C::kBoxRowsA);
    };
    int kt = 0;
    if (!waited) {  // the first stages' weights load while the predecessor finishes
      const int pre = min(KT, STAGES);
      for (; kt < pre; ++kt) load_b(kt);
      grid_dependency_wait();
      allow_dependents();
      waited = true;
      for (int j = 0; j < pre; ++j) load_a(j);
    }
    for (; kt < KT; ++kt) {
      const int pos = q + kt;
      if (pos >= STAGES) mbar_wait(empty0 + 8 * (pos % STAGES), ((pos / STAGES) - 1) & 1);
      load_b(kt);
      load_a(kt);
    }
    q += KT;
  }
  if (!waited) {
    grid_dependency_wait();
    allow_dependents();
  }
}

// The tile of both persistent kinds: BM = 64, ping-pong (each warpgroup a whole tile, one
// warpgroup consumes a stage), or 128, cooperative (both warpgroups on every tile and stage).
template <typename T, int BM_, int BN, int STAGES_, bool GATE_UP>
struct PersistentTile {
  static constexpr int STAGES = STAGES_;
  static constexpr int BM = BM_, BK = 64;
  // Two consumer warpgroups + a producer warpgroup: the register file is split per SM quarter,
  // so 9 warps would cap every thread at 168 registers; with a whole producer warpgroup,
  // setmaxnreg moves its registers to the consumers (40 + 2 x 232 per thread, 64512 in all).
  static constexpr int kThreads = 3 * 128;
  static constexpr int kProducerRegs = 40, kConsumerRegs = 232;
  static constexpr int kStageConsumers = BM == 64 ? 128 : 256;  // threads that release a stage
  static constexpr int kAcc = BN / 2;
  static constexpr int kOutCols = GATE_UP ? BN / 2 : BN;
  static constexpr int kBoxRowsB = GATE_UP ? BN / 2 : BN;
  static constexpr int kBoxRowsA = 64, kABoxBytes = kBoxRowsA * 128;
  static constexpr int kABytes = BM * 128, kBBytes = BN * 128;
  static constexpr int kStageBytes = kABytes + kBBytes;
  static constexpr size_t kSmemBytes = size_t(STAGES) * kStageBytes + 2 * STAGES * 8 + STAGES * 4 + 1024;
  static_assert(BM == 64 || BM == 128, "ping-pong or cooperative");
  static_assert(BN == 128 || BN == 192 || BN == 256, "B tile of one n128, n192 or n256 instruction");
  static_assert(STAGES >= 2 && kSmemBytes <= 227 * 1024, "a ring that fits");
};
template <typename T, int BN, int STAGES, bool GATE_UP>
using PingTile = PersistentTile<T, 64, BN, STAGES, GATE_UP>;
template <typename T, int BN, int STAGES, bool GATE_UP>
using CoopTile = PersistentTile<T, 128, BN, STAGES, GATE_UP>;

// The start of a persistent row's CTA, every thread: the ring (thread 256 initializes its
// barriers), the last block-wide barrier, the walk's extent (the alignment's counts are
// complete: the predecessor allowed this launch after its own wait). The producer warpgroup
// then streams every K tile (persistent_producer) and gets false; the consumer warpgroups get
// its registers and true.
template <typename C, bool GATE_UP>
__device__ __forceinline__ bool persistent_start(const GemmParams& p, const CUtensorMap* map_a,
                                                 const CUtensorMap* map_b, PersistentRing& r) {
  extern __shared__ uint8_t smem_raw[];
  uint32_t base = smem_addr(smem_raw);
  base += (1024u - (base & 1023u)) & 1023u;
  r.base = base;
  r.full0 = base + C::STAGES * C::kStageBytes;
  r.empty0 = r.full0 + C::STAGES * 8;
  r.s_boxes = reinterpret_cast<int*>(smem_raw + (r.empty0 + C::STAGES * 8 - smem_addr(smem_raw)));
  const int tid = threadIdx.x;
  if (tid == 256) {
    tma_prefetch(map_a);
    tma_prefetch(map_b);
    for (int s = 0; s < C::STAGES; ++s) {
      mbar_init(r.full0 + 8 * s, 1);
      mbar_init(r.empty0 + 8 * s, C::kStageConsumers);
    }
    fence_barrier_init();
  }
  __syncthreads();
  r.m_tiles = *p.num_tiles;
  r.splits = (p.k + p.k_per_split - 1) / p.k_per_split;
  r.units = r.m_tiles * p.n_tiles * r.splits;
  if (tid >= 256) {  // producer warpgroup: one thread issues every copy, tile after tile
    warpgroup_regs_dec<C::kProducerRegs>();
    if (tid == 256) persistent_producer<C, GATE_UP>(p, map_a, map_b, r);
    return false;
  }
  warpgroup_regs_inc<C::kConsumerRegs>();
  return true;
}

template <typename T, int BN, int STAGES, bool GATE_UP>
__global__ void __launch_bounds__(384, 1)
    tma_ping_kernel(const __grid_constant__ GemmParams p, const __grid_constant__ CUtensorMap map_a,
                    const __grid_constant__ CUtensorMap map_b) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = PingTile<T, BN, STAGES, GATE_UP>;
  PersistentRing r;
  if (!persistent_start<C, GATE_UP>(p, &map_a, &map_b, r)) return;
  const int tid = threadIdx.x, wg = tid / 128, ctid = tid % 128;
  int q = 0, turn = 0;  // ring position, index of the tile among this CTA's tiles
  for (int u = blockIdx.x; u < r.units; u += gridDim.x) {
    TileWork w;
    if (!tile_work_at(p, u, r.m_tiles, r.splits, w)) continue;
    const int KT = (w.k_end - w.k_begin + C::BK - 1) / C::BK;
    const int mine = turn & 1;
    if (mine == wg) {
      // Does this CTA have a later tile (the other warpgroup's, which this one lets start)?
      bool next = false;
      for (int v = u + gridDim.x; v < r.units && !next; v += gridDim.x) {
        TileWork nw;
        next = tile_work_at(p, v, r.m_tiles, r.splits, nw);
      }
      const EpilogueRows rows =
          epilogue_rows(p, p.sorted_slots + int64_t(w.m_tile) * C::BM, 0, ctid);
      if (turn > 0) named_bar_sync(1 + (turn & 1), 256);  // the other issued its main loop
      float acc[C::kAcc];
#pragma unroll
      for (int i = 0; i < C::kAcc; ++i) acc[i] = 0.0f;
      for (int kt = 0; kt < KT; ++kt) {
        const int pos = q + kt, s = pos % STAGES;
        mbar_wait(r.full0 + 8 * s, (pos / STAGES) & 1);
        const uint32_t sa = r.base + s * C::kStageBytes;
        mma_k_tile<T, BN>(acc, sa, sa + C::kABytes);
        if (kt > 0) mbar_arrive(r.empty0 + 8 * ((pos - 1) % STAGES));
      }
      if (next) named_bar_arrive(1 + ((turn + 1) & 1), 256);
      wgmma_wait<0>();
      mbar_arrive(r.empty0 + 8 * ((q + KT - 1) % STAGES));
#pragma unroll
      for (int i = 0; i < C::kAcc; ++i) reg_fence(acc[i]);
      wg_epilogue<T, C::BM, BN, GATE_UP>(p, acc, 0, ctid, rows, w.m_tile, w.n_tile * C::kOutCols,
                                          w.expert, w.split);
    }
    q += KT;
    ++turn;
  }
#endif
}

// ---- persistent cooperative rows, for many tokens per expert ---------------------------------
// One CTA per SM walks the tiles as the ping-pong rows do, but both consumer warpgroups share
// each 128-row tile (64 rows each, as tma_gemm_kernel): the tile, and so the bytes per FLOP, of
// the one-CTA-per-SM rows, with the producer running ahead into the next tile while the
// consumers store this one. Both warpgroups consume every stage in order, so the ring needs no
// turn-taking.
template <typename T, int BN, int STAGES, bool GATE_UP>
__global__ void __launch_bounds__(384, 1)
    tma_coop_kernel(const __grid_constant__ GemmParams p, const __grid_constant__ CUtensorMap map_a,
                    const __grid_constant__ CUtensorMap map_b) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = CoopTile<T, BN, STAGES, GATE_UP>;
  PersistentRing r;
  if (!persistent_start<C, GATE_UP>(p, &map_a, &map_b, r)) return;
  const int tid = threadIdx.x, wg = tid / 128, ctid = tid % 128;
  int q = 0;  // ring position
  for (int u = blockIdx.x; u < r.units; u += gridDim.x) {
    TileWork w;
    if (!tile_work_at(p, u, r.m_tiles, r.splits, w)) continue;
    const int KT = (w.k_end - w.k_begin + C::BK - 1) / C::BK;
    const EpilogueRows rows =
        epilogue_rows(p, p.sorted_slots + int64_t(w.m_tile) * C::BM, wg, ctid);
    bool live = true;  // this warpgroup's 64 rows hold a slot (the producer's s_boxes)
    float acc[C::kAcc];
#pragma unroll
    for (int i = 0; i < C::kAcc; ++i) acc[i] = 0.0f;
    for (int kt = 0; kt < KT; ++kt) {
      const int pos = q + kt, s = pos % STAGES;
      mbar_wait(r.full0 + 8 * s, (pos / STAGES) & 1);
      if (kt == 0) live = wg < r.s_boxes[s];
      if (live)
        mma_k_tile<T, BN>(acc, r.base + s * C::kStageBytes + wg * C::kABoxBytes,
                          r.base + s * C::kStageBytes + C::kABytes);
      if (kt > 0) mbar_arrive(r.empty0 + 8 * ((pos - 1) % STAGES));
    }
    wgmma_wait<0>();
    if (KT > 0) mbar_arrive(r.empty0 + 8 * ((q + KT - 1) % STAGES));
    if (live) {
#pragma unroll
      for (int i = 0; i < C::kAcc; ++i) reg_fence(acc[i]);
      wg_epilogue<T, C::BM, BN, GATE_UP>(p, acc, wg, ctid, rows, w.m_tile, w.n_tile * C::kOutCols,
                                          w.expert, w.split);
    }
    q += KT;
  }
#endif
}

// ---- swapped operands, for few tokens per expert --------------------------------------------
// With a handful of tokens per expert the GEMMs stream weights and the tensor cores idle, but
// wgmma's M is at least 64. So the weights are the M operand (64-row blocks) and the tokens the
// N operand (BT = 8, 16 or 32 rows of the sorted layout; 48 or 80 where an expert expects 32 or
// 64 slots: one tile holds them and their spread, where 64-row tiles would take a second, mostly
// padding, tile for about half the experts): D[weight row][token]. One consumer
// warpgroup and one producer warp per CTA, small stages, several CTAs per SM: many weight
// bytes in flight per SM through TMA. Gate-up: block 0 holds 64 gate rows and block 1 the same
// 64 up rows, so one thread has gate and up of an output element in its two accumulators.

// The four lanes i = 0..3 at distance 4 (lane / 4 = 4 * a + i, one lane % 4) each hold v[e] of
// M[i][e]; afterwards lane i holds M[0..3][i] in v[0..3] (a 4 x 4 transpose in two exchange
// rounds: partners i ^ 2, then i ^ 1).
__device__ __forceinline__ void transpose_quads(int i, float (&v)[4]) {
  const bool hi = i & 2, lo = i & 1;
  // Round 1: keep the elements e with e & 2 == i & 2, swap the other two with lane i ^ 2.
  const float k0 = hi ? v[2] : v[0], k1 = hi ? v[3] : v[1];  // M[i][(i & 2) + 0 / 1]
  const float r0 = __shfl_xor_sync(0xffffffffu, hi ? v[0] : v[2], 8);  // M[i ^ 2][(i & 2) + 0]
  const float r1 = __shfl_xor_sync(0xffffffffu, hi ? v[1] : v[3], 8);  // M[i ^ 2][(i & 2) + 1]
  // Round 2: keep element i, swap element i ^ 1 with lane i ^ 1.
  const float a = lo ? k1 : k0, b = lo ? r1 : r0;  // M[i][i], M[i ^ 2][i]
  const float c = __shfl_xor_sync(0xffffffffu, lo ? k0 : k1, 4);  // M[i ^ 1][i]
  const float d = __shfl_xor_sync(0xffffffffu, lo ? r0 : r1, 4);  // M[i ^ 3][i]
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int x = i ^ j;  // M[j][i] came from lane j = i ^ x
    v[j] = x & 2 ? (x & 1 ? d : b) : (x & 1 ? c : a);
  }
}

template <typename T, int BT, int MW, int STAGES, bool GATE_UP>
struct SwapTile {
  static constexpr int BK = 64;
  static constexpr int kThreads = 128 + 32;  // one consumer warpgroup + the producer warp
  static constexpr int kWRows = MW * 64;     // weight rows per tile
  static constexpr int kOutCols = GATE_UP ? 64 : kWRows;
  static constexpr int kBoxRowsW = GATE_UP ? 64 : kWRows;
  static constexpr int kAcc = BT / 2;  // floats per thread per m64 block
  static constexpr int kWBytes = kWRows * 128, kTBytes = BT * 128;
  static constexpr int kStageBytes = kWBytes + kTBytes;
  static constexpr size_t kSmemBytes = size_t(STAGES) * kStageBytes + BT * 4 + 2 * STAGES * 8 + 1024;
  static_assert(BT == 8 || BT == 16 || BT == 32 || BT == 48 || BT == 80,
                "token tile of one m64nBTk16 instruction (wgmma_m64nNk16 above)");
  static_assert(!GATE_UP || MW == 2, "gate-up pairs one gate block with one up block");
  static_assert(MW == 1 || MW == 2, "one or two m64 blocks");
  static_assert(kWBytes % 1024 == 0, "token tile stays 1024-aligned");
};

template <typename T, int BT, int MW, int STAGES, bool GATE_UP>
__global__ void __launch_bounds__(160)
    tma_swap_kernel(const __grid_constant__ GemmParams p, const __grid_constant__ CUtensorMap map_t,
                    const __grid_constant__ CUtensorMap map_w) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using C = SwapTile<T, BT, MW, STAGES, GATE_UP>;
  extern __shared__ uint8_t smem_raw[];
  uint32_t base = smem_addr(smem_raw);
  const uint32_t pad = (1024u - (base & 1023u)) & 1023u;
  base += pad;
  int32_t* s_slot = reinterpret_cast<int32_t*>(smem_raw + pad + size_t(STAGES) * C::kStageBytes);
  const uint32_t full0 = base + STAGES * C::kStageBytes + ((BT * 4 + 7) & ~7);
  const uint32_t empty0 = full0 + STAGES * 8;

  TileWork work;
  if (!tile_work(p, work)) return;
  const int m_tile = work.m_tile, n_tile = work.n_tile, split = work.split;
  const int k_begin = work.k_begin, k_end = work.k_end, expert = work.expert;
  const int tid = threadIdx.x;
  if (tid == 128) {
    tma_prefetch(&map_t);
    tma_prefetch(&map_w);
    for (int s = 0; s < STAGES; ++s) {
      mbar_init(full0 + 8 * s, 1);
      mbar_init(empty0 + 8 * s, 128);
    }
    fence_barrier_init();
  }
  for (int r = tid; r < BT; r += C::kThreads) s_slot[r] = p.sorted_slots[int64_t(m_tile) * BT + r];
  __syncthreads();  // the last block-wide barrier: the producer warp leaves below

  const int col0 = n_tile * C::kOutCols;
  const int KT = k_end > k_begin ? (k_end - k_begin + C::BK - 1) / C::BK : 0;

  if (tid >= 128) {  // producer warp: one thread issues every copy
    if (tid == 128) {
      const int half_gate = GATE_UP ? 2 * expert + (p.gate_row0 == 0 ? 0 : 1) : expert;
      const int half_up = 2 * expert + (p.up_row0 == 0 ? 0 : 1);
      auto load_w = [&](int kt) {
        const uint32_t sw = base + (kt % STAGES) * C::kStageBytes;
        const uint32_t bar = full0 + 8 * (kt % STAGES);
        const int k0 = k_begin + kt * C::BK;
        mbar_arrive_expect_tx(bar, C::kStageBytes);
        tma_load_3d(sw, &map_w, bar, k0, col0, half_gate);
        if constexpr (GATE_UP) tma_load_3d(sw + 64 * 128, &map_w, bar, k0, col0, half_up);
      };
      auto load_t = [&](int kt) {
        tma_load_2d(base + (kt % STAGES) * C::kStageBytes + C::kWBytes, &map_t,
                    full0 + 8 * (kt % STAGES), k_begin + kt * C::BK, m_tile * BT);
      };
      const int pre = min(KT, STAGES);  // weights first, while the predecessor finishes
      for (int kt = 0; kt < pre; ++kt) load_w(kt);
      grid_dependency_wait();
      allow_dependents();
      for (int kt = 0; kt < pre; ++kt) load_t(kt);
      for (int kt = pre; kt < KT; ++kt) {
        mbar_wait(empty0 + 8 * (kt % STAGES), ((kt / STAGES) - 1) & 1);
        load_w(kt);
        load_t(kt);
      }
    }
    return;
  }

  float acc[MW][C::kAcc];
#pragma unroll
  for (int b = 0; b < MW; ++b)
#pragma unroll
    for (int i = 0; i < C::kAcc; ++i) acc[b][i] = 0.0f;
  for (int kt = 0; kt < KT; ++kt) {
    const int s = kt % STAGES;
    mbar_wait(full0 + 8 * s, (kt / STAGES) & 1);
    const uint32_t sw = base + s * C::kStageBytes, st = sw + C::kWBytes;
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
#pragma unroll
      for (int b = 0; b < MW; ++b)
        wgmma_m64nNk16<BT, T>(acc[b], sw128_desc(sw + b * 64 * 128 + kk * 32),
                              sw128_desc(st + kk * 32));
    wgmma_commit();
    wgmma_wait<1>();
    if (kt > 0) mbar_arrive(empty0 + 8 * ((kt - 1) % STAGES));
  }
  wgmma_wait<0>();
#pragma unroll
  for (int b = 0; b < MW; ++b)
#pragma unroll
    for (int i = 0; i < C::kAcc; ++i) reg_fence(acc[b][i]);

  // Fragment f of block b: weight row 16 * warp + lane / 4 + 8 * ((f % 4) / 2) of the block,
  // token row 8 * (f / 4) + 2 * (lane % 4) + f % 2 of the tile. Output columns are weight rows,
  // spread over lanes 4 apart: transpose_quads gathers four consecutive ones per lane.
  const int lane = tid % 32, warp = tid / 32, quad = (lane / 4) % 4;
  const T* bias =
      p.bias ? static_cast<const T*>(p.bias) + int64_t(expert) * p.bias_expert_stride : nullptr;
#pragma unroll
  for (int b = 0; b < (GATE_UP ? 1 : MW); ++b) {
    const int wrow = col0 + b * 64 + 16 * warp + lane / 4;  // this lane's column, before
    const int col4 = col0 + b * 64 + 16 * warp + 4 * (lane / 16) + 8 * (quad / 2);  // and after
#pragma unroll
    for (int f = 0; f < C::kAcc; f += 4) {
      float v[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = wrow + 8 * (e / 2);
        const int slot = s_slot[8 * (f / 4) + 2 * (lane % 4) + e % 2];
        const float w = slot >= 0 && p.slot_weights ? p.slot_weights[slot] : 1.0f;
        if constexpr (GATE_UP) {
          v[e] = gate_up_value(p, bias, slot >= 0, w, acc[0][f + e], acc[1][f + e], col);
        } else {
          const float bv = bias && split == 0 && col < p.n ? ElemOps<T>::to_float(bias[col]) : 0.0f;
          v[e] = w * (acc[b][f + e] + bv);
        }
      }
      transpose_quads(quad, v);
      const int row = 8 * (f / 4) + 2 * (lane % 4) + quad % 2;  // the token of this lane's quad
      if constexpr (GATE_UP) {
        const bool vec = p.ld_act % 4 == 0 && (reinterpret_cast<uintptr_t>(p.act_out) & 7) == 0;
        if (col4 < p.ld_act)
          store_quad(static_cast<T*>(p.act_out) + (int64_t(m_tile) * BT + row) * p.ld_act + col4,
                     v, vec, p.ld_act - col4);
      } else {
        const int slot = s_slot[row];
        const bool vec = p.ldo % 4 == 0 && (reinterpret_cast<uintptr_t>(p.out) & 15) == 0;
        if (slot >= 0 && col4 < p.n)
          add_quad(p.out + int64_t(slot / p.top_k) * p.ldo + col4, v, vec, p.n - col4);
      }
    }
  }
#endif
}

// ---- host side: tensor maps ------------------------------------------------------------------
// The driver's encoder through the runtime's entry-point lookup (no link against libcuda).
using TensorMapEncodeFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*,
                                       const cuuint64_t*, const cuuint64_t*, const cuuint32_t*,
                                       const cuuint32_t*, CUtensorMapInterleave,
                                       CUtensorMapSwizzle, CUtensorMapL2promotion,
                                       CUtensorMapFloatOOBfill);
TensorMapEncodeFn tensor_map_encoder();

// A row-major [outer, rows, k] tensor of 16-bit elements (row stride ld, outer stride
// outer_stride, both in elements), read in boxes of 64 K x box_rows rows, 128B-swizzled.
cudaError_t make_tile_map(CUtensorMap* map, bool bf16, const void* base, int k, int rows,
                          int outer, int64_t ld, int64_t outer_stride, int box_rows);

// What map_a holds: the sorted rows, or nothing (a copy of map_w, never read: the x_direct rows
// read A with cp.async).
enum class AMap { Sorted, None };

// How one TMA row launches: its tile heights, block, shared memory and grid.
struct TmaLaunch {
  bool gate_up;
  int rows_a;       // sorted rows per tile (the alignment's block height)
  int box_a;        // rows of one A box
  int rows_w;       // rows of one weight box
  int threads;
  size_t smem;
  bool persistent;  // a grid of one CTA per SM (or set_persistent_ctas's limit) over every tile
  AMap a_map;
};

// Both maps of one launch: A (or the tokens) [max_tiles * rows_a, k] in sorted order, read in
// boxes of box_a rows; the weights as [halves, n, k] (gate-up: 2 halves per expert), boxes of
// rows_w rows. TMA needs 16-byte row strides and 64-element K boundaries between splits.
cudaError_t make_gemm_maps(const GemmParams& p, bool bf16, int split_k, const TmaLaunch& l,
                           CUtensorMap* map_a, CUtensorMap* map_w);

// Encodes both maps and launches (dependent launch); the caller set the shared-memory limit.
// Not persistent: one CTA per possible tile and K split.
using TmaKernelFn = void (*)(GemmParams, CUtensorMap, CUtensorMap);
cudaError_t launch_tma_kernel(TmaKernelFn kernel, const GemmParams& p, int split_k, bool bf16,
                              const TmaLaunch& l, cudaStream_t stream);

// One launch function per kernel instance (the tile table's entries): sets the instance's
// shared-memory limit once, then launch_tma_kernel.
template <auto Kernel, typename T>
cudaError_t launch_tma_row(const GemmParams& p, int split_k, const TmaLaunch& l,
                           cudaStream_t stream) {
  static const cudaError_t attr =
      cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(l.smem));
  if (attr != cudaSuccess) return attr;
  return launch_tma_kernel(Kernel, p, split_k, std::is_same<T, __nv_bfloat16>::value, l, stream);
}

template <typename T, int BM, int BN, int STAGES, bool GATE_UP, int MINB = 1, bool XDIRECT = false,
          int EPI = kEpiLanes>
cudaError_t launch_tma_gemm(const GemmParams& p, int split_k, cudaStream_t stream) {
  if constexpr (EPI != kEpiLanes) {
    // Bulk reduces and copies need 16-byte-aligned row segments whose lengths are multiples of
    // 16 bytes (column tiles start at multiples of 8 elements); other outputs take the same tile
    // with wg_epilogue's per-lane atomics and stores. A bulk-reduce row storing the rows in
    // sorted order (p.rows_out) takes its bulk-store instance.
    const bool whole =
        p.rows_out ? p.ld_rows % 8 == 0 && p.n % 8 == 0 &&
                         reinterpret_cast<uintptr_t>(p.rows_out) % 16 == 0
                   : EPI == kEpiReduce && p.ldo % 4 == 0 && p.n % 4 == 0 &&
                         reinterpret_cast<uintptr_t>(p.out) % 16 == 0;
    if (!whole)
      return launch_tma_gemm<T, BM, BN, STAGES, GATE_UP, MINB, XDIRECT, kEpiLanes>(p, split_k,
                                                                                   stream);
    if (EPI == kEpiReduce && p.rows_out)
      return launch_tma_gemm<T, BM, BN, STAGES, GATE_UP, MINB, XDIRECT, kEpiStore>(p, split_k,
                                                                                   stream);
  }
  using C = TmaTile<T, BM, BN, STAGES, GATE_UP, MINB, XDIRECT, EPI>;
  const TmaLaunch l{GATE_UP, BM, C::kBoxRowsA, C::kBoxRowsB, C::kThreads, C::kSmemBytes, false,
                    XDIRECT ? AMap::None : AMap::Sorted};
  return launch_tma_row<&tma_gemm_kernel<T, BM, BN, STAGES, GATE_UP, MINB, XDIRECT, EPI>, T>(
      p, split_k, l, stream);
}

template <typename T, int BN, int STAGES, bool GATE_UP>
cudaError_t launch_tma_ping(const GemmParams& p, int split_k, cudaStream_t stream) {
  using C = PingTile<T, BN, STAGES, GATE_UP>;
  const TmaLaunch l{GATE_UP, C::BM, C::kBoxRowsA, C::kBoxRowsB, C::kThreads, C::kSmemBytes, true,
                    AMap::Sorted};
  return launch_tma_row<&tma_ping_kernel<T, BN, STAGES, GATE_UP>, T>(p, split_k, l, stream);
}

template <typename T, int BN, int STAGES, bool GATE_UP>
cudaError_t launch_tma_coop(const GemmParams& p, int split_k, cudaStream_t stream) {
  using C = CoopTile<T, BN, STAGES, GATE_UP>;
  const TmaLaunch l{GATE_UP, C::BM, C::kBoxRowsA, C::kBoxRowsB, C::kThreads, C::kSmemBytes, true,
                    AMap::Sorted};
  return launch_tma_row<&tma_coop_kernel<T, BN, STAGES, GATE_UP>, T>(p, split_k, l, stream);
}

template <typename T, int BT, int MW, int STAGES, bool GATE_UP>
cudaError_t launch_tma_swap(const GemmParams& p, int split_k, cudaStream_t stream) {
  using C = SwapTile<T, BT, MW, STAGES, GATE_UP>;
  const TmaLaunch l{GATE_UP, BT, BT, C::kBoxRowsW, C::kThreads, C::kSmemBytes, false,
                    AMap::Sorted};
  return launch_tma_row<&tma_swap_kernel<T, BT, MW, STAGES, GATE_UP>, T>(p, split_k, l, stream);
}

}  // namespace moe::kernels
