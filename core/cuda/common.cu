// Host helpers of common.cuh: broadcasting strides, dim coalescing for OffsetCalc, device flags.
#include "core/cuda/common.cuh"

namespace ssm::cuda {

std::vector<int64_t> broadcast_strides(const Tensor& t, const Shape& shape, const char* op) {
  const int64_t nd = int64_t(shape.size()), td = t.dim();
  SSM_CHECK(td <= nd, op, ": cannot broadcast ", shape_str(t.shape()), " to ", shape_str(shape));
  std::vector<int64_t> s(size_t(nd), 0);
  for (int64_t i = 0; i < td; ++i) {
    const int64_t d = nd - td + i;
    const int64_t ts = t.shape()[size_t(i)];
    SSM_CHECK(ts == shape[size_t(d)] || ts == 1, op, ": cannot broadcast ", shape_str(t.shape()), " to ",
              shape_str(shape));
    s[size_t(d)] = (ts == 1) ? 0 : t.strides()[size_t(i)];
  }
  return s;
}

template <int NT>
OffsetCalc<NT> make_offset_calc(const Shape& shape, const std::array<std::vector<int64_t>, NT>& strides,
                                const char* op) {
  // Keep dims of size > 1, outermost first.
  std::vector<int64_t> sz;
  std::array<std::vector<int64_t>, NT> st;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    sz.push_back(shape[d]);
    for (int t = 0; t < NT; ++t) st[size_t(t)].push_back(strides[size_t(t)][d]);
  }
  // Merge dim i (outer) into dim i+1 (inner) when stride_outer == stride_inner * size_inner for all.
  std::vector<int64_t> msz;
  std::array<std::vector<int64_t>, NT> mst;
  for (size_t d = 0; d < sz.size(); ++d) {
    if (!msz.empty()) {
      bool ok = true;
      for (int t = 0; t < NT; ++t) ok = ok && mst[size_t(t)].back() == st[size_t(t)][d] * sz[d];
      if (ok) {
        msz.back() *= sz[d];
        for (int t = 0; t < NT; ++t) mst[size_t(t)].back() = st[size_t(t)][d];
        continue;
      }
    }
    msz.push_back(sz[d]);
    for (int t = 0; t < NT; ++t) mst[size_t(t)].push_back(st[size_t(t)][d]);
  }
  if (msz.empty()) {
    msz.push_back(1);
    for (int t = 0; t < NT; ++t) mst[size_t(t)].push_back(0);
  }
  SSM_CHECK_INPUT(msz.size() <= size_t(kMaxDims), op, ": the CUDA kernels handle at most ", kMaxDims,
                  " non-mergeable dims; got shape ", shape_str(shape));
  OffsetCalc<NT> oc;
  oc.ndim = int(msz.size());
  oc.wide = shape_numel(shape) >= (int64_t(1) << 31);
  for (int i = 0; i < oc.ndim; ++i) {
    const size_t d = msz.size() - 1 - size_t(i);  // innermost first
    oc.sizes[i] = msz[d];
    oc.div[i] = oc.wide ? IntDivider() : IntDivider(uint32_t(msz[d]));
    for (int t = 0; t < NT; ++t) oc.strides[t][i] = mst[size_t(t)][d];
  }
  for (int i = oc.ndim; i < kMaxDims; ++i) {
    oc.sizes[i] = 1;
    for (int t = 0; t < NT; ++t) oc.strides[t][i] = 0;
  }
  return oc;
}
template OffsetCalc<1> make_offset_calc<1>(const Shape&, const std::array<std::vector<int64_t>, 1>&, const char*);
template OffsetCalc<2> make_offset_calc<2>(const Shape&, const std::array<std::vector<int64_t>, 2>&, const char*);
template OffsetCalc<3> make_offset_calc<3>(const Shape&, const std::array<std::vector<int64_t>, 3>&, const char*);
template OffsetCalc<4> make_offset_calc<4>(const Shape&, const std::array<std::vector<int64_t>, 4>&, const char*);

bool is_dense(const Shape& shape, const Shape& strides) {
  int64_t expect = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] == 1) continue;
    if (strides[i] != expect) return false;
    expect *= shape[i];
  }
  return true;
}

int read_device_int(const int* dptr, cudaStream_t s) {
  int v = 0;
  SSM_CUDA_CHECK(cudaMemcpyAsync(&v, dptr, sizeof(int), cudaMemcpyDeviceToHost, s));
  SSM_CUDA_CHECK(cudaStreamSynchronize(s));
  return v;
}

}  // namespace ssm::cuda
