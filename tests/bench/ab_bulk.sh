#!/usr/bin/env bash
# A/B of the down rows stored in sorted order by bulk copies (tma_m192n192r, bulk_store_epilogue)
# against wg_epilogue's per-lane stores (tma_m192n192), the gate-up row tma_m192n96 in both:
# `bench --pairs` in one process per cell, in the order ABBA ABBA ABBA (drift under the power
# cap cancels). Needs a built moe-tool (tests/bench/gpu_suite.sh build); results in $OUT/ab/.
# AB_A / AB_B: other GATE_UP+DOWN pairs; MOE_AB_CELLS: other shape:tokens cells. AB_PAIRS="P1 P2
# P3 ...": more than two pairs, in the order P1 P2 P3, P3 P2 P1, P1 P2 P3 (overrides AB_A / AB_B).
set -uo pipefail
cd "$(dirname "$0")/../.."
tool=build-gpu/apps/moe-tool/moe-tool
out=${OUT:-/tmp/moe-gpu-out}
mkdir -p "$out/ab"
A=${AB_A:-tma_m192n96+tma_m192n192r} B=${AB_B:-tma_m192n96+tma_m192n192}
order=$A,$B,$B,$A,$A,$B,$B,$A,$A,$B,$B,$A
if [ -n "${AB_PAIRS:-}" ]; then
  fwd=$(echo $AB_PAIRS | tr ' ' ',') rev=$(echo $AB_PAIRS | tr ' ' '\n' | tac | paste -sd,)
  order=$fwd,$rev,$fwd
fi
for cell in ${MOE_AB_CELLS:-qwen3-30b:16384 qwen3-30b:4096 gpt-oss-120b:4096 deepseek-v3-tp8:4096}; do
  shape=${cell%%:*} tokens=${cell##*:}
  timeout 120 $tool bench --shape "$shape" --tokens "$tokens" --json --quiet \
    --pairs $order >"$out/ab/$shape-$tokens.json"
done
python3 - "$out/ab" <<'PY'
import collections, glob, json, os, statistics, sys
for f in sorted(glob.glob(sys.argv[1] + "/*.json")):
    d = json.load(open(f))
    for c in d["cells"]:
        res = collections.defaultdict(list)
        for s in c.get("pairs", []):
            res[f'{s["gate_up"]} + {s["down"]}'].append(s["us"])
        print(f'{d["shape"]["name"]} {c["tokens"]}: cell {c["us"]:.1f} us ({c["gate_up_cfg"]} + '
              f'{c["down_cfg"]}, rows summed by token: {c["down_rows"]})')
        for k, v in res.items():
            print(f'    {k:34s} median {statistics.median(v):7.1f}  ' + " ".join(f"{x:.1f}" for x in v))
PY
