#!/usr/bin/env bash
# Configures (once) and builds ssm into build/. CUDA is used when nvcc is found (see CMakeLists.txt).
# Extra arguments go to cmake's configure step, e.g. -DCMAKE_CUDA_ARCHITECTURES="80;90".
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${SSM_JOBS:-$(nproc)}
if [ ! -f build/CMakeCache.txt ] || [ $# -gt 0 ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@"
fi
cmake --build build -j"$jobs"
