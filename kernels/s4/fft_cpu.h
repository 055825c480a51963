// A small complex FFT for the CPU (used by causal_conv): iterative radix-2 decimation in time, two
// stages per pass over the data (radix-4 passes; AVX2/FMA clone picked at run time),
// split real/imaginary arrays (so the butterflies vectorise), sizes a power of two >= 4.
//
//   X[f] = sum_{t<n} x[t] exp(-2 pi i f t / n)
//
// The caller writes its input already in bit-reversed order (x[t] goes to position plan.rev[t]), which
// costs nothing when the input is being gathered from a strided tensor anyway; the output comes out
// in natural order. The inverse is done with the conjugate trick:
//   IFFT(X) = conj(FFT(conj(X))) / n.
// Plans (bit-reversal table, per-stage twiddles) are built once per (n, precision) and cached.
#pragma once
#include <cstdint>
#include <vector>

namespace ssm::kernels::fft {

template <typename T>
struct Plan {
  int64_t n = 0;
  std::vector<int32_t> rev;  // bit reversal of 0..n-1
  // Twiddles of the stage whose butterflies span 2h points: w_j = exp(-2 pi i j / (2h)), j < h, stored
  // at [h + j] (so every stage's twiddles are contiguous).
  std::vector<T> wr, wi;
};

// The cached plan for size n (a power of two >= 4). Thread-safe; the reference stays valid forever.
template <typename T>
const Plan<T>& plan(int64_t n);

// In-place forward FFT of (re, im), which hold the input in bit-reversed order.
template <typename T>
void forward_bitrev(const Plan<T>& p, T* re, T* im);

inline int64_t next_pow2(int64_t v) {
  int64_t n = 1;
  while (n < v) n <<= 1;
  return n;
}

}  // namespace ssm::kernels::fft
