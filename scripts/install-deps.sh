#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages ssm builds against, only those missing. Idempotent.
set -euo pipefail
pkgs=(build-essential cmake pkg-config zlib1g-dev libyaml-cpp-dev libhdf5-dev libgtest-dev
      libbenchmark-dev libcli11-dev nlohmann-json3-dev libopenblas-dev dataset-fashion-mnist
      bible-kjv bible-kjv-text openmpi-bin libopenmpi-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "ssm: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
