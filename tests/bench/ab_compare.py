#!/usr/bin/env python3
"""Two builds' `moe-tool bench --json` results from one machine, cell by cell.

Usage: python3 tests/bench/ab_compare.py DIR
DIR holds the reports of tests/bench/gpu_ab.sh: A-<shape>-<round>.json and
B-<shape>-<round>.json, the two builds alternating on one machine. Prints, per cell (shape,
tokens): the median time of A and of B over the rounds, B / A of those medians, the range of
the per-round ratios (each round's B against the same round's A), and both builds' tiles.
Lent machines differ by 5-8% on the same kernels (docs/perf.md), more than most kernel changes:
a change is only measured against the other build on the same machine, and a ratio whose
per-round range straddles 1 is not a measured difference.
"""
import glob
import json
import os
import re
import statistics
import sys


def load(directory):
    """{(build, shape, round): {tokens: cell}} from the reports in `directory`."""
    runs = {}
    pat = re.compile(r"^([AB])-(.+)-(\d+)\.json$")
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        m = pat.match(os.path.basename(path))
        if not m:
            continue
        try:
            with open(path) as f:
                report = json.load(f)
        except (OSError, ValueError) as e:
            sys.exit(f"{path}: not a moe-tool bench --json report ({e})")
        runs[(m.group(1), m.group(2), int(m.group(3)))] = {c["tokens"]: c for c in report["cells"]}
    return runs


def compare(runs):
    """Rows (shape, tokens, median A, median B, ratio, lowest, highest, tiles A, tiles B)."""
    rows = []
    shapes = sorted({shape for (_, shape, _) in runs})
    for shape in shapes:
        rounds = sorted({r for (b, s, r) in runs if s == shape and (("A", s, r) in runs)
                         and (("B", s, r) in runs)})
        if not rounds:
            continue
        tokens = sorted(set.intersection(*(set(runs[(b, shape, r)]) for r in rounds
                                            for b in "AB")))
        for t in tokens:
            a = [runs[("A", shape, r)][t]["us"] for r in rounds]
            b = [runs[("B", shape, r)][t]["us"] for r in rounds]
            ratios = [y / x for x, y in zip(a, b)]
            tiles = [f'{runs[(k, shape, rounds[-1])][t]["gate_up_cfg"]} + '
                     f'{runs[(k, shape, rounds[-1])][t]["down_cfg"]}' for k in "AB"]
            ma, mb = statistics.median(a), statistics.median(b)
            rows.append((shape, t, ma, mb, mb / ma, min(ratios), max(ratios), *tiles))
    return rows


def main(argv):
    if len(argv) != 1 or not os.path.isdir(argv[0]):
        sys.exit(__doc__)
    runs = load(argv[0])
    rows = compare(runs)
    if not rows:
        sys.exit(f"{argv[0]}: no pair of A-<shape>-<round>.json and B-<shape>-<round>.json reports")
    rounds = len({r for (_, _, r) in runs})
    print(f"{rounds} rounds, A and B alternating on one machine; B / A < 1: B faster")
    print()
    print("| shape | tokens | A us | B us | B / A | per-round B / A | tiles A | tiles B |")
    print("|---|---|---|---|---|---|---|---|")
    for shape, t, ma, mb, ratio, lo, hi, ta, tb in rows:
        print(f"| {shape} | {t} | {ma:.0f} | {mb:.0f} | {ratio:.3f} | {lo:.3f} .. {hi:.3f} "
              f"| {ta} | {tb} |")
    faster = sum(1 for r in rows if r[6] < 1)
    slower = sum(1 for r in rows if r[5] > 1)
    print()
    print(f"{len(rows)} cells: B faster in every round in {faster}, slower in every round in "
          f"{slower}, mixed in {len(rows) - faster - slower}.")


if __name__ == "__main__":
    main(sys.argv[1:])
