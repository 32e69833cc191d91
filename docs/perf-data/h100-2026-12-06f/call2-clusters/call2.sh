#!/usr/bin/env bash
# call 2: two-CTA cluster rows (A multicast): build, smoke, GPU tests, sanitizers, in-process A/B
set -uo pipefail
export PATH=/usr/local/cuda/bin:$PATH
tool=build-gpu/apps/moe-tool/moe-tool
MOE_GPU_TARGETS="moe-tool test_gpu_kernels test_cuda_backend" bash tests/bench/gpu_suite.sh build || exit 1
timeout 60 $tool bench --shape qwen3-30b --tokens 4096 --quiet --pairs tma_m192n96c2+tma_m192n192rc2,tma_m192n96+tma_m192n192r > $OUT/smoke.txt 2>&1
echo "smoke rc=$?"; tail -5 $OUT/smoke.txt
MOE_GPU_CTEST="-L gpu -E multi" MOE_SANITIZE_TIMEOUT=120 bash tests/bench/gpu_suite.sh tests,sanitize
grep -B3 -A12 "FAILED\|failed" $OUT/ctest.log | head -60
AB_PAIRS="tma_m192n96+tma_m192n192r tma_m192n96c2+tma_m192n192r tma_m192n96c2+tma_m192n192rc2 tma_m192n96c2+tma_m192n128rc2" \
MOE_AB_CELLS="qwen3-30b:16384 qwen3-30b:4096 gpt-oss-120b:4096 deepseek-v3-tp8:4096" bash tests/bench/ab_bulk.sh > $OUT/ab.txt 2>&1
cat $OUT/ab.txt
cd $OUT && tar czf results.tgz --exclude=results.tgz . 2>/dev/null; ls
