// The reverse pass.
//
// 1. Topological sort from the root by an iterative depth-first search over nodes that require grad
//    (post-order: every node comes after all of its inputs). No recursion: chains can be 10^5 deep.
// 2. Seed root.grad with the given gradient.
// 3. Walk the order backwards (every consumer of a node is processed before the node, so its gradient
//    is complete): a leaf runs its hooks; an op output runs grad_fn(inputs, grad), which add_grad()s
//    into its inputs; then its gradient is dropped and, unless retain_graph, its inputs and closure
//    too, so activations are freed while the pass goes on.
//
// Hooks run once per pass per leaf, when the leaf is reached. A nested pass (checkpoint's recompute
// runs one inside a closure) leaves the hooks of leaves that the enclosing pass will reach to that
// pass, so they still run once, with the full gradient.
#include <unordered_set>

#include "autograd/impl.h"
#include "core/ops.h"

namespace ssm::ag {

namespace {
using ImplPtr = std::shared_ptr<Variable::Impl>;

struct Pass {
  std::unordered_set<const Variable::Impl*> nodes;
};
thread_local std::vector<Pass*> t_passes;  // the passes running on this thread, outermost first

bool reached_by_outer_pass(const Variable::Impl* n) {
  for (size_t i = 0; i + 1 < t_passes.size(); ++i)
    if (t_passes[i]->nodes.count(n)) return true;
  return false;
}

struct PassScope {
  explicit PassScope(Pass* p) { t_passes.push_back(p); }
  ~PassScope() { t_passes.pop_back(); }
};

[[noreturn]] void throw_freed(const Variable::Impl& n) {
  throw_input(ssm::cat("backward through a graph a second time (node of shape ", shape_str(n.data.shape()),
                  " was freed by an earlier backward); pass retain_graph=true to the first backward()"));
}

// Post-order of the nodes requiring grad that are reachable from root.
std::vector<ImplPtr> topo_order(const ImplPtr& root, Pass& pass) {
  std::vector<ImplPtr> order;
  struct Frame {
    ImplPtr node;
    size_t next;
  };
  std::vector<Frame> stack;
  pass.nodes.insert(root.get());
  stack.push_back({root, 0});
  while (!stack.empty()) {
    Frame& f = stack.back();
    Variable::Impl* n = f.node.get();
    if (!n->is_leaf && n->freed) throw_freed(*n);
    if (f.next < n->inputs.size()) {
      const ImplPtr& child = Engine::impl(n->inputs[f.next++]);
      if (child && child->requires_grad && pass.nodes.insert(child.get()).second) {
        ImplPtr c = child;  // copy before push_back invalidates f
        stack.push_back({std::move(c), 0});
      }
    } else {
      order.push_back(std::move(f.node));
      stack.pop_back();
    }
  }
  return order;
}

void run_hooks(const ImplPtr& p) {
  if (p->hooks.empty() || !p->hook_pending || reached_by_outer_pass(p.get())) return;
  p->hook_pending = false;
  Variable v = Engine::from_impl(p);
  for (auto& h : p->hooks) h(v);
}
}  // namespace

void Engine::backward(Variable& root, const Tensor& seed, bool retain_graph) {
  const ImplPtr& r = root.impl_;
  SSM_CHECK_INPUT(r->requires_grad, "backward() on a variable of shape ", shape_str(r->data.shape()),
                  " that does not require grad (no input requires grad, or it was built under NoGradGuard)");
  Pass pass;
  std::vector<ImplPtr> order = topo_order(r, pass);
  PassScope scope(&pass);
  if (t_passes.size() == 1)  // outermost pass: contributions from before it do not trigger hooks
    for (auto& p : order) p->hook_pending = false;

  NoGradGuard no_grad;  // closures compute with tensors; nothing they do builds a graph
  root.add_grad(seed);
  size_t i = order.size();
  try {
    while (i > 0) {
      const ImplPtr& p = order[--i];
      Variable::Impl& n = *p;
      if (n.is_leaf) {
        run_hooks(p);
        continue;
      }
      if (n.grad.defined()) {
        run_hooks(p);
        Tensor g = std::move(n.grad);
        n.grad = Tensor();
        n.grad_owned = false;
        if (!g.is_contiguous()) g = g.contiguous();  // closures may assume a dense gradient
        n.grad_fn(n.inputs, g);
      }
      if (!retain_graph) {
        n.inputs.clear();
        n.grad_fn = nullptr;
        n.freed = true;
      }
    }
  } catch (...) {
    // Leave no half-accumulated gradients on op outputs (a retry would double them).
    for (auto& p : order)
      if (!p->is_leaf) p->grad = Tensor();
    throw;
  }
  // `order` dies here; every node it frees has no inputs left (or, with retain_graph, is still held).
}

std::vector<Variable> Engine::captured_leaves(const Variable& v, uint64_t since, const std::vector<Variable>& exclude) {
  std::unordered_set<const Variable::Impl*> seen;
  for (const auto& e : exclude)
    if (e.impl_) seen.insert(e.impl_.get());
  std::vector<Variable> leaves;
  std::vector<const Variable::Impl*> stack;
  if (v.impl_ && v.impl_->requires_grad && seen.insert(v.impl_.get()).second) {
    if (v.impl_->is_leaf)
      leaves.push_back(v);
    else
      stack.push_back(v.impl_.get());
  }
  while (!stack.empty()) {
    const Variable::Impl* n = stack.back();
    stack.pop_back();
    SSM_CHECK_INPUT(n->seq >= since, "checkpoint: the function uses a Variable of shape ", shape_str(n->data.shape()),
                    " that was computed outside it; pass such activations in `inputs` (only parameters may be "
                    "captured)");
    for (const auto& in : n->inputs) {
      const auto& c = in.impl_;
      if (!c || !c->requires_grad || !seen.insert(c.get()).second) continue;
      if (c->is_leaf)
        leaves.push_back(in);
      else
        stack.push_back(c.get());
    }
  }
  return leaves;
}

}  // namespace ssm::ag
