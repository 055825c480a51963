// Differentiable matmul with transpose flags and batch broadcasting.
//
// C = A' B' with A' = op_a(A), B' = op_b(B) (op transposes the last two dims when its flag is set).
// Then dA' = G B'^T and dB' = A'^T G; undoing the transposes:
//   dA = trans_a ? B' G^T : G B'^T   = trans_a ? matmul(B, G, trans_b, true) : matmul(G, B, false, !trans_b)
//   dB = trans_b ? G^T A' : A'^T G   = trans_b ? matmul(G, A, true, trans_a) : matmul(A, G, !trans_a, false)
// Leading (batch) dims broadcast, so each gradient is summed back to its operand's shape (sum_to).
// A 2-D B shared by a batched, untransposed A (a Linear weight on (batch, length, channels)): the batch
// folds into M, A -> (batch*M, K), G -> (batch*M, N), and dB is one GEMM with no batch sum afterwards; dA is one
// GEMM too, which adds into A's gradient in place when A already has one (Engine::add_grad_product).
#include "autograd/functions.h"
#include "autograd/impl.h"

namespace ssm::ag {

Variable matmul(const Variable& a, const Variable& b, bool trans_a, bool trans_b) {
  Tensor out = ssm::matmul(a.data(), b.data(), trans_a, trans_b);
  return Variable(out, {a, b}, [trans_a, trans_b](std::vector<Variable>& in, const Tensor& g) {
    const Tensor& A = in[0].data();
    const Tensor& B = in[1].data();
    if (in[0].requires_grad()) {
      if (!trans_a && B.dim() == 2 && A.dim() >= 2) {
        // One GEMM with the batch folded into M (A's own shape: no sum over broadcast dims), added into A's
        // gradient when that already holds another contribution (a Linear input feeding two products, or a
        // product and another op).
        Engine::add_grad_product(in[0], g.reshape({-1, g.size(-1)}), B, false, !trans_b);
      } else {
        Tensor dA = trans_a ? ssm::matmul(B, g, trans_b, true) : ssm::matmul(g, B, false, !trans_b);
        in[0].add_grad(sum_to(dA, A.shape()));
      }
    }
    if (in[1].requires_grad()) {
      if (A.dim() > 2 && B.dim() == 2 && !trans_a) {
        Tensor A2 = A.reshape({-1, A.size(-1)});  // (batch*M, K)
        Tensor G2 = g.reshape({-1, g.size(-1)});  // (batch*M, N)
        in[1].add_grad(trans_b ? ssm::matmul(G2, A2, true, false) : ssm::matmul(A2, G2, true, false));
      } else {
        Tensor dB = trans_b ? ssm::matmul(g, A, true, trans_a) : ssm::matmul(A, g, !trans_a, false);
        in[1].add_grad(sum_to(dB, B.shape()));
      }
    }
  });
}

Variable linear_rows(const Variable& x, const Variable& w, int64_t row0, int64_t rows) {
  SSM_CHECK_INPUT(w.dim() == 2 && x.dim() >= 1 && x.size(-1) == w.size(1), "linear_rows: x ", shape_str(x.shape()),
                  " does not end in the width of w ", shape_str(w.shape()));
  SSM_CHECK_INPUT(row0 >= 0 && rows >= 1 && row0 + rows <= w.size(0), "linear_rows: rows ", row0, "..", row0 + rows,
                  " outside w ", shape_str(w.shape()));
  const Tensor wr = w.data().narrow(0, row0, rows);
  const Tensor wc = wr.dtype() == x.dtype() ? wr : wr.to(x.dtype());  // the product's copy of the rows
  const Tensor y = ssm::matmul(x.data(), wc, false, true);
  return Variable(y, {x, w}, [wc, row0](std::vector<Variable>& in, const Tensor& g) {
    const Tensor g2 = g.reshape({-1, g.size(-1)});  // (M, rows)
    if (in[0].requires_grad()) Engine::add_grad_product(in[0], g2, wc, false, false);  // dx = g W_rows
    if (in[1].requires_grad()) {
      const Tensor& X = in[0].data();
      Engine::add_grad_product_rows(in[1], row0, g2, X.reshape({-1, X.size(-1)}), true, false);  // g^T x
    }
  });
}

}  // namespace ssm::ag
