// Differentiable views (no copy forward), cat/split and index_select. A view's backward maps the
// gradient back to the input's layout: reshape back, inverse permute, sum over broadcast dims, or add
// the piece into the matching slice of the input's gradient.
#include "autograd/functions.h"
#include "autograd/impl.h"

namespace ssm::ag {

namespace {
int64_t norm_dim(int64_t d, int64_t rank, const char* op, const Shape& shape) {
  int64_t nd = d < 0 ? d + rank : d;
  SSM_CHECK_INPUT(nd >= 0 && nd < rank, op, ": dim ", d, " out of range for shape ", shape_str(shape));
  return nd;
}
}  // namespace

// y = x viewed as `shape`:  dx = g viewed as x's shape
Variable reshape(const Variable& x, const Shape& shape) {
  return Variable(x.data().reshape(shape), {x},
                  [](std::vector<Variable>& in, const Tensor& g) { in[0].add_grad(g.reshape(in[0].shape())); });
}

// y = x with dims permuted, y.dim(i) = x.dim(p[i]):  dx = g permuted by the inverse, inv[p[i]] = i
Variable permute(const Variable& x, const std::vector<int64_t>& dims) {
  Tensor out = x.data().permute(dims);
  const int64_t r = x.dim();
  std::vector<int64_t> inv(size_t(r), 0);
  for (int64_t i = 0; i < r; ++i) inv[size_t(norm_dim(dims[size_t(i)], r, "permute", x.shape()))] = i;
  return Variable(out, {x}, [inv](std::vector<Variable>& in, const Tensor& g) { in[0].add_grad(g.permute(inv)); });
}

// y = x with d0 and d1 swapped:  dx = g with them swapped back
Variable transpose(const Variable& x, int64_t d0, int64_t d1) {
  return Variable(x.data().transpose(d0, d1), {x},
                  [d0, d1](std::vector<Variable>& in, const Tensor& g) { in[0].add_grad(g.transpose(d0, d1)); });
}

// y = x[.., start:start+length, ..]:  dx = zeros with g in that slice
Variable narrow(const Variable& x, int64_t dim, int64_t start, int64_t length) {
  Tensor out = x.data().narrow(dim, start, length);
  const int64_t d = norm_dim(dim, x.dim(), "narrow", x.shape());
  const int64_t s = start < 0 ? start + x.size(d) : start;
  return Variable(out, {x}, [d, s](std::vector<Variable>& in, const Tensor& g) {
    Engine::add_grad_narrow(in[0], d, s, g);
  });
}

// y = x[.., index, ..] (dim dropped):  dx = zeros with g in that slice
Variable select(const Variable& x, int64_t dim, int64_t index) {
  Tensor out = x.data().select(dim, index);
  const int64_t d = norm_dim(dim, x.dim(), "select", x.shape());
  const int64_t i = index < 0 ? index + x.size(d) : index;
  return Variable(out, {x}, [d, i](std::vector<Variable>& in, const Tensor& g) {
    Engine::add_grad_narrow(in[0], d, i, g.unsqueeze(d));
  });
}

// y = x broadcast to `shape`:  dx = sum_to(g, x's shape)
Variable expand(const Variable& x, const Shape& shape) {
  return Variable(x.data().expand(shape), {x},
                  [](std::vector<Variable>& in, const Tensor& g) { in[0].add_grad(sum_to(g, in[0].shape())); });
}

// y = dense copy of x:  dx = g
Variable contiguous(const Variable& x) {
  if (x.data().is_contiguous()) return x;
  return Variable(x.data().contiguous(), {x}, [](std::vector<Variable>& in, const Tensor& g) { in[0].add_grad(g); });
}

// y = [x0, x1, ..] along dim:  dx_i = the matching slice of g
Variable cat(const std::vector<Variable>& xs, int64_t dim) {
  SSM_CHECK_INPUT(!xs.empty(), "cat: no inputs");
  std::vector<Tensor> ts;
  ts.reserve(xs.size());
  for (const auto& x : xs) ts.push_back(x.data());
  Tensor out = ssm::cat(ts, dim);
  const int64_t d = norm_dim(dim, out.dim(), "cat", out.shape());
  return Variable(out, xs, [d](std::vector<Variable>& in, const Tensor& g) {
    int64_t off = 0;
    for (auto& x : in) {
      const int64_t n = x.size(d);
      if (x.requires_grad()) x.add_grad(g.narrow(d, off, n));
      off += n;
    }
  });
}

// Pieces of x along dim (views); each piece's gradient goes into its slice of dx.
std::vector<Variable> split(const Variable& x, const std::vector<int64_t>& sizes, int64_t dim) {
  std::vector<Tensor> pieces = ssm::split(x.data(), sizes, dim);
  const int64_t d = norm_dim(dim, x.dim(), "split", x.shape());
  std::vector<Variable> out;
  out.reserve(pieces.size());
  int64_t off = 0;
  for (auto& p : pieces) {
    const int64_t start = off;
    off += p.size(d);
    out.emplace_back(p, std::vector<Variable>{x}, [d, start](std::vector<Variable>& in, const Tensor& g) {
      Engine::add_grad_narrow(in[0], d, start, g);
    });
  }
  return out;
}

// y = x[.., index[i], ..] along dim:  dx[.., index[i], ..] += g[.., i, ..] (repeats accumulate)
Variable index_select(const Variable& x, int64_t dim, const Tensor& index) {
  Tensor out = ssm::index_select(x.data(), dim, index);
  return Variable(out, {x}, [dim, index](std::vector<Variable>& in, const Tensor& g) {
    in[0].add_grad(index_add(in[0].shape(), dim, index, g));
  });
}

}  // namespace ssm::ag
