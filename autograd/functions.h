// Differentiable ops on Variables: each calls the core op forward and registers its backward.
// Broadcasting ops reduce their gradients back to each input's shape with sum_to.
#pragma once
#include <functional>
#include <vector>

#include "autograd/variable.h"
#include "core/ops.h"

namespace ssm::ag {

Variable add(const Variable& a, const Variable& b);
Variable sub(const Variable& a, const Variable& b);
Variable mul(const Variable& a, const Variable& b);
Variable div(const Variable& a, const Variable& b);
Variable add(const Variable& a, double s);
Variable mul(const Variable& a, double s);
Variable neg(const Variable& a);
Variable unary(UnaryOp op, const Variable& x);  // exp, log, tanh, sigmoid, silu, gelu, softplus, ...
inline Variable exp(const Variable& x) { return unary(UnaryOp::Exp, x); }
inline Variable gelu(const Variable& x) { return unary(UnaryOp::Gelu, x); }
inline Variable silu(const Variable& x) { return unary(UnaryOp::Silu, x); }
inline Variable sigmoid(const Variable& x) { return unary(UnaryOp::Sigmoid, x); }
Variable pow(const Variable& x, double p);

Variable matmul(const Variable& a, const Variable& b, bool trans_a = false, bool trans_b = false);
// x (..., K) times rows row0 .. row0 + rows of w (out, K), transposed: y (..., rows), with those rows cast to x's
// dtype (autocast: an f32 weight used in bf16). Its backward adds w's gradient into w's own rows by one GEMM in
// w's dtype (Engine::add_grad_product_rows): no bf16 weight gradient to cast back (autocast_linear's product).
Variable linear_rows(const Variable& x, const Variable& w, int64_t row0, int64_t rows);

Variable sum(const Variable& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Variable mean(const Variable& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);

Variable reshape(const Variable& x, const Shape& shape);
Variable permute(const Variable& x, const std::vector<int64_t>& dims);
Variable transpose(const Variable& x, int64_t d0, int64_t d1);
Variable narrow(const Variable& x, int64_t dim, int64_t start, int64_t length);
Variable select(const Variable& x, int64_t dim, int64_t index);
Variable expand(const Variable& x, const Shape& shape);
Variable contiguous(const Variable& x);
Variable cat(const std::vector<Variable>& xs, int64_t dim);
std::vector<Variable> split(const Variable& x, const std::vector<int64_t>& sizes, int64_t dim);

Variable softmax(const Variable& x, int64_t dim);
Variable log_softmax(const Variable& x, int64_t dim);
Variable cross_entropy(const Variable& logits, const Tensor& targets, int64_t ignore_index = -100);
// The LM head and its loss without the whole logits matrix: for x (N, d), w (V, d), targets (N) i64,
// all in [0, V), loss = mean_i CE(x_i w^T, targets_i), computed over row chunks of `chunk_rows`:
// per chunk, logits_c = x_c w^T (x's dtype: bf16 under autocast), the f32 cross-entropy, and at once
// its gradient d_c = (softmax(logits_c) - onehot) / N, giving dx_c = d_c w and dw += d_c^T x_c
// (f32). Peak extra memory is one chunk of logits instead of N x V (5 GB at 16k x 50k in f32).
// The backward only scales the stored dx, dw by the upstream gradient. Under autocast x is bf16 / f16 and w may
// stay f32 (the master weight): the products use a cast of w, and dw reaches w as the f32 sum, never rounded.
// classes: only w's first `classes` rows are classes (the rest is padding; -1 = all rows). The logits are
// still computed over all rows, so the matmuls keep w's padded (aligned) width, and the padding columns
// are set to -inf before the cross-entropy: they add exp(-inf) = 0 to every softmax, get gradient 0, and
// w's padding rows get gradient 0. (With 50277 classes, a 50277-wide matmul output makes cuBLAS fall back to
// kernels for unaligned rows, measured 3x slower on the H100.)
Variable linear_cross_entropy(const Variable& x, const Variable& w, const Tensor& targets,
                              int64_t chunk_rows = 4096, int64_t classes = -1);
Variable index_select(const Variable& x, int64_t dim, const Tensor& index);  // embedding lookup
Variable where(const Tensor& cond, const Variable& a, const Variable& b);
// Inverted dropout: keeps each element with probability 1 - p, scaled by 1 / (1 - p).
Variable dropout(const Variable& x, double p, Generator& gen);
Variable cast(const Variable& x, DType dtype);  // gradient cast back to x's dtype (autocast)

// Activation recompute: runs fn and keeps only its output (the graph fn builds lives only until fn
// returns, long enough to note the parameters fn captures: they become inputs of the checkpoint node,
// so their hooks run once with the full gradient); in the backward runs fn again with the graph on
// (same inputs and autocast state; if fn draws random numbers from *gen, its offset is rewound so the
// recompute draws the same ones, then put back), then back-propagates through the recomputed graph.
// Parameters (leaves) that fn captures get their gradients; an activation computed outside fn must be
// passed in `inputs` (capturing one is a BadInput). *gen must outlive the backward.
Variable checkpoint(const std::function<Variable(const std::vector<Variable>&)>& fn,
                    const std::vector<Variable>& inputs, Generator* gen = nullptr);

// Finite-difference check in float64 on the CPU: fn maps f64 inputs to any output; the scalar checked
// is sum(out * w) with fixed random weights w. Compares every input element's analytic gradient with
// the central difference (f(x+eps) - f(x-eps)) / 2eps. Returns "" when all agree, else a message naming
// the input, element index, analytic and numeric values. Integer inputs (targets, indices) are passed
// through without grad; floating inputs must be f64.
std::string gradcheck(const std::function<Variable(const std::vector<Variable>&)>& fn,
                      const std::vector<Tensor>& inputs, double eps = 1e-6, double atol = 1e-5,
                      double rtol = 1e-3);

}  // namespace ssm::ag
