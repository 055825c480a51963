#!/usr/bin/env bash
# The GPU check: the one script the lead runs on the GPU machine (Ubuntu 24.04, CUDA 13, H100, 16 cores).
#
#   scripts/gpu_check.sh                 # build, tests, bench, train, lm, hf
#   scripts/gpu_check.sh tests bench     # only some parts (tests and bench build first, incrementally)
#   OUT=/some/dir scripts/gpu_check.sh   # where logs and JSON go (default ./gpu-out)
#
# build: configure build-gpu with CUDA for sm_90 (CMAKE_CUDA_ARCHITECTURES overrides) and build with -j16.
# tests: ctest --output-on-failure over every test binary (test_cuda included).
# bench: every bench_* binary with --benchmark_format=json into $OUT/<name>.json.
# train: the Fashion-MNIST quickstart on the GPU.
# lm: `ssm bench` of the 130M Mamba LM (JSON), the KJV byte-level recipe (KJV_PG19: its PG19-layout
#     folder, made by scripts/kjv-to-pg19.sh; carry it) and a generation from its checkpoint.
# hf: scripts/check_hf_export.py (our logits vs transformers' MambaForCausalLM, both directions).
# scan: the figures after a kernel change (with SSM_BUILD_TARGETS="bench_selective_scan bench_causal_conv1d
#       bench_lm_step ssm"), most valuable first (a call cut off by its limit still returns what it wrote): the scan's
#       benchmark with each implementation beside the default (bench_selective_scan --chunk --legacy), the sequential
#       kernels cut into 2-16 time segments at the two shapes of few long rows (forced, without the local passes'
#       finer split, and under the rule: $OUT/bench_seq_segs.txt), the 130M LM's
#       `ssm bench`, the conv1d benchmark, bench_lm_step when built, the 130M LM with the legacy scan.
# scantests: the selective-scan and conv1d GPU tests and those of the LM step's other kernels (cross-entropy,
#       matmul, reductions, add + norm; the optimizer's when test_kernels is built; the layers' GPU tests, a whole
#       Mamba LM training step against the CPU among them, when test_layers is built). scan, scantests: not in the default set
#       (tests, bench and lm cover the default).
# profile: per-kernel GPU times (ncu) of the scan benchmark and of a 130M LM step, and the chunked scan kernels'
#          stall reasons (scripts/profile_kernels.sh), into the log and $OUT/ncu-*. Not in the default set.
# lab: each kernel variant of bench/lab/*.patch against the tree it was made from: applies it, rebuilds its
#      benchmark (the patch's `lab-bench:` line, e.g. `bench_causal_conv1d`; default `bench_selective_scan --only
#      $LAB_ONLY`, LAB_ONLY default 0,1,4: two of mamba_ssm's shapes and the 130M LM's), runs it once per setting
#      on the patch's `lab-runs:` line (env assignments, several to a run joined by commas, or `default`), reverts it
#      and rebuilds (LAB_NO_REBUILD=1: not, where nothing runs after it); output in
#      $OUT/lab.txt, the tree's own kernels first (each benchmark the patches name). git apply, or patch(1) where
#      git is missing. Not in the default set.
# ab: the 130M LM's `ssm bench` at AB_BASE (a commit; default the previous session's end, 5eec8eb) and at this tree,
#     alternately, twice each, on this machine: the base builds in $BUILD-ab from a git worktree. Not in the default set.
# dist: needs 2+ GPUs (nvidia-h200-x2): the NCCL tests, the 2-GPU `ssm launch` tests (DP == accumulation,
#       bit-exact resume, a killed rank) and scripts/scaling_bench.sh (1 vs 2, 4, 8 GPUs as there are, network transport,
#       ZeRO-1) into $OUT/scaling, then PyTorch DDP's figure beside it (bench/ddp_reference.py). Not in the default set.
# SSM_BUILD_TARGETS: build only these targets (e.g. "ssm test_dist test_cli"), to save time.
# Every step runs even when an earlier one failed; the script exits non-zero if any step failed, after
# printing a summary table (steps, then the bandwidth benchmark's median figures).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${OUT:-$ROOT/gpu-out}
BUILD=${SSM_GPU_BUILD_DIR:-$ROOT/build-gpu}
JOBS=${SSM_JOBS:-16}
ARCH=${CMAKE_CUDA_ARCHITECTURES:-90}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: >"$LOG"

parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(build tests bench train lm hf)
want() { local p; for p in "${parts[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }
for p in "${parts[@]}"; do
  case "$p" in build|tests|bench|train|lm|hf|profile|dist|scan|scantests|lab|ab) ;; *) echo "gpu_check.sh: unknown part '$p' (use build, tests, bench, train, lm, hf, profile, dist, scan, scantests, lab, ab)" >&2; exit 2 ;; esac
done

declare -a S_NAME S_RESULT S_SECS
failed=0
# step NAME COMMAND...: runs the command with its output shown and appended to the log; records the result.
step() {
  local name=$1; shift
  local t0=$SECONDS rc
  echo "=== $name: $*" | tee -a "$LOG"
  "$@" 2>&1 | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  S_NAME+=("$name"); S_SECS+=($((SECONDS - t0)))
  if [ "$rc" -eq 0 ]; then S_RESULT+=("ok"); else S_RESULT+=("FAILED (exit $rc)"); failed=1; fi
  return "$rc"
}
skip() { S_NAME+=("$1"); S_RESULT+=("skipped: $2"); S_SECS+=(0); echo "=== $1: skipped ($2)" | tee -a "$LOG"; }

{
  # The device's copy of .git can lag the tree it was sent with: say how many files differ from that commit.
  echo "gpu_check: $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "($(git status --porcelain 2>/dev/null | wc -l) files differ from it)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not available"
  nvcc --version 2>/dev/null | tail -1 || true
} | tee -a "$LOG"

# Every part runs on the build, so it is brought up to date first.
if [ ! -f "$BUILD/CMakeCache.txt" ] || want build; then
  step configure cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSSM_ENABLE_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="$ARCH"
fi
# -k: keep building the other targets when one fails, so the tests that do build still run.
keep_going=(-k)
[ -f "$BUILD/build.ninja" ] && keep_going=(-k 0)
targets=()
for t in ${SSM_BUILD_TARGETS:-}; do targets+=(--target "$t"); done
step build cmake --build "$BUILD" "${targets[@]}" -j"$JOBS" -- "${keep_going[@]}"

if want tests; then
  if [ -d "$BUILD" ]; then
    step ctest ctest --test-dir "$BUILD" --output-on-failure -j8 --timeout 900
  else
    skip tests "no build directory"; failed=1
  fi
fi

if want bench; then
  shopt -s nullglob
  benches=("$BUILD"/bin/bench_*)
  if [ ${#benches[@]} -eq 0 ]; then skip bench "no bench_* binaries in $BUILD/bin"; failed=1; fi
  for b in "${benches[@]}"; do
    n=$(basename "$b")
    # JSON on stdout into the file; messages (and a no-GPU skip notice) on stderr into the log.
    echo "=== $n -> $OUT/$n.json" | tee -a "$LOG"
    t0=$SECONDS
    "$b" --benchmark_format=json >"$OUT/$n.json" 2> >(tee -a "$LOG" >&2)
    rc=$?
    S_NAME+=("$n"); S_SECS+=($((SECONDS - t0)))
    if [ $rc -eq 0 ]; then S_RESULT+=("ok"); else S_RESULT+=("FAILED (exit $rc)"); failed=1; fi
  done
fi

if want scan; then
  # Most valuable first (a call cut off by its time limit still returns what it wrote): the scan's figures, the
  # 130M LM with the default scan, the other benches, then the LM with the legacy scan (the tests: scantests).
  step scan-bench sh -c "timeout -k 10 300 '$BUILD/bin/bench_selective_scan' --chunk --legacy | tee '$OUT/bench_selective_scan.txt'"
  # The sequential kernels cut into time segments (SSM_SCAN_SEQ_SEGS; only when asked until timed) at the two shapes
  # of few long rows, against the default above: both passes forced onto them (8: one wave at (1, 2048, 65536);
  # 11: four at (2, 3072, 8192)), then with seq_plan's rule choosing each pass's kernels (at (2, 3072, 8192) it
  # should keep chunk_kernel's forward and take seq_bwd_kernel's segments).
  for segs in 2 4 8 11 16; do
    echo "--- SSM_SCAN_SEQ_SEGS=$segs, both passes on the sequential kernels" >>"$OUT/bench_seq_segs.txt"
    step "scan-seq-segs-$segs" sh -c "SSM_SCAN_IMPL=chunk SSM_SCAN_SEQ_FWD=always SSM_SCAN_SEQ_BWD=always \
      SSM_SCAN_SEQ_SEGS=$segs timeout -k 10 60 '$BUILD/bin/bench_selective_scan' --only 2,3 | tee -a '$OUT/bench_seq_segs.txt'"
  done
  # The local passes at their own segments, not cut finer (seq_local_pass's split against none).
  echo "--- SSM_SCAN_SEQ_SEGS=8 SSM_SCAN_LOCAL_SPLIT=1, both passes on the sequential kernels" >>"$OUT/bench_seq_segs.txt"
  step "scan-seq-segs-8-split1" sh -c "SSM_SCAN_IMPL=chunk SSM_SCAN_SEQ_FWD=always SSM_SCAN_SEQ_BWD=always \
    SSM_SCAN_SEQ_SEGS=8 SSM_SCAN_LOCAL_SPLIT=1 timeout -k 10 60 '$BUILD/bin/bench_selective_scan' --only 2,3 \
    | tee -a '$OUT/bench_seq_segs.txt'"
  for segs in 8 11; do
    echo "--- SSM_SCAN_SEQ_SEGS=$segs, seq_plan's rule" >>"$OUT/bench_seq_segs.txt"
    step "scan-seq-segs-$segs-rule" sh -c "SSM_SCAN_SEQ_SEGS=$segs timeout -k 10 60 '$BUILD/bin/bench_selective_scan' \
      --only 2,3 | tee -a '$OUT/bench_seq_segs.txt'"
  done
  step lm-130m-default sh -c "timeout -k 10 200 '$BUILD/bin/ssm' bench recipes/bench/mamba-130m.yaml --warmup 3 --steps 10 \
    | tee '$OUT/ssm_bench_130m_default.json'"
  step conv-bench sh -c "timeout -k 10 100 '$BUILD/bin/bench_causal_conv1d' | tee '$OUT/bench_causal_conv1d.txt'"
  [ -x "$BUILD/bin/bench_lm_step" ] && step lm-step-bench sh -c "timeout -k 10 100 '$BUILD/bin/bench_lm_step' | tee '$OUT/bench_lm_step.txt'"
  step lm-130m-legacy sh -c "SSM_SCAN_IMPL=legacy timeout -k 10 200 '$BUILD/bin/ssm' bench recipes/bench/mamba-130m.yaml --warmup 3 \
    --steps 10 | tee '$OUT/ssm_bench_130m_legacy.json'"
fi

# git apply where git is installed (it needs no repository), else patch(1).
apply_patch() {  # [-R] FILE
  if command -v git >/dev/null; then git apply "$@"; return; fi
  local rev=
  [ "$1" = -R ] && { rev=-R; shift; }
  patch -s -p1 $rev -i "$1"
}
if want scantests; then
  step scan-tests timeout -k 10 400 "$BUILD/bin/test_cuda" \
    --gtest_filter='CudaSelectiveScan*:CudaCausalConv1d*:CudaCrossEntropy*:CudaMatmul*:CudaReduce*:CudaAddNorm*'
  [ -x "$BUILD/bin/test_kernels" ] && step optim-tests timeout -k 10 100 "$BUILD/bin/test_kernels" --gtest_filter='OptimCuda*'
  [ -x "$BUILD/bin/test_layers" ] && step layer-gpu-tests timeout -k 10 200 "$BUILD/bin/test_layers" \
    --gtest_filter='*Cuda*'
fi

if want lab; then
  shopt -s nullglob
  patches=(bench/lab/*.patch)
  # A patch's benchmark: its `lab-bench:` line (a bench/ binary and its arguments), else the scan's shapes.
  lab_bench() {
    local b; b=$(sed -n 's/^lab-bench: //p' "$1")
    echo "${b:-bench_selective_scan --only ${LAB_ONLY:-0,1,4}}"
  }
  # The tree's own kernels first, once per benchmark the patches name: the baselines, in the same call.
  lab_benches=$( { echo "bench_selective_scan --only ${LAB_ONLY:-0,1,4}"; for patch in "${patches[@]}"; do lab_bench "$patch"; done; } \
    | sort -u)
  while IFS= read -r bench; do
    step "lab-tree ${bench%% *}" sh -c "echo '--- tree default ($bench)' >>'$OUT/lab.txt'; timeout -k 10 60 \
      '$BUILD/bin/'$bench 2>&1 | tee -a '$OUT/lab.txt'"
  done <<<"$lab_benches"
  for patch in "${patches[@]}"; do
    name=$(basename "$patch" .patch)
    runs=$(sed -n 's/^lab-runs: //p' "$patch")
    bench=$(lab_bench "$patch")
    if ! apply_patch "$patch"; then skip "lab-$name" "does not apply to this tree"; failed=1; continue; fi
    if step "lab-$name-build" cmake --build "$BUILD" --target "${bench%% *}" -j"$JOBS"; then
      for r in $runs; do
        [ "$r" = default ] && r=
        step "lab-$name ${r:-default}" sh -c "echo '--- $name ${r:-default}' >>'$OUT/lab.txt'; env ${r//,/ } timeout -k 10 60 \
          '$BUILD/bin/'$bench 2>&1 | tee -a '$OUT/lab.txt'"
      done
    fi
    apply_patch -R "$patch"
  done
  # The tree's binaries back (the next patch's build recompiles whatever the last one changed).
  [ ${#patches[@]} -gt 0 ] && [ -z "${LAB_NO_REBUILD:-}" ] && while IFS= read -r bench; do
    step "lab-rebuild ${bench%% *}" cmake --build "$BUILD" --target "${bench%% *}" -j"$JOBS"
  done <<<"$lab_benches"
fi

if want ab; then
  base=${AB_BASE:-5eec8eb}
  rm -rf "$ROOT/.ab-base"
  if step ab-worktree git worktree add -f --detach "$ROOT/.ab-base" "$base" &&
     step ab-configure cmake -S "$ROOT/.ab-base" -B "$BUILD-ab" -DCMAKE_BUILD_TYPE=Release -DSSM_ENABLE_CUDA=ON \
       -DCMAKE_CUDA_ARCHITECTURES="$ARCH" &&
     step ab-build cmake --build "$BUILD-ab" --target ssm -j"$JOBS"; then
    for round in 1 2; do
      for side in base head; do
        bin="$BUILD/bin/ssm"; [ $side = base ] && bin="$BUILD-ab/bin/ssm"
        step "ab-$side-$round" sh -c "timeout -k 10 200 '$bin' bench recipes/bench/mamba-130m.yaml --warmup 3 --steps 10 \
          | tee -a '$OUT/ab_130m_$side.json'"
      done
    done
  fi
  git worktree remove --force "$ROOT/.ab-base" 2>/dev/null
fi

# train: the quickstart recipe on the GPU with the 784-step sequence (issue: >= 90% in < 3 minutes).
# FMNIST_ROOT points at the IDX files (the GPU machine has no Debian package; carry them).
if want train; then
  root=${FMNIST_ROOT:-/usr/share/datasets/fashion-mnist}
  rm -rf "$OUT/quickstart-gpu"
  step train-quickstart-gpu "$BUILD/bin/ssm" train recipes/quickstart/fashion-mnist-s4d.yaml trainer.device=cuda \
    data.pool=1 data.root="$root" data.path="$BUILD/datasets/fashion-mnist" trainer.out_dir="$OUT/quickstart-gpu" \
    ${SSM_TRAIN_OVERRIDES:-}
  rm -rf "$OUT/quickstart-gpu/checkpoints"
fi

if want lm; then
  step bench-mamba-130m sh -c "'$BUILD/bin/ssm' bench recipes/bench/mamba-130m.yaml --warmup 3 --steps 10 ${SSM_BENCH_OVERRIDES:-} | tee '$OUT/ssm_bench_mamba_130m.json'"
  kjv=${KJV_PG19:-datasets/kjv-pg19}
  if [ -d "$kjv" ]; then
    rm -rf "$OUT/kjv"
    step train-kjv-gpu "$BUILD/bin/ssm" train recipes/pg19/kjv-bytes-small.yaml data.root="$kjv" \
      data.path="$BUILD/datasets/kjv" trainer.out_dir="$OUT/kjv" ${SSM_KJV_OVERRIDES:-}
    step generate-kjv "$BUILD/bin/ssm" generate "$OUT/kjv" --prompt "In the beginning" --max-new 300 \
      --temperature 0.8 --top-p 0.95 --seed 1 --device cuda
    rm -rf "$OUT/kjv/checkpoints"
  else
    skip train-kjv-gpu "no $kjv (scripts/kjv-to-pg19.sh makes it; carry it)"
  fi
fi

if want hf; then
  step hf-check python3 scripts/check_hf_export.py --ssm "$BUILD/bin/ssm" --work "$BUILD/hf-check"
fi

if want profile; then
  step profile-scan env OUT="$OUT" scripts/profile_kernels.sh scan "$BUILD"
  step profile-step env OUT="$OUT" scripts/profile_kernels.sh step "$BUILD"
  step profile-stalls env OUT="$OUT" scripts/profile_kernels.sh stalls "$BUILD"
fi

if want dist; then
  export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
  step nccl-tests timeout -k 10 300 "$BUILD/bin/test_dist" --gtest_filter='NcclDist.*'
  step nccl-tests-net env NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1 timeout -k 10 300 "$BUILD/bin/test_dist" \
    --gtest_filter='NcclDist.*:-*Hang*'
  step launch-2gpu-tests timeout -k 10 500 "$BUILD/bin/test_cli" --gtest_filter='CliDistGpu.*'
  if [ -z "${SSM_SKIP_SCALING:-}" ]; then
    # 2, 4, 8 processes, as many as there are GPUs (SCALING_NPROCS overrides; SCALING_LAUNCHER picks
    # ssm launch, torchrun or mpirun).
    ngpu=$(nvidia-smi -L 2>/dev/null | wc -l)
    nprocs=${SCALING_NPROCS:-$(for n in 2 4 8; do [ "$n" -le "$ngpu" ] && printf '%s ' "$n"; done)}
    step scaling env OUT="$OUT/scaling" scripts/scaling_bench.sh "$BUILD/bin/ssm" "${nprocs:-2}"
    # PyTorch DDP's figure for an equivalent model (bench/ddp_reference.py), 1 and N GPUs, N on the network too.
    if python3 -c "import torch, transformers" 2>/dev/null; then
      for n in 1 ${nprocs:-2}; do
        step "ddp-reference-p$n" timeout -k 10 300 python3 -m torch.distributed.run --standalone --nproc_per_node "$n" \
          bench/ddp_reference.py
      done
      for n in ${nprocs:-2}; do
        step "ddp-reference-p$n-net" env NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1 timeout -k 10 300 \
          python3 -m torch.distributed.run --standalone --nproc_per_node "$n" bench/ddp_reference.py
      done
    else
      skip ddp-reference "no torch and transformers in python3"
    fi
  fi
fi

# ---- summary ----
{
  echo
  echo "================ gpu_check summary ================"
  printf '%-34s %-28s %8s\n' step result seconds
  for i in "${!S_NAME[@]}"; do printf '%-34s %-28s %8s\n' "${S_NAME[$i]}" "${S_RESULT[$i]}" "${S_SECS[$i]}"; done
  if [ -s "$OUT/bench_elementwise_bandwidth.json" ] && command -v python3 >/dev/null; then
    echo
    python3 - "$OUT/bench_elementwise_bandwidth.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
ctx = d.get("context", {})
print("measured D2D copy bandwidth: %s GB/s (goal: every op >= 0.80 of it)" % ctx.get("d2d_bandwidth_GBps", "?"))
print("%-34s %12s %10s %8s" % ("benchmark (median of 5)", "time (us)", "GB/s", "of D2D"))
for b in d.get("benchmarks", []):
    if b.get("aggregate_name") != "median":
        continue
    print("%-34s %12.1f %10.1f %8.2f" % (b["run_name"], b["real_time"], b.get("bytes_per_second", 0) / 1e9,
                                         b.get("frac_of_d2d", 0)))
PY
  fi
  echo "logs and JSON in $OUT"
  [ $failed -eq 0 ] && echo "gpu_check: all steps passed" || echo "gpu_check: SOME STEPS FAILED"
} | tee -a "$LOG"
exit $failed
