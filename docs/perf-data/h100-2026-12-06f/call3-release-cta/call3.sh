#!/usr/bin/env bash
# call 3: why the cluster rows run at half speed: cluster occupancy; remote arrivals release.cta
set -uo pipefail
export PATH=/usr/local/cuda/bin:$PATH
nvcc -gencode=arch=compute_90a,code=sm_90a -o /tmp/occ .ab/occ/occ.cu && /tmp/occ | tee $OUT/occ.txt
tool=build-gpu/apps/moe-tool/moe-tool
MOE_GPU_TARGETS="moe-tool" bash tests/bench/gpu_suite.sh build || exit 1
for cell in "qwen3-30b 4096" "qwen3-30b 16384"; do
  set -- $cell
  timeout 60 $tool bench --shape $1 --tokens $2 --quiet --pairs tma_m192n96+tma_m192n192r,tma_m192n96c2+tma_m192n192r,tma_m192n96c2+tma_m192n192r,tma_m192n96+tma_m192n192r 2>&1 | tee -a $OUT/pairs.txt
done
