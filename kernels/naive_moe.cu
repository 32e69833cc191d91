// The in-tree oracle: the whole routed-expert computation with one thread per output element,
// fp32 accumulation in plain k order, no tiling, no shared memory, no atomics. Slow on purpose;
// the tests hold the tiled kernels against it (and both against the float64 CPU oracle).
#include "device_utils.cuh"

namespace moe::kernels {
namespace {

template <typename T>
__global__ void naive_gate_up_kernel(NaiveMoeArgs a) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t slots = int64_t(a.tokens) * a.top_k;
  if (i >= slots * a.inter) return;
  const int64_t slot = i / a.inter;
  const int c = int(i - slot * a.inter);
  const int e = a.slot_expert[slot];
  if (e < 0) {
    a.scratch[i] = 0.0f;
    return;
  }
  const int64_t t = slot / a.top_k;
  const T* x = static_cast<const T*>(a.x) + t * a.ldx;
  const T* w13 = static_cast<const T*>(a.w13) + int64_t(e) * 2 * a.inter * a.ld_w13;
  const int gate_row = (a.up_first ? a.inter : 0) + c, up_row = (a.up_first ? 0 : a.inter) + c;
  float g = 0.0f, u = 0.0f;
  for (int k = 0; k < a.hidden; ++k) {
    const float xv = ElemOps<T>::to_float(x[k]);
    g = fmaf(xv, ElemOps<T>::to_float(w13[int64_t(gate_row) * a.ld_w13 + k]), g);
    u = fmaf(xv, ElemOps<T>::to_float(w13[int64_t(up_row) * a.ld_w13 + k]), u);
  }
  if (a.weight_on_input && a.slot_weights) {
    g *= a.slot_weights[slot];
    u *= a.slot_weights[slot];
  }
  if (a.w13_bias) {
    const T* b = static_cast<const T*>(a.w13_bias) + int64_t(e) * 2 * a.inter;
    g += ElemOps<T>::to_float(b[gate_row]);
    u += ElemOps<T>::to_float(b[up_row]);
  }
  // Rounded to the element type, as the fused kernel stores its intermediate.
  a.scratch[i] =
      ElemOps<T>::to_float(ElemOps<T>::from_float(apply_act(int(a.act), g, u, a.swiglu_alpha,
                                                            a.swiglu_limit)));
}

template <typename T>
__global__ void naive_down_kernel(NaiveMoeArgs a) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(a.tokens) * a.hidden) return;
  const int64_t t = i / a.hidden;
  const int h = int(i - t * a.hidden);
  float total = 0.0f;
  for (int k = 0; k < a.top_k; ++k) {
    const int64_t slot = t * a.top_k + k;
    const int e = a.slot_expert[slot];
    if (e < 0) continue;
    const T* w2 = static_cast<const T*>(a.w2) + (int64_t(e) * a.hidden + h) * a.ld_w2;
    const float* hrow = a.scratch + slot * a.inter;
    float acc = 0.0f;
    for (int c = 0; c < a.inter; ++c) acc = fmaf(hrow[c], ElemOps<T>::to_float(w2[c]), acc);
    if (a.w2_bias)
      acc += ElemOps<T>::to_float(static_cast<const T*>(a.w2_bias)[int64_t(e) * a.hidden + h]);
    const float w = (a.slot_weights && !a.weight_on_input) ? a.slot_weights[slot] : 1.0f;
    total = fmaf(w, acc, total);
  }
  a.out[t * a.ldo + h] += total;
}

template <typename T>
cudaError_t run(const NaiveMoeArgs& a, cudaStream_t stream) {
  const int64_t n1 = int64_t(a.tokens) * a.top_k * a.inter;
  if (n1 > 0) {
    naive_gate_up_kernel<T><<<unsigned((n1 + 127) / 128), 128, 0, stream>>>(a);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  const int64_t n2 = int64_t(a.tokens) * a.hidden;
  if (n2 > 0) naive_down_kernel<T><<<unsigned((n2 + 127) / 128), 128, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_naive_moe(const NaiveMoeArgs& a, cudaStream_t stream) {
  if (a.tokens < 0 || a.top_k <= 0 || a.inter <= 0 || a.hidden <= 0 || a.ld_w13 < a.hidden ||
      a.ld_w2 < a.inter || a.ldo < a.hidden || a.ldx < a.hidden)
    return cudaErrorInvalidValue;
  return a.dtype == ElemType::BF16 ? run<__nv_bfloat16>(a, stream) : run<__half>(a, stream);
}

}  // namespace moe::kernels
