// CUDA implementations behind core/ops.h. core/ops*.cpp validates inputs and calls these only for
// CUDA tensors (all inputs on the same device); each returns a new contiguous CUDA tensor on the
// current stream. Compiled only when SSM_WITH_CUDA is defined.
#pragma once
#ifdef SSM_WITH_CUDA
#include <vector>

#include "core/ops.h"

namespace ssm::cuda {

Tensor unary(UnaryOp op, const Tensor& x);
Tensor unary_backward(UnaryOp op, const Tensor& grad, const Tensor& x);
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);  // broadcasting done inside
Tensor binary_scalar(BinaryOp op, const Tensor& a, double s);
void binary_(BinaryOp op, Tensor& a, const Tensor& b);
void axpby_(Tensor& a, double alpha, const Tensor& b, double beta);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim);  // dims normalized, sorted
Tensor amax(const Tensor& x, int64_t dim, bool keepdim);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim);
double norm2(const Tensor& x);
double sum_squares(const std::vector<Tensor>& xs);  // one device, one host sync
void scale_(const std::vector<Tensor>& xs, double s);  // contiguous, 16-byte aligned f32 tensors of one device
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b);
// 2-D, c contiguous: c += op(a) op(b), or c = op(a) op(b) when !accumulate.
void matmul_add_(Tensor& c, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, bool accumulate = true);
Tensor softmax(const Tensor& x, int64_t dim, bool log);
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index);
Tensor cross_entropy_backward(const Tensor& logits, const Tensor& targets, double grad_scale, int64_t ignore_index);
Tensor cross_entropy_with_grad_(Tensor& logits, const Tensor& targets, double grad_scale, int64_t ignore_index);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
Tensor index_add(const Shape& shape, int64_t dim, const Tensor& index, const Tensor& src);
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
Tensor scatter_add(const Shape& shape, int64_t dim, const Tensor& index, const Tensor& src);
Tensor cat(const std::vector<Tensor>& xs, int64_t dim);
// Strided copy with dtype conversion: dst and src same shape, both on this device (contiguous(), to(dtype)).
void copy_strided(Tensor& dst, const Tensor& src);
void fill(Tensor& t, double value);
Tensor rand_uniform(const Shape& shape, uint64_t seed, uint64_t offset, DType dtype, Device device);
Tensor rand_normal(const Shape& shape, uint64_t seed, uint64_t offset, DType dtype, Device device);
Tensor rand_bernoulli(const Shape& shape, double p, uint64_t seed, uint64_t offset, Device device);

// Device management used by core/allocator.cpp and core/device.cpp.
void* caching_alloc(int device, size_t bytes);
void caching_free(int device, void* p, size_t bytes);
AllocatorStats caching_stats(int device);
void caching_reset_peak(int device);
void caching_empty(int device);
void memcpy_bytes(Device dst_dev, void* dst, Device src_dev, const void* src, size_t bytes);
int device_count();
void synchronize();

}  // namespace ssm::cuda
#endif
