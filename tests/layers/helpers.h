// Shared helpers for the layer tests.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "autograd/functions.h"
#include "core/ops.h"
#include "layers/module.h"

namespace ssm::nn::testing {

// ag::gradcheck of a module in float64 with respect to its input and every parameter: the module is
// converted to f64, and inside fn its parameters are swapped for gradcheck's own leaf Variables
// (Module::swap_parameters), so gradients reach them through the layer's real forward.
// `fwd` defaults to m.forward(x).
inline std::string module_gradcheck(Module& m, const Tensor& x,
                                    std::function<Variable(Module&, const Variable&)> fwd = nullptr,
                                    double atol = 1e-5, double rtol = 1e-3) {
  m.to(DType::f64);
  if (!fwd) fwd = [](Module& mm, const Variable& v) { return mm.forward(v); };
  std::vector<Tensor> inputs{x};
  for (auto& p : m.parameters()) inputs.push_back(p.data().clone());
  return ag::gradcheck(
      [&](const std::vector<Variable>& v) {
        std::vector<Variable> ps(v.begin() + 1, v.end());
        m.swap_parameters(ps);
        Variable y;
        try {
          y = fwd(m, v[0]);
        } catch (...) {
          m.swap_parameters(ps);
          throw;
        }
        m.swap_parameters(ps);
        return y;
      },
      inputs, 1e-6, atol, rtol);
}

inline double max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(shape_str(a.shape()), shape_str(b.shape()));
  auto x = a.to_double_vector(), y = b.to_double_vector();
  double m = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

inline std::map<std::string, Tensor> as_map(const std::vector<std::pair<std::string, Tensor>>& sd) {
  return std::map<std::string, Tensor>(sd.begin(), sd.end());
}

inline std::vector<std::string> param_names(const Module& m) {
  std::vector<std::string> out;
  for (auto& p : m.named_parameters()) out.push_back(p.name);
  return out;
}

// Runs fn, expects an ssm::Error of kind BadInput, and returns its message.
inline std::string bad_input_message(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(int(e.kind()), int(ErrorKind::BadInput)) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected a BadInput error";
  return "";
}

}  // namespace ssm::nn::testing
