#!/usr/bin/env bash
# call 4 (b9f8946's kernels): the suite, then qwen3-30b's whole token list four more times
set -uo pipefail
export PATH=/usr/local/cuda/bin:$PATH
MOE_GPU_CTEST="-L gpu -E multi" bash tests/bench/gpu_suite.sh build,tests,sanitize,fixtures,bench,peer
mkdir -p $OUT/lists
for i in 1 2 3 4; do
  build-gpu/apps/moe-tool/moe-tool bench --shape qwen3-30b --tokens 1,16,64,256,1024,4096,16384 --json --quiet > $OUT/lists/qwen3-$i.json
  python3 -c "import json;d=json.load(open('$OUT/lists/qwen3-$i.json'));print('list $i', [(c['tokens'], round(c['us'],1)) for c in d['cells']][-2:])"
done
