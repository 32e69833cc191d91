#!/usr/bin/env python3
"""Markdown table of `moe-tool bench --json` results against ../shared/docs/perf-anchors.md.

Usage: python3 tests/bench/anchor_table.py bench-mixtral.json bench-qwen3-30b.json ...
Reads the peers' times from the anchors table (vLLM Triton, torch._grouped_mm) and prints, per
cell: our time, x floor (our floor, measured in the same run), both peers, and whether we beat
vLLM and the better of the two. The last line counts the cells.
"""
import json
import os
import re
import sys

ANCHORS = os.path.join(os.path.dirname(__file__), "../../../shared/docs/perf-anchors.md")
NAMES = {"qwen3_30b": "qwen3-30b", "deepseek_v3_tp8": "deepseek-v3-tp8",
         "gpt_oss_120b": "gpt-oss-120b", "mixtral": "mixtral"}


def load_anchors(path):
    rows = {}
    pat = re.compile(r"^\| (\w+) \| (\d+) \| (\d+) \| (\d+) \(([\d.]+)\) \| (\d+) \(([\d.]+)\) \|")
    for line in open(path):
        m = pat.match(line)
        if m:
            rows[(NAMES.get(m.group(1), m.group(1)), int(m.group(2)))] = (int(m.group(4)),
                                                                         int(m.group(6)))
    return rows


def main(files):
    anchors = load_anchors(ANCHORS)
    print("| shape | tokens | ours us | x floor | vLLM Triton us | torch._grouped_mm us | "
          "beats vLLM | beats best peer | tiles |")
    print("|---|---|---|---|---|---|---|---|---|")
    cells = beat_v = beat_b = 0
    for f in files:
        d = json.load(open(f))
        name = d["shape"]["name"]
        for c in d["cells"]:
            key = (name, c["tokens"])
            if key not in anchors:
                continue
            v, t = anchors[key]
            us = c["us"]
            cells += 1
            bv, bb = us < v, us < min(v, t)
            beat_v += bv
            beat_b += bb
            print(f"| {name} | {c['tokens']} | {us:.0f} | {c['x_floor']:.2f} | {v} | {t} | "
                  f"{'yes' if bv else 'no'} | {'yes' if bb else 'no'} | "
                  f"{c['gate_up_cfg']} + {c['down_cfg']} (split {c['split_k']}) |")
    print(f"\n{cells} cells: faster than vLLM's Triton kernel in {beat_v}, faster than the better "
          f"peer in {beat_b}.")


if __name__ == "__main__":
    main(sys.argv[1:])
