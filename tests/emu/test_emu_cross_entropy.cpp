// cross_entropy_with_grad_'s row kernel (core/cuda/softmax_rows.cuh) run by the CUDA emulator (cuda_emu.h) on
// the CPU against the CPU ops cross_entropy and cross_entropy_backward: the 16-byte path (C a multiple of the
// vector) and the scalar one (odd C), -inf padding columns as the LM head's, ignored rows, f32 / bf16 / f64.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/cuda/softmax_rows.cuh"
#include "core/tensor.h"
#include "tests/cuda/cuda_test_util.h"

namespace ssm {
namespace {

using test::all_near;
using test::rand_cpu;

// The kernel over a (N, C) copy of x, in place, with the count of valid rows the host computes (ce_count on the
// GPU); returns the row losses (0 for ignored rows).
template <class T>
std::vector<double> run_rows(Tensor& x, const std::vector<int64_t>& t, double grad_scale) {
  const int64_t N = x.size(0), C = x.size(1);
  long long count = 0;
  for (int64_t v : t) count += v != -100;
  std::vector<double> loss(size_t(N), std::nan(""));
  std::vector<int> valid(size_t(N), -1);
  constexpr int V = 16 / int(sizeof(T));
  const emu::Config cfg(dim3(unsigned(N)), dim3(unsigned(cuda::ce_threads(C))));
  T* p = x.data<T>();
  if (C % V == 0)
    emu::launch_with(cfg, [&](auto&&... a) { cuda::ce_with_grad_rows<T, int64_t, V>(a...); }, p, t.data(), C,
                     int64_t(-100), grad_scale, &count, loss.data(), valid.data());
  else
    emu::launch_with(cfg, [&](auto&&... a) { cuda::ce_with_grad_rows<T, int64_t, 1>(a...); }, p, t.data(), C,
                     int64_t(-100), grad_scale, &count, loss.data(), valid.data());
  for (int64_t i = 0; i < N; ++i) EXPECT_EQ(valid[size_t(i)], t[size_t(i)] == -100 ? 0 : 1) << "row " << i;
  return loss;
}

TEST(EmuCrossEntropy, WithGradRowsMatchCpu) {
  struct Case {
    int64_t N, C;
  };
  for (const Case c : {Case{3, 1}, Case{5, 37}, Case{4, 2048}, Case{2, 50280}})
    for (DType dt : {DType::f32, DType::bf16, DType::f64}) {
      SCOPED_TRACE(cat(dtype_name(dt), " N=", c.N, " C=", c.C));
      Tensor x = rand_cpu({c.N, c.C}, dt, -4, 4, 31);
      if (c.C > 3) x.narrow(1, c.C - 3, 3).fill_(-INFINITY);  // the LM head's padding columns
      std::vector<int64_t> t(size_t(c.N));
      for (int64_t i = 0; i < c.N; ++i) t[size_t(i)] = i == 1 ? -100 : (7 * i + 3) % std::max<int64_t>(c.C - 3, 1);
      const Tensor tt = Tensor::from_vector(t, {c.N});
      const Tensor ref_grad = cross_entropy_backward(x, tt, 0.3);
      const double ref_loss = cross_entropy(x, tt).item();
      Tensor y = x.clone();
      std::vector<double> loss;
      if (dt == DType::f32) loss = run_rows<float>(y, t, 0.3);
      if (dt == DType::bf16) loss = run_rows<cuda::bf16>(y, t, 0.3);
      if (dt == DType::f64) loss = run_rows<double>(y, t, 0.3);
      double sum = 0;
      int64_t n = 0;
      for (int64_t i = 0; i < c.N; ++i)
        if (t[size_t(i)] != -100) {
          sum += loss[size_t(i)];
          ++n;
        }
      const double tol = dt == DType::f64 ? 1e-12 : 1e-5 * std::max(1.0, std::abs(ref_loss));
      EXPECT_NEAR(sum / double(n), ref_loss, tol);
      const test::Tol gtol = dt == DType::f64 ? test::Tol{1e-12, 1e-14} : dt == DType::f32 ? test::Tol{1e-5, 1e-7}
                                                                                           : test::tol_for(dt);
      EXPECT_TRUE(all_near(y, ref_grad, gtol)) << "grad";
      // The ignored row is zeroed.
      for (double v : y.narrow(0, 1, 1).to_double_vector()) ASSERT_EQ(v, 0.0);
    }
}

TEST(EmuCrossEntropy, NaNLogitReachesLossAndGrad) {
  Tensor x = rand_cpu({1, 64}, DType::f32, -1, 1, 32);
  x.narrow(1, 9, 1).fill_(std::nan(""));
  const std::vector<int64_t> t = {3};
  const std::vector<double> loss = run_rows<float>(x, t, 1.0);
  EXPECT_TRUE(std::isnan(loss[0]));
  EXPECT_TRUE(std::isnan(x.to_double_vector()[0]));
}

}  // namespace
}  // namespace ssm
