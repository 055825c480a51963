// A small model for the data-parallel tests: y = tanh(x W1 + b1) W2 (+ extra), loss = mean(y^2).
// Parameters in registration order: never (never used), w1, b1, w2, extra (used when asked).
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "autograd/functions.h"
#include "core/ops.h"
#include "layers/module.h"

namespace ssm::testing_dist {

inline Tensor wave(const Shape& s, double phase, DType dt = DType::f32, Device dev = Device::cpu()) {
  std::vector<double> v(size_t(shape_numel(s)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = 0.5 * std::sin(0.37 * double(i) + phase);
  return Tensor::from_vector(v, s).to(dev, dt);
}

class Tiny : public nn::Module {
 public:
  explicit Tiny(DType dt = DType::f32, Device dev = Device::cpu()) {
    never = &register_parameter("never", wave({2}, 0.1, dt, dev));
    w1 = &register_parameter("w1", wave({4, 8}, 0.2, dt, dev));
    b1 = &register_parameter("b1", wave({8}, 0.3, dt, dev));
    w2 = &register_parameter("w2", wave({8, 3}, 0.4, dt, dev));
    extra = &register_parameter("extra", wave({3}, 0.5, dt, dev));
  }
  ag::Variable loss(const Tensor& x, bool use_extra) {
    ag::Variable h = ag::unary(UnaryOp::Tanh, ag::add(ag::matmul(ag::Variable(x), *w1), *b1));
    ag::Variable y = ag::matmul(h, *w2);
    if (use_extra) y = ag::add(y, *extra);
    return ag::mean(ag::mul(y, y));
  }
  ag::Variable *never, *w1, *b1, *w2, *extra;
};

// Every parameter's gradient as doubles (empty: undefined).
inline std::vector<std::vector<double>> grads(const nn::Module& m) {
  std::vector<std::vector<double>> out;
  for (const auto& p : m.named_parameters())
    out.push_back(p.var.has_grad() ? p.var.grad().to_double_vector() : std::vector<double>{});
  return out;
}

// The input of rank r, micro-step k: (5, 4) values.
inline Tensor input(int r, int k, DType dt = DType::f32, Device dev = Device::cpu()) {
  return wave({5, 4}, 1.0 + 0.7 * r + 2.3 * k, dt, dev);
}

// Expected mean gradients: the average over `runs` of single-process gradients (missing = zeros; missing
// everywhere = undefined).
inline std::vector<std::vector<double>> mean_grads(const std::vector<std::vector<std::vector<double>>>& runs) {
  std::vector<std::vector<double>> out(runs[0].size());
  for (size_t p = 0; p < out.size(); ++p) {
    for (const auto& run : runs) {
      if (run[p].empty()) continue;
      if (out[p].empty()) out[p].assign(run[p].size(), 0.0);
      for (size_t i = 0; i < run[p].size(); ++i) out[p][i] += run[p][i];
    }
    for (double& x : out[p]) x /= double(runs.size());
  }
  return out;
}

// |got - want| <= rel * (|want| + 1e-3), element by element; the same parameters defined.
inline void expect_close(const std::vector<std::vector<double>>& got, const std::vector<std::vector<double>>& want,
                         double rel) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t p = 0; p < got.size(); ++p) {
    ASSERT_EQ(got[p].size(), want[p].size()) << "parameter " << p;
    for (size_t i = 0; i < got[p].size(); ++i)
      EXPECT_NEAR(got[p][i], want[p][i], rel * (std::abs(want[p][i]) + 1e-3)) << "parameter " << p << "[" << i << "]";
  }
}

}  // namespace ssm::testing_dist
