// Routing on the GPU (model/profile.h RoutingSpec, in its documented order of operations), the
// input conversion, and the fill kernels used to poison outputs and make synthetic weights.
#include <cfloat>
#include <climits>
#include <limits>

#include "device_utils.cuh"

namespace moe::kernels {
namespace {

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Larger value wins; on equal values the lower index (the tie rule of profile.h).
__device__ __forceinline__ void warp_argmax(float& v, int& i) {
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int oi = __shfl_xor_sync(0xffffffffu, i, o);
    if (ov > v || (ov == v && oi < i)) {
      v = ov;
      i = oi;
    }
  }
}

template <typename T>
__global__ void convert_input_kernel(const float* x, int tokens, int hidden, T* out, int ld) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(tokens) * ld) return;
  const int64_t t = i / ld;
  const int c = int(i - t * ld);
  out[i] = ElemOps<T>::from_float(c < hidden ? x[t * hidden + c] : 0.0f);
}

__global__ void fill_f32_kernel(float* p, int64_t n, float v) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) p[i] = v;
}
__global__ void fill_u16_kernel(uint16_t* p, int64_t n, uint16_t v) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) p[i] = v;
}

__device__ __forceinline__ uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
__device__ __forceinline__ float normal_at(uint64_t seed, int64_t i) {
  const uint64_t h = splitmix64(seed * 0x100000001b3ull + uint64_t(i));
  const float u1 = (float((h >> 40) & 0xffffff) + 1.0f) * (1.0f / 16777217.0f);  // (0, 1]
  const float u2 = float(h & 0xffffff) * (1.0f / 16777216.0f);
  return sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
}
template <typename T>
__global__ void fill_normal_kernel(T* p, int64_t n, float stddev, uint64_t seed) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) p[i] = ElemOps<T>::from_float(stddev * normal_at(seed, i));
}
__global__ void fill_normal_f32_kernel(float* p, int64_t n, float stddev, uint64_t seed) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) p[i] = stddev * normal_at(seed, i);
}

// One warp per (token, expert): a dot product over H in fp32.
__global__ void router_logits_kernel(const float* x, const float* w, const float* bias, int tokens,
                                     int hidden, int experts, float* logits) {
  const int64_t pair = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (pair >= int64_t(tokens) * experts) return;
  const int64_t t = pair / experts;
  const int e = int(pair - t * experts);
  const float* xr = x + t * hidden;
  const float* wr = w + int64_t(e) * hidden;
  float acc = 0.0f;
  for (int h = lane; h < hidden; h += 32) acc = fmaf(xr[h], wr[h], acc);
  acc = warp_sum(acc);
  if (lane == 0) logits[pair] = acc + (bias ? bias[e] : 0.0f);
}

__global__ void shared_gate_kernel(const float* x, const float* gate, int tokens, int hidden,
                                   float* weights) {
  const int t = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (t >= tokens) return;
  if (!gate) {
    if (lane == 0) weights[t] = 1.0f;
    return;
  }
  float acc = 0.0f;
  for (int h = lane; h < hidden; h += 32) acc = fmaf(x[int64_t(t) * hidden + h], gate[h], acc);
  acc = warp_sum(acc);
  if (lane == 0) weights[t] = 1.0f / (1.0f + expf(-acc));
}

constexpr int kTopkWarps = 4;

// One warp per token. Selected experts are marked NaN in `sel` so no later pick sees them.
__global__ void __launch_bounds__(kTopkWarps * 32)
    topk_kernel(const float* logits, const float* correction_bias, RoutingParams p, int tokens,
                int experts, int top_k, int32_t* ids, float* weights) {
  __shared__ float s_score[kTopkWarps][kMaxRoutedExperts];
  __shared__ float s_sel[kTopkWarps][kMaxRoutedExperts];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int t = blockIdx.x * kTopkWarps + warp;
  if (t >= tokens) return;
  float* score = s_score[warp];
  float* sel = s_sel[warp];
  const float* lg = logits + int64_t(t) * experts;

  if (p.score == ScoreKind::Softmax) {
    float m = -FLT_MAX;
    for (int e = lane; e < experts; e += 32) m = fmaxf(m, lg[e]);
    m = warp_max(m);
    float s = 0.0f;
    for (int e = lane; e < experts; e += 32) {
      const float v = expf(lg[e] - m);
      score[e] = v;
      s += v;
    }
    s = warp_sum(s);
    const float inv = 1.0f / s;
    for (int e = lane; e < experts; e += 32) score[e] *= inv;
  } else {
    for (int e = lane; e < experts; e += 32) score[e] = 1.0f / (1.0f + expf(-lg[e]));
  }
  for (int e = lane; e < experts; e += 32)
    sel[e] = score[e] + (correction_bias ? correction_bias[e] : 0.0f);
  __syncwarp();

  if (p.n_group > 1) {
    // Group scores (lane g owns group g; n_group <= 32), keep the topk_group best groups.
    const int gsize = experts / p.n_group;
    float gscore = -INFINITY;
    if (lane < p.n_group) {
      float b1 = -INFINITY, b2 = -INFINITY;
      for (int j = 0; j < gsize; ++j) {
        const float v = sel[lane * gsize + j];
        if (v > b1) {
          b2 = b1;
          b1 = v;
        } else if (v > b2) {
          b2 = v;
        }
      }
      gscore = (p.group_score == GroupKind::SumTop2 && gsize > 1) ? b1 + b2 : b1;
    }
    unsigned keep = 0;
    for (int r = 0; r < p.topk_group; ++r) {
      float v = (lane < p.n_group && !((keep >> lane) & 1u)) ? gscore : -INFINITY;
      int i = lane < p.n_group && !((keep >> lane) & 1u) ? lane : INT_MAX;
      warp_argmax(v, i);
      if (i < 32) keep |= 1u << i;
    }
    __syncwarp();  // every lane's group reads of sel finish before any lane masks it
    for (int e = lane; e < experts; e += 32)
      if (!((keep >> (e / gsize)) & 1u)) sel[e] = -INFINITY;
    __syncwarp();
  }

  int my_id = 0;
  float my_w = 0.0f;
  for (int k = 0; k < top_k; ++k) {
    float bv = -INFINITY;
    int bi = INT_MAX;
    for (int e = lane; e < experts; e += 32) {
      const float v = sel[e];
      if (v == v && (v > bv || (v == bv && e < bi))) {
        bv = v;
        bi = e;
      }
    }
    warp_argmax(bv, bi);
    if (bi == INT_MAX) bi = 0;  // unreachable with top_k <= experts; keeps the index in range
    if (lane == k) {
      my_id = bi;
      my_w = score[bi];
    }
    __syncwarp();
    if (lane == 0) sel[bi] = __int_as_float(0x7fc00000);  // NaN: taken
    __syncwarp();
  }
  const float sum = warp_sum(lane < top_k ? my_w : 0.0f);
  if (p.renormalize) my_w /= fmaxf(sum, p.renorm_min);
  my_w *= p.routed_scaling_factor;
  if (lane < top_k) {
    ids[int64_t(t) * top_k + lane] = my_id;
    weights[int64_t(t) * top_k + lane] = my_w;
  }
}

__global__ void wait_for_flag_kernel(const volatile int* flag) {
  while (*flag == 0) __nanosleep(1000);
}

inline unsigned blocks_for(int64_t n, int threads) { return unsigned((n + threads - 1) / threads); }

}  // namespace

cudaError_t launch_convert_input(const float* x, int tokens, int hidden, ElemType dtype,
                                 void* x_elem, int ld, cudaStream_t stream) {
  if (tokens < 0 || hidden < 0 || ld < hidden) return cudaErrorInvalidValue;
  const int64_t n = int64_t(tokens) * ld;
  if (n == 0) return cudaSuccess;
  if (dtype == ElemType::BF16)
    convert_input_kernel<__nv_bfloat16><<<blocks_for(n, 256), 256, 0, stream>>>(
        x, tokens, hidden, static_cast<__nv_bfloat16*>(x_elem), ld);
  else
    convert_input_kernel<__half><<<blocks_for(n, 256), 256, 0, stream>>>(
        x, tokens, hidden, static_cast<__half*>(x_elem), ld);
  return cudaGetLastError();
}

cudaError_t launch_wait_for_flag(const int* flag, cudaStream_t stream) {
  if (!flag) return cudaErrorInvalidValue;
  wait_for_flag_kernel<<<1, 1, 0, stream>>>(flag);
  return cudaGetLastError();
}

cudaError_t launch_fill_nan_f32(float* p, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  fill_f32_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(p, n, std::numeric_limits<float>::quiet_NaN());
  return cudaGetLastError();
}

cudaError_t launch_fill_nan_elem(void* p, ElemType dtype, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  const uint16_t nan = dtype == ElemType::BF16 ? 0x7fc0 : 0x7e00;
  fill_u16_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(static_cast<uint16_t*>(p), n, nan);
  return cudaGetLastError();
}

cudaError_t launch_fill_normal(void* p, ElemType dtype, int64_t n, float stddev, uint64_t seed,
                               cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  if (dtype == ElemType::BF16)
    fill_normal_kernel<__nv_bfloat16><<<blocks_for(n, 256), 256, 0, stream>>>(
        static_cast<__nv_bfloat16*>(p), n, stddev, seed);
  else
    fill_normal_kernel<__half><<<blocks_for(n, 256), 256, 0, stream>>>(static_cast<__half*>(p),
                                                                        n, stddev, seed);
  return cudaGetLastError();
}

cudaError_t launch_fill_normal_f32(float* p, int64_t n, float stddev, uint64_t seed,
                                   cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  fill_normal_f32_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(p, n, stddev, seed);
  return cudaGetLastError();
}

cudaError_t launch_router_logits(const float* x, const float* router_weight,
                                 const float* router_bias, int tokens, int hidden,
                                 int num_experts, float* logits, cudaStream_t stream) {
  if (tokens < 0 || hidden <= 0 || num_experts <= 0) return cudaErrorInvalidValue;
  const int64_t threads = int64_t(tokens) * num_experts * 32;
  if (threads == 0) return cudaSuccess;
  router_logits_kernel<<<blocks_for(threads, 256), 256, 0, stream>>>(
      x, router_weight, router_bias, tokens, hidden, num_experts, logits);
  return cudaGetLastError();
}

cudaError_t launch_topk(const float* logits, const float* correction_bias,
                        const RoutingParams& params, int tokens, int num_experts, int top_k,
                        int32_t* topk_ids, float* topk_weights, cudaStream_t stream) {
  if (num_experts <= 0 || num_experts > kMaxRoutedExperts || top_k <= 0 || top_k > kMaxTopK ||
      top_k > num_experts)
    return cudaErrorInvalidValue;
  if (params.n_group > 1) {
    if (params.n_group > 32 || num_experts % params.n_group != 0 || params.topk_group < 1 ||
        params.topk_group > params.n_group ||
        params.topk_group * (num_experts / params.n_group) < top_k)
      return cudaErrorInvalidValue;
  }
  if (tokens <= 0) return cudaSuccess;
  topk_kernel<<<blocks_for(tokens, kTopkWarps), kTopkWarps * 32, 0, stream>>>(
      logits, correction_bias, params, tokens, num_experts, top_k, topk_ids, topk_weights);
  return cudaGetLastError();
}

cudaError_t launch_shared_gate(const float* x, const float* gate, int tokens, int hidden,
                               float* weights, cudaStream_t stream) {
  if (tokens <= 0) return cudaSuccess;
  shared_gate_kernel<<<blocks_for(int64_t(tokens) * 32, 256), 256, 0, stream>>>(x, gate, tokens,
                                                                                 hidden, weights);
  return cudaGetLastError();
}

}  // namespace moe::kernels
