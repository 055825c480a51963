// Selective scan (Mamba-1's S6), forward and backward.
//
// Shapes (activations channels-last, as the Mamba block produces them; no transposes around the scan):
//   u, delta, z : (Bt, L, D)          A : (D, N) real (Mamba: A = -exp(A_log), so A < 0)
//   B, C        : (Bt, L, G, N)       channel d reads group g(d) = d / (D / G)  (D % G == 0)
//   D_skip, delta_bias : (D)          h0 : (Bt, D, N) f32        seq_idx : (Bt, L) i32
// Math, per batch row b, channel d, state n, time t = 0 .. L-1:
//   dt_t = softplus(delta_t + delta_bias) if delta_softplus else delta_t + delta_bias
//   h_t  = exp(dt_t A[d,n]) h_{t-1} + dt_t B_t[g,n] u_t            (h_{-1} = h0, or 0)
//   y_t  = sum_n C_t[g,n] h_t[n] + D_skip[d] u_t
//   y_t *= silu(z_t)                                              (when z is given)
//   h_last = h_{L-1}                                              (Bt, D, N), always f32
// Packed sequences: when seq_idx is given, the state is reset (h_{t-1} := 0) wherever
// seq_idx[b,t] != seq_idx[b,t-1], so documents packed into one row never see each other. h0 feeds
// only the first document of the row; h_last is the state at the end of the row's last document.
//
// Backward (adjoint, g = dLoss/dy after the gate, gh = dLoss/dh_last):
//   gy_t  = g_t silu(z_t);  gz_t = g_t y_pre_t silu'(z_t)     (y_pre = y before the gate)
//   dh_t  = C_t gy_t + exp(dt_{t+1} A) dh_{t+1}     (dh_{L-1} = C gy + gh; the carry is cut at resets)
//   gC_t[g,n] += gy_t h_t[n]          gB_t[g,n] += dh_t[n] dt_t u_t          (summed over d in g)
//   gu_t   = sum_n dh_t[n] dt_t B_t[n] + D_skip gy_t
//   gdt_t  = sum_n dh_t[n] (A[n] exp(dt_t A[n]) h_{t-1}[n] + B_t[n] u_t)
//   gA[n] += dh_t[n] dt_t exp(dt_t A[n]) h_{t-1}[n]     gD += gy_t u_t     gh0 = exp(dt_0 A) dh_0
//   gdelta_t = gdt_t sigmoid(delta_t + delta_bias) (softplus) or gdt_t;   gdelta_bias = sum_{b,t} gdelta_t
//
// Devices and dtypes:
//   CPU: the plain reference (the oracle); f32 or f64 for every input (all the same dtype), h in
//        the input dtype (f64 for gradchecks).
//   CUDA: u, delta, z, B, C in f32, bf16 or f16 (u, delta, z one dtype; B, C one dtype); A, D_skip,
//        delta_bias, h0 in f32; state and accumulation in f32; the state never goes to device memory
//        whole (at most per-chunk checkpoints); the backward recomputes what it needs. Any L
//        (64-bit offsets), N <= 256. Outputs: y in u's dtype, h_last f32; each gradient in its
//        input's dtype.
// deterministic: the backward uses no floating-point atomics (bit-identical results run to run).
#pragma once
#include "autograd/variable.h"
#include "core/tensor.h"

namespace ssm::kernels {

struct ScanOptions {
  bool delta_softplus = true;
  bool deterministic = false;
};

// Tensor-level inputs; undefined tensors are absent (D_skip, z, delta_bias, h0, seq_idx optional).
struct ScanInputs {
  Tensor u, delta, A, B, C;
  Tensor D_skip, z, delta_bias, h0, seq_idx;
};

// The CUDA forward's state at the start of each time segment (when it cut the rows into segments): handed
// to the backward, which then skips its own pass that finds them. Opaque outside the kernels.
struct SegmentStarts {
  Tensor states;        // (Bt, nseg, D, Np) f32
  int64_t seg_len = 0;  // steps per segment
  Tensor mids;          // (Bt, nseg, D, Np) f32: the state at each segment's middle (the chunked forward at N <= 16)
};

struct ScanOutputs {
  Tensor y;       // (Bt, L, D), u's dtype
  Tensor h_last;  // (Bt, D, N), f32 (CPU f64: f64)
  SegmentStarts starts;  // CUDA only, may be empty
};

// Gradients; those of absent inputs stay undefined. Wanted ones only (see `want`).
struct ScanGrads {
  Tensor u, delta, A, B, C, D_skip, z, delta_bias, h0;
};

// Checks shapes, dtypes and devices (BadInput naming the tensor and the shapes involved); makes
// inputs contiguous; dispatches to the CPU reference or the CUDA kernels.
void check_scan_inputs(const ScanInputs& in);
ScanOutputs selective_scan_forward(const ScanInputs& in, const ScanOptions& opt);
// grad_y (Bt, L, D) in y's dtype; grad_h_last (Bt, D, N) f32, may be undefined (zero). starts: the
// forward's ScanOutputs::starts on the same inputs, or nullptr.
ScanGrads selective_scan_backward(const ScanInputs& in, const Tensor& grad_y, const Tensor& grad_h_last,
                                  const ScanOptions& opt, const SegmentStarts* starts = nullptr);

// The CPU reference directly (used as the oracle by the CUDA tests on copies of the inputs).
ScanOutputs selective_scan_reference_forward(const ScanInputs& in, const ScanOptions& opt);
ScanGrads selective_scan_reference_backward(const ScanInputs& in, const Tensor& grad_y, const Tensor& grad_h_last,
                                            const ScanOptions& opt);

// Autograd op. Optional inputs: pass an undefined Variable (ag::Variable()) to leave them out.
// Gradients flow to every input that requires grad, including h0; h_last is differentiable.
struct ScanResult {
  ag::Variable y, h_last;
};
ScanResult selective_scan(const ag::Variable& u, const ag::Variable& delta, const ag::Variable& A,
                          const ag::Variable& B, const ag::Variable& C, const ag::Variable& D_skip,
                          const ag::Variable& z, const ag::Variable& delta_bias, const ag::Variable& h0,
                          const Tensor& seq_idx, const ScanOptions& opt);

}  // namespace ssm::kernels
