// linear_cross_entropy: the chunked LM head + cross-entropy (math in functions.h).
#include <algorithm>
#include <cmath>

#include "autograd/functions.h"
#include "autograd/impl.h"

namespace ssm::ag {

Variable linear_cross_entropy(const Variable& x, const Variable& w, const Tensor& targets, int64_t chunk_rows,
                              int64_t classes) {
  SSM_CHECK_INPUT(x.dim() == 2 && w.dim() == 2 && x.size(1) == w.size(1), "linear_cross_entropy: x ",
                  shape_str(x.shape()), " and w ", shape_str(w.shape()), " must be (N, d) and (V, d)");
  SSM_CHECK_INPUT(targets.dim() == 1 && targets.size(0) == x.size(0), "linear_cross_entropy: targets ",
                  shape_str(targets.shape()), " must be (N) with N = ", x.size(0));
  SSM_CHECK_INPUT(chunk_rows >= 1, "linear_cross_entropy: chunk_rows must be >= 1");
  const int64_t rows = w.size(0);
  if (classes < 0) classes = rows;
  SSM_CHECK_INPUT(classes >= 1 && classes <= rows, "linear_cross_entropy: classes ", classes, " must be in [1, ",
                  rows, "] (the rows of w ", shape_str(w.shape()), ")");
  const int64_t N = x.size(0);
  const bool want_x = grad_enabled() && x.requires_grad(), want_w = grad_enabled() && w.requires_grad();
  const Tensor& X = x.data();
  const bool half_x = X.dtype() == DType::bf16 || X.dtype() == DType::f16;
  SSM_CHECK_INPUT(w.dtype() == X.dtype() || (half_x && w.dtype() == DType::f32), "linear_cross_entropy: x is ",
                  dtype_name(X.dtype()), " and w ", dtype_name(w.dtype()), " (w must be x's dtype, or f32 for bf16 / f16 x)");
  const Tensor W = w.dtype() == X.dtype() ? w.data() : w.data().to(X.dtype());  // the products' copy of an f32 w
  const DType acc = X.dtype() == DType::f64 ? DType::f64 : DType::f32;  // f64 for gradchecks
  Tensor loss_sum = Tensor::zeros({}, acc, X.device());
  Tensor dx = want_x ? Tensor::empty(X.shape(), X.dtype(), X.device()) : Tensor();
  Tensor dw = want_w ? Tensor::zeros(W.shape(), acc, W.device()) : Tensor();
  for (int64_t r0 = 0; r0 < N; r0 += chunk_rows) {
    const int64_t n = std::min(chunk_rows, N - r0);
    const Tensor xc = X.narrow(0, r0, n);
    const Tensor tc = targets.narrow(0, r0, n);
    Tensor logits = ssm::matmul(xc, W, false, true);  // (n, rows)
    if (classes < rows) logits.narrow(1, classes, rows - classes).fill_(-INFINITY);  // padding: no class
    // cross_entropy is the chunk's mean: weight it by n / N.
    const double weight = double(n) / double(N);
    if (!want_x && !want_w) {
      loss_sum = ssm::add(loss_sum, ssm::mul(ssm::cross_entropy(logits, tc).to(acc), weight));
      continue;
    }
    // The loss and, over the logits, their gradient (n, V) in one pass.
    loss_sum = ssm::add(loss_sum, ssm::mul(ssm::cross_entropy_with_grad_(logits, tc, weight).to(acc), weight));
    const Tensor& d = logits;
    if (want_x) dx.narrow(0, r0, n).copy_(ssm::matmul(d, W, false, false));
    if (want_w) ssm::matmul_add_(dw, d, xc, /*trans_a=*/true);  // f32 accumulation across chunks, no rounding
  }
  return Variable(loss_sum, {x, w}, [dx, dw](std::vector<Variable>& in, const Tensor& g) {
    const double scale = g.item();
    if (in[0].requires_grad()) in[0].add_grad(scale == 1.0 ? dx : ssm::mul(dx, scale));
    if (in[1].requires_grad()) {
      Tensor gw = dw.dtype() == in[1].dtype() ? dw : dw.to(in[1].dtype());
      in[1].add_grad(scale == 1.0 ? gw : ssm::mul(gw, scale));
    }
  });
}

}  // namespace ssm::ag
