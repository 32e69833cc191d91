// The TMA rows of the tile table (sm_90a; kernels/gemm_tma.cuh), the tensor-map encoder and the
// gather of x into sorted order that those gate-up rows read. Names: tma_m<BM>n<output cols>.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "gemm_tma.cuh"
#include "tile_configs.h"

namespace moe::kernels {

TensorMapEncodeFn tensor_map_encoder() {
  static const TensorMapEncodeFn fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault,
                                         &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess)
      f = nullptr;
    cudaGetLastError();
    return reinterpret_cast<TensorMapEncodeFn>(f);
  }();
  return fn;
}

cudaError_t make_tile_map(CUtensorMap* map, bool bf16, const void* base, int k, int rows,
                          int outer, int64_t ld, int64_t outer_stride, int box_rows) {
  const TensorMapEncodeFn encode = tensor_map_encoder();
  if (!encode) return cudaErrorNotSupported;
  if (reinterpret_cast<uintptr_t>(base) % 16 != 0 || k <= 0 || rows <= 0 || outer <= 0)
    return cudaErrorInvalidValue;
  const cuuint32_t rank = outer_stride > 0 ? 3 : 2;
  const cuuint64_t dims[3] = {cuuint64_t(k), cuuint64_t(rows), cuuint64_t(outer)};
  const cuuint64_t strides[2] = {cuuint64_t(ld) * 2, cuuint64_t(outer_stride) * 2};
  const cuuint32_t box[3] = {64, cuuint32_t(box_rows), 1};
  const cuuint32_t elem_strides[3] = {1, 1, 1};
  const CUresult r = encode(map, bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
                            rank, const_cast<void*>(base), dims, strides, box, elem_strides,
                            CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                            CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

cudaError_t make_gemm_maps(const GemmParams& p, bool bf16, int split_k, const TmaLaunch& l,
                           CUtensorMap* map_a, CUtensorMap* map_w) {
  if (p.num_experts <= 0 || p.lda % 8 != 0 || p.ldb % 8 != 0 ||
      (split_k > 1 && p.k_per_split % 64 != 0) ||
      p.b_expert_stride != int64_t(l.gate_up ? 2 : 1) * p.n * p.ldb)
    return cudaErrorInvalidValue;
  const int halves = l.gate_up ? 2 * p.num_experts : p.num_experts;
  const cudaError_t e =
      make_tile_map(map_w, bf16, p.b, p.k, p.n, halves, p.ldb, int64_t(p.n) * p.ldb, l.rows_w);
  if (e != cudaSuccess || l.a_map == AMap::None) {
    *map_a = *map_w;  // x_direct: the kernel never reads map_a
    return e;
  }
  return make_tile_map(map_a, bf16, p.a, p.k, p.max_tiles * l.rows_a, 1, p.lda, 0, l.box_a);
}

namespace {
int g_persistent_ctas = 0;  // set_persistent_ctas: 0 = one per SM
int sm_count_of_device() {
  int dev = 0, n = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
    n = 0;
  cudaGetLastError();
  return std::max(1, n);
}
}  // namespace

void set_persistent_ctas(int ctas) { g_persistent_ctas = std::max(0, ctas); }

cudaError_t launch_tma_kernel(TmaKernelFn kernel, const GemmParams& p, int split_k, bool bf16,
                              const TmaLaunch& l, cudaStream_t stream) {
  CUtensorMap map_a, map_w;
  cudaError_t e = make_gemm_maps(p, bf16, split_k, l, &map_a, &map_w);
  if (e != cudaSuccess) return e;
  dim3 grid(unsigned(p.max_tiles) * unsigned(p.n_tiles), unsigned(split_k));
  if (l.persistent) {
    const int64_t units = int64_t(p.max_tiles) * p.n_tiles * split_k;
    const int ctas = g_persistent_ctas > 0 ? g_persistent_ctas : sm_count_of_device();
    grid = dim3(unsigned(std::min<int64_t>(units, ctas)), 1);
  }
  return launch_dependent(kernel, grid, dim3(unsigned(l.threads)), l.smem, stream, p, map_a,
                          map_w);
}

namespace {

// One warp per sorted row holding a slot: the token's row of x. Padding rows (-1) are left as
// they are: every GEMM that reads them masks its results by the slot (a padding row's
// activations are written as zeros, its down rows add nothing), and a padding-only 64-row box is
// not loaded at all. At qwen3's 64 slots per expert in 128-row tiles that is half the rows.
__global__ void gather_sorted_kernel(const uint4* __restrict__ x, int64_t ldx8, int k8, int top_k,
                                     const int32_t* __restrict__ sorted,
                                     const int32_t* __restrict__ num_tiles, int block_m,
                                     uint4* __restrict__ out) {
  grid_dependency_wait();  // launched dependent: the alignment may still be finishing
  allow_dependents();
  const int64_t rows = int64_t(*num_tiles) * block_m;
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t(gridDim.x) * blockDim.x / 32;
  for (int64_t r = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; r < rows; r += warps) {
    const int slot = sorted[r];
    if (slot < 0) continue;
    const uint4* src = x + int64_t(slot / top_k) * ldx8;
    uint4* dst = out + r * k8;
    int c = lane;
    for (; c + 96 < k8; c += 128) {  // four 16-byte loads in flight a lane
      const uint4 a = __ldg(src + c), b = __ldg(src + c + 32), d = __ldg(src + c + 64),
                  e = __ldg(src + c + 96);
      dst[c] = a;
      dst[c + 32] = b;
      dst[c + 64] = d;
      dst[c + 96] = e;
    }
    for (; c < k8; c += 32) dst[c] = __ldg(src + c);
  }
}

// The token-order gather, for x larger than the L2: the slot-order one reads each token's row
// once per slot (top_k times, mostly from HBM once x no longer fits in the L2), this one once.
// First each sorted row's slot records its row (slot_pos: here, or the alignment did); slots
// that are not on this rank keep whatever an earlier call left there, so a reader checks
// sorted[pos] == slot (sorted_row_of).
__global__ void slot_position_kernel(const int32_t* __restrict__ sorted,
                                     const int32_t* __restrict__ num_tiles, int block_m,
                                     int32_t* __restrict__ slot_pos) {
  grid_dependency_wait();  // the alignment may still be finishing
  allow_dependents();
  const int64_t rows = int64_t(*num_tiles) * block_m;
  for (int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; r < rows;
       r += int64_t(gridDim.x) * blockDim.x) {
    const int slot = sorted[r];
    if (slot >= 0) slot_pos[slot] = int32_t(r);
  }
}

// The sorted row of `slot` among the first `rows` rows of `sorted`, or -1 where its slot_pos
// entry is stale (a slot not on this rank keeps whatever an earlier call wrote there).
__device__ __forceinline__ int64_t sorted_row_of(int64_t slot, const int32_t* __restrict__ slot_pos,
                                                 const int32_t* __restrict__ sorted, int64_t rows) {
  const int q = slot_pos[slot];
  return q >= 0 && q < rows && sorted[q] == slot ? q : -1;
}

// One warp per token (top_k <= 32): lane j finds the sorted row of slot (t, j), then the warp
// reads the token's row of x in 4 KB pieces (8 loads in flight a lane) and writes each piece to
// all of those rows, with evict-first stores: the sorted copy is top_k times x, far larger than
// the L2 (qwen3-30b 16384 tokens on an H100: 218 us against 225 with 2 KB pieces and plain
// stores; docs/perf.md, fifth session).
__global__ void gather_tokens_kernel(const uint4* __restrict__ x, int64_t ldx8, int k8, int tokens,
                                     int top_k, const int32_t* __restrict__ sorted,
                                     const int32_t* __restrict__ num_tiles, int block_m,
                                     const int32_t* __restrict__ slot_pos,
                                     uint4* __restrict__ out) {
  constexpr int kPiece = 8;  // 16-byte loads a lane a piece
  grid_dependency_wait();  // the alignment (and slot_position_kernel) complete
  allow_dependents();
  const int64_t rows = int64_t(*num_tiles) * block_m;
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t(gridDim.x) * blockDim.x / 32;
  const uint64_t policy = l2_evict_first_policy();
  for (int64_t t = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; t < tokens; t += warps) {
    const int64_t pos = lane < top_k ? sorted_row_of(t * top_k + lane, slot_pos, sorted, rows) : -1;
    const uint32_t live = __ballot_sync(0xffffffffu, pos >= 0);
    if (live == 0) continue;
    const uint4* src = x + t * ldx8;
    for (int c0 = 0; c0 < k8; c0 += 32 * kPiece) {
      uint4 v[kPiece];
#pragma unroll
      for (int j = 0; j < kPiece; ++j) {
        const int c = c0 + lane + 32 * j;
        if (c < k8) v[j] = __ldg(src + c);
      }
      for (uint32_t m = live; m != 0; m &= m - 1) {
        const int64_t q = __shfl_sync(0xffffffffu, pos, __ffs(m) - 1);
        uint4* dst = out + q * k8;
#pragma unroll
        for (int j = 0; j < kPiece; ++j) {
          const int c = c0 + lane + 32 * j;
          if (c < k8) store_evict_first(dst + c, v[j], policy);
        }
      }
    }
  }
}

// The token-order sum of the down GEMM's rows (DownArgs::rows_out, for outputs past 0.6 of the
// L2): a red per slot row into a float32 output that does not stay in the L2 reads and writes
// the token's row from HBM for each of its top_k slots; here each token's output row is read and
// written once. One block per token: its slots' sorted rows are found through slot_pos and kept
// only where sorted[pos] == slot (another rank's slot keeps a stale position there).
template <typename T>
__global__ void __launch_bounds__(256)
    sum_rows_kernel(const T* __restrict__ rows, int64_t ld_rows, int n, int tokens, int top_k,
                    const int32_t* __restrict__ sorted, const int32_t* __restrict__ num_tiles,
                    int block_m, const int32_t* __restrict__ slot_pos, float* __restrict__ out,
                    int64_t ldo, bool overwrite, bool vec) {
  grid_dependency_wait();  // the down GEMM complete
  allow_dependents();
  __shared__ int64_t s_row[32];
  const int64_t nrows = int64_t(*num_tiles) * block_m;
  for (int t = blockIdx.x; t < tokens; t += gridDim.x) {
    if (threadIdx.x < top_k)
      s_row[threadIdx.x] =
          sorted_row_of(int64_t(t) * top_k + threadIdx.x, slot_pos, sorted, nrows);
    __syncthreads();
    float* o = out + int64_t(t) * ldo;
    if (vec) {  // 8 elements (16 bytes) of each row a step
      for (int c = threadIdx.x * 8; c < n; c += blockDim.x * 8) {
        float acc[8] = {};
#pragma unroll 4
        for (int k = 0; k < top_k; ++k) {
          const int64_t r = s_row[k];
          if (r < 0) continue;
          const uint4 v = __ldg(reinterpret_cast<const uint4*>(rows + r * ld_rows + c));
          const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const float2 f = ElemOps<T>::unpack2(words[j]);
            acc[2 * j] += f.x;
            acc[2 * j + 1] += f.y;
          }
        }
        float4* o4 = reinterpret_cast<float4*>(o + c);
        float4 lo = make_float4(acc[0], acc[1], acc[2], acc[3]);
        float4 hi = make_float4(acc[4], acc[5], acc[6], acc[7]);
        if (!overwrite) {
          const float4 a = o4[0], b = o4[1];
          lo = make_float4(lo.x + a.x, lo.y + a.y, lo.z + a.z, lo.w + a.w);
          hi = make_float4(hi.x + b.x, hi.y + b.y, hi.z + b.z, hi.w + b.w);
        }
        o4[0] = lo;
        o4[1] = hi;
      }
    } else {
      for (int c = threadIdx.x; c < n; c += blockDim.x) {
        float acc = 0.0f;
        for (int k = 0; k < top_k; ++k)
          if (s_row[k] >= 0) acc += ElemOps<T>::to_float(rows[s_row[k] * ld_rows + c]);
        o[c] = overwrite ? acc : o[c] + acc;
      }
    }
    __syncthreads();  // s_row is rewritten for the next token
  }
}

}  // namespace

cudaError_t launch_slot_positions(const int32_t* sorted_slots, const int32_t* num_tiles,
                                  int block_m, int max_tiles, int32_t* slot_pos,
                                  cudaStream_t stream) {
  if (!sorted_slots || !num_tiles || !slot_pos || block_m <= 0 || max_tiles <= 0)
    return cudaErrorInvalidValue;
  const int64_t max_rows = int64_t(max_tiles) * block_m;
  const int blocks = int(std::min<int64_t>((max_rows + 255) / 256, 1024));
  return launch_dependent(slot_position_kernel, dim3(unsigned(blocks)), dim3(256), 0, stream,
                          sorted_slots, num_tiles, block_m, slot_pos);
}

template <typename T>
static cudaError_t launch_sum_rows_as(const DownArgs& a, int block_m, cudaStream_t stream) {
  const bool vec = a.n % 8 == 0 && a.ld_rows % 8 == 0 && a.ldo % 4 == 0 &&
                   reinterpret_cast<uintptr_t>(a.rows_out) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(a.out) % 16 == 0;
  return launch_dependent(sum_rows_kernel<T>, dim3(unsigned(std::min(a.tokens, 65535))), dim3(256),
                          0, stream, static_cast<const T*>(a.rows_out), int64_t(a.ld_rows), a.n,
                          a.tokens, a.top_k, a.sorted_slots, a.num_tiles, block_m, a.slot_pos,
                          a.out, int64_t(a.ldo), a.overwrite_out, vec);
}

cudaError_t launch_sum_rows(const DownArgs& a, int block_m, cudaStream_t stream) {
  if (!a.rows_out || !a.slot_pos || a.tokens <= 0 || a.top_k > 32 || block_m <= 0)
    return cudaErrorInvalidValue;
  return a.dtype == ElemType::BF16 ? launch_sum_rows_as<__nv_bfloat16>(a, block_m, stream)
                                   : launch_sum_rows_as<__half>(a, block_m, stream);
}

cudaError_t launch_gather_tokens(const void* x, int ldx, int k, int tokens, int top_k,
                                 const int32_t* sorted_slots, const int32_t* num_tiles,
                                 int block_m, int max_tiles, int32_t* slot_pos,
                                 bool positions_ready, void* out, cudaStream_t stream) {
  if (!x || !out || !slot_pos || k % 8 != 0 || ldx % 8 != 0 || ldx < k || tokens <= 0 ||
      top_k <= 0 || top_k > 32 || max_tiles <= 0)
    return cudaErrorInvalidValue;
  if (!positions_ready) {
    const cudaError_t e =
        launch_slot_positions(sorted_slots, num_tiles, block_m, max_tiles, slot_pos, stream);
    if (e != cudaSuccess) return e;
  }
  const int blocks = int(std::min<int64_t>((int64_t(tokens) + 7) / 8, 2048));
  return launch_dependent(gather_tokens_kernel, dim3(unsigned(blocks)), dim3(256), 0, stream,
                          static_cast<const uint4*>(x), int64_t(ldx / 8), k / 8, tokens, top_k,
                          sorted_slots, num_tiles, block_m, static_cast<const int32_t*>(slot_pos),
                          static_cast<uint4*>(out));
}

cudaError_t launch_gather_sorted(const void* x, int ldx, int k, int top_k,
                                 const int32_t* sorted_slots, const int32_t* num_tiles,
                                 int block_m, int max_tiles, void* out, cudaStream_t stream) {
  if (!x || !out || k % 8 != 0 || ldx % 8 != 0 || ldx < k || top_k <= 0 || max_tiles <= 0)
    return cudaErrorInvalidValue;
  const int64_t max_rows = int64_t(max_tiles) * block_m;
  const int blocks = int(std::min<int64_t>((max_rows + 7) / 8, 2048));
  return launch_dependent(gather_sorted_kernel, dim3(unsigned(blocks)), dim3(256), 0, stream,
                          static_cast<const uint4*>(x), int64_t(ldx / 8), k / 8, top_k,
                          sorted_slots, num_tiles, block_m, static_cast<uint4*>(out));
}

#define MOE_TMA_ROW(NAME, BM, BN, S, GU, MINB)                                             \
  TileConfig {                                                                            \
    NAME, BM, (GU) ? (BN) / 2 : (BN), 64, true,                                           \
        &launch_tma_gemm<__nv_bfloat16, BM, BN, S, GU, MINB>,                             \
        &launch_tma_gemm<__half, BM, BN, S, GU, MINB>, (GU), !(GU)                        \
  }
// Down rows whose epilogue stages the weighted rows in shared memory and hands whole row
// segments to the TMA unit (suffix r): bulk reduces into the output (bulk_down_epilogue), or
// with DownArgs::rows_out bulk copies to the rows in sorted order (bulk_down_epilogue with ROWS).
#define MOE_TMA_BROW(NAME, BM, BN, S, MINB)                                                \
  TileConfig {                                                                            \
    NAME, BM, BN, 64, true,                                                               \
        &launch_tma_gemm<__nv_bfloat16, BM, BN, S, false, MINB, false, kEpiReduce>,       \
        &launch_tma_gemm<__half, BM, BN, S, false, MINB, false, kEpiReduce>, false, true   \
  }
// Gate-up rows that read x in place (x_direct, suffix x): no gather pass, no sorted copy.
#define MOE_TMA_XROW(NAME, BM, BN, S, MINB)                                                \
  TileConfig {                                                                            \
    NAME, BM, (BN) / 2, 64, true, &launch_tma_gemm<__nv_bfloat16, BM, BN, S, true, MINB, true>, \
        &launch_tma_gemm<__half, BM, BN, S, true, MINB, true>, false                      \
  }

// Gate-up rows read x gathered into sorted order (the last field: sorted_a). Rows ending in
// s3 / with n64 tiles of 64 rows are sized for two CTAs per SM.
const TileConfig kTmaGateUpConfigs[] = {
    MOE_TMA_ROW("tma_m128n128", 128, 256, 4, true, 1),
    MOE_TMA_ROW("tma_m128n64", 128, 128, 6, true, 1),
    MOE_TMA_ROW("tma_m64n128", 64, 256, 4, true, 1),
    MOE_TMA_ROW("tma_m128n64s3", 128, 128, 3, true, 2),
    // 192-row tiles (three consumer warpgroups) for about 128 slots per expert: one tile holds an
    // expert's slots and their spread, where 128-row tiles read its weights twice for about half
    // the experts (the second tile mostly padding).
    MOE_TMA_ROW("tma_m192n64", 192, 128, 5, true, 1),
    // 192-row B tiles (96 + 96 weight rows, one n192 instruction): 96 FLOP per byte loaded
    // against 76 for 192 x 128, where the A re-reads from L2 bound the 128-row-B tiles; 96
    // columns divide gpt-oss's 2880 and qwen3's 768.
    MOE_TMA_ROW("tma_m192n96", 192, 192, 4, true, 1),
    MOE_TMA_ROW("tma_m128n96", 128, 192, 5, true, 1),
    MOE_TMA_ROW("tma_m64n64", 64, 128, 4, true, 2),
    MOE_TMA_XROW("tma_m64n64x", 64, 128, 4, 2),
};
const int kTmaGateUpConfigCount = sizeof(kTmaGateUpConfigs) / sizeof(kTmaGateUpConfigs[0]);

const TileConfig kTmaDownConfigs[] = {
    MOE_TMA_ROW("tma_m128n256", 128, 256, 4, false, 1),
    MOE_TMA_ROW("tma_m128n128", 128, 128, 6, false, 1),
    MOE_TMA_ROW("tma_m64n256", 64, 256, 4, false, 1),
    MOE_TMA_ROW("tma_m128n128s3", 128, 128, 3, false, 2),
    MOE_TMA_ROW("tma_m192n128", 192, 128, 5, false, 1),
    MOE_TMA_ROW("tma_m192n192", 192, 192, 4, false, 1),
    MOE_TMA_ROW("tma_m128n192", 128, 192, 5, false, 1),
    MOE_TMA_ROW("tma_m64n128", 64, 128, 4, false, 2),
    // Three CTAs per SM for a short K (DeepSeek-V3 TP8's I = 256: four K tiles a tile).
    MOE_TMA_ROW("tma_m64n128s3", 64, 128, 3, false, 3),
    MOE_TMA_BROW("tma_m128n256r", 128, 256, 4, 1),
    MOE_TMA_BROW("tma_m128n128s3r", 128, 128, 3, 2),
    MOE_TMA_BROW("tma_m192n192r", 192, 192, 4, 1),
    MOE_TMA_BROW("tma_m192n128r", 192, 128, 5, 1),
};
const int kTmaDownConfigCount = sizeof(kTmaDownConfigs) / sizeof(kTmaDownConfigs[0]);

// The persistent rows' down epilogue is wg_epilogue's, so they store rows in sorted order too.
#define MOE_PING_ROW(NAME, BN, S, GU)                                                       \
  TileConfig {                                                                            \
    NAME, 64, (GU) ? (BN) / 2 : (BN), 64, true, &launch_tma_ping<__nv_bfloat16, BN, S, GU>, \
        &launch_tma_ping<__half, BN, S, GU>, (GU), !(GU)                                  \
  }

// Persistent ping-pong rows (64-row tiles, a warpgroup each; tma_p64n<output cols>).
const TileConfig kPingGateUpConfigs[] = {
    MOE_PING_ROW("tma_p64n128", 256, 5, true),
    MOE_PING_ROW("tma_p64n64", 128, 8, true),
};
const int kPingGateUpConfigCount = sizeof(kPingGateUpConfigs) / sizeof(kPingGateUpConfigs[0]);

const TileConfig kPingDownConfigs[] = {
    MOE_PING_ROW("tma_p64n256", 256, 5, false),
    MOE_PING_ROW("tma_p64n128", 128, 8, false),
};
const int kPingDownConfigCount = sizeof(kPingDownConfigs) / sizeof(kPingDownConfigs[0]);

#define MOE_COOP_ROW(NAME, BN, S, GU)                                                       \
  TileConfig {                                                                            \
    NAME, 128, (GU) ? (BN) / 2 : (BN), 64, true, &launch_tma_coop<__nv_bfloat16, BN, S, GU>, \
        &launch_tma_coop<__half, BN, S, GU>, (GU), !(GU)                                  \
  }

// Persistent cooperative rows (128-row tiles shared by both warpgroups; tma_c128n<output cols>).
const TileConfig kCoopGateUpConfigs[] = {
    MOE_COOP_ROW("tma_c128n128", 256, 4, true),
    MOE_COOP_ROW("tma_c128n64", 128, 6, true),
    MOE_COOP_ROW("tma_c128n96", 192, 5, true),
};
const int kCoopGateUpConfigCount = sizeof(kCoopGateUpConfigs) / sizeof(kCoopGateUpConfigs[0]);

const TileConfig kCoopDownConfigs[] = {
    MOE_COOP_ROW("tma_c128n256", 256, 4, false),
    MOE_COOP_ROW("tma_c128n128", 128, 6, false),
    MOE_COOP_ROW("tma_c128n192", 192, 5, false),
};
const int kCoopDownConfigCount = sizeof(kCoopDownConfigs) / sizeof(kCoopDownConfigs[0]);

#define MOE_SWAP_ROW(NAME, BT, MW, S, GU)                                                   \
  TileConfig {                                                                            \
    NAME, BT, (GU) ? 64 : (MW) * 64, 64, true, &launch_tma_swap<__nv_bfloat16, BT, MW, S, GU>, \
        &launch_tma_swap<__half, BT, MW, S, GU>, (GU)                                     \
  }

// Swapped operands (weights as wgmma's M): few tokens per expert, weight-bandwidth bound.
const TileConfig kSwapGateUpConfigs[] = {
    MOE_SWAP_ROW("swap_t8n64", 8, 2, 6, true),
    MOE_SWAP_ROW("swap_t16n64", 16, 2, 6, true),
    MOE_SWAP_ROW("swap_t32n64", 32, 2, 5, true),
    MOE_SWAP_ROW("swap_t48n64", 48, 2, 4, true),
    MOE_SWAP_ROW("swap_t80n64", 80, 2, 4, true),
};
const int kSwapGateUpConfigCount = sizeof(kSwapGateUpConfigs) / sizeof(kSwapGateUpConfigs[0]);

const TileConfig kSwapDownConfigs[] = {
    MOE_SWAP_ROW("swap_t8n64", 8, 1, 10, false),
    MOE_SWAP_ROW("swap_t16n64", 16, 1, 10, false),
    MOE_SWAP_ROW("swap_t16n128", 16, 2, 6, false),
    MOE_SWAP_ROW("swap_t32n128", 32, 2, 5, false),
    // Four stages: enough for a short K (DeepSeek-V3 TP8's I = 256), three to five CTAs per SM.
    MOE_SWAP_ROW("swap_t16n64s4", 16, 1, 4, false),
    MOE_SWAP_ROW("swap_t16n128s4", 16, 2, 4, false),
    // 32-token tiles with fewer stages: three CTAs per SM.
    MOE_SWAP_ROW("swap_t32n128s3", 32, 2, 3, false),
    MOE_SWAP_ROW("swap_t32n64s6", 32, 1, 6, false),
    // An expert's 32 or 64 expected slots and their spread in one tile (gate-up's rows too).
    MOE_SWAP_ROW("swap_t48n128", 48, 2, 4, false),
    MOE_SWAP_ROW("swap_t80n128", 80, 2, 4, false),
    MOE_SWAP_ROW("swap_t80n64", 80, 1, 6, false),
};
const int kSwapDownConfigCount = sizeof(kSwapDownConfigs) / sizeof(kSwapDownConfigs[0]);

#undef MOE_SWAP_ROW
#undef MOE_COOP_ROW
#undef MOE_PING_ROW
#undef MOE_TMA_XROW
#undef MOE_TMA_BROW
#undef MOE_TMA_ROW

}  // namespace moe::kernels
