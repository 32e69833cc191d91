#!/usr/bin/env bash
# convert throughput against `cp -r` of the same files to the same disk (docs/perf.md "convert").
# Makes a Qwen3-30B-A3B-shaped bf16 checkpoint (E=128, H=2048, I=768, top-8; fewer layers:
# 4 layers = 4.8 GB of experts + 0.26 GB of embeddings) once, then per round, interleaved:
#   cp -r CKPT (and the `sync` after it, timed apart), convert --tp 1 --ep 1 and --tp 2 --ep 2,
#   each durable (the default: fsync before the renames) and with --no-fsync.
# The checkpoint is read from the page cache in every run (it is read once up front). Like for
# like: `convert` against `cp -r; sync` (both wait for the disk), `convert --no-fsync` against
# `cp -r` (both done once the page cache holds the bytes). Every run starts with no dirty pages
# (sync). Reports the best of N rounds, the ratios (cp time / convert time: >= 0.8 is the
# target) and convert's peak RSS.
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
clean() { rm -rf "$dir/cp" "$dir/out"; sync; }
keep_min() { local cur=$1 new=$2; if [ "$cur" = 0 ] || [ "$new" -lt "$cur" ]; then echo "$new"; else echo "$cur"; fi; }
rss_of() { grep -o '"peak_rss_bytes": [0-9]*' "$1" | grep -o '[0-9]*$'; }

names=("tp1ep1" "tp2ep2" "tp1ep1 --no-fsync" "tp2ep2 --no-fsync")
args=("--tp 1 --ep 1" "--tp 2 --ep 2" "--tp 1 --ep 1 --no-fsync" "--tp 2 --ep 2 --no-fsync")
best_cp=0; best_cps=0; best=(0 0 0 0); rss=(0 0 0 0)
for r in $(seq "$rounds"); do
  clean
  t0=$(now); cp -r "$ckpt" "$dir/cp"; t1=$(now); sync; t2=$(now)
  cp_ns=$((t1 - t0)); cps_ns=$((t2 - t0))
  best_cp=$(keep_min "$best_cp" "$cp_ns"); best_cps=$(keep_min "$best_cps" "$cps_ns")
  line="round $r: cp -r $(secs "$cp_ns") s (+sync $(secs "$cps_ns") s)"
  for i in 0 1 2 3; do
    clean
    # shellcheck disable=SC2086
    t0=$(now); "$tool" convert "$ckpt" -o "$dir/out" ${args[$i]} --threads "$threads" --json > "$dir/out.json"; t1=$(now)
    best[$i]=$(keep_min "${best[$i]}" "$((t1 - t0))")
    r_now=$(rss_of "$dir/out.json"); [ "$r_now" -gt "${rss[$i]}" ] && rss[$i]=$r_now
    line="$line, ${names[$i]} $(secs "$((t1 - t0))") s"
  done
  echo "$line"
done
clean

gbps() { awk -v b="$bytes" -v ns="$1" 'BEGIN { printf "%.2f", b / ns }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "checkpoint: $bytes bytes ($layers layers), $(nproc) cores, --threads $threads, best of $rounds"
echo "| run | seconds | GB/s | compared with | its time / this | peak RSS (max) |"
echo "|---|---|---|---|---|---|"
echo "| cp -r | $(secs "$best_cp") | $(gbps "$best_cp") | | | |"
echo "| cp -r; sync | $(secs "$best_cps") | $(gbps "$best_cps") | | | |"
for i in 0 1 2 3; do
  if [ "$i" -lt 2 ]; then ref=$best_cps; refname="cp -r; sync"; else ref=$best_cp; refname="cp -r"; fi
  echo "| convert ${names[$i]} | $(secs "${best[$i]}") | $(gbps "${best[$i]}") | $refname | $(ratio "$ref" "${best[$i]}") | $((rss[$i] / 1048576)) MiB |"
done
[ "${MOE_BENCH_KEEP:-0}" = 1 ] || rm -rf "$ckpt"
