#!/usr/bin/env python3
"""Markdown table of `moe-tool bench --json` results against ../shared/docs/perf-anchors.md.

Usage: python3 tests/bench/anchor_table.py [--peer peer-grouped-mm.json] bench-mixtral.json ...
Reads the peers' times from the anchors table (vLLM Triton, torch._grouped_mm) and prints, per
cell: our time, x floor (our floor, measured in the same run), both peers, and whether we beat
vLLM and the better of the two. The last line counts the cells.

With --peer (tests/bench/peer_grouped_mm.py's report from the same machine as ours), the
torch._grouped_mm column is that run's, compared by time; vLLM's Triton kernel, which is not on
that machine, is compared by time where our bench ran on an H100 (the anchors' kind of machine),
else by x floor (its H100 anchor against ours on this machine's floor).
The peer's x floor is its time over our floor for the cell (moe-tool's ceilings: the peer
script's copy goes through the copy engine and reads lower).
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


def main_peer(peer_file, files):
    anchors = load_anchors(ANCHORS)
    peer = json.load(open(peer_file))
    floor_h100 = {}
    pat = re.compile(r"^\| (\w+) \| (\d+) \| (\d+) \|")
    for line in open(ANCHORS):
        m = pat.match(line)
        if m:
            floor_h100[(NAMES.get(m.group(1), m.group(1)), int(m.group(2)))] = int(m.group(3))
    print(f"peer machine: {peer['device']}")
    settles = sorted({json.load(open(f)).get("settle_s", 0) for f in files})
    peer_settle = peer.get("settle_s", 0)
    if settles != [0] or peer_settle:  # bench --settle / PEER_SETTLE: steady clocks
        note = "" if settles == [peer_settle] else "  (not the same: the columns do not compare)"
        print(f"settled: moe-tool {', '.join(f'{x:g}' for x in settles)} s, peer {peer_settle:g} s"
              f"{note}")
    by_time = all("H100" in json.load(open(f)).get("device", "") for f in files)
    print()
    vcol = "vLLM Triton us (H100 anchor)" if by_time else "vLLM Triton x floor (H100)"
    print("| shape | tokens | ours us | x floor | torch._grouped_mm us (x floor), same machine | "
          f"{vcol} | beats torch | beats vLLM | beats both | tiles |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    cells = beat_v = beat_t = beat_b = 0
    for f in files:
        d = json.load(open(f))
        name = d["shape"]["name"]
        pcells = {c["tokens"]: c for c in peer["shapes"].get(name, [])}
        for c in d["cells"]:
            key = (name, c["tokens"])
            if key not in anchors or c["tokens"] not in pcells:
                continue
            v_us = anchors[key][0]
            v_xf = v_us / floor_h100[key]
            t = pcells[c["tokens"]]
            bt = c["us"] < t["us"]
            bv = c["us"] < v_us if by_time else c["x_floor"] < v_xf
            cells += 1
            beat_t += bt
            beat_v += bv
            beat_b += bt and bv
            yn = lambda b: "yes" if b else "no"
            print(f"| {name} | {c['tokens']} | {c['us']:.0f} | {c['x_floor']:.2f} | "
                  f"{t['us']:.0f} ({t['us'] / c['floor_us']:.2f}) | "
                  f"{v_us if by_time else f'{v_xf:.2f}'} | {yn(bt)} | {yn(bv)} | "
                  f"{yn(bt and bv)} | {c['gate_up_cfg']} + {c['down_cfg']} (split {c['split_k']}"
                  f"{', x by token' if c.get('gather_by_token') else ''}"
                  f"{', rows summed by token' if c.get('down_rows') else ''}) |")
    vs = "faster than vLLM's H100 anchor" if by_time else "below vLLM's x floor"
    print(f"\n{cells} cells: faster than torch._grouped_mm in {beat_t}, {vs} in {beat_v}, "
          f"both in {beat_b}.")


def main(files):
    if files and files[0] == "--peer":
        return main_peer(files[1], files[2:])
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
