// Finite-difference gradient check in float64 on the CPU.
//
// The scalar checked is L(x) = sum(fn(x) * w) with fixed random weights w (so every output element
// matters, with a different weight). Analytic: one backward with seed w. Numeric, per element j of
// each floating input: (L(x + eps e_j) - L(x - eps e_j)) / 2eps. They agree when
// |analytic - numeric| <= atol + rtol * |numeric|.
#include <cmath>
#include <random>

#include "autograd/functions.h"
#include "autograd/impl.h"

namespace ssm::ag {

namespace {
std::string index_str(int64_t flat, const Shape& shape) {
  std::vector<int64_t> idx(shape.size());
  for (size_t k = shape.size(); k-- > 0;) {
    idx[k] = flat % shape[k];
    flat /= shape[k];
  }
  return shape_str(idx);
}
}  // namespace

std::string gradcheck(const std::function<Variable(const std::vector<Variable>&)>& fn,
                      const std::vector<Tensor>& inputs, double eps, double atol, double rtol) {
  // Leaves holding private contiguous copies (perturbed in place below). Integer inputs (targets,
  // indices) pass through without grad.
  std::vector<Variable> vars;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    SSM_CHECK_INPUT(t.defined(), "gradcheck: input ", i, " is undefined");
    SSM_CHECK_INPUT(t.device().is_cpu(), "gradcheck: input ", i, " is on ", t.device().str(),
                    "; gradcheck runs on the CPU");
    const bool fp = is_floating(t.dtype());
    SSM_CHECK_INPUT(!fp || t.dtype() == DType::f64, "gradcheck: input ", i, " ", shape_str(t.shape()), " is ",
                    dtype_name(t.dtype()), "; floating inputs must be f64");
    vars.emplace_back(t.clone(), fp);
  }

  Variable out;
  {
    GradModeGuard grad_on(true);
    out = fn(vars);
  }
  SSM_CHECK_INPUT(out.defined() && is_floating(out.dtype()), "gradcheck: fn must return a floating Variable");
  const Shape out_shape = out.shape();

  std::mt19937_64 rng(20240607);
  std::uniform_real_distribution<double> uni(0.5, 1.5);
  std::vector<double> w(size_t(out.numel()));
  for (auto& v : w) v = (rng() & 1 ? 1.0 : -1.0) * uni(rng);
  if (out.requires_grad()) out.backward(Tensor::from_vector(w, out_shape).to(out.dtype()));
  out = Variable();

  auto loss = [&]() {
    NoGradGuard no_grad;
    Variable o = fn(vars);
    SSM_CHECK_INPUT(o.shape() == out_shape, "gradcheck: fn gave shape ", shape_str(o.shape()), " then ",
                    shape_str(out_shape), " for the same inputs");
    std::vector<double> ov = o.data().to_double_vector();
    double s = 0.0;
    for (size_t k = 0; k < ov.size(); ++k) s += ov[k] * w[k];
    return s;
  };

  for (size_t i = 0; i < vars.size(); ++i) {
    if (!vars[i].requires_grad()) continue;
    const int64_t n = vars[i].numel();
    std::vector<double> analytic =
        vars[i].has_grad() ? vars[i].grad().to_double_vector() : std::vector<double>(size_t(n), 0.0);
    double* x = vars[i].data().data<double>();
    int64_t bad = 0;
    std::string first;
    for (int64_t j = 0; j < n; ++j) {
      const double x0 = x[j];
      x[j] = x0 + eps;
      const double lp = loss();
      x[j] = x0 - eps;
      const double lm = loss();
      x[j] = x0;
      const double numeric = (lp - lm) / (2.0 * eps);
      const double a = analytic[size_t(j)];
      if (!(std::abs(a - numeric) <= atol + rtol * std::abs(numeric))) {
        if (bad++ == 0)
          first = ssm::cat("element ", j, " ", index_str(j, vars[i].shape()), ": analytic ", a, " vs numeric ", numeric,
                      " (|diff| ", std::abs(a - numeric), " > atol ", atol, " + rtol ", rtol, " * |numeric|)");
      }
    }
    if (bad)
      return ssm::cat("gradcheck: input ", i, " ", shape_str(vars[i].shape()), ": ", bad, " of ", n,
                 " elements disagree; first at ", first);
  }
  return "";
}

}  // namespace ssm::ag
