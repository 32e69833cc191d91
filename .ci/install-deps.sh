#!/usr/bin/env bash
# Installs what moe-tool builds with, from Debian's packages (the CUDA Toolkit is already on the
# machines). Idempotent: does nothing when everything is present. Needs root for apt-get.
set -euo pipefail
pkgs=(cmake ninja-build g++ clang libclang-rt-14-dev ccache libcli11-dev libeigen3-dev catch2 nlohmann-json3-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
