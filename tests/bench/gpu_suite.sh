#!/usr/bin/env bash
# The one script a GPU machine runs (through the `device` tool or by hand): build for Hopper, run
# the GPU tests, compute-sanitizer (memcheck + racecheck), `run --device cuda` on every family
# fixture and a spread of plans, and the benchmarks. Logs go to $OUT (default /tmp/moe-gpu-out).
# Usage: bash tests/bench/gpu_suite.sh [STAGES]   STAGES: comma list of
#        build,tests,sanitize,fixtures,bench,peer,sweep,breakdown,order,profile,kernels,multi
#        (default: all but sweep, breakdown, order, profile and kernels)
# For a short lease, narrow it (each defaults to the whole suite):
#   MOE_GPU_TARGETS="moe-tool test_gpu_kernels"  ninja targets to build (default: all)
#   MOE_GPU_CTEST="-L gpu -E multi"               ctest selection (default: -LE fuzz)
#   MOE_BENCH_SHAPES="qwen3-30b"                  bench shapes (default: the four anchor shapes)
#   MOE_SANITIZE_TIMEOUT=60                        seconds per compute-sanitizer tool (default 240)
#   MOE_SWEEP_SHAPES="mixtral"                     sweep shapes (default: MOE_BENCH_SHAPES or all four)
#   MOE_SWEEP_TIMEOUT=120                          seconds per sweep shape (default 240)
#   MOE_SWEEP_ROWS="swap_,tma_"                    sweep only rows with these name prefixes
#   SWEEP_TOKENS=1024,4096                         token counts of the sweep stage
#   MOE_BREAKDOWN_TOKENS=1024,4096                 token counts of the breakdown stage
#   MOE_BENCH_SETTLE=1                             bench and peer: each timing after 1 s of the
#                                                  same work (bench --settle, PEER_SETTLE)
#   MOE_PROFILE_CELLS="qwen3-30b:4096 mixtral:4096" Nsight Compute cells (shape:tokens)
#   MOE_KERNEL_CELLS="qwen3-30b:16384"             kernels stage: every launch's time and DRAM
#                                                  bytes (Nsight Compute) in these cells
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/moe-gpu-out}
mkdir -p "$out"
stages=",${1:-build,tests,sanitize,fixtures,bench,peer,multi},"
has() { [[ $stages == *",$1,"* ]]; }
export NCCL_NVLS_ENABLE=0  # NVLink multicast stays off on shared machines
export PATH=/usr/local/cuda/bin:$PATH
build=build-gpu
tool=$build/apps/moe-tool/moe-tool
status=0
step() {  # step NAME TIMEOUT CMD...: runs CMD, logs to $out/NAME.log, prints one status line
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  printf '%-28s rc=%-3s %4ss\n' "$name" "$rc" "$((SECONDS - t0))" | tee -a "$out/summary.txt"
  [ $rc -ne 0 ] && { status=1; tail -n 25 "$out/$name.log"; }
  return $rc
}

nvidia-smi -L | tee "$out/summary.txt"
if has build; then
  deps=()
  [ -d .deps/include ] && deps=(-DMOE_DEPS_DIR="$PWD/.deps/include")
  step configure 120 cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release "${deps[@]}" \
    -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc \
    -DMOE_CUDA_GENCODE="-gencode=arch=compute_90a,code=sm_90a" || exit 1
  step build 400 ninja -C $build -j"$(nproc)" ${MOE_GPU_TARGETS:-} || exit 1
fi
if has tests; then
  step ctest 240 ctest --test-dir $build --output-on-failure ${MOE_GPU_CTEST:--LE fuzz} -j4
  grep -E "tests passed|Failed|Skipped|\(Failed\)" "$out/ctest.log" | tee -a "$out/summary.txt"
fi
if has sanitize; then
  for tool_name in memcheck racecheck; do
    step "sanitize-kernels-$tool_name" "${MOE_SANITIZE_TIMEOUT:-240}" compute-sanitizer --tool "$tool_name" --error-exitcode 9 \
      $build/tests/test_gpu_kernels "[sanitize]"
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|All tests passed|test cases" \
      "$out/sanitize-kernels-$tool_name.log" | tee -a "$out/summary.txt"
  done
fi
if has fixtures; then
  work=$(mktemp -d)
  for fam in mixtral qwen2_moe qwen3_moe deepseek_v2 deepseek_v3 glm4_moe olmoe granitemoe llama4 gpt_oss ernie4_5_moe; do
    $tool make-example --family $fam -o "$work/$fam" >/dev/null || { echo "make-example $fam failed"; status=1; continue; }
    $tool convert "$work/$fam" -o "$work/$fam.tp2ep2" --tp 2 --ep 2 --redundant-experts 2 --quiet >/dev/null
    step "run-$fam" 60 $tool run "$work/$fam.tp2ep2" --device cuda --tokens 77 --quiet
    step "run-$fam-ckpt" 60 $tool run "$work/$fam" --device cuda --tokens 300 --quiet
  done
  step sanitize-run-memcheck 120 compute-sanitizer --tool memcheck --error-exitcode 9 \
    $tool run "$work/deepseek_v3.tp2ep2" --device cuda --tokens 19 --quiet
  rm -rf "$work"
fi
smi_pid=""
if { has bench || has peer || has sweep || has breakdown || has order; } &&
  command -v nvidia-smi >/dev/null; then
  # Clocks, power and throttle reasons through the timed stages (the power limit: docs/perf.md).
  nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,clocks_throttle_reasons.active \
    --format=csv,noheader -lms 100 >"$out/smi.csv" 2>/dev/null &
  smi_pid=$!
fi
if has bench; then
  for shape in ${MOE_BENCH_SHAPES:-mixtral qwen3-30b deepseek-v3-tp8 gpt-oss-120b}; do
    tokens=1,16,64,256,1024,4096
    [ $shape = qwen3-30b ] && tokens=$tokens,16384  # perf-anchors.md has a 16384 row for it
    step "bench-$shape" 150 $tool bench --shape $shape --tokens $tokens --settle "${MOE_BENCH_SETTLE:-0}" --json --quiet
    cp "$out/bench-$shape.log" "$out/bench-$shape.json"
  done
  [ -z "${MOE_BENCH_SHAPES:-}" ] && $tool bench --shape qwen3-30b --tokens 1,16,64,256,1024,4096 --quiet 2>&1 | tail -n 12
fi
if has peer; then  # torch._grouped_mm on this machine (perf-anchors.md's method)
  step peer-grouped-mm 300 env PYTHONUNBUFFERED=1 PEER_SETTLE="${MOE_BENCH_SETTLE:-0}" python3 tests/bench/peer_grouped_mm.py "$out/peer-grouped-mm.json" ${MOE_BENCH_SHAPES:-}
  cat "$out/peer-grouped-mm.log" >>"$out/summary.txt"
fi
if has sweep; then
  for shape in ${MOE_SWEEP_SHAPES:-${MOE_BENCH_SHAPES:-mixtral qwen3-30b deepseek-v3-tp8 gpt-oss-120b}}; do
    step "sweep-$shape" "${MOE_SWEEP_TIMEOUT:-240}" $tool bench --shape $shape --tokens ${SWEEP_TOKENS:-1,16,64,256,1024,4096} --sweep ${MOE_SWEEP_ROWS:+--sweep-rows $MOE_SWEEP_ROWS} --json --quiet
    cp "$out/sweep-$shape.log" "$out/sweep-$shape.json"
  done
fi
if has breakdown; then  # each launch alone: where a cell's time goes
  for shape in ${MOE_BENCH_SHAPES:-mixtral qwen3-30b deepseek-v3-tp8 gpt-oss-120b}; do
    step "breakdown-$shape" 150 $tool bench --shape $shape --tokens ${MOE_BREAKDOWN_TOKENS:-1,16,64,256,1024,4096} --breakdown --quiet
    cat "$out/breakdown-$shape.log" >>"$out/summary.txt"
  done
fi
if has order; then  # qwen3-30b's 4096 and 16384 after other cell lists (docs/perf.md, H100)
  full=1,16,64,256,1024,4096,16384
  for run in "$full" "256,16384" "4096,16384" "$full --settle 1" "$full" "16384"; do
    echo "== --tokens $run" >>"$out/order.txt"
    # shellcheck disable=SC2086  # the run's extra arguments split on purpose
    $tool bench --shape qwen3-30b --tokens $run --quiet 2>&1 | grep -E "^ *(4096|16384) " \
      >>"$out/order.txt"
  done
  tee -a "$out/summary.txt" <"$out/order.txt"
fi
if [ -n "$smi_pid" ]; then
  kill "$smi_pid" 2>/dev/null; wait "$smi_pid" 2>/dev/null
  python3 tests/bench/smi_summary.py "$out/smi.csv" | tee -a "$out/summary.txt"
fi
if has profile; then  # Nsight Compute on the GEMM kernels of a few cells (what limits them)
  for cell in ${MOE_PROFILE_CELLS:-gpt-oss-120b:64 mixtral:4096 qwen3-30b:1024}; do
    shape=${cell%%:*} tokens=${cell##*:}
    step "ncu-$shape-$tokens" 200 ncu --clock-control none --kernel-name regex:"gemm_kernel|swap_kernel|ping_kernel|coop_kernel" \
      --launch-skip 2 --launch-count 2 \
      --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
      --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
      $tool bench --shape $shape --tokens $tokens --weight-sets 1 --quiet
  done
fi
if has kernels; then  # every launch of a cell's calls: duration and DRAM bytes (where time goes)
  align="count_|chunk_|scan_|scatter_|fused_align|identity_"
  for cell in ${MOE_KERNEL_CELLS:-qwen3-30b:16384 qwen3-30b:4096}; do
    shape=${cell%%:*} tokens=${cell##*:}
    step "kernels-$shape-$tokens" 200 ncu --clock-control none --launch-skip 16 --launch-count 32 \
      --kernel-name regex:"^(tma_|$align|slot_pos|gather_|sum_rows)" \
      --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
      $tool bench --shape $shape --tokens $tokens --weight-sets 1 --quiet
    python3 tests/bench/ncu_kernels.py "$out/kernels-$shape-$tokens.log" | tee -a "$out/summary.txt"
  done
fi
if has multi && [ -x $build/tests/test_multi_gpu ]; then
  step multi-gpu 120 $build/tests/test_multi_gpu
fi
echo "== summary"; cat "$out/summary.txt"
# The device returns at most 8 files: keep the summary, pack the rest.
(cd "$out" && tar czf /tmp/moe-results.tgz --exclude=summary.txt . && mv /tmp/moe-results.tgz results.tgz && \
  find . -type f ! -name summary.txt ! -name results.tgz -delete)
exit $status
