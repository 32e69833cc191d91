// Token-slot to expert alignment (vLLM's moe_align_block_size, plus the rank's expert map and
// the replica choice of runtime/backend.h): slots grouped by local expert, each group padded to
// the GEMM tile height, and the expert of every tile. Up to kFusedMaxSlots slots one block does
// it all with counters in shared memory (one launch, no global atomics); beyond, three
// launches over chunks of kChunkSlots slots: each chunk's block counts its slots per expert in
// shared memory (each slot's rank among its chunk's slots of that expert kept) and takes its
// offset within each expert's group with one global atomic per expert; one block scans the
// totals into tiles; the chunks scatter their slots. A global atomic per slot (on one of a few
// hundred addresses) took 36 us for qwen3's 32768 slots on an H200. More local experts than
// kFusedMaxExperts: one global atomic per slot (count, scan, scatter).
#include <algorithm>

#include "device_utils.cuh"

namespace moe::kernels {
namespace {

constexpr int kScanThreads = 1024;
// One block wins while each thread has a slot or two: its slots' dependent loads (ids, replica
// table, expert map) run one after another. H200 (`bench --breakdown`, align alone): 4-8 us up
// to 2048 slots; at 8192 slots 22-25 us in one block against 14-18 us in three launches.
constexpr int kFusedMaxSlots = 2048, kFusedMaxExperts = 1024;
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

// One block of kScanThreads: per-expert tile counts -> exclusive scan -> tile_expert, padding
// rows, and counts[e] turned into expert e's scatter cursor. `counts` in global or shared memory.
__device__ __forceinline__ void scan_tiles(int num_local, int block_m, int32_t* counts,
                                           int32_t* sorted_slots, int32_t* tile_expert,
                                           int32_t* num_tiles, int32_t* s_sum) {
  const int tid = threadIdx.x;
  const int per = (num_local + kScanThreads - 1) / kScanThreads;
  const int e0 = min(num_local, tid * per), e1 = min(num_local, e0 + per);
  int mine = 0;
  for (int e = e0; e < e1; ++e) mine += (counts[e] + block_m - 1) / block_m;
  s_sum[tid] = mine;
  __syncthreads();
  for (int off = 1; off < kScanThreads; off <<= 1) {
    const int v = tid >= off ? s_sum[tid - off] : 0;
    __syncthreads();
    s_sum[tid] += v;
    __syncthreads();
  }
  int tile = s_sum[tid] - mine;  // exclusive prefix, in tiles
  for (int e = e0; e < e1; ++e) {
    const int c = counts[e];
    const int tiles = (c + block_m - 1) / block_m;
    for (int i = 0; i < tiles; ++i) tile_expert[tile + i] = e;
    const int64_t begin = int64_t(tile) * block_m;
    for (int64_t r = begin + c; r < begin + int64_t(tiles) * block_m; ++r) sorted_slots[r] = -1;
    counts[e] = int(begin);  // becomes the scatter cursor
    tile += tiles;
  }
  if (tid == kScanThreads - 1) *num_tiles = s_sum[tid];
}

__global__ void __launch_bounds__(kScanThreads)
    scan_kernel(int num_local, int block_m, int32_t* counts, int32_t* sorted_slots,
                int32_t* tile_expert, int32_t* num_tiles) {
  __shared__ int32_t s_sum[kScanThreads];
  scan_tiles(num_local, block_m, counts, sorted_slots, tile_expert, num_tiles, s_sum);
}

// Count, scan and scatter in one block (slots <= kFusedMaxSlots, experts <= kFusedMaxExperts).
// Each thread scatters the slots it counted, reading back its own slot_expert writes.
__global__ void __launch_bounds__(kScanThreads)
    fused_align_kernel(const int32_t* topk_ids, ReplicaTable table, int tokens, int top_k,
                       int num_local, int block_m, int32_t* slot_expert, int32_t* sorted_slots,
                       int32_t* tile_expert, int32_t* num_tiles) {
  __shared__ int32_t s_sum[kScanThreads];
  __shared__ int32_t s_counts[kFusedMaxExperts];
  const int tid = threadIdx.x;
  const int64_t slots = int64_t(tokens) * top_k;
  for (int e = tid; e < num_local; e += kScanThreads) s_counts[e] = 0;
  __syncthreads();
  for (int64_t s = tid; s < slots; s += kScanThreads) {
    const int local = slot_local_expert(topk_ids, table, s, top_k);
    slot_expert[s] = local;
    if (local >= 0) atomicAdd(&s_counts[local], 1);
  }
  __syncthreads();
  scan_tiles(num_local, block_m, s_counts, sorted_slots, tile_expert, num_tiles, s_sum);
  __syncthreads();
  for (int64_t s = tid; s < slots; s += kScanThreads) {
    const int e = slot_expert[s];
    if (e >= 0) sorted_slots[atomicAdd(&s_counts[e], 1)] = int32_t(s);
  }
}

__global__ void scatter_kernel(const int32_t* slot_expert, int64_t slots, int32_t* cursor,
                               int32_t* sorted_slots) {
  const int64_t s = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (s >= slots) return;
  const int e = slot_expert[s];
  if (e >= 0) sorted_slots[atomicAdd(&cursor[e], 1)] = int32_t(s);
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
                         int32_t* sorted_slots) {
  const int64_t s = int64_t(blockIdx.x) * kChunkSlots + threadIdx.x;
  if (s >= slots) return;
  const int e = slot_expert[s];
  if (e >= 0)
    sorted_slots[expert_begin[e] + chunk_offset[int64_t(blockIdx.x) * num_local + e] + slot_rank[s]] =
        int32_t(s);
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
  if (slots <= kFusedMaxSlots || num_local > kFusedMaxExperts) return n;
  return n + int64_t(slots) + chunk_count(slots) * num_local;  // + ranks + chunk counts
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
  if (slots <= kFusedMaxSlots && num_local <= kFusedMaxExperts) {
    fused_align_kernel<<<1, kScanThreads, 0, stream>>>(topk_ids, table, tokens, top_k, num_local,
                                                       block_m, b.slot_expert, b.sorted_slots,
                                                       b.tile_expert, b.num_tiles);
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
                                                             b.sorted_slots);
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
    scatter_kernel<<<unsigned((slots + 255) / 256), 256, 0, stream>>>(b.slot_expert, slots,
                                                                      b.counts, b.sorted_slots);
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
