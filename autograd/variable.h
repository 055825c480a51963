// Variable: a Tensor plus what reverse mode needs (flashlight style). A leaf holds a parameter or an
// input; an op output holds its inputs and a backward closure. backward() sorts the graph
// topologically from the root, runs each closure once with the summed gradient of its output, and
// drops each node's gradient (and closure, if !retain_graph) as soon as it has been consumed.
//
// Custom functions: an op (fused kernel or not) is registered by building its output as
//   Variable(out_tensor, {inputs...}, [](std::vector<Variable>& in, const Tensor& g) {
//     if (in[0].requires_grad()) in[0].add_grad(...);   // one add_grad per differentiable input
//   });
// Closures must capture what they need (saved tensors) by value.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace ssm::ag {

class Variable;
using GradFn = std::function<void(std::vector<Variable>& inputs, const Tensor& grad_output)>;
// Runs when a leaf's gradient for this backward pass is complete (all its uses have contributed).
// The data-parallel reducer hangs off this: it may read var.grad() and launch an all-reduce.
using GradHook = std::function<void(Variable& var)>;

class Variable {
 public:
  Variable() = default;
  explicit Variable(Tensor data, bool requires_grad = false);  // a leaf
  // An op output. requires_grad = grad mode is on and any input requires grad; otherwise the inputs and
  // closure are dropped at once (no graph is built).
  Variable(Tensor data, std::vector<Variable> inputs, GradFn grad_fn);

  bool defined() const { return impl_ != nullptr; }
  const Tensor& data() const;
  Tensor& data();
  bool requires_grad() const;
  void set_requires_grad(bool on);
  bool is_leaf() const;

  bool has_grad() const;
  const Tensor& grad() const;
  Tensor& grad();
  // grad += g. g must have exactly data()'s shape (ops reduce broadcast gradients with sum_to first).
  void add_grad(Tensor g);
  void zero_grad();  // drops the gradient (undefined until the next backward)

  void register_hook(GradHook hook);

  // Reverse pass from this variable. Without an argument the variable must hold one element (seed 1).
  void backward(bool retain_graph = false);
  void backward(const Tensor& grad_output, bool retain_graph = false);

  Variable detach() const;  // same data, no graph, no grad

  // Forwarders.
  const Shape& shape() const { return data().shape(); }
  int64_t dim() const { return data().dim(); }
  int64_t size(int64_t d) const { return data().size(d); }
  int64_t numel() const { return data().numel(); }
  DType dtype() const { return data().dtype(); }
  Device device() const { return data().device(); }

  // Identity of the underlying node (for maps in the engine and the reducer).
  const void* id() const { return impl_.get(); }

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
  friend class Engine;
};

// Grad mode: while a NoGradGuard lives on this thread, ops build no graph.
bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();

 private:
  bool prev_;
};

// Autocast (GPU mixed precision): while an AutocastGuard lives on this thread, layers that run matmuls
// (Linear, ...) cast their f32 inputs and weights to bf16 for the product and get f32 results back;
// parameters stay f32 (master weights) and their gradients arrive in f32.
bool autocast_enabled();
class AutocastGuard {
 public:
  explicit AutocastGuard(bool on = true);
  ~AutocastGuard();

 private:
  bool prev_;
};

}  // namespace ssm::ag
