// Indexing on the CPU: index_select / index_add (embedding forward / backward), gather / scatter_add
// (torch semantics), cat and split. A contiguous x is viewed as (A, D, C) around the indexed dim.
#include <cstring>

#include "core/cpu_loops.h"
#include "core/ops.h"
#ifdef SSM_WITH_CUDA
#include "core/cuda/cuda_ops.h"
#endif

namespace ssm {
namespace {

void check_index_tensor(const Tensor& index, const Tensor& other, const char* op) {
  SSM_CHECK_INPUT(index.defined(), op, ": index is undefined");
  SSM_CHECK_INPUT(index.dtype() == DType::i64 || index.dtype() == DType::i32, op, ": index must be i64 or i32, got ",
                  dtype_name(index.dtype()), " ", shape_str(index.shape()));
  SSM_CHECK_INPUT(index.device() == other.device(), op, ": index on ", index.device().str(), " but data on ",
                  other.device().str());
}

// Host copy of the indices, each checked to lie in [0, n).
std::vector<int64_t> checked_indices(const Tensor& index, int64_t n, const char* op, const Shape& shape, int64_t dim) {
  std::vector<int64_t> v = index.to_int_vector();
  for (size_t i = 0; i < v.size(); ++i)
    SSM_CHECK_INPUT(v[i] >= 0 && v[i] < n, op, ": index ", v[i], " (at position ", i, ") is out of range [0, ", n,
                    ") for dim ", dim, " of shape ", shape_str(shape));
  return v;
}

void adc(const Shape& s, int64_t dim, int64_t& A, int64_t& C) {
  A = 1;
  C = 1;
  for (int64_t d = 0; d < dim; ++d) A *= s[d];
  for (int64_t d = dim + 1; d < int64_t(s.size()); ++d) C *= s[d];
}

}  // namespace

// out[a, i, c] = x[a, index[i], c]
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  SSM_CHECK_INPUT(x.defined(), "index_select: x is undefined");
  check_index_tensor(index, x, "index_select");
  SSM_CHECK_INPUT(x.dim() >= 1, "index_select: x must have at least 1 dim, got ", shape_str(x.shape()));
  SSM_CHECK_INPUT(index.dim() == 1, "index_select: index must be 1-D, got ", shape_str(index.shape()));
  dim = cpu::wrap_dim(dim, x.dim(), "index_select");
#ifdef SSM_WITH_CUDA
  if (x.device().is_cuda()) return cuda::index_select(x, dim, index);
#endif
  const std::vector<int64_t> idx = checked_indices(index, x.shape()[dim], "index_select", x.shape(), dim);
  Shape os = x.shape();
  os[dim] = int64_t(idx.size());
  Tensor out = Tensor::empty(os, x.dtype());
  if (out.numel() == 0) return out;
  const Tensor xc = x.contiguous();
  int64_t A, C;
  adc(x.shape(), dim, A, C);
  const int64_t D = x.shape()[dim], n = int64_t(idx.size());
  const size_t row = size_t(C) * dtype_size(x.dtype());
  const char* src = static_cast<const char*>(xc.data_ptr());
  char* dst = static_cast<char*>(out.data_ptr());
#pragma omp parallel for schedule(static) if (A * n * C > cpu::kParallelGrain)
  for (int64_t an = 0; an < A * n; ++an) {
    const int64_t a = an / n, i = an % n;
    std::memcpy(dst + size_t(an) * row, src + size_t(a * D + idx[i]) * row, row);
  }
  return out;
}

// out = zeros(shape); out[a, index[i], c] += src[a, i, c]
Tensor index_add(const Shape& shape, int64_t dim, const Tensor& index, const Tensor& src) {
  SSM_CHECK_INPUT(src.defined(), "index_add: src is undefined");
  check_index_tensor(index, src, "index_add");
  SSM_CHECK_INPUT(index.dim() == 1, "index_add: index must be 1-D, got ", shape_str(index.shape()));
  SSM_CHECK_INPUT(!shape.empty(), "index_add: the output shape must have at least 1 dim");
  dim = cpu::wrap_dim(dim, int64_t(shape.size()), "index_add");
  Shape expect = shape;
  expect[dim] = index.numel();
  SSM_CHECK_INPUT(src.shape() == expect, "index_add: src of shape ", shape_str(src.shape()),
                  " does not match output shape ", shape_str(shape), " with dim ", dim, " replaced by the ",
                  index.numel(), " indices (expected ", shape_str(expect), ")");
#ifdef SSM_WITH_CUDA
  if (src.device().is_cuda()) return cuda::index_add(shape, dim, index, src);
#endif
  if (src.dtype() == DType::bf16 || src.dtype() == DType::f16)
    return index_add(shape, dim, index, src.to(DType::f32)).to(src.dtype());
  const std::vector<int64_t> idx = checked_indices(index, shape[dim], "index_add", shape, dim);
  Tensor out = Tensor::zeros(shape, src.dtype());
  if (src.numel() == 0) return out;
  const Tensor sc = src.contiguous();
  int64_t A, C;
  adc(shape, dim, A, C);
  const int64_t D = shape[dim], n = int64_t(idx.size());
  cpu::dispatch_arith(src.dtype(), "index_add", [&](auto zero) {
    using T = decltype(zero);
    const T* s = sc.data<T>();
    T* o = out.data<T>();
    // Parallel over a (rows of different a never collide); the i loop stays serial.
#pragma omp parallel for schedule(static) if (A > 1 && A * n * C > cpu::kParallelGrain)
    for (int64_t a = 0; a < A; ++a)
      for (int64_t i = 0; i < n; ++i) {
        T* orow = o + (a * D + idx[i]) * C;
        const T* srow = s + (a * n + i) * C;
        for (int64_t c = 0; c < C; ++c) orow[c] += srow[c];
      }
  });
  return out;
}

namespace {

// Checks for gather / scatter_add: index has data's rank, and index.size(d) <= limit[d] for d != dim.
void check_gather_shapes(const char* op, const Shape& data, const Tensor& index, int64_t dim, const char* what) {
  SSM_CHECK_INPUT(index.dim() == int64_t(data.size()), op, ": index of shape ", shape_str(index.shape()),
                  " must have the same number of dims as ", what, " ", shape_str(data));
  for (int64_t d = 0; d < index.dim(); ++d)
    SSM_CHECK_INPUT(d == dim || index.shape()[d] <= data[d], op, ": index of shape ", shape_str(index.shape()),
                    " is larger than ", what, " ", shape_str(data), " in dim ", d);
}

}  // namespace

// out[i][j][k] = x[i][index[i][j][k]][k] (dim = 1); out has index's shape.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  SSM_CHECK_INPUT(x.defined(), "gather: x is undefined");
  check_index_tensor(index, x, "gather");
  dim = cpu::wrap_dim(dim, x.dim(), "gather");
  check_gather_shapes("gather", x.shape(), index, dim, "x");
#ifdef SSM_WITH_CUDA
  if (x.device().is_cuda()) return cuda::gather(x, dim, index);
#endif
  Tensor out = Tensor::empty(index.shape(), x.dtype());
  if (out.numel() == 0) return out;
  const int64_t D = x.dim() == 0 ? 1 : x.shape()[dim];
  const Tensor ic = index.to(DType::i64).contiguous();
  checked_indices(ic, D, "gather", x.shape(), dim);
  Shape xs = x.strides();
  const int64_t dstride = x.dim() == 0 ? 0 : xs[dim];
  if (x.dim() > 0) xs[dim] = 0;  // the indexed dim's offset comes from the index value
  const int64_t* ip = ic.data<int64_t>();
  const size_t es = dtype_size(x.dtype());
  const char* xp = static_cast<const char*>(x.data_ptr());
  char* op = static_cast<char*>(out.data_ptr());
  cpu::nd_loop<3>(index.shape(), {out.strides(), xs, ic.strides()},
                  [&](const std::array<int64_t, 3>& o, const std::array<int64_t, 3>& st, int64_t n) {
                    for (int64_t t = 0; t < n; ++t) {
                      const int64_t xo = o[1] + t * st[1] + ip[o[2] + t * st[2]] * dstride;
                      std::memcpy(op + (o[0] + t * st[0]) * es, xp + xo * es, es);
                    }
                  });
  return out;
}

// out = zeros(shape); out[i][index[i][j][k]][k] += src[i][j][k] (dim = 1), over index's shape.
Tensor scatter_add(const Shape& shape, int64_t dim, const Tensor& index, const Tensor& src) {
  SSM_CHECK_INPUT(src.defined(), "scatter_add: src is undefined");
  check_index_tensor(index, src, "scatter_add");
  dim = cpu::wrap_dim(dim, int64_t(shape.size()), "scatter_add");
  check_gather_shapes("scatter_add", shape, index, dim, "output");
  SSM_CHECK_INPUT(src.dim() == index.dim(), "scatter_add: src of shape ", shape_str(src.shape()),
                  " and index of shape ", shape_str(index.shape()), " differ in rank");
  for (int64_t d = 0; d < index.dim(); ++d)
    SSM_CHECK_INPUT(index.shape()[d] <= src.shape()[d], "scatter_add: index of shape ", shape_str(index.shape()),
                    " is larger than src ", shape_str(src.shape()), " in dim ", d);
#ifdef SSM_WITH_CUDA
  if (src.device().is_cuda()) return cuda::scatter_add(shape, dim, index, src);
#endif
  if (src.dtype() == DType::bf16 || src.dtype() == DType::f16)
    return scatter_add(shape, dim, index, src.to(DType::f32)).to(src.dtype());
  Tensor out = Tensor::zeros(shape, src.dtype());
  if (index.numel() == 0) return out;
  const int64_t D = shape.empty() ? 1 : shape[dim];
  const Tensor ic = index.to(DType::i64).contiguous();
  checked_indices(ic, D, "scatter_add", shape, dim);
  Shape os = out.strides();
  const int64_t dstride = shape.empty() ? 0 : os[dim];
  if (!shape.empty()) os[dim] = 0;
  const int64_t* ip = ic.data<int64_t>();
  cpu::dispatch_arith(src.dtype(), "scatter_add", [&](auto zero) {
    using T = decltype(zero);
    T* o = out.data<T>();
    const T* s = src.data<T>();
    cpu::nd_loop<3>(
        index.shape(), {os, src.strides(), ic.strides()},
        [&](const std::array<int64_t, 3>& of, const std::array<int64_t, 3>& st, int64_t n) {
          for (int64_t t = 0; t < n; ++t) o[of[0] + t * st[0] + ip[of[2] + t * st[2]] * dstride] += s[of[1] + t * st[1]];
        },
        /*parallel=*/false);
  });
  return out;
}

// ---------------- cat / split ----------------
Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  SSM_CHECK_INPUT(!xs.empty(), "cat: no tensors given");
  const Tensor& x0 = xs[0];
  SSM_CHECK_INPUT(x0.defined(), "cat: tensor 0 is undefined");
  SSM_CHECK_INPUT(x0.dim() >= 1, "cat: tensors must have at least 1 dim, got ", shape_str(x0.shape()));
  dim = cpu::wrap_dim(dim, x0.dim(), "cat");
  Shape os = x0.shape();
  os[dim] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    SSM_CHECK_INPUT(x.defined(), "cat: tensor ", i, " is undefined");
    SSM_CHECK_INPUT(x.dtype() == x0.dtype() && x.device() == x0.device(), "cat: tensor ", i, " is ",
                    dtype_name(x.dtype()), " on ", x.device().str(), " but tensor 0 is ", dtype_name(x0.dtype()),
                    " on ", x0.device().str());
    bool ok = x.dim() == x0.dim();
    for (int64_t d = 0; ok && d < x.dim(); ++d) ok = d == dim || x.shape()[d] == x0.shape()[d];
    SSM_CHECK_INPUT(ok, "cat: tensor ", i, " of shape ", shape_str(x.shape()), " does not match tensor 0 of shape ",
                    shape_str(x0.shape()), " outside dim ", dim);
    os[dim] += x.shape()[dim];
  }
#ifdef SSM_WITH_CUDA
  if (x0.device().is_cuda()) return cuda::cat(xs, dim);
#endif
  Tensor out = Tensor::empty(os, x0.dtype());
  int64_t at = 0;
  for (const Tensor& x : xs) {
    Tensor part = out.narrow(dim, at, x.shape()[dim]);
    part.copy_(x);
    at += x.shape()[dim];
  }
  return out;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  SSM_CHECK_INPUT(x.defined(), "split: x is undefined");
  dim = cpu::wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    SSM_CHECK_INPUT(s >= 0, "split: negative size in ", shape_str(Shape(sizes.begin(), sizes.end())));
    total += s;
  }
  SSM_CHECK_INPUT(total == x.shape()[dim], "split: sizes ", shape_str(Shape(sizes.begin(), sizes.end())), " sum to ",
                  total, " but dim ", dim, " of shape ", shape_str(x.shape()), " has ", x.shape()[dim]);
  std::vector<Tensor> out;
  int64_t at = 0;
  for (int64_t s : sizes) {
    out.push_back(x.narrow(dim, at, s));
    at += s;
  }
  return out;
}

}  // namespace ssm
