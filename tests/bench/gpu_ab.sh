#!/usr/bin/env bash
# Two builds of moe-tool benchmarked in turn on one GPU machine: the way to measure a kernel
# change smaller than the 5-8% that lent machines differ by on the same kernels (docs/perf.md).
# Usage: bash tests/bench/gpu_ab.sh A B      (A, B: git revisions, or source directories; "."
#                                            is this working tree)
#   AB_SHAPES="qwen3-30b gpt-oss-120b"   bench shapes (default: the four anchor shapes)
#   AB_TOKENS=1024,4096                 token counts (default: 256,1024,4096)
#   AB_ROUNDS=3                         rounds; A first in odd rounds, B first in even ones
# Reports go to $OUT/ab (default /tmp/moe-gpu-out/ab) as A-<shape>-<round>.json and
# B-<shape>-<round>.json; the table at the end is tests/bench/ab_compare.py's.
# A revision needs the repository's .git; the `device` tool sends the working tree without it,
# so there export the old revision first and carry it: here
#   mkdir -p .ab/old && git archive OLD | tar -x -C .ab/old     (.ab is git-ignored)
# then run with carry [".deps", ".ab"]:  bash tests/bench/gpu_ab.sh .ab/old .
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -eq 2 ] || { sed -n '2,14p' "$0"; exit 2; }
out=${OUT:-/tmp/moe-gpu-out}/ab
mkdir -p "$out"
export PATH=/usr/local/cuda/bin:$PATH
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

source_tree() {  # source_tree REV_OR_DIR DEST: the sources of one build
  if [ -d "$1" ]; then
    mkdir -p "$2"
    tar -C "$1" --exclude=./.git --exclude='./build*' --exclude=./.ab -cf - . | tar -x -C "$2"
  else
    mkdir -p "$2"
    git archive "$1" | tar -x -C "$2" ||
      { echo "gpu_ab.sh: '$1' is neither a directory nor a revision of this repository" >&2; exit 2; }
  fi
  rm -rf "$2"/build* "$2"/.git
}

deps=()
[ -d .deps/include ] && deps=(-DMOE_DEPS_DIR="$PWD/.deps/include")
for tag in A B; do
  rev=$1; [ $tag = B ] && rev=$2
  source_tree "$rev" "$work/src-$tag"
  echo "build $tag ($rev)"
  cmake -S "$work/src-$tag" -B "$work/build-$tag" -G Ninja -DCMAKE_BUILD_TYPE=Release "${deps[@]}" \
    -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc \
    -DMOE_CUDA_GENCODE="-gencode=arch=compute_90a,code=sm_90a" >"$out/configure-$tag.log"
  ninja -C "$work/build-$tag" -j"$(nproc)" moe-tool >"$out/build-$tag.log"
done

rounds=${AB_ROUNDS:-3}
for ((r = 1; r <= rounds; ++r)); do
  order="A B"; [ $((r % 2)) -eq 0 ] && order="B A"
  for shape in ${AB_SHAPES:-mixtral qwen3-30b deepseek-v3-tp8 gpt-oss-120b}; do
    for tag in $order; do  # (written under a temporary name: no half report on a failure)
      report=$out/$tag-$shape-$r.json
      "$work/build-$tag/apps/moe-tool/moe-tool" bench --shape "$shape" \
        --tokens "${AB_TOKENS:-256,1024,4096}" --json --quiet >"$report.tmp"
      mv "$report.tmp" "$report"
    done
  done
  echo "round $r of $rounds done"
done
python3 tests/bench/ab_compare.py "$out" | tee "$out/ab.md"
