// Differentiable elementwise ops. Binary ops broadcast (numpy rules); the gradient of a broadcast
// input is the output gradient summed back to the input's shape (sum_to).
#include "autograd/functions.h"
#include "autograd/impl.h"

namespace ssm::ag {

namespace {
bool needs(const std::vector<Variable>& in, size_t i) { return in[i].requires_grad(); }
}  // namespace

// c = a + b:  da = sum_to(g), db = sum_to(g)
Variable add(const Variable& a, const Variable& b) {
  Tensor out = ssm::add(a.data(), b.data());
  return Variable(out, {a, b}, [](std::vector<Variable>& in, const Tensor& g) {
    if (needs(in, 0)) in[0].add_grad(sum_to(g, in[0].shape()));
    if (needs(in, 1)) in[1].add_grad(sum_to(g, in[1].shape()));
  });
}

// c = a - b:  da = sum_to(g), db = -sum_to(g)
Variable sub(const Variable& a, const Variable& b) {
  Tensor out = ssm::sub(a.data(), b.data());
  return Variable(out, {a, b}, [](std::vector<Variable>& in, const Tensor& g) {
    if (needs(in, 0)) in[0].add_grad(sum_to(g, in[0].shape()));
    if (needs(in, 1)) in[1].add_grad(ssm::unary(UnaryOp::Neg, sum_to(g, in[1].shape())));
  });
}

// c = a * b:  da = sum_to(g * b), db = sum_to(g * a)
Variable mul(const Variable& a, const Variable& b) {
  Tensor out = ssm::mul(a.data(), b.data());
  return Variable(out, {a, b}, [](std::vector<Variable>& in, const Tensor& g) {
    if (needs(in, 0)) in[0].add_grad(sum_to(ssm::mul(g, in[1].data()), in[0].shape()));
    if (needs(in, 1)) in[1].add_grad(sum_to(ssm::mul(g, in[0].data()), in[1].shape()));
  });
}

// c = a / b:  da = sum_to(g / b), db = sum_to(-g * a / b^2) = -sum_to(g * c / b)
Variable div(const Variable& a, const Variable& b) {
  Tensor out = ssm::div(a.data(), b.data());
  return Variable(out, {a, b}, [out](std::vector<Variable>& in, const Tensor& g) {
    Tensor g_over_b = ssm::div(g, in[1].data());
    if (needs(in, 0)) in[0].add_grad(sum_to(g_over_b, in[0].shape()));
    if (needs(in, 1)) in[1].add_grad(sum_to(ssm::mul(ssm::mul(g_over_b, out), -1.0), in[1].shape()));
  });
}

// c = a + s:  da = g
Variable add(const Variable& a, double s) {
  return Variable(ssm::add(a.data(), s), {a}, [](std::vector<Variable>& in, const Tensor& g) { in[0].add_grad(g); });
}

// c = a * s:  da = g * s
Variable mul(const Variable& a, double s) {
  return Variable(ssm::mul(a.data(), s), {a},
                  [s](std::vector<Variable>& in, const Tensor& g) { in[0].add_grad(ssm::mul(g, s)); });
}

// c = -a:  da = -g
Variable neg(const Variable& a) {
  return Variable(ssm::unary(UnaryOp::Neg, a.data()), {a}, [](std::vector<Variable>& in, const Tensor& g) {
    in[0].add_grad(ssm::unary(UnaryOp::Neg, g));
  });
}

// y = op(x):  dx = g * op'(x)  (one fused core kernel)
Variable unary(UnaryOp op, const Variable& x) {
  return Variable(ssm::unary(op, x.data()), {x}, [op](std::vector<Variable>& in, const Tensor& g) {
    in[0].add_grad(unary_backward(op, g, in[0].data()));
  });
}

// y = x^p:  dx = g * p * x^(p-1)
Variable pow(const Variable& x, double p) {
  return Variable(binary_scalar(BinaryOp::Pow, x.data(), p), {x}, [p](std::vector<Variable>& in, const Tensor& g) {
    Tensor d = p == 2.0 ? ssm::mul(in[0].data(), 2.0) : ssm::mul(binary_scalar(BinaryOp::Pow, in[0].data(), p - 1.0), p);
    in[0].add_grad(ssm::mul(g, d));
  });
}

// y = cond ? a : b (all three broadcast):  da = sum_to(cond ? g : 0), db = sum_to(cond ? 0 : g)
Variable where(const Tensor& cond, const Variable& a, const Variable& b) {
  Tensor out = ssm::where(cond, a.data(), b.data());
  return Variable(out, {a, b}, [cond](std::vector<Variable>& in, const Tensor& g) {
    Tensor zero = Tensor::scalar(0.0, g.dtype(), g.device());
    if (needs(in, 0)) in[0].add_grad(sum_to(ssm::where(cond, g, zero), in[0].shape()));
    if (needs(in, 1)) in[1].add_grad(sum_to(ssm::where(cond, zero, g), in[1].shape()));
  });
}

// Inverted dropout: m ~ Bernoulli(1 - p) per element, y = x * m / (1 - p);  dx = g * m / (1 - p).
// The mask is kept as u8 (1 byte per element), not as a float tensor.
Variable dropout(const Variable& x, double p, Generator& gen) {
  SSM_CHECK_INPUT(p >= 0.0 && p < 1.0, "dropout: p must be in [0, 1), got ", p);
  if (p == 0.0) return x;
  const double scale = 1.0 / (1.0 - p);
  Tensor mask = gen.bernoulli(x.shape(), 1.0 - p, x.device());
  Tensor zero = Tensor::scalar(0.0, x.dtype(), x.device());
  Tensor out = ssm::where(mask, ssm::mul(x.data(), scale), zero);
  return Variable(out, {x}, [mask, scale](std::vector<Variable>& in, const Tensor& g) {
    Tensor zero = Tensor::scalar(0.0, g.dtype(), g.device());
    in[0].add_grad(ssm::where(mask, ssm::mul(g, scale), zero));
  });
}

// y = x converted to dtype:  dx = g converted back to x's dtype (autocast: f32 master weights get f32
// gradients).
Variable cast(const Variable& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  if (!is_floating(dtype)) return Variable(x.data().to(dtype), false);  // integers: a constant
  return Variable(x.data().to(dtype), {x},
                  [](std::vector<Variable>& in, const Tensor& g) { in[0].add_grad(g.to(in[0].dtype())); });
}

}  // namespace ssm::ag
