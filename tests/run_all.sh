#!/usr/bin/env bash
# Builds moe-tool and runs every test: the regular build (with the CUDA kernels when nvcc is
# present; GPU tests skip without a GPU), then a clang ASan+UBSan build of the CPU code that also
# runs the libFuzzer smoke tests. This is the README's test command and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install-deps.sh
[ -x /usr/local/cuda/bin/nvcc ] && export CUDACXX=${CUDACXX:-/usr/local/cuda/bin/nvcc}
jobs=$(nproc)

echo "== build (release$( [ -n "${CUDACXX:-}" ] && echo ', with CUDA'))"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build -j"$jobs"
echo "== tests (release)"
ctest --test-dir build --output-on-failure -j"$jobs" -LE fuzz

echo "== build (clang, AddressSanitizer + UndefinedBehaviorSanitizer, libFuzzer)"
CC=clang CXX=clang++ cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMOE_ENABLE_CUDA=OFF -DMOE_FUZZ=ON -DMOE_SANITIZE=address,undefined >/dev/null
ninja -C build-asan -j"$jobs"
echo "== tests (ASan + UBSan, fuzz smoke)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE "gpu|slow"
