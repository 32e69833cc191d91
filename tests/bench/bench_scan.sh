#!/usr/bin/env bash
# How fast `validate --scan-values` reads: makes a multi-GB synthetic checkpoint (qwen3_moe-shaped,
# H=2048, I=768, 64 experts, BF16), then times `cat FILES > /dev/null` and
# `moe-tool validate --scan-values` on the same files, warm page cache for both (no cache drop,
# no root needed), interleaved, best of N, and prints the throughput ratio scan / cat (target
# >= 0.8). The scan reads the MoE tensors only (over 99% of the bytes here), so the ratio is of
# bytes per second; the wall-time ratio is printed too.
# Usage: tests/bench/bench_scan.sh [MOE_TOOL] [SIZE_GB] [REPEATS]
#   env BENCH_DIR (default /tmp/moe-bench-scan), KEEP=1 keeps the checkpoint, THREADS (default: all)
set -euo pipefail
tool=${1:-build/apps/moe-tool/moe-tool}
gb=${2:-4}
repeats=${3:-3}
dir=${BENCH_DIR:-/tmp/moe-bench-scan}
threads=${THREADS:-0}
[ -x "$tool" ] || { echo "no moe-tool at $tool (build it first)" >&2; exit 2; }

H=2048 I=768 E=64
layer_bytes=$((3 * H * I * 2 * E))
layers=$(( (gb * 1000000000 + layer_bytes - 1) / layer_bytes ))
if [ ! -f "$dir/config.json" ]; then
  echo "== making a ${layers}-layer checkpoint in $dir"
  "$tool" make-example --family qwen3_moe -o "$dir" --force --hidden $H --intermediate $I \
    --experts $E --top-k 8 --layers "$layers" --shards 4 --quiet
fi
files=("$dir"/*.safetensors)
file_bytes=$(cat "${files[@]}" | wc -c)
scan_bytes=$("$tool" validate --scan-values --json --threads "$threads" "$dir" |
             sed -n 's/^ *"bytes": \([0-9]*\),\{0,1\}$/\1/p' | tail -1)

now() { date +%s.%N; }
best_cat=999999 best_scan=999999
cat "${files[@]}" > /dev/null  # warm the page cache
for i in $(seq "$repeats"); do
  t0=$(now); cat "${files[@]}" > /dev/null; t1=$(now)
  "$tool" validate --scan-values --quiet --threads "$threads" "$dir" > /dev/null; t2=$(now)
  c=$(echo "$t1 - $t0" | bc -l); s=$(echo "$t2 - $t1" | bc -l)
  printf "  run %d: cat %.3f s, validate --scan-values %.3f s\n" "$i" "$c" "$s"
  best_cat=$(echo "if ($c < $best_cat) $c else $best_cat" | bc -l)
  best_scan=$(echo "if ($s < $best_scan) $s else $best_scan" | bc -l)
done
cat_rate=$(echo "$file_bytes / $best_cat / 1000000000" | bc -l)
scan_rate=$(echo "$scan_bytes / $best_scan / 1000000000" | bc -l)
printf "files: %.2f GB in %d files; scanned: %.2f GB (MoE tensors)\n" \
  "$(echo "$file_bytes / 1000000000" | bc -l)" "${#files[@]}" "$(echo "$scan_bytes / 1000000000" | bc -l)"
printf "cat:      best %.3f s  %.2f GB/s\n" "$best_cat" "$cat_rate"
printf "validate: best %.3f s  %.2f GB/s (whole command: open, checks, scan)\n" "$best_scan" "$scan_rate"
printf "ratio (throughput scan / cat): %.2f   wall-time ratio cat / validate: %.2f\n" \
  "$(echo "$scan_rate / $cat_rate" | bc -l)" "$(echo "$best_cat / $best_scan" | bc -l)"
printf "machine: %s, %s cores, %s\n" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" \
  "$(nproc)" "$(free -g | awk '/Mem:/ {print $2 " GiB RAM"}')"
[ "${KEEP:-0}" = 1 ] || rm -rf "$dir"
