#!/usr/bin/env bash
# The README's first command: install what is missing, build, and train the quickstart recipe
# (S4D on Fashion-MNIST as a pixel sequence) on the CPU. Extra arguments are recipe overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
exec build/bin/ssm train recipes/quickstart/fashion-mnist-s4d.yaml "$@"
