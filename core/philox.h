// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011), shared by
// the CPU (core/random.cpp) and CUDA (core/cuda/*.cu) so both give bit-identical raw bits.
//
// The per-element rule (used by rand_uniform / rand_normal / rand_bernoulli on every device):
//   element i of a draw with (seed, offset) calls Philox once with
//     key     = (lo32(seed), hi32(seed))
//     counter = (lo32(offset + i), hi32(offset + i), 0, 0)
//   and uses the 4 output lanes x0..x3 as follows:
//     uniform   u = ((x0 >> 8) | 1) * 2^-24           (odd multiples of 2^-24: strictly inside (0, 1),
//                                                      exact in f32; f64 output holds the same value)
//     normal    z = sqrt(-2 ln u(x0)) * cos(2 pi u(x1))  (Box-Muller on lanes 0 and 1, computed in f32)
//     bernoulli b = u(x0) < p ? 1 : 0
// A draw of n elements therefore consumes counters offset .. offset + n - 1, and a Generator advances
// its offset by n after each draw, so consecutive draws never reuse a counter.
#pragma once
#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define SSM_HOST_DEVICE __host__ __device__
#else
#define SSM_HOST_DEVICE
#endif

namespace ssm {

struct Philox4x32 {
  uint32_t v[4];
};

// One Philox4x32 round: two 32x32->64 multiplies, then mix with the key.
SSM_HOST_DEVICE inline void philox_round(uint32_t c[4], uint32_t k0, uint32_t k1) {
  const uint64_t p0 = uint64_t(0xD2511F53u) * c[0];
  const uint64_t p1 = uint64_t(0xCD9E8D57u) * c[2];
  const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
  const uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
  const uint32_t n0 = hi1 ^ c[1] ^ k0;
  const uint32_t n2 = hi0 ^ c[3] ^ k1;
  c[0] = n0;
  c[1] = lo1;
  c[2] = n2;
  c[3] = lo0;
}

// Philox4x32 with 10 rounds; the key is bumped by the Weyl constants between rounds.
SSM_HOST_DEVICE inline Philox4x32 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                                                uint32_t k1) {
  uint32_t c[4] = {c0, c1, c2, c3};
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    philox_round(c, k0, k1);
  }
  return Philox4x32{{c[0], c[1], c[2], c[3]}};
}

// The raw bits for element counter `ctr` (= offset + i) under `seed`.
SSM_HOST_DEVICE inline Philox4x32 philox_bits(uint64_t seed, uint64_t ctr) {
  return philox4x32_10(uint32_t(ctr), uint32_t(ctr >> 32), 0u, 0u, uint32_t(seed), uint32_t(seed >> 32));
}

// 32 random bits -> float strictly inside (0, 1): ((x >> 8) | 1) * 2^-24, exact in f32.
SSM_HOST_DEVICE inline float philox_bits_to_unit(uint32_t x) {
  return float((x >> 8) | 1u) * 5.9604644775390625e-08f;  // 2^-24
}

SSM_HOST_DEVICE inline float philox_uniform(uint64_t seed, uint64_t ctr) {
  return philox_bits_to_unit(philox_bits(seed, ctr).v[0]);
}

// Box-Muller: z = sqrt(-2 ln u1) cos(2 pi u2) with u1, u2 from lanes 0 and 1 (u1 > 0, so ln is finite).
SSM_HOST_DEVICE inline float philox_normal(uint64_t seed, uint64_t ctr) {
  const Philox4x32 r = philox_bits(seed, ctr);
  const float u1 = philox_bits_to_unit(r.v[0]);
  const float u2 = philox_bits_to_unit(r.v[1]);
  return sqrtf(-2.0f * logf(u1)) * cosf(6.283185307179586f * u2);
}

SSM_HOST_DEVICE inline uint8_t philox_bernoulli(uint64_t seed, uint64_t ctr, float p) {
  return philox_uniform(seed, ctr) < p ? uint8_t(1) : uint8_t(0);
}

}  // namespace ssm
