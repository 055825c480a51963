// The caching allocator: reuse without driver calls, rounding, peak and reserved accounting, streams.
#include "tests/cuda/cuda_test_util.h"

#include "core/allocator.h"
#include "core/cuda/cuda_ops.h"

namespace ssm {
namespace {

#ifdef SSM_WITH_CUDA  // the allocator tests call ssm::cuda:: directly

const Device kGpu = Device::cuda(0);

TEST(CudaAllocator, SecondAllocOfSameSizeMakesNoDriverAlloc) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (size_t bytes : {size_t(1), size_t(4000), size_t(1) << 20, (size_t(3) << 20) + 5}) {
    void* p = device_alloc(kGpu, bytes);
    ASSERT_NE(p, nullptr);
    device_free(kGpu, p, bytes);
    const AllocatorStats before = allocator_stats(kGpu);
    void* q = device_alloc(kGpu, bytes);
    const AllocatorStats after = allocator_stats(kGpu);
    EXPECT_EQ(after.driver_allocs, before.driver_allocs) << bytes << " bytes";
    device_free(kGpu, q, bytes);
  }
  // Tensors go through the same path.
  { Tensor t = Tensor::empty({1000003}, DType::f32, kGpu); }
  const uint64_t n0 = allocator_stats(kGpu).driver_allocs;
  for (int i = 0; i < 10; ++i) {
    Tensor t = Tensor::empty({1000003}, DType::f32, kGpu);
    Tensor u = ssm::add(t.fill_(1.0), 2.0);
  }
  EXPECT_LE(allocator_stats(kGpu).driver_allocs, n0 + 1);  // at most the one extra block for `u`
}

TEST(CudaAllocator, RoundingAndOversizeLimit) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  cuda::synchronize();
  empty_cache(kGpu);  // no cached blocks: the next allocations get exactly their rounded sizes
  const AllocatorStats s0 = allocator_stats(kGpu);
  void* p = device_alloc(kGpu, 100);  // rounds to 512 B
  EXPECT_EQ(allocator_stats(kGpu).allocated_bytes, s0.allocated_bytes + 512);
  device_free(kGpu, p, 100);
  void* big = device_alloc(kGpu, (size_t(5) << 20) + 1);  // rounds to 6 MiB
  EXPECT_EQ(allocator_stats(kGpu).allocated_bytes, s0.allocated_bytes + (size_t(6) << 20));
  device_free(kGpu, big, (size_t(5) << 20) + 1);
  // A 2 MiB request must not take the cached 6 MiB block (more than 2x oversize).
  const uint64_t d0 = allocator_stats(kGpu).driver_allocs;
  void* small = device_alloc(kGpu, size_t(2) << 20);
  EXPECT_NE(small, big);
  device_free(kGpu, small, size_t(2) << 20);
  // A 4 MiB request may (6 MiB <= 2 x 4 MiB): no new driver allocation when it does.
  void* four = device_alloc(kGpu, size_t(4) << 20);
  if (four == big) {
    EXPECT_LE(allocator_stats(kGpu).driver_allocs, d0 + 1);
  }
  device_free(kGpu, four, size_t(4) << 20);
}

TEST(CudaAllocator, PeakAndReservedAccounting) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  cuda::synchronize();
  empty_cache(kGpu);
  const AllocatorStats s0 = allocator_stats(kGpu);
  reset_peak_bytes(kGpu);
  EXPECT_EQ(allocator_stats(kGpu).peak_bytes, s0.allocated_bytes);
  const size_t mb = size_t(8) << 20;
  {
    Tensor a = Tensor::empty({int64_t(mb / 4)}, DType::f32, kGpu);
    Tensor b = Tensor::empty({int64_t(mb / 4)}, DType::f32, kGpu);
    Tensor c = Tensor::empty({int64_t(mb / 4)}, DType::f32, kGpu);
    const AllocatorStats s1 = allocator_stats(kGpu);
    EXPECT_EQ(s1.allocated_bytes, s0.allocated_bytes + 3 * mb);
    EXPECT_GE(s1.reserved_bytes, s1.allocated_bytes);
  }
  const AllocatorStats s2 = allocator_stats(kGpu);
  EXPECT_EQ(s2.allocated_bytes, s0.allocated_bytes);
  EXPECT_EQ(s2.peak_bytes, s0.allocated_bytes + 3 * mb);
  EXPECT_GE(s2.reserved_bytes, s2.allocated_bytes + 3 * mb);  // the freed blocks stay cached
  empty_cache(kGpu);
  const AllocatorStats s3 = allocator_stats(kGpu);
  EXPECT_EQ(s3.reserved_bytes, s3.allocated_bytes);  // nothing cached any more
  reset_peak_bytes(kGpu);
  EXPECT_EQ(allocator_stats(kGpu).peak_bytes, s3.allocated_bytes);
}

TEST(CudaAllocator, DeviceCountAndCopies) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  EXPECT_GE(cuda::device_count(), 1);
  EXPECT_EQ(cuda_device_count(), cuda::device_count());
  const Tensor h = test::rand_cpu({1000003}, DType::f32);
  const Tensor g = h.to(kGpu);
  const Tensor g2 = g.clone();  // device to device
  EXPECT_TRUE(test::same_bits(g2, h));
  cuda::synchronize();
}

#else
TEST(CudaAllocator, CpuOnlyBuildReportsNoDevice) {
  EXPECT_FALSE(cuda_available());
  EXPECT_EQ(cuda_device_count(), 0);
  EXPECT_THROW(Tensor::empty({4}, DType::f32, Device::cuda(0)), Error);
}
#endif

}  // namespace
}  // namespace ssm
