// Private to autograd/: the node behind a Variable, the engine, and helpers the differentiable ops
// share. Nothing outside autograd/ includes this file.
#pragma once
#include <cstdint>
#include <vector>

#include "autograd/variable.h"

namespace ssm::ag {

// One node of the graph. A leaf holds data (and accumulates .grad across backward passes); an op
// output also holds its inputs and the closure that maps its gradient to theirs.
struct Variable::Impl {
  Tensor data;
  Tensor grad;
  bool requires_grad = false;
  bool is_leaf = true;
  // Non-leaf nodes store their first gradient contribution by reference (no copy). Such a tensor may
  // be shared (with a sibling's gradient, a saved tensor, the caller's seed), so it is updated in place
  // only once nothing else holds its storage (and it is contiguous: a broadcast view would write one
  // element many times); otherwise a second contribution makes a fresh sum, which we own (grad_owned).
  // A leaf always owns its gradient (the first contribution is kept only when nothing else holds it).
  bool grad_owned = false;
  bool grad_writable() const {
    return is_leaf || grad_owned || (grad.storage().use_count() == 1 && grad.is_contiguous());
  }
  bool freed = false;         // closure and inputs released by a backward without retain_graph
  bool hook_pending = false;  // got a gradient contribution since its hooks last ran
  uint64_t seq = 0;           // creation order of op outputs (checkpoint uses it to spot captured nodes)
  std::vector<Variable> inputs;
  GradFn grad_fn;
  std::vector<GradHook> hooks;

  // Iterative: dropping the last handle to a 100000-deep chain must not recurse 100000 times.
  ~Impl();
};

class Engine {
 public:
  // The reverse pass (autograd/engine.cpp). seed: the gradient of root (already shape-checked).
  static void backward(Variable& root, const Tensor& seed, bool retain_graph);

  // grad[.., start:start+g.size(dim), ..] += g along dim, allocating a zero gradient when there is
  // none (the backward of narrow/select/split: no full-size zero tensor per piece).
  static void add_grad_narrow(Variable& v, int64_t dim, int64_t start, const Tensor& g);

  // grad += a' b' (a 2-D product, a' = a^T when ta, b' likewise) viewed in v's shape: the GEMM adds into the
  // gradient (beta 1) when it may be written in place (contiguous, a's dtype, and the leaf's own, or held by
  // nothing else), so a second contribution costs no temporary and no add; else grad += matmul(...).
  static void add_grad_product(Variable& v, const Tensor& a, const Tensor& b, bool ta, bool tb);

  // grad[row0 : row0 + r] += a' b' for a 2-D v (r = the product's rows), allocating a zero gradient when there is
  // none (none and all rows: the GEMM writes it, matmul_into_): the GEMM adds its accumulators into those rows of v's own gradient (f32 for bf16 / f16 products), so a
  // weight kept in f32 and used in bf16 gets its gradient with no bf16 temporary, cast back or add, and row blocks
  // of one weight (in_proj's x and z halves) each write their own rows.
  static void add_grad_product_rows(Variable& v, int64_t row0, const Tensor& a, const Tensor& b, bool ta, bool tb);

  // The leaves (requires_grad, not in `exclude`) reachable from v through nodes created at or after
  // sequence number `since`. Throws BadInput if the walk meets an older non-leaf node (a Variable
  // computed outside and captured by the function that built v).
  static std::vector<Variable> captured_leaves(const Variable& v, uint64_t since,
                                               const std::vector<Variable>& exclude);
  static uint64_t next_seq();  // the sequence number the next op output will get

  static Variable from_impl(std::shared_ptr<Variable::Impl> impl) {
    Variable v;
    v.impl_ = std::move(impl);
    return v;
  }
  static const std::shared_ptr<Variable::Impl>& impl(const Variable& v) { return v.impl_; }
};

// Sets grad mode for a scope (NoGradGuard can only turn it off; checkpoint's recompute turns it on).
class GradModeGuard {
 public:
  explicit GradModeGuard(bool on);
  ~GradModeGuard();

 private:
  bool prev_;
};

}  // namespace ssm::ag
