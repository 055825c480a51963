#!/usr/bin/env bash
# Data-parallel scaling of the 130M Mamba LM (recipes/bench/mamba-130m.yaml: random tokens, batch 8 x 2048
# per GPU, bf16, AdamW, clip 1.0) on the GPUs of one machine: 1 process, then for each process count N: N
# processes, N with NCCL forced onto its network transport (NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1: what
# several nodes would use; once reducing in f32, once in bf16), N with ZeRO-1 (trainer.dist.zero=1). Prints
# one line per run: name, processes, global tokens/s (median of the logged windows after the first), peak
# memory of rank 0 (MiB), then its efficiency against N x the 1-process figure. Every run is bounded
# (SCALING_RUN_TIMEOUT, default 300 s).
#   scripts/scaling_bench.sh [SSM_BINARY] [NPROCS]      NPROCS: one count or a list, e.g. "2 4 8"
# Environment: OUT (run folders, default ./scaling-out); SCALING_LAUNCHER how N processes start, as a user
# would: ssm (default: ssm launch --nproc N), torchrun (torchrun --no-python --standalone --nproc_per_node N)
# or mpirun (mpirun -np N); SCALING_STEPS (40); SCALING_OVERRIDES (recipe overrides for every run);
# SCALING_RUNS (which of dp net net-bf16 zero1 per count; default all).
set -uo pipefail
cd "$(dirname "$0")/.."
SSM=${1:-build/bin/ssm}
NPROCS=${2:-2}
LAUNCHER=${SCALING_LAUNCHER:-ssm}
RUNS=${SCALING_RUNS:-dp net net-bf16 zero1}
case "$LAUNCHER" in ssm|torchrun|mpirun) ;; *) echo "scaling_bench.sh: SCALING_LAUNCHER must be ssm, torchrun or mpirun, not '$LAUNCHER'" >&2; exit 2 ;; esac
OUT=${OUT:-$PWD/scaling-out}
STEPS=${SCALING_STEPS:-40}
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}

median_tps() {  # metrics.jsonl -> median tokens_per_second of the windows after the first
  python3 - "$1" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"tokens_per_second"' in l]
tps = [r["tokens_per_second"] for r in rows[1:]] or [r["tokens_per_second"] for r in rows]
mem = max(r.get("peak_memory_mb", 0) for r in rows)
print(f"{statistics.median(tps):.1f} {mem:.0f}")
PY
}

run() {  # name nproc extra-override env...
  local name=$1 nproc=$2 extra=$3; shift 3
  rm -rf "$OUT/$name"
  local args=(recipes/bench/mamba-130m.yaml ++trainer.steps="$STEPS" ++trainer.log_every=5 ++trainer.out_dir="$OUT/$name"
              ++trainer.checkpoint_every=1000000 ++trainer.eval_every=0 ${SCALING_OVERRIDES:-} $extra)
  local limit=(timeout -k 10 "${SCALING_RUN_TIMEOUT:-300}")
  local start=("$SSM" train)
  if [ "$nproc" -gt 1 ]; then
    case "$LAUNCHER" in
      ssm) start=("$SSM" launch --nproc "$nproc") ;;
      torchrun) start=(torchrun --no-python --standalone --nproc_per_node "$nproc" "$SSM" train) ;;
      mpirun)  # Open MPI hands the ranks mpirun's environment (the NCCL_* variables set below included)
        start=(mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$nproc" "$SSM" train) ;;
    esac
  fi
  env "$@" "${limit[@]}" "${start[@]}" "${args[@]}" >"$OUT/$name.log" 2>&1
  local rc=$?
  if [ $rc -ne 0 ]; then echo "{\"run\": \"$name\", \"error\": \"exit $rc\"}"; tail -5 "$OUT/$name.log"; return; fi
  read -r tps mem < <(median_tps "$OUT/$name/metrics.jsonl")
  echo "$name $nproc $tps $mem"
}

# kind:extra override:environment... (NCCL_DEBUG_SUBSYS=NET logs which network transport NCCL took)
spec_of() {
  case "$1" in
    dp) echo ":" ;;
    net) echo ":NCCL_P2P_DISABLE=1:NCCL_SHM_DISABLE=1:NCCL_DEBUG=INFO:NCCL_DEBUG_SUBSYS=INIT,NET" ;;
    net-bf16) echo "++trainer.dist.reduce_dtype=bf16:NCCL_P2P_DISABLE=1:NCCL_SHM_DISABLE=1" ;;
    zero1) echo "++trainer.dist.zero=1:" ;;
    *) echo "scaling_bench.sh: unknown run '$1' in SCALING_RUNS (dp, net, net-bf16, zero1)" >&2; return 1 ;;
  esac
}
for kind in $RUNS; do spec_of "$kind" >/dev/null || exit 2; done
mkdir -p "$OUT"

one=$(run p1 1 "")
echo "$one"
base=$(echo "$one" | awk '{print $3}')
for n in $NPROCS; do
  for kind in $RUNS; do
    spec=$(spec_of "$kind") || exit 2
    IFS=: read -r extra envs <<<"$spec"
    IFS=: read -r -a envs <<<"${envs:-}"
    name="p$n-$kind"
    line=$(run "$name" "$n" "$extra" "${envs[@]}")
    echo "$line"
    tps=$(echo "$line" | awk '{print $3}')
    python3 -c "print('efficiency $name: %.3f (%.0f tokens/s vs %d x %.0f)' % ($tps / ($n * $base), $tps, $n, $base))" 2>/dev/null
  done
done
