// The emulated kernel files' entry points get their own names (emu_*), so test_emu can hold them beside the real
// ones that libssm_kernels links in; so do the named namespaces of shared kernel headers (their inline functions
// and templates differ once the launches are rewritten). Included first by every emulated source and by the
// tests that call them.
#pragma once
#define chunked_forward emu_chunked_forward
#define chunked_checkpoints emu_chunked_checkpoints
#define chunked_backward emu_chunked_backward
#define chunked_runs emu_chunked_runs
#define causal_conv1d_forward emu_causal_conv1d_forward
#define causal_conv1d_backward emu_causal_conv1d_backward
#define selective_scan_forward emu_selective_scan_forward
#define selective_scan_backward emu_selective_scan_backward
#define add_norm_forward emu_add_norm_forward
#define add_norm_backward emu_add_norm_backward
#define adamw_step emu_adamw_step
#define adamw_step_list emu_adamw_step_list
#define sgd_step emu_sgd_step
#define norm_forward emu_norm_forward
#define norm_backward emu_norm_backward
#define s4d_kernel_forward emu_s4d_kernel_forward
#define s4d_kernel_backward emu_s4d_kernel_backward
#define norm_detail emu_norm_detail
