#!/usr/bin/env bash
# call 1: build + GPU tests + sanitizers on the fast-sigmoid epilogue; cuBLAS dense vs ours; A/B
set -uo pipefail
export PATH=/usr/local/cuda/bin:$PATH
MOE_GPU_TARGETS="moe-tool test_gpu_kernels test_cuda_backend" MOE_GPU_CTEST="-L gpu -E multi" \
  MOE_SANITIZE_TIMEOUT=120 bash tests/bench/gpu_suite.sh build,tests,sanitize
tool=build-gpu/apps/moe-tool/moe-tool
d=$OUT/dense; mkdir -p $d
{
python3 tests/bench/cublas_dense.py $d/cublas.json
$tool bench --experts 1 --top-k 1 --hidden 2048 --intermediate 768 --tokens 131072 --breakdown --weight-sets 1 --quiet --json > $d/ours-dense.json
python3 -c "import json;r=json.load(open('$d/ours-dense.json'));print(json.dumps(r)[:1500])"
python3 tests/bench/cublas_dense.py $d/cublas2.json
} > $d/output.txt 2>&1
tail -20 $d/output.txt
AB_SHAPES="qwen3-30b gpt-oss-120b" AB_TOKENS=4096,16384 AB_ROUNDS=3 timeout 330 bash tests/bench/gpu_ab.sh .ab/old . > $OUT/ab.txt 2>&1
tail -15 $OUT/ab.txt
cd $OUT && tar czf results.tgz --exclude=results.tgz . 2>/dev/null; ls
