// Differentiable reductions, softmax and the cross-entropy loss.
#include <algorithm>

#include "autograd/functions.h"
#include "autograd/impl.h"

namespace ssm::ag {

namespace {
// x's shape with every reduced dim set to 1 (what keepdim=true gives). Empty dims = all dims.
Shape kept_shape(const Shape& shape, const std::vector<int64_t>& dims, const char* op) {
  Shape keep = shape;
  const int64_t r = int64_t(shape.size());
  if (dims.empty()) {
    for (auto& s : keep) s = 1;
    return keep;
  }
  for (int64_t d : dims) {
    int64_t nd = d < 0 ? d + r : d;
    SSM_CHECK_INPUT(nd >= 0 && nd < r, op, ": dim ", d, " out of range for shape ", shape_str(shape));
    keep[nd] = 1;
  }
  return keep;
}
}  // namespace

// y = sum_{dims} x:  dx = g broadcast back over the reduced dims
Variable sum(const Variable& x, const std::vector<int64_t>& dims, bool keepdim) {
  Shape keep = kept_shape(x.shape(), dims, "sum");
  return Variable(ssm::sum(x.data(), dims, keepdim), {x}, [keep](std::vector<Variable>& in, const Tensor& g) {
    in[0].add_grad(g.reshape(keep).expand(in[0].shape()));
  });
}

// y = sum_{dims} x / n, n = number of elements reduced:  dx = g / n broadcast back
Variable mean(const Variable& x, const std::vector<int64_t>& dims, bool keepdim) {
  Shape keep = kept_shape(x.shape(), dims, "mean");
  const int64_t n = x.numel() / std::max<int64_t>(1, shape_numel(keep));
  return Variable(ssm::mean(x.data(), dims, keepdim), {x}, [keep, n](std::vector<Variable>& in, const Tensor& g) {
    in[0].add_grad(ssm::mul(g, 1.0 / double(n)).reshape(keep).expand(in[0].shape()));
  });
}

// y = softmax(x) along dim:  dx = y * (g - sum_dim(g * y))
Variable softmax(const Variable& x, int64_t dim) {
  Tensor y = ssm::softmax(x.data(), dim);
  return Variable(y, {x}, [y, dim](std::vector<Variable>& in, const Tensor& g) {
    Tensor s = ssm::sum(ssm::mul(g, y), {dim}, true);
    in[0].add_grad(ssm::mul(y, ssm::sub(g, s)));
  });
}

// y = log_softmax(x) along dim:  dx = g - exp(y) * sum_dim(g)
Variable log_softmax(const Variable& x, int64_t dim) {
  Tensor y = ssm::log_softmax(x.data(), dim);
  return Variable(y, {x}, [y, dim](std::vector<Variable>& in, const Tensor& g) {
    Tensor s = ssm::sum(g, {dim}, true);
    in[0].add_grad(ssm::sub(g, ssm::mul(ssm::exp(y), s)));
  });
}

// loss = mean over non-ignored rows of -log_softmax(logits)[target]:
// dlogits = g * (softmax(logits) - onehot(target)) / n_valid (core cross_entropy_backward)
Variable cross_entropy(const Variable& logits, const Tensor& targets, int64_t ignore_index) {
  Tensor loss = ssm::cross_entropy(logits.data(), targets, ignore_index);
  return Variable(loss, {logits}, [targets, ignore_index](std::vector<Variable>& in, const Tensor& g) {
    const Tensor& z = in[0].data();
    if (g.device().is_cpu()) {
      in[0].add_grad(cross_entropy_backward(z, targets, g.item(), ignore_index));
    } else {  // no host sync: scale by the 0-d gradient on the device
      in[0].add_grad(ssm::mul(cross_entropy_backward(z, targets, 1.0, ignore_index), g));
    }
  });
}

}  // namespace ssm::ag
