// AdamW / SGD on CUDA (math in adamw.h). grad may be bf16.
// AdamW: up to kListMax parameters a launch (adamw_step is a list of one), their pointers and constants in the
// kernel's parameter block (AdamWList), walked in chunks as core/cuda/list_chunks.cuh says: one launch where a
// kernel per parameter took ~240 for the 130M LM. In a chunk, one thread per 4 elements with float4 loads and
// stores when the parameter's pointers are 16-byte aligned (a scalar path otherwise, and for the tail).
#include <cuda_bf16.h>

#include "kernels/common/cuda_utils.cuh"
// (after cuda_utils.cuh, which tests/emu shadows with the emulator)
#include "core/cuda/list_chunks.cuh"
#include "kernels/optim/optim_cuda.h"

namespace ssm::kernels::cuda {
namespace {

struct AdamArgs {
  float decay, b1, b2, step_size, inv_sqrt_bc2, eps;
};

__device__ inline float adam_one(float& p, float g, float& m, float& v, const AdamArgs& a) {
  m = a.b1 * m + (1.f - a.b1) * g;
  v = a.b2 * v + (1.f - a.b2) * g * g;
  p = p * a.decay - a.step_size * m / (sqrtf(v) * a.inv_sqrt_bc2 + a.eps);
  return p;
}

__device__ inline float4 load4(const float* g, int64_t i) { return *reinterpret_cast<const float4*>(g + i); }
__device__ inline float4 load4(const __nv_bfloat16* g, int64_t i) {
  const uint2 raw = *reinterpret_cast<const uint2*>(g + i);  // 4 bf16 = 8 bytes
  const __nv_bfloat162 lo = *reinterpret_cast<const __nv_bfloat162*>(&raw.x);
  const __nv_bfloat162 hi = *reinterpret_cast<const __nv_bfloat162*>(&raw.y);
  const float2 a = __bfloat1622float2(lo), b = __bfloat1622float2(hi);
  return make_float4(a.x, a.y, b.x, b.y);
}
__device__ inline float load1(const float* g, int64_t i) { return g[i]; }
__device__ inline float load1(const __nv_bfloat16* g, int64_t i) { return __bfloat162float(g[i]); }

template <typename G>
__global__ void sgd_kernel(float* __restrict__ p, const G* __restrict__ g, float* __restrict__ buf, int64_t n, float lr,
                           float mom, float wd, bool nesterov) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float d = load1(g, i) + wd * p[i];
    if (buf) {
      const float b = mom * buf[i] + d;
      buf[i] = b;
      d = nesterov ? d + mom * b : b;
    }
    p[i] -= lr * d;
  }
}

constexpr int kListMax = 48;
constexpr int64_t kChunk = 4096;  // a multiple of 4: chunks keep the float4 alignment of their parameter
struct AdamWList {
  int n;
  float b1, b2, eps;
  int64_t chunks_to[kListMax];  // chunks of parameters 0..i together
  int64_t numel[kListMax];
  float* p[kListMax];
  const void* g[kListMax];
  float* m[kListMax];
  float* v[kListMax];
  float decay[kListMax], step_size[kListMax], inv_sqrt_bc2[kListMax];
  uint8_t g_bf16[kListMax], vec[kListMax];
};

// Elements [begin, end) of one parameter; vec: float4 steps from begin (a multiple of 4), then the tail.
template <typename G>
__device__ inline void adamw_chunk(float* p, const G* g, float* m, float* v, int64_t begin, int64_t end, bool vec,
                                   const AdamArgs& a) {
  int64_t i0 = begin;
  if (vec) {
    const int64_t n4 = (end - begin) / 4;
    for (int64_t q = threadIdx.x; q < n4; q += blockDim.x) {
      const int64_t i = begin + 4 * q;
      float4 pp = *reinterpret_cast<float4*>(p + i), mm = *reinterpret_cast<float4*>(m + i),
             vv = *reinterpret_cast<float4*>(v + i);
      const float4 gg = load4(g, i);
      adam_one(pp.x, gg.x, mm.x, vv.x, a);
      adam_one(pp.y, gg.y, mm.y, vv.y, a);
      adam_one(pp.z, gg.z, mm.z, vv.z, a);
      adam_one(pp.w, gg.w, mm.w, vv.w, a);
      *reinterpret_cast<float4*>(p + i) = pp;
      *reinterpret_cast<float4*>(m + i) = mm;
      *reinterpret_cast<float4*>(v + i) = vv;
    }
    i0 = begin + 4 * n4;
  }
  for (int64_t i = i0 + threadIdx.x; i < end; i += blockDim.x) adam_one(p[i], load1(g, i), m[i], v[i], a);
}

__global__ void adamw_list(AdamWList L) {
  ::ssm::cuda::for_list_chunks<kChunk>(L.chunks_to, L.numel, L.n, [&](int t, int64_t begin, int64_t end) {
    const AdamArgs a{L.decay[t], L.b1, L.b2, L.step_size[t], L.inv_sqrt_bc2[t], L.eps};
    if (L.g_bf16[t])
      adamw_chunk(L.p[t], static_cast<const __nv_bfloat16*>(L.g[t]), L.m[t], L.v[t], begin, end, L.vec[t], a);
    else
      adamw_chunk(L.p[t], static_cast<const float*>(L.g[t]), L.m[t], L.v[t], begin, end, L.vec[t], a);
  });
}

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }
unsigned grid_for(int64_t n) {
  const unsigned b = blocks_for(n, 256);
  return b > 65535u * 4u ? 65535u * 4u : b;
}

}  // namespace

void adamw_step(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, float decay, float beta1,
                float beta2, float step_size, float inv_sqrt_bc2, float eps) {
  adamw_step_list({{&param, &grad, &exp_avg, &exp_avg_sq, decay, step_size, inv_sqrt_bc2}}, beta1, beta2, eps);
}

void adamw_step_list(const std::vector<AdamWListItem>& items, float beta1, float beta2, float eps) {
  AdamWList L{};
  L.b1 = beta1;
  L.b2 = beta2;
  L.eps = eps;
  auto flush = [&] {
    if (L.n == 0) return;
    const int64_t total = L.chunks_to[L.n - 1];
    const unsigned grid = unsigned(total < int64_t(::ssm::cuda::sm_count()) * 8 ? total : int64_t(::ssm::cuda::sm_count()) * 8);
    adamw_list<<<grid, 256, 0, stream()>>>(L);
    SSM_CUDA_LAUNCH_CHECK();
    L.n = 0;
  };
  for (const AdamWListItem& it : items) {
    const int64_t n = it.param->numel();
    if (n == 0) continue;
    const int k = L.n;
    float* p = it.param->data<float>();
    const void* g = it.grad->data_ptr();
    const bool bf = it.grad->dtype() == DType::bf16;
    ::ssm::cuda::add_list_chunks<kChunk>(L.chunks_to, L.numel, k, n);
    L.p[k] = p;
    L.g[k] = g;
    L.m[k] = it.exp_avg->data<float>();
    L.v[k] = it.exp_avg_sq->data<float>();
    L.decay[k] = it.decay;
    L.step_size[k] = it.step_size;
    L.inv_sqrt_bc2[k] = it.inv_sqrt_bc2;
    L.g_bf16[k] = bf;
    L.vec[k] = aligned16(p) && aligned16(L.m[k]) && aligned16(L.v[k]) &&
               (reinterpret_cast<uintptr_t>(g) % (bf ? 8u : 16u)) == 0;
    if (++L.n == kListMax) flush();
  }
  flush();
}

void sgd_step(Tensor& param, const Tensor& grad, Tensor* momentum_buf, float lr, float momentum, float weight_decay,
              bool nesterov) {
  const int64_t n = param.numel();
  float* buf = momentum_buf ? momentum_buf->data<float>() : nullptr;
  if (grad.dtype() == DType::bf16)
    sgd_kernel<__nv_bfloat16><<<grid_for(n), 256, 0, stream()>>>(
        param.data<float>(), static_cast<const __nv_bfloat16*>(grad.data_ptr()), buf, n, lr, momentum, weight_decay,
        nesterov);
  else
    sgd_kernel<float><<<grid_for(n), 256, 0, stream()>>>(param.data<float>(), grad.data<float>(), buf, n, lr, momentum,
                                                         weight_decay, nesterov);
  SSM_CUDA_LAUNCH_CHECK();
}

}  // namespace ssm::kernels::cuda
