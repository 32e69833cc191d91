#!/usr/bin/env python3
"""Summary of an nvidia-smi sample log taken during a benchmark: how hard the power limit held.

Usage: python3 tests/bench/smi_summary.py SMI.csv [--min-watts 600]

SMI.csv: the output of
  nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,clocks_throttle_reasons.active \
             --format=csv,noheader -lms 100
(other columns in between are ignored: the SM clock is the first "MHz" field, the power the
first "W" field, the throttle mask the last field). Prints, over the samples drawing at least
--min-watts: their count, the SM clock min / median / max, the mean power, and how many had the
SW power cap reason (0x4) set.
"""
import statistics
import sys


def parse(path):
    rows = []
    for line in open(path):
        fields = [f.strip() for f in line.strip().split(",")]
        mhz = next((f for f in fields if f.endswith(" MHz")), None)
        watts = next((f for f in fields if f.endswith(" W")), None)
        if mhz is None or watts is None:
            continue
        try:
            mask = int(fields[-1], 16)
            rows.append((float(mhz.split()[0]), float(watts.split()[0]), mask))
        except ValueError:
            continue
    return rows


def main(argv):
    if not argv:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    path, min_w = argv[0], 600.0
    if "--min-watts" in argv:
        min_w = float(argv[argv.index("--min-watts") + 1])
    rows = parse(path)
    hot = [r for r in rows if r[1] >= min_w]
    print(f"{path}: {len(rows)} samples, {len(hot)} at >= {min_w:.0f} W")
    if hot:
        clocks = [r[0] for r in hot]
        capped = sum(1 for r in hot if r[2] & 0x4)
        print(f"  SM clock MHz min {min(clocks):.0f} median {statistics.median(clocks):.0f} "
              f"max {max(clocks):.0f}; mean power {statistics.mean(r[1] for r in hot):.0f} W; "
              f"SW power cap in {capped} of {len(hot)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
