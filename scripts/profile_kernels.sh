#!/usr/bin/env bash
# Per-kernel GPU time with ncu (kernels serialised, so the figures add up to more than a real step's wall
# time where kernels overlap), aggregated by kernel name, largest first.
#
#   scripts/profile_kernels.sh scan [BUILD]   # bench_selective_scan --only 0: (8, 2048, 2048, 16), the
#                                             # 3 warm-up + 25 timed forward and forward+backward calls
#   scripts/profile_kernels.sh step [BUILD]   # two training steps of the 130M Mamba LM (recipes/bench)
#   scripts/profile_kernels.sh stalls [BUILD] # why the chunked scan's forward and backward kernels wait: one
#                                             # launch of each at (8, 2048, 2048, 16), ncu's launch, occupancy,
#                                             # scheduler, warp-state, compute and memory sections, and the stall
#                                             # reasons (cycles per issued instruction spent in each, the
#                                             # smsp__average_warps_issue_stalled_* metrics: the sections alone print
#                                             # only their total)
#   PROFILE_ONLY=3 scripts/profile_kernels.sh scan   # another of the benchmark's shapes (--only; default 0)
#   STALL_KERNELS="fwd_kernel" STALL_LAUNCHES=2 PROFILE_ONLY=3 scripts/profile_kernels.sh stalls
#                                             # other kernels' stall reasons (default: chunk_kernel chunk_bwd_kernel,
#                                             # one launch each; fwd_kernel's two at shape 3 are the legacy forward's
#                                             # local and full pass)
#
# Prints "ms per call/step, calls, kernel" rows; the raw CSV goes to $OUT/ncu-<what>.csv when OUT is set
# (stalls: ncu's text report, also into $OUT/ncu-stalls.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-scan}
BUILD=${2:-build-gpu}
only=${PROFILE_ONLY:-0}
csv=${OUT:-/tmp}/ncu-$what.csv
if [ "$what" = stalls ]; then
  out=${OUT:-/tmp}/ncu-stalls.txt
  : >"$out"
  for k in ${STALL_KERNELS:-chunk_kernel chunk_bwd_kernel}; do  # from the third launch: past the warm-up's first calls
    ncu --kernel-name "regex:$k" --launch-skip 2 --launch-count "${STALL_LAUNCHES:-1}" --section LaunchStats --section Occupancy \
      --section SchedulerStats --section WarpStateStats --section ComputeWorkloadAnalysis \
      --section MemoryWorkloadAnalysis --metrics 'regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio' \
      "$BUILD/bin/bench_selective_scan" --only "$only" 2>&1 | tee -a "$out"
  done
  exit 0
fi
case "$what" in
  scan) cmd=("$BUILD/bin/bench_selective_scan" --only "$only"); per=28 ;;  # calls of each kind per run
  step) cmd=("$BUILD/bin/ssm" bench recipes/bench/mamba-130m.yaml --warmup 2 --steps 2); per=4 ;;
  *) echo "profile_kernels.sh: unknown target '$what' (use scan, step or stalls)" >&2; exit 2 ;;
esac
ncu --metrics gpu__time_duration.sum --csv "${cmd[@]}" >"$csv" 2>/dev/null
python3 - "$csv" "$per" <<'PY'
import csv, sys, collections
rows = list(csv.reader(l for l in open(sys.argv[1]) if l.startswith('"')))
hdr, rows = rows[0], rows[1:]
ki, mi, vi = hdr.index("Kernel Name"), hdr.index("Metric Name"), hdr.index("Metric Value")
ui = hdr.index("Metric Unit")
scale = {"nsecond": 1e-6, "ns": 1e-6, "usecond": 1e-3, "us": 1e-3, "msecond": 1.0, "ms": 1.0, "second": 1e3}
tot, cnt = collections.Counter(), collections.Counter()
for r in rows:
    if r[mi] != "gpu__time_duration.sum":
        continue
    name = r[ki].split("(")[0].replace("void ", "")[:90]
    tot[name] += float(r[vi].replace(",", "")) * scale[r[ui]]
    cnt[name] += 1
per = float(sys.argv[2])
print("%10s %7s  %s" % ("ms/unit", "calls", "kernel (unit: scan: one forward + one forward+backward call; step: one step)"))
for name, t in tot.most_common(40):
    print("%10.3f %7d  %s" % (t / per, cnt[name], name))
print("%10.3f          total" % (sum(tot.values()) / per))
PY
