// Variable: a handle to a graph node (autograd/impl.h), grad mode and autocast flags.
#include "autograd/variable.h"


#include "autograd/impl.h"
#include "core/ops.h"

namespace ssm::ag {

namespace {
thread_local bool t_grad_enabled = true;
thread_local bool t_autocast = false;
thread_local uint64_t t_seq = 1;  // per thread: checkpoint compares numbers made on one thread

Variable::Impl& checked(const std::shared_ptr<Variable::Impl>& p, const char* what) {
  SSM_CHECK_INPUT(p != nullptr, "Variable::", what, "() called on an undefined Variable");
  return *p;
}
}  // namespace

// ---------------- grad mode / autocast ----------------
bool grad_enabled() { return t_grad_enabled; }
NoGradGuard::NoGradGuard() : prev_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = prev_; }
GradModeGuard::GradModeGuard(bool on) : prev_(t_grad_enabled) { t_grad_enabled = on; }
GradModeGuard::~GradModeGuard() { t_grad_enabled = prev_; }

bool autocast_enabled() { return t_autocast; }
AutocastGuard::AutocastGuard(bool on) : prev_(t_autocast) { t_autocast = on; }
AutocastGuard::~AutocastGuard() { t_autocast = prev_; }

uint64_t Engine::next_seq() { return t_seq; }

// ---------------- node lifetime ----------------
// Unlink the inputs of every node that only we hold before it dies, so no destructor recurses.
Variable::Impl::~Impl() {
  std::vector<std::shared_ptr<Impl>> stack;
  for (auto& in : inputs) stack.push_back(std::move(in.impl_));
  inputs.clear();
  while (!stack.empty()) {
    std::shared_ptr<Impl> p = std::move(stack.back());
    stack.pop_back();
    if (p && p.use_count() == 1) {
      for (auto& in : p->inputs) stack.push_back(std::move(in.impl_));
      p->inputs.clear();
      p->grad_fn = nullptr;  // a closure could hold Variables too
    }
    // p dies here (if last) with no inputs left: no recursion.
  }
}

// ---------------- construction ----------------
Variable::Variable(Tensor data, bool requires_grad) : impl_(std::make_shared<Impl>()) {
  SSM_CHECK_INPUT(data.defined(), "Variable: cannot wrap an undefined tensor");
  SSM_CHECK_INPUT(!requires_grad || is_floating(data.dtype()), "Variable: only floating tensors can require grad; got ",
                  dtype_name(data.dtype()), " ", shape_str(data.shape()));
  impl_->data = std::move(data);
  impl_->requires_grad = requires_grad;
}

Variable::Variable(Tensor data, std::vector<Variable> inputs, GradFn grad_fn) : impl_(std::make_shared<Impl>()) {
  SSM_CHECK(data.defined(), "op output: undefined tensor");
  impl_->data = std::move(data);
  bool any = false;
  if (t_grad_enabled)
    for (const auto& in : inputs) any = any || in.requires_grad();
  if (any) {
    impl_->requires_grad = true;
    impl_->is_leaf = false;
    impl_->inputs = std::move(inputs);
    impl_->grad_fn = std::move(grad_fn);
    impl_->seq = t_seq++;
  }
  // else: a constant; inputs and closure are dropped here.
}

// ---------------- accessors ----------------
const Tensor& Variable::data() const { return checked(impl_, "data").data; }
Tensor& Variable::data() { return checked(impl_, "data").data; }
bool Variable::requires_grad() const { return impl_ && impl_->requires_grad; }
bool Variable::is_leaf() const { return checked(impl_, "is_leaf").is_leaf; }

void Variable::set_requires_grad(bool on) {
  Impl& n = checked(impl_, "set_requires_grad");
  SSM_CHECK_INPUT(n.is_leaf, "set_requires_grad: only leaves (parameters, inputs) can change requires_grad; this "
                  "variable ", shape_str(n.data.shape()), " is an op output (use detach())");
  SSM_CHECK_INPUT(!on || is_floating(n.data.dtype()), "set_requires_grad: a ", dtype_name(n.data.dtype()),
                  " tensor cannot require grad");
  n.requires_grad = on;
}

bool Variable::has_grad() const { return impl_ && impl_->grad.defined(); }
const Tensor& Variable::grad() const { return checked(impl_, "grad").grad; }
Tensor& Variable::grad() { return checked(impl_, "grad").grad; }
void Variable::zero_grad() {
  if (impl_) impl_->grad = Tensor();
}

void Variable::register_hook(GradHook hook) { checked(impl_, "register_hook").hooks.push_back(std::move(hook)); }

Variable Variable::detach() const { return Variable(data(), false); }

// ---------------- accumulation ----------------
// grad += g. See Impl::grad_owned / grad_writable for when a tensor may be updated in place.
// g is taken by value: a temporary argument (a closure's freshly computed gradient) arrives as the only handle on
// its memory, which a leaf can then keep without a copy.
void Variable::add_grad(Tensor g) {
  Impl& n = checked(impl_, "add_grad");
  SSM_CHECK(g.defined(), "add_grad: undefined gradient for a variable of shape ", shape_str(n.data.shape()));
  SSM_CHECK(g.shape() == n.data.shape(), "add_grad: gradient shape ", shape_str(g.shape()),
            " != variable shape ", shape_str(n.data.shape()));
  if (g.dtype() != n.data.dtype() || g.device() != n.data.device()) g = g.to(n.data.device(), n.data.dtype());
  n.hook_pending = true;
  if (!n.grad.defined()) {
    if (n.is_leaf) {
      // The leaf owns its gradient (optimizers and clipping update it in place): kept as is when nothing else
      // holds that memory (no other tensor shares its storage) and it is contiguous, else copied.
      const bool sole = g.storage().use_count() == 1 && g.is_contiguous();
      n.grad = sole ? std::move(g) : g.clone();
    } else {
      n.grad = g;  // consumed once by the closure, never written: no copy needed
      n.grad_owned = false;
    }
    return;
  }
  if (n.grad_writable()) {
    axpby_(n.grad, 1.0, g, 1.0);
  } else {
    n.grad = ssm::add(n.grad, g);
  }
  n.grad_owned = true;
}

void Engine::add_grad_product(Variable& v, const Tensor& a, const Tensor& b, bool ta, bool tb) {
  Variable::Impl& n = checked(v.impl_, "add_grad");
  const Tensor& gr = n.grad;
  const bool in_place = gr.defined() && gr.dtype() == a.dtype() && gr.device() == a.device() && gr.is_contiguous() &&
                        n.grad_writable();
  if (!in_place) {
    v.add_grad(ssm::matmul(a, b, ta, tb).reshape(n.data.shape()));
    return;
  }
  Tensor c = gr.reshape({-1, gr.size(-1)});  // a view of the gradient's storage
  SSM_CHECK(c.size(0) == (ta ? a.size(1) : a.size(0)) && c.size(1) == (tb ? b.size(0) : b.size(1)),
            "add_grad_product: product of ", shape_str(a.shape()), " and ", shape_str(b.shape()),
            " does not fit the gradient ", shape_str(gr.shape()));
  n.hook_pending = true;
  matmul_add_(c, a, b, ta, tb);
  n.grad_owned = true;
}

void Engine::add_grad_product_rows(Variable& v, int64_t row0, const Tensor& a, const Tensor& b, bool ta, bool tb) {
  Variable::Impl& n = checked(v.impl_, "add_grad");
  const Tensor& d = n.data;
  const int64_t rows = ta ? a.size(1) : a.size(0);
  SSM_CHECK(d.dim() == 2 && row0 >= 0 && row0 + rows <= d.size(0) && (tb ? b.size(0) : b.size(1)) == d.size(1),
            "add_grad_product_rows: product of ", shape_str(a.shape()), " and ", shape_str(b.shape()),
            " does not fit rows ", row0, "..", row0 + rows, " of ", shape_str(d.shape()));
  const bool half_in = a.dtype() == DType::bf16 || a.dtype() == DType::f16;
  if (d.dtype() != a.dtype() && !(half_in && d.dtype() == DType::f32)) {  // no GEMM writes this dtype: add
    Tensor g = Tensor::zeros(d.shape(), d.dtype(), d.device());
    g.narrow(0, row0, rows).copy_(ssm::matmul(a, b, ta, tb));
    v.add_grad(std::move(g));
    return;
  }
  n.hook_pending = true;
  n.grad_owned = true;
  if (!n.grad.defined() && rows == d.size(0)) {  // the whole gradient, written by the GEMM (beta 0)
    n.grad = Tensor::empty(d.shape(), d.dtype(), d.device());
    matmul_into_(n.grad, a, b, ta, tb);
    return;
  }
  if (!n.grad.defined()) {
    n.grad = Tensor::zeros(d.shape(), d.dtype(), d.device());
  } else if (!n.grad_writable() || !n.grad.is_contiguous()) {
    n.grad = n.grad.contiguous().clone();
  }
  Tensor slice = n.grad.narrow(0, row0, rows);  // whole rows of a contiguous matrix: contiguous
  matmul_add_(slice, a, b, ta, tb);
}

void Engine::add_grad_narrow(Variable& v, int64_t dim, int64_t start, const Tensor& g_in) {
  Variable::Impl& n = checked(v.impl_, "add_grad");
  Tensor g = g_in;
  if (g.dtype() != n.data.dtype() || g.device() != n.data.device()) g = g.to(n.data.device(), n.data.dtype());
  n.hook_pending = true;
  bool fresh = false;
  if (!n.grad.defined()) {
    n.grad = Tensor::zeros(n.data.shape(), n.data.dtype(), n.data.device());
    fresh = true;
  } else if (!n.grad_writable()) {
    n.grad = n.grad.clone();
  }
  n.grad_owned = true;
  Tensor slice = n.grad.narrow(dim, start, g.size(dim));
  SSM_CHECK(slice.shape() == g.shape(), "add_grad_narrow: gradient ", shape_str(g.shape()), " does not fit slice ",
            shape_str(slice.shape()));
  if (fresh)
    slice.copy_(g);
  else
    axpby_(slice, 1.0, g, 1.0);
}

// ---------------- backward ----------------
void Variable::backward(bool retain_graph) {
  Impl& n = checked(impl_, "backward");
  SSM_CHECK_INPUT(n.data.numel() == 1, "backward() needs a scalar or an explicit gradient; this variable has shape ",
                  shape_str(n.data.shape()));
  Engine::backward(*this, Tensor::ones(n.data.shape(), n.data.dtype(), n.data.device()), retain_graph);
}

void Variable::backward(const Tensor& grad_output, bool retain_graph) {
  Impl& n = checked(impl_, "backward");
  SSM_CHECK_INPUT(grad_output.defined(), "backward(): the gradient is an undefined tensor");
  SSM_CHECK_INPUT(grad_output.shape() == n.data.shape(), "backward(): gradient of shape ",
                  shape_str(grad_output.shape()), " does not match the variable's shape ", shape_str(n.data.shape()));
  Engine::backward(*this, grad_output, retain_graph);
}

}  // namespace ssm::ag
