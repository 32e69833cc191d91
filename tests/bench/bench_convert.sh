#!/usr/bin/env bash
# convert throughput against `cp -r` of the same files to the same disk (docs/perf.md "convert").
# Makes a Qwen3-30B-A3B-shaped bf16 checkpoint (E=128, H=2048, I=768, top-8; fewer layers:
# 4 layers = 4.8 GB of experts + 0.26 GB of embeddings) once, then per round, interleaved:
#   cp -r CKPT (and the `sync` after it, timed apart), convert --tp 1 --ep 1, convert --tp 2 --ep 2.
# The checkpoint is read from the page cache in every run (it is read once up front). convert
# fsyncs what it writes (its output is durable when it exits); cp does not, so the table gives
# both `cp -r` and `cp -r; sync`. Reports the best of N rounds, the ratios and convert's peak RSS.
#
# Usage: tests/bench/bench_convert.sh [BUILD_DIR]      (default: build)
# Env:   MOE_BENCH_DIR (/tmp/moe-bench-convert)  MOE_BENCH_LAYERS (4)  MOE_BENCH_ROUNDS (3)
#        MOE_BENCH_THREADS (all cores)  MOE_TOOL, MOE_MAKE_CKPT (binaries; default from BUILD_DIR)
#        MOE_BENCH_KEEP=1 keeps the checkpoint for the next invocation.
set -euo pipefail
build=${1:-build}
tool=${MOE_TOOL:-$build/apps/moe-tool/moe-tool}
gen=${MOE_MAKE_CKPT:-$build/tests/make_synthetic_checkpoint}
dir=${MOE_BENCH_DIR:-/tmp/moe-bench-convert}
layers=${MOE_BENCH_LAYERS:-4}
rounds=${MOE_BENCH_ROUNDS:-3}
threads=${MOE_BENCH_THREADS:-$(nproc)}
for b in "$tool" "$gen"; do [ -x "$b" ] || { echo "missing $b (build moe-tool and make_synthetic_checkpoint)" >&2; exit 2; }; done

mkdir -p "$dir"
ckpt=$dir/ckpt
if [ ! -f "$ckpt/config.json" ]; then
  echo "== generating $layers-layer Qwen3-30B-A3B-shaped checkpoint in $ckpt"
  "$gen" "$ckpt" qwen3_moe "$layers" 2048 768 128 8 BF16
fi
bytes=$(du -sb "$ckpt" | cut -f1)
cat "$ckpt"/* > /dev/null  # into the page cache, for every contender alike

now() { date +%s%N; }
secs() { awk -v ns="$1" 'BEGIN { printf "%.3f", ns / 1e9 }'; }
clean() { rm -rf "$dir/cp" "$dir/out1" "$dir/out4"; sync; }

best_cp=0; best_cps=0; best_c1=0; best_c4=0; rss1=0; rss4=0
keep_min() { local cur=$1 new=$2; if [ "$cur" = 0 ] || [ "$new" -lt "$cur" ]; then echo "$new"; else echo "$cur"; fi; }
for r in $(seq "$rounds"); do
  clean
  t0=$(now); cp -r "$ckpt" "$dir/cp"; t1=$(now); sync; t2=$(now)
  cp_ns=$((t1 - t0)); cps_ns=$((t2 - t0))
  best_cp=$(keep_min "$best_cp" "$cp_ns"); best_cps=$(keep_min "$best_cps" "$cps_ns")
  clean
  t0=$(now); "$tool" convert "$ckpt" -o "$dir/out1" --tp 1 --ep 1 --threads "$threads" --json > "$dir/out1.json"; t1=$(now)
  c1_ns=$((t1 - t0)); best_c1=$(keep_min "$best_c1" "$c1_ns")
  rss1=$(grep -o '"peak_rss_bytes": [0-9]*' "$dir/out1.json" | grep -o '[0-9]*$')
  clean
  t0=$(now); "$tool" convert "$ckpt" -o "$dir/out4" --tp 2 --ep 2 --threads "$threads" --json > "$dir/out4.json"; t1=$(now)
  c4_ns=$((t1 - t0)); best_c4=$(keep_min "$best_c4" "$c4_ns")
  rss4=$(grep -o '"peak_rss_bytes": [0-9]*' "$dir/out4.json" | grep -o '[0-9]*$')
  echo "round $r: cp -r $(secs "$cp_ns") s (+sync $(secs "$cps_ns") s), convert tp1ep1 $(secs "$c1_ns") s, tp2ep2 $(secs "$c4_ns") s"
done
clean

gbps() { awk -v b="$bytes" -v ns="$1" 'BEGIN { printf "%.2f", b / ns }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
cat <<TABLE
checkpoint: $bytes bytes ($layers layers), $(nproc) cores, --threads $threads, best of $rounds
| run | seconds | GB/s | cp -r time / this | (cp -r; sync) time / this | peak RSS |
|---|---|---|---|---|---|
| cp -r | $(secs "$best_cp") | $(gbps "$best_cp") | 1.00 | | |
| cp -r; sync | $(secs "$best_cps") | $(gbps "$best_cps") | | 1.00 | |
| convert --tp 1 --ep 1 | $(secs "$best_c1") | $(gbps "$best_c1") | $(ratio "$best_cp" "$best_c1") | $(ratio "$best_cps" "$best_c1") | $((rss1 / 1048576)) MiB |
| convert --tp 2 --ep 2 | $(secs "$best_c4") | $(gbps "$best_c4") | $(ratio "$best_cp" "$best_c4") | $(ratio "$best_cps" "$best_c4") | $((rss4 / 1048576)) MiB |
TABLE
[ "${MOE_BENCH_KEEP:-0}" = 1 ] || rm -rf "$ckpt"
