// The CUDA selective scan's whole dispatch (kernels/selective_scan/selective_scan_cuda.cu and the files it calls:
// scan_chunked_cuda.cu) run by the CUDA emulator (cuda_emu.h) on the CPU, against the
// f64 reference (tests/cuda/scan_problem.h's check: forward, backward default / deterministic / from the
// forward's starts): every implementation (SSM_SCAN_IMPL), the legacy implementation's segment and layout
// overrides, at small odd shapes (the emulator runs about a million barrier switches a second).
#include <gtest/gtest.h>

#include <cstdlib>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "core/device.h"
#include "kernels/selective_scan/selective_scan.h"
#include "tests/cuda/scan_problem.h"
#include "tests/emu/emu_names.h"
// (after emu_names.h: declares the emulated entry points)
#include "kernels/selective_scan/selective_scan_cuda.h"

using namespace ssm;
using test::Case;

namespace {

constexpr DType f32 = DType::f32, bf16 = DType::bf16, f16 = DType::f16;
const test::ScanImpl kEmu{&kernels::cuda::selective_scan_forward, &kernels::cuda::selective_scan_backward,
                          Device::cpu()};

using test::Env;

// Case fields: Bt, L, D, G, N, dtype, B/C dtype, z, D_skip, delta_bias, softplus, h0, seq_idx, grad h_last.
TEST(EmuSelectiveScan, EveryImplementation) {
  for (const char* impl : {"chunk", "legacy"}) {
    SCOPED_TRACE(impl);
    Env env({{"SSM_SCAN_IMPL", impl}});
    test::check_scan_case({2, 150, 20, 2, 16, f32, f32, true, true, true, true, true, true, true}, kEmu);
    test::check_scan_case({1, 70, 17, 1, 40, bf16, bf16, true, true, true, true, true, true, false}, kEmu);
    test::check_scan_case({2, 33, 9, 1, 3, f16, f32, false, true, false, true, false, true, true}, kEmu);
  }
}

// The legacy implementation's time split and layouts (selective_scan_cuda.cu's overrides): one segment per
// row and several; the forward's states per thread; the backward's lanes per channel (N = 8, 32, 128).
TEST(EmuSelectiveScan, LegacyLayouts) {
  for (const char* segs : {"1", "3"}) {
    for (const char* kf : {"4", "16"}) {
      SCOPED_TRACE(std::string("segs ") + segs + " kf " + kf);
      Env env({{"SSM_SCAN_IMPL", "legacy"}, {"SSM_SCAN_FWD_SEGS", segs}, {"SSM_SCAN_BWD_SEGS", segs},
               {"SSM_SCAN_FWD_KF", kf}, {"SSM_SCAN_ADJ_KF", kf}});
      test::check_scan_case({2, 100, 20, 2, 8, f32, f32, true, true, true, true, true, true, true}, kEmu);
      test::check_scan_case({1, 60, 10, 1, 32, bf16, bf16, true, true, true, true, true, false, true}, kEmu);
    }
  }
  Env env({{"SSM_SCAN_IMPL", "legacy"}});
  test::check_scan_case({1, 40, 4, 1, 128, f32, f32, true, true, true, true, true, true, true}, kEmu);
}

// An implementation name that is not one (here the deleted first version's) is refused by name, not ignored.
TEST(EmuSelectiveScan, UnknownImplementationIsRefused) {
  Env env({{"SSM_SCAN_IMPL", "v1"}});
  try {
    test::check_scan_case({1, 20, 4, 1, 4, f32, f32, false, false, false, false, false, false, false}, kEmu);
    FAIL() << "SSM_SCAN_IMPL=v1 was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("SSM_SCAN_IMPL=v1 is not an implementation"), std::string::npos) << e.what();
  }
}

}  // namespace
