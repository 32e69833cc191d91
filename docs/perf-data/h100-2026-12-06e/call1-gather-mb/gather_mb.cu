// Microbenchmark: token-order gather variants at qwen3-30b 16384 tokens (H=2048, E=128, k=8).
#include <cuda_runtime.h>
#include <cstdio>
#include <cstdint>
#include <vector>
#include <random>
#include <algorithm>
#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("%s: %s\n", #x, cudaGetErrorString(e)); return 1; } } while (0)

template <int MODE>
__device__ __forceinline__ void st16(uint4* p, uint4 v) {
  if constexpr (MODE == 0) *p = v;
  else if constexpr (MODE == 1) __stcs(p, v);
  else if constexpr (MODE == 2) __stcg(p, v);
  else {
    uint64_t pol;
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(pol));
    asm volatile("st.global.L2::cache_hint.v4.u32 [%0], {%1,%2,%3,%4}, %5;" :: "l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w), "l"(pol) : "memory");
  }
}

// PIECE: uint4 per lane per piece (4 = current 2 KB pieces, 8 = whole 4 KB row)
template <int PIECE, int MODE>
__global__ void gather_tok(const uint4* __restrict__ x, int k8, int tokens, int top_k,
                           const int32_t* __restrict__ pos_of_slot, uint4* __restrict__ out) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t(gridDim.x) * blockDim.x / 32;
  for (int64_t t = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; t < tokens; t += warps) {
    int pos = -1;
    if (lane < top_k) pos = pos_of_slot[t * top_k + lane];
    const uint32_t live = __ballot_sync(0xffffffffu, pos >= 0);
    const uint4* src = x + t * k8;
    for (int c0 = 0; c0 < k8; c0 += 32 * PIECE) {
      uint4 v[PIECE];
#pragma unroll
      for (int j = 0; j < PIECE; ++j) {
        const int c = c0 + lane + 32 * j;
        if (c < k8) v[j] = __ldg(src + c);
      }
      for (uint32_t m = live; m != 0; m &= m - 1) {
        const int q = __shfl_sync(0xffffffffu, pos, __ffs(m) - 1);
        uint4* dst = out + int64_t(q) * k8;
#pragma unroll
        for (int j = 0; j < PIECE; ++j) {
          const int c = c0 + lane + 32 * j;
          if (c < k8) st16<MODE>(dst + c, v[j]);
        }
      }
    }
  }
}

// Half a warp per (token, slot)? Variant: one warp per token, lanes split over destinations:
// 8 destinations x 4 lanes... (each lane group of 4 writes one destination row: 4 lanes x 16B = 64B
// per instruction per destination, 8 destinations per instruction = 512 B).
__global__ void gather_tok_split(const uint4* __restrict__ x, int k8, int tokens, int top_k,
                                 const int32_t* __restrict__ pos_of_slot, uint4* __restrict__ out) {
  __shared__ uint4 s_row[8][256 + 1];
  const int lane = threadIdx.x % 32, w = threadIdx.x / 32;
  const int64_t warps = int64_t(gridDim.x) * blockDim.x / 32;
  for (int64_t t = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; t < tokens; t += warps) {
    const uint4* src = x + t * k8;
#pragma unroll
    for (int j = 0; j < 8; ++j) s_row[w][lane + 32 * j] = __ldg(src + lane + 32 * j);
    __syncwarp();
    const int d = lane / 4, sub = lane % 4;
    const int q = pos_of_slot[t * top_k + d];
    uint4* dst = out + int64_t(q) * k8;
#pragma unroll 8
    for (int c = sub; c < k8; c += 4) dst[c] = s_row[w][c];
    __syncwarp();
  }
}

template <int MODE>
__device__ __forceinline__ uint4 ld16(const uint4* p) {
  if constexpr (MODE == 0) return __ldg(p);
  else {
    uint4 v;
    uint64_t pol;
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(pol));
    asm volatile("ld.global.nc.L1::no_allocate.L2::cache_hint.v4.u32 {%0,%1,%2,%3}, [%4], %5;" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p), "l"(pol));
    return v;
  }
}
// Whole row in registers (k8 == 256), the next token's row loaded before this one's stores.
template <int LMODE>
__global__ void gather_pf(const uint4* __restrict__ x, int k8, int tokens, int top_k,
                          const int32_t* __restrict__ pos_of_slot, uint4* __restrict__ out) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t(gridDim.x) * blockDim.x / 32;
  int64_t t = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  uint4 v[8];
  int pos = -1;
  if (t < tokens) {
    if (lane < top_k) pos = pos_of_slot[t * top_k + lane];
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] = ld16<LMODE>(x + t * k8 + lane + 32 * j);
  }
  for (; t < tokens; t += warps) {
    const int64_t tn = t + warps;
    uint4 w[8];
    int posn = -1;
    if (tn < tokens) {
      if (lane < top_k) posn = pos_of_slot[tn * top_k + lane];
#pragma unroll
      for (int j = 0; j < 8; ++j) w[j] = ld16<LMODE>(x + tn * k8 + lane + 32 * j);
    }
    const uint32_t live = __ballot_sync(0xffffffffu, pos >= 0);
    for (uint32_t m = live; m != 0; m &= m - 1) {
      const int q = __shfl_sync(0xffffffffu, pos, __ffs(m) - 1);
      uint4* dst = out + int64_t(q) * k8;
#pragma unroll
      for (int j = 0; j < 8; ++j) st16<3>(dst + lane + 32 * j, v[j]);
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] = w[j];
    pos = posn;
  }
}

template <int MODE>
__global__ void write_only_m(int k8, int tokens, int top_k, const int32_t* __restrict__ pos_of_slot,
                           uint4* __restrict__ out) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t(gridDim.x) * blockDim.x / 32;
  for (int64_t t = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; t < tokens; t += warps) {
    int pos = -1;
    if (lane < top_k) pos = pos_of_slot[t * top_k + lane];
    const uint4 v = make_uint4(t, 1, 2, 3);
    for (int j = 0; j < top_k; ++j) {
      const int q = __shfl_sync(0xffffffffu, pos, j);
      uint4* dst = out + int64_t(q) * k8;
      for (int c = lane; c < k8; c += 32) st16<MODE>(dst + c, v);
    }
  }
}

__global__ void write_only(int k8, int tokens, int top_k, const int32_t* __restrict__ pos_of_slot,
                           uint4* __restrict__ out) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t(gridDim.x) * blockDim.x / 32;
  for (int64_t t = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; t < tokens; t += warps) {
    int pos = -1;
    if (lane < top_k) pos = pos_of_slot[t * top_k + lane];
    const uint4 v = make_uint4(t, 1, 2, 3);
    for (int j = 0; j < top_k; ++j) {
      const int q = __shfl_sync(0xffffffffu, pos, j);
      uint4* dst = out + int64_t(q) * k8;
      for (int c = lane; c < k8; c += 32) dst[c] = v;
    }
  }
}

__global__ void seq_write(uint4* out, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = make_uint4(i, 1, 2, 3);
}

int main() {
  const int T = 16384, H = 2048, E = 128, K = 8, BM = 192;
  const int k8 = H / 8;
  std::mt19937 rng(1);
  std::vector<int> expert_of(size_t(T) * K);
  std::vector<int> perm(E);
  for (int i = 0; i < E; ++i) perm[i] = i;
  for (int t = 0; t < T; ++t) {
    for (int j = 0; j < K; ++j) { int r = j + rng() % (E - j); std::swap(perm[j], perm[r]); expert_of[t * K + j] = perm[j]; }
  }
  std::vector<int> cnt(E, 0), start(E);
  for (int e : expert_of) cnt[e]++;
  int64_t rows = 0;
  for (int e = 0; e < E; ++e) { start[e] = rows; rows += (cnt[e] + BM - 1) / BM * BM; }
  std::vector<int> cur = start, pos(size_t(T) * K);
  for (int s = 0; s < T * K; ++s) pos[s] = cur[expert_of[s]]++;
  printf("rows %lld (%.1f MB sorted copy)\n", (long long)rows, rows * H * 2 / 1e6);
  uint4 *x, *out, *big;
  int32_t* d_pos;
  CK(cudaMalloc(&x, size_t(T) * H * 2));
  CK(cudaMalloc(&out, size_t(rows) * H * 2));
  CK(cudaMalloc(&big, size_t(1) << 30));
  CK(cudaMalloc(&d_pos, pos.size() * 4));
  CK(cudaMemcpy(d_pos, pos.data(), pos.size() * 4, cudaMemcpyHostToDevice));
  { std::vector<uint16_t> hx(size_t(T) * H); for (size_t i = 0; i < hx.size(); ++i) hx[i] = uint16_t(i * 2654435761u >> 7); CK(cudaMemcpy(x, hx.data(), hx.size() * 2, cudaMemcpyHostToDevice)); }
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0); cudaEventCreate(&e1);
  const double gather_bytes = double(T) * H * 2 * (1 + K);
  auto timeit = [&](const char* name, double bytes, auto&& f) {
    for (int i = 0; i < 3; ++i) f();
    std::vector<float> ms;
    for (int r = 0; r < 25; ++r) {
      cudaEventRecord(e0); f(); cudaEventRecord(e1); cudaEventSynchronize(e1);
      float m; cudaEventElapsedTime(&m, e0, e1); ms.push_back(m);
    }
    std::sort(ms.begin(), ms.end());
    const double us = ms[ms.size() / 2] * 1e3;
    printf("%-34s %8.1f us  %6.3f TB/s  (min %.1f)\n", name, us, bytes / us / 1e6, ms[0] * 1e3);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) printf("  error %s\n", cudaGetErrorString(err));
  };
  const int64_t half = (int64_t(1) << 30) / 2;
  timeit("memcpy D2D 512 MB (r+w)", 2.0 * half, [&] { cudaMemcpyAsync(big, (char*)big + half, half, cudaMemcpyDeviceToDevice); });
  timeit("memset 537 MB", double(rows) * H * 2, [&] { cudaMemsetAsync(out, 0, size_t(rows) * H * 2); });
  timeit("seq_write kernel 537 MB", double(rows) * H * 2, [&] { seq_write<<<132 * 16, 256>>>(out, rows * k8); });
  timeit("write_only scattered rows", double(T) * H * 2 * K, [&] { write_only<<<2048, 256>>>(k8, T, K, d_pos, out); });
  timeit("gather piece4 plain (current)", gather_bytes, [&] { gather_tok<4, 0><<<2048, 256>>>(x, k8, T, K, d_pos, out); });
  timeit("gather piece8 plain", gather_bytes, [&] { gather_tok<8, 0><<<2048, 256>>>(x, k8, T, K, d_pos, out); });
  timeit("gather piece4 st.cs", gather_bytes, [&] { gather_tok<4, 1><<<2048, 256>>>(x, k8, T, K, d_pos, out); });
  timeit("gather piece4 st.cg", gather_bytes, [&] { gather_tok<4, 2><<<2048, 256>>>(x, k8, T, K, d_pos, out); });
  timeit("gather piece4 evict_first", gather_bytes, [&] { gather_tok<4, 3><<<2048, 256>>>(x, k8, T, K, d_pos, out); });
  timeit("gather piece8 evict_first", gather_bytes, [&] { gather_tok<8, 3><<<2048, 256>>>(x, k8, T, K, d_pos, out); });
  timeit("gather piece4 plain grid 1056", gather_bytes, [&] { gather_tok<4, 0><<<1056, 256>>>(x, k8, T, K, d_pos, out); });
  timeit("gather piece4 plain grid 4096x128", gather_bytes, [&] { gather_tok<4, 0><<<4096, 128>>>(x, k8, T, K, d_pos, out); });
  timeit("write_only evict_first", double(T) * H * 2 * K, [&] { write_only_m<3><<<2048, 256>>>(k8, T, K, d_pos, out); });
  timeit("gather pf ef-store", gather_bytes, [&] { gather_pf<0><<<2048, 256>>>(x, k8, T, K, d_pos, out); });
  timeit("gather pf ef-store ef-load", gather_bytes, [&] { gather_pf<1><<<2048, 256>>>(x, k8, T, K, d_pos, out); });
  timeit("gather pf grid 1056", gather_bytes, [&] { gather_pf<1><<<1056, 256>>>(x, k8, T, K, d_pos, out); });
  timeit("gather pf grid 528", gather_bytes, [&] { gather_pf<1><<<528, 256>>>(x, k8, T, K, d_pos, out); });
  timeit("gather piece8 ef grid 1056", gather_bytes, [&] { gather_tok<8, 3><<<1056, 256>>>(x, k8, T, K, d_pos, out); });
  timeit("gather piece8 ef 4096x128", gather_bytes, [&] { gather_tok<8, 3><<<4096, 128>>>(x, k8, T, K, d_pos, out); });
  timeit("gather split (smem row, 8 dst/instr)", gather_bytes, [&] { gather_tok_split<<<2048, 256>>>(x, k8, T, K, d_pos, out); });
  // check: every variant must write the same rows: compare piece8 vs piece4
  std::vector<uint16_t> a(size_t(rows) * H), b(a.size());
  CK(cudaMemset(out, 0, size_t(rows) * H * 2));
  gather_tok<4, 0><<<2048, 256>>>(x, k8, T, K, d_pos, out);
  CK(cudaMemcpy(a.data(), out, a.size() * 2, cudaMemcpyDeviceToHost));
  CK(cudaMemset(out, 0, size_t(rows) * H * 2));
  gather_tok_split<<<2048, 256>>>(x, k8, T, K, d_pos, out);
  CK(cudaMemcpy(b.data(), out, b.size() * 2, cudaMemcpyDeviceToHost));
  printf("split == current: %s\n", a == b ? "yes" : "NO");
  CK(cudaMemset(out, 0, size_t(rows) * H * 2));
  gather_pf<1><<<1056, 256>>>(x, k8, T, K, d_pos, out);
  CK(cudaMemcpy(b.data(), out, b.size() * 2, cudaMemcpyDeviceToHost));
  printf("pf == current: %s\n", a == b ? "yes" : "NO");
  return 0;
}
