// Generic tensor ops on both devices. Each function checks its inputs (BadInput naming the op and the
// shapes), then dispatches on device: the CPU path (core/ops_cpu*.cpp) is the reference; the CUDA path
// lives in core/cuda/*.cu behind the declarations in core/cuda/cuda_ops.h. Outputs are new contiguous
// tensors. Floating ops take f32/f64 (and bf16/f16, computed in f32: on the CPU by converting to f32 and
// back to the input dtype); mixing dtypes is an error.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace ssm {

// ---------------- elementwise ----------------
enum class UnaryOp : uint8_t {
  Neg, Exp, Log, Sqrt, Rsqrt, Abs, Square, Reciprocal, Sin, Cos, Tanh, Sigmoid, Relu, Silu,
  Gelu,      // exact: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
  Softplus,  // log(1 + e^x), = x for x > 20
};
// d op(x) / dx evaluated at x (for the backward of UnaryOp): e.g. Silu -> sigmoid(x)(1 + x(1 - sigmoid(x)))
enum class BinaryOp : uint8_t { Add, Sub, Mul, Div, Max, Min, Pow, Eq, Ne, Lt, Le, Gt, Ge };  // comparisons give u8

Tensor unary(UnaryOp op, const Tensor& x);
Tensor unary_backward(UnaryOp op, const Tensor& grad, const Tensor& x);  // grad * op'(x), fused
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);           // numpy broadcasting
Tensor binary_scalar(BinaryOp op, const Tensor& a, double s);           // a op s
// In place: a = a op b (b broadcasts to a's shape). Used by optimizers and gradient accumulation.
void binary_(BinaryOp op, Tensor& a, const Tensor& b);
// a = alpha * a + beta * b, in place (b broadcasts); the workhorse of gradient accumulation.
void axpby_(Tensor& a, double alpha, const Tensor& b, double beta);

inline Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Add, a, b); }
inline Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Sub, a, b); }
inline Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Mul, a, b); }
inline Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Div, a, b); }
inline Tensor add(const Tensor& a, double s) { return binary_scalar(BinaryOp::Add, a, s); }
inline Tensor mul(const Tensor& a, double s) { return binary_scalar(BinaryOp::Mul, a, s); }
inline Tensor exp(const Tensor& x) { return unary(UnaryOp::Exp, x); }
inline Tensor log(const Tensor& x) { return unary(UnaryOp::Log, x); }

// where(cond, a, b): cond is u8 (nonzero = take a); all three broadcast.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);

// ---------------- reductions ----------------
// dims may be negative; empty dims = all dims. Sum/mean of f32 accumulate in f64 on the CPU, f32 on CUDA.
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor amax(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);  // i64
// Sum a broadcast result back down to `shape` (the backward of broadcasting).
Tensor sum_to(const Tensor& x, const Shape& shape);
// sqrt(sum(x^2)) over all elements, as a host double (gradient clipping).
double norm2(const Tensor& x);
// sqrt(sum of x^2 over every tensor of xs), with one host sync for all of those on one device (gradient clipping
// over a model's parameters: a sync per tensor stalls the GPU once per parameter); others one by one.
double norm2(const std::vector<Tensor>& xs);
// x *= s for every tensor of xs, in place (gradient clipping's scaling): on CUDA one launch covers up to 128
// contiguous f32 tensors of a device.
void scale_(const std::vector<Tensor>& xs, double s);

// ---------------- matmul ----------------
// C = op(A) op(B) where op transposes the last two dims when asked. A: (..., M, K), B: (..., K, N);
// leading (batch) dims broadcast; a 2-D B with batched A is applied to every batch. CPU: OpenBLAS
// (or a blocked fallback). CUDA: cuBLASLt; f32 inputs run as tf32-free f32; bf16 in, f32 accumulate.
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
// c += op(a) op(b) for 2-D a, b of one floating dtype and a contiguous c of that dtype, or f32 for bf16 / f16
// inputs: the GEMM adds its f32 accumulators into c directly (a weight gradient summed over chunks, with no
// rounded temporary, no cast and no separate add).
void matmul_add_(Tensor& c, const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
// c = op(a) op(b) under matmul_add_'s rules (c's old values never read): a bf16 product written as f32.
void matmul_into_(Tensor& c, const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);

// ---------------- softmax and losses ----------------
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);
// Mean over non-ignored rows of -log_softmax(logits)[target]. logits (N, C) float; targets (N) i64 or i32.
// Returns a 0-d tensor (0 if every row is ignored).
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100);
// d loss / d logits for the loss above, times grad_scale: (softmax - onehot) * grad_scale / n_valid.
Tensor cross_entropy_backward(const Tensor& logits, const Tensor& targets, double grad_scale,
                              int64_t ignore_index = -100);
// Both in one pass for a consumer that needs the logits no more: returns cross_entropy(logits, targets) and
// overwrites logits (contiguous) with cross_entropy_backward(logits, targets, grad_scale). On CUDA one block
// per row reads it twice (the second time from L2) and writes the gradient over it: 1 HBM read + 1 write of the
// logits where the two ops take 3 reads + 1 write and a buffer of the logits' size.
Tensor cross_entropy_with_grad_(Tensor& logits, const Tensor& targets, double grad_scale, int64_t ignore_index = -100);

// ---------------- indexing ----------------
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);  // index: 1-D i64/i32
// out[.., index[i], ..] += src[.., i, ..] along dim; out has shape `shape` (embedding backward).
Tensor index_add(const Shape& shape, int64_t dim, const Tensor& index, const Tensor& src);
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);       // torch.gather semantics
Tensor scatter_add(const Shape& shape, int64_t dim, const Tensor& index, const Tensor& src);
Tensor cat(const std::vector<Tensor>& xs, int64_t dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);  // views

// ---------------- random (Philox4x32-10, counter based) ----------------
// Element i of the output calls Philox once with counter (lo32(offset + i), hi32(offset + i), 0, 0) and
// key (lo32(seed), hi32(seed)); see core/philox.h (shared with CUDA, so both devices give the same numbers
// for the same (seed, offset)). uniform = ((lane0 >> 8) | 1) * 2^-24, strictly inside (0, 1); normal =
// Box-Muller on lanes 0 and 1; bernoulli gives u8 with P(1) = p (uniform < p). A draw of n elements uses
// counters offset .. offset + n - 1. Output dtype f32/f64 (bf16/f16: drawn in f32, then converted).
Tensor rand_uniform(const Shape& shape, uint64_t seed, uint64_t offset, DType dtype = DType::f32,
                    Device device = Device::cpu());
Tensor rand_normal(const Shape& shape, uint64_t seed, uint64_t offset, DType dtype = DType::f32,
                   Device device = Device::cpu());
Tensor rand_bernoulli(const Shape& shape, double p, uint64_t seed, uint64_t offset, Device device = Device::cpu());

// A stream of random numbers for a process: seed plus a running offset (saved in checkpoints).
struct Generator {
  uint64_t seed = 0;
  uint64_t offset = 0;  // advanced by numel after every draw (each element reserves one counter)
  Tensor uniform(const Shape& s, DType dt = DType::f32, Device d = Device::cpu());
  Tensor normal(const Shape& s, DType dt = DType::f32, Device d = Device::cpu());
  Tensor bernoulli(const Shape& s, double p, Device d = Device::cpu());
};

}  // namespace ssm
