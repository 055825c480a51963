#include "kernels/s4/fft_cpu.h"

#include <cmath>
#include <map>
#include <memory>
#include <mutex>

#include "core/error.h"

namespace ssm::kernels::fft {

template <typename T>
const Plan<T>& plan(int64_t n) {
  static std::mutex mu;
  static std::map<int64_t, std::unique_ptr<Plan<T>>> cache;
  SSM_CHECK(n >= 4 && (n & (n - 1)) == 0, "fft::plan: n = ", n, " is not a power of two >= 4");
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[n];
  if (!slot) {
    auto p = std::make_unique<Plan<T>>();
    p->n = n;
    int bits = 0;
    while ((int64_t(1) << bits) < n) ++bits;
    p->rev.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) {
      int64_t r = 0;
      for (int b = 0; b < bits; ++b)
        if (i & (int64_t(1) << b)) r |= int64_t(1) << (bits - 1 - b);
      p->rev[size_t(i)] = int32_t(r);
    }
    p->wr.assign(size_t(n), T(0));
    p->wi.assign(size_t(n), T(0));
    const long double two_pi = 6.283185307179586476925286766559L;
    for (int64_t h = 1; h < n; h <<= 1)
      for (int64_t j = 0; j < h; ++j) {
        long double a = -two_pi * (long double)j / (long double)(2 * h);
        p->wr[size_t(h + j)] = T(std::cos(a));
        p->wi[size_t(h + j)] = T(std::sin(a));
      }
    slot = std::move(p);
  }
  return *slot;
}

namespace {

// The transform body; compiled twice below (AVX2+FMA and baseline) and picked at run time, since the
// library is built without -march flags.
template <typename T>
inline __attribute__((always_inline)) void forward_body(const Plan<T>& p, T* re, T* im) {
  const int64_t n = p.n;
  // Stages h = 1 and h = 2 together as one radix-4 pass (twiddles 1 and -i).
  for (int64_t i = 0; i < n; i += 4) {
    T a0r = re[i] + re[i + 1], a0i = im[i] + im[i + 1];
    T a1r = re[i] - re[i + 1], a1i = im[i] - im[i + 1];
    T a2r = re[i + 2] + re[i + 3], a2i = im[i + 2] + im[i + 3];
    T a3r = re[i + 2] - re[i + 3], a3i = im[i + 2] - im[i + 3];
    // t = a3 * (-i) = (a3i, -a3r)
    re[i] = a0r + a2r, im[i] = a0i + a2i;
    re[i + 2] = a0r - a2r, im[i + 2] = a0i - a2i;
    re[i + 1] = a1r + a3i, im[i + 1] = a1i - a3r;
    re[i + 3] = a1r - a3i, im[i + 3] = a1i + a3r;
  }
  // Then two radix-2 stages (spans 2h and 4h) per pass over the data: a radix-4 pass. For j < h:
  //   y0,1 = x0 +- w1 x1,  y2,3 = x2 +- w1 x3          (w1 = exp(-2 pi i j / 2h))
  //   z0,2 = y0 +- w2 y2,  z1,3 = y1 +- (-i w2) y3      (w2 = exp(-2 pi i j / 4h))
  int64_t h = 4;
  for (; 4 * h <= n; h *= 4) {
    const T* __restrict__ w1r = p.wr.data() + h;
    const T* __restrict__ w1i = p.wi.data() + h;
    const T* __restrict__ w2r = p.wr.data() + 2 * h;
    const T* __restrict__ w2i = p.wi.data() + 2 * h;
    for (int64_t i = 0; i < n; i += 4 * h) {
      T* __restrict__ r0 = re + i;
      T* __restrict__ i0 = im + i;
      T* __restrict__ r1 = re + i + h;
      T* __restrict__ i1 = im + i + h;
      T* __restrict__ r2 = re + i + 2 * h;
      T* __restrict__ i2 = im + i + 2 * h;
      T* __restrict__ r3 = re + i + 3 * h;
      T* __restrict__ i3 = im + i + 3 * h;
#pragma omp simd
      for (int64_t j = 0; j < h; ++j) {
        const T t1r = r1[j] * w1r[j] - i1[j] * w1i[j], t1i = r1[j] * w1i[j] + i1[j] * w1r[j];
        const T t3r = r3[j] * w1r[j] - i3[j] * w1i[j], t3i = r3[j] * w1i[j] + i3[j] * w1r[j];
        const T y0r = r0[j] + t1r, y0i = i0[j] + t1i, y1r = r0[j] - t1r, y1i = i0[j] - t1i;
        const T y2r = r2[j] + t3r, y2i = i2[j] + t3i, y3r = r2[j] - t3r, y3i = i2[j] - t3i;
        const T u2r = y2r * w2r[j] - y2i * w2i[j], u2i = y2r * w2i[j] + y2i * w2r[j];
        const T u3r = y3r * w2r[j] - y3i * w2i[j], u3i = y3r * w2i[j] + y3i * w2r[j];
        r0[j] = y0r + u2r, i0[j] = y0i + u2i;
        r2[j] = y0r - u2r, i2[j] = y0i - u2i;
        r1[j] = y1r + u3i, i1[j] = y1i - u3r;  // y1 + (-i) u3
        r3[j] = y1r - u3i, i3[j] = y1i + u3r;
      }
    }
  }
  if (h < n) {  // one radix-2 stage left (log2 n odd): span 2h = n
    const T* __restrict__ wr = p.wr.data() + h;
    const T* __restrict__ wi = p.wi.data() + h;
    T* __restrict__ ar = re;
    T* __restrict__ ai = im;
    T* __restrict__ br = re + h;
    T* __restrict__ bi = im + h;
#pragma omp simd
    for (int64_t j = 0; j < h; ++j) {
      const T tr = br[j] * wr[j] - bi[j] * wi[j];
      const T ti = br[j] * wi[j] + bi[j] * wr[j];
      br[j] = ar[j] - tr;
      bi[j] = ai[j] - ti;
      ar[j] += tr;
      ai[j] += ti;
    }
  }
}

}  // namespace

__attribute__((target_clones("arch=x86-64-v3", "default"))) void forward_f32(const Plan<float>& p, float* re,
                                                                            float* im) {
  forward_body(p, re, im);
}
__attribute__((target_clones("arch=x86-64-v3", "default"))) void forward_f64(const Plan<double>& p, double* re,
                                                                            double* im) {
  forward_body(p, re, im);
}

template <>
void forward_bitrev<float>(const Plan<float>& p, float* re, float* im) {
  forward_f32(p, re, im);
}
template <>
void forward_bitrev<double>(const Plan<double>& p, double* re, double* im) {
  forward_f64(p, re, im);
}

template const Plan<float>& plan<float>(int64_t);
template const Plan<double>& plan<double>(int64_t);

}  // namespace ssm::kernels::fft
