#!/usr/bin/env bash
# Copies the header-only dependencies (CLI11, nlohmann-json) from this machine's Debian packages into
# .deps/include (git-ignored), for a machine that lacks the packages (the GPU machine). CMake adds
# .deps/include to the include path when it exists.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .deps/include
cp -r /usr/include/CLI .deps/include/
cp -r /usr/include/nlohmann .deps/include/
echo "staged headers into .deps/include"
