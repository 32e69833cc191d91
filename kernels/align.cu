// Token-slot to expert alignment (vLLM's moe_align_block_size, plus the rank's expert map and
// the replica choice of runtime/backend.h): slots grouped by local expert, each group padded to
// the GEMM tile height, and the expert of every tile. Up to kFusedMaxSlots slots (and
// kFusedMaxRows possible sorted rows) one block does it all with counters and the sorted rows
// in shared memory (one launch, no global atomics); beyond, three
// launches over chunks of kChunkSlots slots: each chunk's block counts its slots per expert in
// shared memory (each slot's rank among its chunk's slots of that expert kept) and takes its
// offset within each expert's group with one global atomic per expert; one block scans the
// totals into tiles; the chunks scatter their slots. A global atomic per slot (on one of a few
// hundred addresses) took 36 us for qwen3's 32768 slots on an H200. More local experts than
// kFusedMaxExperts: one global atomic per slot (count, scan, scatter). The last kernel of each
// path lets the next one (the gather, or a GEMM; launched dependent, each waits before it reads
// the tables) launch as it starts.
#include <algorithm>

#include "device_utils.cuh"

namespace moe::kernels {
namespace {

constexpr int kScanThreads = 1024;
// One block up to 16 slots a thread and 192 KB of sorted rows (fused_align_kernel), the chunks
// beyond.
constexpr int kFusedMaxSlots = 16 * kScanThreads, kFusedMaxExperts = 1024;
constexpr int kFusedMaxRows = 48 * 1024;
constexpr int kChunkSlots = 1024;  // one slot a thread: its loads are a dependent chain
int64_t chunk_count(int64_t slots) { return (slots + kChunkSlots - 1) / kChunkSlots; }

// The local expert of slot s (token s / top_k): its replica by token, then the rank's map.
__device__ __forceinline__ int slot_local_expert(const int32_t* topk_ids, const ReplicaTable& table,
                                                 int64_t s, int top_k) {
  const int t = int(s / top_k);
  const int logical = topk_ids[s];
  const int first = table.offsets[logical];
  const int n = table.offsets[logical + 1] - first;
  return n > 0 ? table.expert_map[table.physical[first + t % n]] : -1;
}

__global__ void count_kernel(const int32_t* topk_ids, ReplicaTable table, int tokens, int top_k,
                             int32_t* slot_expert, int32_t* counts) {
  const int64_t s = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (s >= int64_t(tokens) * top_k) return;
  const int local = slot_local_expert(topk_ids, table, s, top_k);
  slot_expert[s] = local;
  if (local >= 0) atomicAdd(&counts[local], 1);
}

// One block of kScanThreads: per-expert tile counts -> exclusive scan (warp shuffles, then the
// 32 warp totals) -> tile_expert, padding rows (unless sorted_slots is null: the caller fills
// them; each warp writes its lanes' experts' padding runs together, so the stores coalesce),
// and counts[e] turned into expert e's scatter cursor. `counts` in global or shared memory.
// Returns the tile count.
__device__ __forceinline__ int scan_tiles(int num_local, int block_m, int32_t* counts,
                                          int32_t* sorted_slots, int32_t* tile_expert,
                                          int32_t* num_tiles, int32_t* s_warp) {
  constexpr unsigned kAll = 0xffffffffu;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int per = (num_local + kScanThreads - 1) / kScanThreads;
  const int e0 = min(num_local, tid * per), e1 = min(num_local, e0 + per);
  int mine = 0;
  for (int e = e0; e < e1; ++e) mine += (counts[e] + block_m - 1) / block_m;
  int incl = mine;
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const int v = __shfl_up_sync(kAll, incl, off);
    if (lane >= off) incl += v;
  }
  if (lane == 31) s_warp[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    int w = s_warp[lane];
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
      const int v = __shfl_up_sync(kAll, w, off);
      if (lane >= off) w += v;
    }
    s_warp[lane] = w;  // inclusive prefix of the warp totals
  }
  __syncthreads();
  const int total = s_warp[kScanThreads / 32 - 1];
  int tile = incl - mine + (warp > 0 ? s_warp[warp - 1] : 0);  // exclusive prefix, in tiles
  for (int i = 0; i < per; ++i) {  // the same trip count in every lane: the shuffles below
    const int e = e0 + i;
    int64_t pad_begin = 0, pad_end = 0;
    if (e < e1) {
      const int c = counts[e];
      const int tiles = (c + block_m - 1) / block_m;
      for (int j = 0; j < tiles; ++j) tile_expert[tile + j] = e;
      const int64_t begin = int64_t(tile) * block_m;
      pad_begin = begin + c;
      pad_end = begin + int64_t(tiles) * block_m;
      counts[e] = int(begin);  // becomes the scatter cursor
      tile += tiles;
    }
    if (sorted_slots)
      for (int src = 0; src < 32; ++src) {
        const int64_t b = __shfl_sync(kAll, pad_begin, src), n = __shfl_sync(kAll, pad_end, src);
        for (int64_t r = b + lane; r < n; r += 32) sorted_slots[r] = -1;
      }
  }
  if (tid == 0) *num_tiles = total;
  return total;
}

__global__ void __launch_bounds__(kScanThreads)
    scan_kernel(int num_local, int block_m, int32_t* counts, int32_t* sorted_slots,
                int32_t* tile_expert, int32_t* num_tiles) {
  __shared__ int32_t s_warp[kScanThreads / 32];
  scan_tiles(num_local, block_m, counts, sorted_slots, tile_expert, num_tiles, s_warp);
}

// Count, scan and scatter in one block (slots <= kFusedMaxSlots, experts <= kFusedMaxExperts,
// the sorted rows <= kFusedMaxRows). Each thread owns PER slots (tid, tid + kScanThreads, ...)
// and resolves them round by round: all their ids, then their replica ranges, physical experts,
// local experts, so that the dependent loads of one slot overlap with the other slots'; the
// local experts stay in registers. The sorted rows are built in shared memory (padding filled,
// slots scattered there) and written out in one coalesced pass: scattered 4-byte global stores
// from one SM (a slot's row, each expert's padding run) took 24 us at qwen3's 8192 slots.
template <int PER>
__global__ void __launch_bounds__(kScanThreads)
    fused_align_kernel(const int32_t* __restrict__ topk_ids, ReplicaTable table, int tokens,
                       int top_k, int num_local, int block_m, int32_t* slot_expert,
                       int32_t* sorted_slots, int32_t* tile_expert, int32_t* num_tiles,
                       int32_t* slot_pos) {
  __shared__ int32_t s_warp[kScanThreads / 32];
  __shared__ int32_t s_counts[kFusedMaxExperts];
  extern __shared__ int4 s_sorted4[];  // [align_max_tiles * block_m] ints
  int32_t* s_sorted = reinterpret_cast<int32_t*>(s_sorted4);
  allow_dependents();  // the next kernel may launch now: it waits for this one's tables
  const int tid = threadIdx.x;
  const int slots = tokens * top_k;  // <= kFusedMaxSlots
  for (int e = tid; e < num_local; e += kScanThreads) s_counts[e] = 0;
  int v[PER], n[PER];  // v: logical expert, first replica, physical, local expert in turn
#pragma unroll
  for (int j = 0; j < PER; ++j) {
    const int s = tid + j * kScanThreads;
    v[j] = s < slots ? __ldg(topk_ids + s) : -1;
  }
#pragma unroll
  for (int j = 0; j < PER; ++j) {
    const int logical = v[j] < 0 ? 0 : v[j];
    const int first = __ldg(table.offsets + logical);
    n[j] = v[j] < 0 ? 0 : __ldg(table.offsets + logical + 1) - first;
    v[j] = first;
  }
  // Slot tid + j * kScanThreads is token t of rank r: stepped without a division per slot.
  const int step_t = kScanThreads / top_k, step_r = kScanThreads % top_k;
  int t = tid / top_k, r = tid % top_k;
#pragma unroll
  for (int j = 0; j < PER; ++j) {
    const int replica = n[j] > 1 ? t % n[j] : 0;  // one replica (the usual case): no modulo
    v[j] = n[j] > 0 ? __ldg(table.physical + v[j] + replica) : -1;
    t += step_t;
    r += step_r;
    if (r >= top_k) {
      r -= top_k;
      ++t;
    }
  }
#pragma unroll
  for (int j = 0; j < PER; ++j) v[j] = v[j] >= 0 ? __ldg(table.expert_map + v[j]) : -1;
  __syncthreads();  // s_counts zeroed
#pragma unroll
  for (int j = 0; j < PER; ++j) {
    const int s = tid + j * kScanThreads;
    if (s < slots) slot_expert[s] = v[j];
    if (v[j] >= 0) atomicAdd(&s_counts[v[j]], 1);
  }
  __syncthreads();
  const int rows = scan_tiles(num_local, block_m, s_counts, nullptr, tile_expert, num_tiles,
                              s_warp) * block_m;
  // Padding everywhere first, 16 bytes a store where the rows allow it.
  const bool vec = rows % 4 == 0 && (reinterpret_cast<uintptr_t>(sorted_slots) & 15) == 0;
  if (vec)
    for (int i = tid; i < rows / 4; i += kScanThreads) s_sorted4[i] = make_int4(-1, -1, -1, -1);
  else
    for (int i = tid; i < rows; i += kScanThreads) s_sorted[i] = -1;
  __syncthreads();  // the scan's cursors in s_counts, the padding in s_sorted
#pragma unroll
  for (int j = 0; j < PER; ++j)
    if (v[j] >= 0) {
      const int s = tid + j * kScanThreads, row = atomicAdd(&s_counts[v[j]], 1);
      s_sorted[row] = s;
      if (slot_pos) slot_pos[s] = row;  // consecutive slots: coalesced
    }
  __syncthreads();
  if (vec)
    for (int i = tid; i < rows / 4; i += kScanThreads)
      reinterpret_cast<int4*>(sorted_slots)[i] = s_sorted4[i];
  else
    for (int i = tid; i < rows; i += kScanThreads) sorted_slots[i] = s_sorted[i];
}

__global__ void scatter_kernel(const int32_t* slot_expert, int64_t slots, int32_t* cursor,
                               int32_t* sorted_slots, int32_t* slot_pos) {
  allow_dependents();
  const int64_t s = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (s >= slots) return;
  const int e = slot_expert[s];
  if (e < 0) return;
  const int row = atomicAdd(&cursor[e], 1);
  sorted_slots[row] = int32_t(s);
  if (slot_pos) slot_pos[s] = row;
}

// Chunk b's slots (one a thread): local expert, rank among the chunk's slots of that expert
// (shared-memory counters), and per expert the chunk's offset within the expert's group: one
// global atomic per chunk and expert (counts: the experts' totals, zeroed before).
__global__ void __launch_bounds__(kChunkSlots)
    chunk_count_kernel(const int32_t* topk_ids, ReplicaTable table, int tokens, int top_k,
                       int num_local, int32_t* slot_expert, int32_t* slot_rank, int32_t* counts,
                       int32_t* chunk_offset) {
  __shared__ int32_t s_counts[kFusedMaxExperts];
  const int tid = threadIdx.x;
  const int64_t slots = int64_t(tokens) * top_k, s = int64_t(blockIdx.x) * kChunkSlots + tid;
  for (int e = tid; e < num_local; e += kChunkSlots) s_counts[e] = 0;
  __syncthreads();
  if (s < slots) {
    const int local = slot_local_expert(topk_ids, table, s, top_k);
    slot_expert[s] = local;
    slot_rank[s] = local >= 0 ? atomicAdd(&s_counts[local], 1) : 0;
  }
  __syncthreads();
  for (int e = tid; e < num_local; e += kChunkSlots) {
    const int c = s_counts[e];
    chunk_offset[int64_t(blockIdx.x) * num_local + e] = c > 0 ? atomicAdd(&counts[e], c) : 0;
  }
}

// After scan_tiles turned counts into each expert's first row: every slot to its row.
__global__ void __launch_bounds__(kChunkSlots)
    chunk_scatter_kernel(const int32_t* slot_expert, const int32_t* slot_rank, int64_t slots,
                         int num_local, const int32_t* expert_begin, const int32_t* chunk_offset,
                         int32_t* sorted_slots, int32_t* slot_pos) {
  allow_dependents();
  const int64_t s = int64_t(blockIdx.x) * kChunkSlots + threadIdx.x;
  if (s >= slots) return;
  const int e = slot_expert[s];
  if (e < 0) return;
  const int row =
      expert_begin[e] + chunk_offset[int64_t(blockIdx.x) * num_local + e] + slot_rank[s];
  sorted_slots[row] = int32_t(s);
  if (slot_pos) slot_pos[s] = row;
}

__global__ void identity_kernel(int tokens, int block_m, int32_t* sorted_slots,
                                int32_t* tile_expert, int32_t* num_tiles) {
  const int tiles = (tokens + block_m - 1) / block_m;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < int64_t(tiles) * block_m) sorted_slots[i] = i < tokens ? int32_t(i) : -1;
  if (i < tiles) tile_expert[i] = 0;
  if (i == 0) *num_tiles = tiles;
}

}  // namespace

int64_t align_scratch_ints(int slots, int num_local) {
  const int64_t n = std::max(0, num_local) + 1;
  if (num_local > kFusedMaxExperts) return n;
  // The chunks' ranks and counts (also where one block would do: that depends on block_m).
  return n + int64_t(std::max(slots, 0)) + chunk_count(std::max(slots, 0)) * num_local;
}

int align_max_tiles(int slots, int num_local, int block_m) {
  if (slots <= 0 || num_local <= 0 || block_m <= 0) return 1;
  const int64_t bound =
      (int64_t(slots) + block_m - 1) / block_m + std::min<int64_t>(num_local, slots);
  return int(std::max<int64_t>(1, std::min<int64_t>(bound, slots)));
}

cudaError_t launch_align(const int32_t* topk_ids, const ReplicaTable& table, int tokens,
                         int top_k, int num_local, int block_m, const AlignBuffers& b,
                         cudaStream_t stream) {
  if (tokens < 0 || top_k <= 0 || num_local <= 0 || block_m <= 0) return cudaErrorInvalidValue;
  const int64_t slots = int64_t(tokens) * top_k;
  const int64_t rows = slots <= kFusedMaxSlots
                           ? int64_t(align_max_tiles(int(slots), num_local, block_m)) * block_m
                           : 0;  // (unused)
  if (slots <= kFusedMaxSlots && num_local <= kFusedMaxExperts && rows <= kFusedMaxRows) {
    const int per = int((slots + kScanThreads - 1) / kScanThreads);  // slots a thread
    using Kernel = void (*)(const int32_t*, ReplicaTable, int, int, int, int, int32_t*, int32_t*,
                            int32_t*, int32_t*, int32_t*);
    static const Kernel kernels[4] = {fused_align_kernel<2>, fused_align_kernel<4>,
                                      fused_align_kernel<8>, fused_align_kernel<16>};
    static const cudaError_t attr = [] {  // the sorted rows' dynamic shared memory
      cudaError_t e = cudaSuccess;
      for (Kernel k : kernels)
        if (e == cudaSuccess)
          e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   int(kFusedMaxRows * sizeof(int32_t)));
      return e;
    }();
    if (attr != cudaSuccess) return attr;
    const Kernel kernel = kernels[per <= 2 ? 0 : per <= 4 ? 1 : per <= 8 ? 2 : 3];
    kernel<<<1, kScanThreads, size_t(rows) * sizeof(int32_t), stream>>>(
        topk_ids, table, tokens, top_k, num_local, block_m, b.slot_expert, b.sorted_slots,
        b.tile_expert, b.num_tiles, b.slot_pos);
    return cudaGetLastError();
  }
  cudaError_t err = cudaMemsetAsync(b.counts, 0, sizeof(int32_t) * (num_local + 1), stream);
  if (err != cudaSuccess) return err;
  if (num_local <= kFusedMaxExperts) {  // chunks, shared-memory counters (scratch: see above)
    int32_t* rank = b.counts + num_local + 1;
    int32_t* chunk_offset = rank + slots;
    const unsigned chunks = unsigned(chunk_count(slots));
    chunk_count_kernel<<<chunks, kChunkSlots, 0, stream>>>(topk_ids, table, tokens, top_k,
                                                           num_local, b.slot_expert, rank,
                                                           b.counts, chunk_offset);
    if ((err = cudaGetLastError()) != cudaSuccess) return err;
    scan_kernel<<<1, kScanThreads, 0, stream>>>(num_local, block_m, b.counts, b.sorted_slots,
                                                b.tile_expert, b.num_tiles);
    if ((err = cudaGetLastError()) != cudaSuccess) return err;
    chunk_scatter_kernel<<<chunks, kChunkSlots, 0, stream>>>(b.slot_expert, rank, slots, num_local,
                                                             b.counts, chunk_offset,
                                                             b.sorted_slots, b.slot_pos);
    return cudaGetLastError();
  }
  if (slots > 0) {
    count_kernel<<<unsigned((slots + 255) / 256), 256, 0, stream>>>(topk_ids, table, tokens,
                                                                    top_k, b.slot_expert, b.counts);
    if ((err = cudaGetLastError()) != cudaSuccess) return err;
  }
  scan_kernel<<<1, kScanThreads, 0, stream>>>(num_local, block_m, b.counts, b.sorted_slots,
                                              b.tile_expert, b.num_tiles);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  if (slots > 0) {
    scatter_kernel<<<unsigned((slots + 255) / 256), 256, 0, stream>>>(
        b.slot_expert, slots, b.counts, b.sorted_slots, b.slot_pos);
    err = cudaGetLastError();
  }
  return err;
}

cudaError_t launch_identity_align(int tokens, int block_m, int32_t* sorted_slots,
                                  int32_t* tile_expert, int32_t* num_tiles, cudaStream_t stream) {
  if (tokens < 0 || block_m <= 0) return cudaErrorInvalidValue;
  const int64_t n = std::max<int64_t>(1, (int64_t(tokens) + block_m - 1) / block_m * block_m);
  identity_kernel<<<unsigned((n + 255) / 256), 256, 0, stream>>>(tokens, block_m, sorted_slots,
                                                                 tile_expert, num_tiles);
  return cudaGetLastError();
}

}  // namespace moe::kernels
