#!/usr/bin/env bash
# Data-parallel scaling of the 130M Mamba LM (recipes/bench/mamba-130m.yaml: random tokens, batch 8 x 2048
# per GPU, bf16, AdamW, clip 1.0) on the GPUs of one machine: 1 process, then `ssm launch --nproc N`, then N
# processes with NCCL forced onto its network transport (NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1: what two
# nodes would use; once reducing in f32, once in bf16), then N processes with ZeRO-1 (trainer.dist.zero=1). Prints one line per run: name,
# processes, global tokens/s (median of the logged windows after the first), peak memory of rank 0 (MiB);
# then the efficiency vs 1 process. Every run is bounded (SCALING_RUN_TIMEOUT, default 300 s).
#   scripts/scaling_bench.sh [SSM_BINARY] [NPROC]      (OUT: where run folders go, default ./scaling-out)
set -uo pipefail
cd "$(dirname "$0")/.."
SSM=${1:-build/bin/ssm}
N=${2:-2}
OUT=${OUT:-$PWD/scaling-out}
STEPS=${SCALING_STEPS:-40}
mkdir -p "$OUT"
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
  if [ "$nproc" -eq 1 ]; then
    env "$@" "${limit[@]}" "$SSM" train "${args[@]}" >"$OUT/$name.log" 2>&1
  else
    env "$@" "${limit[@]}" "$SSM" launch --nproc "$nproc" "${args[@]}" >"$OUT/$name.log" 2>&1
  fi
  local rc=$?
  if [ $rc -ne 0 ]; then echo "{\"run\": \"$name\", \"error\": \"exit $rc\"}"; tail -5 "$OUT/$name.log"; return; fi
  read -r tps mem < <(median_tps "$OUT/$name/metrics.jsonl")
  echo "$name $nproc $tps $mem"
}

one=$(run p1 1 "")
echo "$one"
base=$(echo "$one" | awk '{print $3}')
# name:processes:extra override:environment... (NCCL_DEBUG_SUBSYS=NET logs which network transport NCCL took)
for spec in "pN:$N:" "pN-net:$N::NCCL_P2P_DISABLE=1:NCCL_SHM_DISABLE=1:NCCL_DEBUG=INFO:NCCL_DEBUG_SUBSYS=INIT,NET" \
            "pN-net-bf16:$N:++trainer.dist.reduce_dtype=bf16:NCCL_P2P_DISABLE=1:NCCL_SHM_DISABLE=1" \
            "pN-zero1:$N:++trainer.dist.zero=1" ${SCALING_EXTRA_SPECS:-}; do
  IFS=: read -r name nproc extra envs <<<"$spec"
  IFS=: read -r -a envs <<<"${envs:-}"
  line=$(run "$name" "$nproc" "$extra" "${envs[@]}")
  echo "$line"
  tps=$(echo "$line" | awk '{print $3}')
  python3 -c "print('efficiency $name: %.3f (%.0f tokens/s vs %d x %.0f)' % ($tps / ($nproc * $base), $tps, $nproc, $base))" 2>/dev/null
done
