#!/usr/bin/env bash
# The main job on a built-in example: make a small Qwen3-MoE-shaped checkpoint, inspect and
# validate it, shard it for TP=2 x EP=2 with 2 redundant experts, validate the shards, and run
# the fused-MoE path on them against the CPU reference (on the GPU when one is present).
# Usage: bash examples/demo.sh [FAMILY]   (default qwen3_moe; any family `inspect` knows)
set -euo pipefail
cd "$(dirname "$0")/.."
family=${1:-qwen3_moe}
bash .ci/install-deps.sh
[ -x /usr/local/cuda/bin/nvcc ] && export CUDACXX=${CUDACXX:-/usr/local/cuda/bin/nvcc}
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOE_BUILD_TESTS=OFF >/dev/null
ninja -C build moe-tool
tool=build/apps/moe-tool/moe-tool
work=${MOE_DEMO_DIR:-/tmp/moe-tool-demo}
rm -rf "$work" && mkdir -p "$work"

set -x
$tool make-example --family "$family" -o "$work/ckpt"
$tool inspect "$work/ckpt"
$tool validate --scan-values "$work/ckpt"
$tool convert "$work/ckpt" -o "$work/shards" --tp 2 --ep 2 --redundant-experts 2 --verify
$tool validate "$work/shards"
$tool run "$work/shards" --tokens 64
