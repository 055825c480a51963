// The 130M Mamba LM's training step outside the scan and the projections, part by part, each as the step did it
// before the tenth session (2026-12-07) and as it does now, on the same GPU:
//   ce:    the LM head's cross-entropy over one chunk of logits (4096 x 50280 bf16, 3 padding columns at -inf):
//          cross_entropy then cross_entropy_backward (3 reads + 1 write of the logits) against
//          cross_entropy_with_grad_ (1 read, 1 L2 re-read, 1 write over them). Floors: 4 and 2 passes of
//          412 MB at the D2D copy bandwidth.
//   dw:    the LM head's weight gradient summed over a chunk (d^T x: 50280 x 4096 x 768): a bf16 product, its cast
//          to f32 and an add, against matmul_add_ into the f32 sum. Floor: 2 x 50280 x 768 x 4096 FLOPs at
//          989 TFLOP/s (H100 SXM dense bf16).
//   optim: gradient clipping and AdamW over the model's 242 parameters (f32 gradients): a norm with a host sync
//          per parameter, a fill and a multiply per parameter, an AdamW launch per parameter; against one norm
//          over the list (one sync), scale_ over the list, adamw_step_many. Floor: the bytes (norm reads g; scale
//          reads and writes g; AdamW reads p, g, m, v and writes p, m, v: 40 bytes a parameter).
// Each figure is the median of 25 calls timed by CUDA events (bench/gpu_timing.h), host time between the events
// included: the old optim path is host-bound by design. Plain main; prints one line per part and one JSON line
// (prefix "JSON "). Without a GPU the binary prints a message and exits 0.
#include <cmath>
#include <cstdio>
#include <functional>
#include <vector>

#include "core/device.h"
#include "core/ops.h"
#include "core/tensor.h"
#include "kernels/optim/adamw.h"
#ifdef SSM_WITH_CUDA
#include "bench/gpu_timing.h"
#endif

#ifdef SSM_WITH_CUDA
using namespace ssm;

namespace {

constexpr double kCopyBandwidth = 2.97e12;  // B/s, measured D2D copy on the H100 (bench/RESULTS.md)
constexpr double kBf16Flops = 989e12;       // H100 SXM dense bf16

void report(const char* part, const char* how, double ms, double floor_ms) {
  std::printf("%-6s %-44s %8.3f ms   floor %7.3f ms   frac %.2f\n", part, how, ms, floor_ms, floor_ms / ms);
  std::printf("JSON {\"part\": \"%s\", \"how\": \"%s\", \"ms\": %.4f, \"floor_ms\": %.4f}\n", part, how, ms, floor_ms);
}

void bench_ce() {
  const int64_t n = 4096, V = 50280, classes = 50277;
  const Device dev = Device::cuda();
  Tensor logits = rand_normal({n, V}, 1, 0, DType::bf16, dev);
  logits.narrow(1, classes, V - classes).fill_(-INFINITY);
  const Tensor t = mul(rand_uniform({n}, 2, 0, DType::f32, dev), double(classes - 1)).to(DType::i64);
  const double pass_ms = double(n * V * 2) / kCopyBandwidth * 1e3;
  report("ce", "cross_entropy + cross_entropy_backward", bench::median_ms([&] {
           Tensor l = cross_entropy(logits, t);
           Tensor d = cross_entropy_backward(logits, t, 0.25);
         }),
         4 * pass_ms);
  Tensor scratch = logits.clone();
  report("ce", "cross_entropy_with_grad_ (in place)",
         bench::median_ms([&] { Tensor l = cross_entropy_with_grad_(scratch, t, 0.25); }), 2 * pass_ms);
}

void bench_dw() {
  const int64_t n = 4096, V = 50280, dm = 768;
  const Device dev = Device::cuda();
  const Tensor d = rand_normal({n, V}, 3, 0, DType::bf16, dev), x = rand_normal({n, dm}, 4, 0, DType::bf16, dev);
  Tensor dw = Tensor::zeros({V, dm}, DType::f32, dev);
  const double floor_ms = 2.0 * double(n) * double(V) * double(dm) / kBf16Flops * 1e3;
  report("dw", "matmul (bf16) + to(f32) + add", bench::median_ms([&] { dw = add(dw, matmul(d, x, true, false).to(DType::f32)); }),
         floor_ms);
  report("dw", "matmul_add_ (into f32)", bench::median_ms([&] { matmul_add_(dw, d, x, true, false); }), floor_ms);
}

void bench_optim() {
  const Device dev = Device::cuda();
  std::vector<Shape> shapes = {{50280, 768}};
  for (int l = 0; l < 24; ++l)
    for (const Shape& s : std::vector<Shape>{{3072, 768}, {1536, 4}, {1536}, {80, 1536}, {1536, 48}, {1536},
                                             {1536, 16}, {1536}, {768, 1536}, {768}})
      shapes.push_back(s);
  shapes.push_back({768});
  std::vector<Tensor> p, g, m, v;
  int64_t total = 0;
  for (size_t i = 0; i < shapes.size(); ++i) {
    p.push_back(rand_normal(shapes[i], uint64_t(10 + i), 0, DType::f32, dev));
    g.push_back(rand_normal(shapes[i], uint64_t(1000 + i), 0, DType::f32, dev));
    m.push_back(Tensor::zeros(shapes[i], DType::f32, dev));
    v.push_back(Tensor::zeros(shapes[i], DType::f32, dev));
    total += p.back().numel();
  }
  const double floor_ms = double(total) * (4 + 8 + 28) / kCopyBandwidth * 1e3;
  int64_t step = 0;
  report("optim", "per parameter: norm (sync), scale, adamw", bench::median_ms([&] {
           double sq = 0;
           for (const Tensor& gi : g) {
             const double x = norm2(gi);
             sq += x * x;
           }
           const double scale = 1.0 / (std::sqrt(sq) + 1e-6);  // as clipping to 1.0 does (the norm is > 1)
           for (Tensor& gi : g) binary_(BinaryOp::Mul, gi, Tensor::scalar(scale, gi.dtype(), gi.device()));
           ++step;
           for (size_t i = 0; i < p.size(); ++i) kernels::adamw_step(p[i], g[i], m[i], v[i], 6e-4, 0.9, 0.95, 1e-8, 0.1, step);
         }),
         floor_ms);
  report("optim", "lists: norm2, scale_, adamw_step_many", bench::median_ms([&] {
           const double scale = 1.0 / (norm2(g) + 1e-6);
           scale_(g, scale);
           ++step;
           std::vector<kernels::AdamWParam> ps;
           for (size_t i = 0; i < p.size(); ++i) ps.push_back({&p[i], &g[i], &m[i], &v[i], 6e-4, 0.1, step});
           kernels::adamw_step_many(ps, 0.9, 0.95, 1e-8);
         }),
         floor_ms);
}

}  // namespace

int main() {
  if (!cuda_available()) {
    std::printf("bench_lm_step: no CUDA device, nothing to do\n");
    return 0;
  }
  bench_ce();
  bench_dw();
  bench_optim();
  return 0;
}
#else
int main() {
  std::printf("bench_lm_step: built without CUDA\n");
  return 0;
}
#endif
