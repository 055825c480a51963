// Selective scan (Mamba-1) on CUDA: forward and forward+backward at mamba_ssm's benchmark shapes, bf16,
// z gate, D skip, delta_bias + softplus, G = 1, N = 16 and 64. Plain main (not Google Benchmark): each
// figure is the median of 25 timed calls (CUDA events around each call, after 3 warm-up calls), on
// random inputs (never zeros).
//
// Floors (H100 SXM: 132 SMs at ~1.755 GHz; measured D2D copy ~2.97 TB/s, bench/RESULTS.md):
//   exp:   one exp2 per state per step (fwd), two for fwd+bwd (the backward must recompute the decays):
//          Bt L D N (x2) / (16 ex2 per clock per SM x 132 x 1.755e9)
//   bytes: every input read once, every output written once: fwd u, delta, z, y (2 B each, Bt L D) +
//          B, C (Bt L N); fwd+bwd adds the backward's reads (u, delta, z, grad y, B, C) and writes
//          (grad u, delta, z, B, C).
//   fma:   FP32 ops per state per step: fwd 3 (decay x h, + dt u B, C h into y); fwd+bwd 3 + 10 (recompute 3,
//          dh, hd, gA, gB, gC terms, sums for gu / gdt): ops / (128 per clock per SM x 132 x 1.755e9)
// Printed: ms, the floors, (largest floor) / ms, and mamba_ssm's time on H100 (issue 4) beside ours.
// Also one JSON line per measurement (prefix "JSON ").
// Options: --sweep also times other layouts at N = 16 (env SSM_SCAN_FWD_KF: the forward passes' states per
// thread (selective_scan_cuda.cu); SSM_SCAN_ADJ_KF: the backward's adjoint pass's; SSM_SCAN_FWD_SEGS / BWD_SEGS:
// segments per row; SSM_SCAN_CHUNK_SEGS: the chunked forward's segments per row). --legacy and --chunk also time
// each implementation alone at N = 16 and 64, whichever the default picks (env SSM_SCAN_IMPL=legacy:
// selective_scan_cuda.cu; chunk: scan_chunked_cuda.cu). --only I[,J...] times those shapes at N = 16 alone;
// shape 4, only there, is the 130M LM's scan (8, 1536, 2048), which mamba_ssm's figures do not cover.
// A summary table comes last.
// Without a GPU the binary prints a message and exits 0.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/ops.h"
#include "core/tensor.h"
#include "kernels/selective_scan/selective_scan.h"
#ifdef SSM_WITH_CUDA
#include <cuda_runtime.h>

#include "core/cuda/check.h"
#include "core/cuda/cuda_ops.h"
#include "core/cuda/stream.h"
#include "bench/gpu_timing.h"
#include "kernels/selective_scan/selective_scan_cuda.h"
#endif

#ifdef SSM_WITH_CUDA
using namespace ssm;

namespace {

using bench::median_ms;

struct Shape4 {
  int64_t Bt, D, L;
  double ref_fwd, ref_fb;  // mamba_ssm on H100 (ms)
};

struct Row {
  std::string text;
};
std::vector<Row> g_summary;

void run_shape(const Shape4& s, int64_t N, const char* tag) {
  const Device dev = Device::cuda(0);
  const int64_t Bt = s.Bt, L = s.L, D = s.D;
  kernels::ScanInputs in;
  in.u = rand_normal({Bt, L, D}, 1, 0, DType::bf16, dev);
  in.delta = add(mul(rand_uniform({Bt, L, D}, 2, 0, DType::f32, dev), 3.0), -4.0).to(DType::bf16);
  in.z = rand_normal({Bt, L, D}, 3, 0, DType::bf16, dev);
  in.B = rand_normal({Bt, L, 1, N}, 4, 0, DType::bf16, dev);
  in.C = rand_normal({Bt, L, 1, N}, 5, 0, DType::bf16, dev);
  std::vector<float> a(size_t(D * N));
  for (int64_t i = 0; i < D * N; ++i) a[size_t(i)] = -float(i % N + 1);
  in.A = Tensor::from_vector(a, {D, N}, dev);
  in.D_skip = rand_normal({D}, 6, 0, DType::f32, dev);
  in.delta_bias = mul(rand_uniform({D}, 7, 0, DType::f32, dev), 0.5);
  kernels::ScanOptions opt;
  Tensor y = Tensor::empty({Bt, L, D}, DType::bf16, dev), h = Tensor::empty({Bt, D, N}, DType::f32, dev);
  Tensor g = rand_normal({Bt, L, D}, 8, 0, DType::bf16, dev);
  auto fwd = [&] { kernels::cuda::selective_scan_forward(in, opt, y, h); };
  auto fb = [&] {  // as the autograd op runs them: the backward starts from the forward's saved states
    kernels::SegmentStarts st;
    kernels::cuda::selective_scan_forward(in, opt, y, h, &st);
    kernels::ScanGrads gr;
    kernels::cuda::selective_scan_backward(in, g, Tensor(), opt, gr, &st);
  };
  const double clk = 1.755e9, sms = double(cuda::sm_count()), bw = 2.97e12;
  const double states = double(Bt) * L * D * N;
  const double ld = double(Bt) * L * D, ln = double(Bt) * L * N;
  double got[2] = {0, 0}, flo[2] = {0, 0};
  for (int pass = 0; pass < 2; ++pass) {
    const bool both = pass == 1;
    const double ms = median_ms(both ? std::function<void()>(fb) : std::function<void()>(fwd));
    const double exp_ms = states * (both ? 2 : 1) / (16 * sms * clk) * 1e3;
    const double bytes = both ? (ld * 2 * (4 + 4 + 3) + ln * 2 * (2 + 2 + 2)) : (ld * 2 * 4 + ln * 2 * 2);
    const double byte_ms = bytes / bw * 1e3;
    const double fma_ms = states * (both ? 13 : 3) / (128 * sms * clk) * 1e3;
    const double floor = std::max({exp_ms, byte_ms, fma_ms});
    const double ref = both ? s.ref_fb : s.ref_fwd;
    got[pass] = ms;
    flo[pass] = exp_ms;
    std::printf("%-4s Bt=%-2lld D=%-5lld L=%-6lld N=%-3lld %-8s %8.3f ms | floors exp %.3f bytes %.3f fma %.3f | "
                "floor/ms %.2f | mamba_ssm %.3f (ours/theirs %.2f) %s\n",
                both ? "f+b" : "fwd", (long long)Bt, (long long)D, (long long)L, (long long)N, tag, ms, exp_ms,
                byte_ms, fma_ms, floor / ms, ref, ref > 0 ? ms / ref : NAN, tag);
    std::printf("JSON {\"op\":\"%s\",\"Bt\":%lld,\"D\":%lld,\"L\":%lld,\"N\":%lld,\"variant\":\"%s\",\"ms\":%.4f,"
                "\"exp_ms\":%.4f,\"byte_ms\":%.4f,\"fma_ms\":%.4f,\"floor_frac\":%.3f,\"mamba_ssm_ms\":%.3f}\n",
                both ? "fwd+bwd" : "fwd", (long long)Bt, (long long)D, (long long)L, (long long)N, tag, ms, exp_ms,
                byte_ms, fma_ms, floor / ms, ref);
    std::fflush(stdout);
  }
  char buf[256];
  std::snprintf(buf, sizeof buf, "%-2lld %-5lld %-6lld %-3lld %-9s | %7.3f %7.3f %5.2f %6.3f | %7.3f %7.3f %5.2f %6.3f",
                (long long)Bt, (long long)D, (long long)L, (long long)N, tag, got[0], s.ref_fwd,
                s.ref_fwd > 0 ? got[0] / s.ref_fwd : NAN, flo[0], got[1], s.ref_fb, s.ref_fb > 0 ? got[1] / s.ref_fb : NAN,
                flo[1]);
  g_summary.push_back({buf});
}

}  // namespace

int main(int argc, char** argv) {
  if (!cuda_available()) {
    std::printf("bench_selective_scan: no CUDA device, nothing to do\n");
    return 0;
  }
  bool sweep = false, legacy = false, chunk = false;
  std::vector<int> only;  // --only I[,J...]: those shapes (0..4) at N = 16 alone (for profilers and the lab)
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--sweep")) sweep = true;
    if (!std::strcmp(argv[i], "--legacy")) legacy = true;
    if (!std::strcmp(argv[i], "--chunk")) chunk = true;
    if (!std::strcmp(argv[i], "--only") && i + 1 < argc)
      for (const char* c = argv[++i]; *c; ++c)
        if (c == argv[i] || c[-1] == ',') only.push_back(std::atoi(c));
  }
  const std::vector<Shape4> shapes = {{8, 2048, 2048, 0.594, 3.228},
                                      {4, 4096, 2048, 0.596, 3.250},
                                      {2, 3072, 8192, 1.073, 5.140},
                                      {1, 2048, 65536, 2.972, 15.189}};
  if (!only.empty()) {
    const Shape4 lm{8, 1536, 2048, 0.0, 0.0};  // no mamba_ssm figure
    for (int i : only) {
      if (i < 0 || i > int(shapes.size())) {
        std::fprintf(stderr, "bench_selective_scan: --only takes shapes 0..%zu, not %d\n", shapes.size(), i);
        return 2;
      }
      run_shape(i < int(shapes.size()) ? shapes[size_t(i)] : lm, 16, "default");
    }
    return 0;
  }
  for (int64_t N : {16, 64})
    for (const auto& s : shapes) {
      run_shape(s, N, "default");
      for (const char* impl : {"legacy", "chunk"}) {
        if (impl[0] == 'c' ? chunk : legacy) {
          setenv("SSM_SCAN_IMPL", impl, 1);
          run_shape(s, N, impl);
          unsetenv("SSM_SCAN_IMPL");
        }
      }
      if (sweep && N == 16) {
        // name, then env assignments (cleared afterwards)
        const std::vector<std::vector<std::string>> variants = {
            {"fkf4", "SSM_SCAN_IMPL=legacy", "SSM_SCAN_FWD_KF=4"},
            {"fkf8", "SSM_SCAN_IMPL=legacy", "SSM_SCAN_FWD_KF=8"},
            {"fkf16", "SSM_SCAN_IMPL=legacy", "SSM_SCAN_FWD_KF=16"},
            {"adjkf4", "SSM_SCAN_ADJ_KF=4"},
            {"adjkf16", "SSM_SCAN_ADJ_KF=16"},
            {"segs=2", "SSM_SCAN_FWD_SEGS=2", "SSM_SCAN_BWD_SEGS=2"},
            {"segs=8", "SSM_SCAN_FWD_SEGS=8", "SSM_SCAN_BWD_SEGS=8"},
            {"chunk,segs=1", "SSM_SCAN_IMPL=chunk", "SSM_SCAN_CHUNK_SEGS=1"},
            {"chunk,segs=4", "SSM_SCAN_IMPL=chunk", "SSM_SCAN_CHUNK_SEGS=4"},
            {"chunk,bwd=never", "SSM_SCAN_IMPL=chunk", "SSM_SCAN_CHUNK_BWD=never"}};
        for (const auto& v : variants) {
          for (size_t i = 1; i < v.size(); ++i) {
            const size_t eq = v[i].find('=');
            setenv(v[i].substr(0, eq).c_str(), v[i].substr(eq + 1).c_str(), 1);
          }
          run_shape(s, N, v[0].c_str());
          for (size_t i = 1; i < v.size(); ++i) unsetenv(v[i].substr(0, v[i].find('=')).c_str());
        }
      }
    }
  std::printf("\nsummary (ms; ratio = ours / mamba_ssm; exp = exp floor)\n");
  std::printf("Bt D     L      N   variant   |     fwd   mamba ratio    exp |     f+b   mamba ratio    exp\n");
  for (const auto& r : g_summary) std::printf("%s\n", r.text.c_str());
  return 0;
}
#else
int main() {
  std::printf("bench_selective_scan: built without CUDA\n");
  return 0;
}
#endif
