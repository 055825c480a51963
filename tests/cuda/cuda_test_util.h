// Helpers for the CUDA tests: random CPU inputs, moving them to the GPU, and comparing a GPU result
// with the CPU reference (the CPU path is the oracle) with a tolerance chosen by dtype.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <initializer_list>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/ops.h"
#include "core/tensor.h"

namespace ssm::test {

// Sets environment variables for one scope (the kernels' host code reads them at every call).
struct Env {
  std::vector<std::string> names;
  Env(std::initializer_list<std::pair<const char*, const char*>> kv) {
    for (const auto& [k, v] : kv) {
      setenv(k, v, 1);
      names.emplace_back(k);
    }
  }
  ~Env() {
    for (const auto& k : names) unsetenv(k.c_str());
  }
};

inline const std::vector<DType>& float_dtypes() {
  static const std::vector<DType> v = {DType::f32, DType::f64, DType::bf16, DType::f16};
  return v;
}

// Uniform values in [lo, hi) as a CPU tensor of dtype dt (generated in f64, then converted).
inline Tensor rand_cpu(const Shape& shape, DType dt, double lo = -1.0, double hi = 1.0, uint32_t seed = 1) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(size_t(shape_numel(shape)));
  for (double& x : v) x = u(gen);
  return Tensor::from_vector(v, shape).to(dt);
}
// Integers in [lo, hi] as a CPU tensor of dtype dt.
inline Tensor randint_cpu(const Shape& shape, DType dt, int64_t lo, int64_t hi, uint32_t seed = 2) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int64_t> u(lo, hi);
  std::vector<int64_t> v(size_t(shape_numel(shape)));
  for (int64_t& x : v) x = u(gen);
  return Tensor::from_vector(v, shape).to(dt);
}

inline Tensor gpu(const Tensor& t) { return t.to(Device::cuda(0)); }

struct Tol {
  double rtol, atol;
};
inline Tol tol_for(DType dt) {
  switch (dt) {
    case DType::f32: return {2e-5, 2e-6};
    case DType::f64: return {1e-12, 1e-13};
    case DType::bf16: return {1.6e-2, 1e-3};  // 2 ulps of bf16 (8-bit significand)
    case DType::f16: return {2e-3, 1e-4};     // 2 ulps of f16 (11-bit significand)
    default: return {0, 0};                   // integers: exact
  }
}

// GPU result vs CPU reference: same shape and dtype, |g - c| <= atol + rtol |c| elementwise (NaN == NaN).
inline ::testing::AssertionResult close(const Tensor& g, const Tensor& c, Tol tol) {
  if (!g.device().is_cuda()) return ::testing::AssertionFailure() << "result is not on CUDA: " << g.str();
  if (g.shape() != c.shape())
    return ::testing::AssertionFailure() << "shape " << shape_str(g.shape()) << " vs CPU " << shape_str(c.shape());
  if (g.dtype() != c.dtype())
    return ::testing::AssertionFailure() << "dtype " << dtype_name(g.dtype()) << " vs CPU " << dtype_name(c.dtype());
  const std::vector<double> gv = g.to_double_vector(), cv = c.to_double_vector();
  int64_t bad = 0, first = -1;
  double worst = 0;
  for (size_t i = 0; i < gv.size(); ++i) {
    const double a = gv[i], b = cv[i];
    if (std::isnan(a) && std::isnan(b)) continue;
    if (a == b) continue;  // also equal infinities
    const double err = std::abs(a - b);
    if (!(err <= tol.atol + tol.rtol * std::abs(b))) {
      if (first < 0) first = int64_t(i);
      ++bad;
      worst = std::max(worst, err);
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << gv.size() << " elements differ (" << dtype_name(g.dtype())
                                       << ", shape " << shape_str(g.shape()) << "); first at " << first << ": GPU "
                                       << gv[size_t(first)] << " vs CPU " << cv[size_t(first)]
                                       << ", worst |diff| " << worst;
}
inline ::testing::AssertionResult close(const Tensor& g, const Tensor& c) { return close(g, c, tol_for(c.dtype())); }

// Any result against a reference, elementwise |got - want| <= atol + rtol |want| (NaN fails), whatever their
// devices and dtypes (the emulated kernels' tests, tests/emu).
inline ::testing::AssertionResult all_near(const Tensor& got, const Tensor& want, Tol t) {
  const std::vector<double> g = got.to_double_vector(), w = want.to_double_vector();
  if (g.size() != w.size()) return ::testing::AssertionFailure() << "sizes " << g.size() << " vs " << w.size();
  for (size_t i = 0; i < g.size(); ++i)
    if (!(std::abs(g[i] - w[i]) <= t.atol + t.rtol * std::abs(w[i])))
      return ::testing::AssertionFailure() << "element " << i << ": " << g[i] << " vs " << w[i];
  return ::testing::AssertionSuccess();
}

// Bitwise equality of the raw bytes (after moving to the host).
inline ::testing::AssertionResult same_bits(const Tensor& g, const Tensor& c) {
  if (g.shape() != c.shape() || g.dtype() != c.dtype())
    return ::testing::AssertionFailure() << "shape/dtype differ: " << g.str() << " vs " << c.str();
  const Tensor h = g.to(Device::cpu()).contiguous(), cc = c.contiguous();
  const auto* p = static_cast<const unsigned char*>(h.data_ptr());
  const auto* q = static_cast<const unsigned char*>(cc.data_ptr());
  const size_t es = dtype_size(g.dtype());
  for (size_t i = 0; i < h.nbytes(); ++i)
    if (p[i] != q[i])
      return ::testing::AssertionFailure() << "bits differ at element " << i / es << " of " << g.str();
  return ::testing::AssertionSuccess();
}

inline std::string name(DType dt, const Shape& s) { return std::string(dtype_name(dt)) + " " + shape_str(s); }

}  // namespace ssm::test
