#!/usr/bin/env bash
# The README's second command (and what CI runs): install what is missing, build, run every test.
# GPU tests skip themselves on machines without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
ctest --test-dir build --output-on-failure -j"$(nproc)" --timeout 900
