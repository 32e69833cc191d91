#!/usr/bin/env python3
"""Summarize an Nsight Compute log of gpu__time_duration and dram__bytes_{read,write} per launch
(gpu_suite.sh's kernels stage): per kernel name, in order of first launch, the launches seen, the
median duration, the DRAM bytes read and written and their rate.
Usage: ncu_kernels.py NCU_LOG"""
import re
import statistics
import sys

UNITS = {"ns": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3, "s": 1e6, "second": 1e6,
         "byte": 1.0, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "Tbyte": 1e12}
METRICS = {"gpu__time_duration.sum": "us", "dram__bytes_read.sum": "read",
           "dram__bytes_write.sum": "write"}


def parse(lines):
    """Launches as (short kernel name, {us, read, write})."""
    launches = []
    for line in lines:
        if re.match(r"^  \S.*\(\d+, \d+, \d+\)x\(\d+, \d+, \d+\)", line):
            # "void ns::name<args>(params) (grid)x(block), ...": name and template arguments
            name = line.strip().replace("(anonymous namespace)", "").replace("<unnamed>", "")
            head = name.split("(", 1)[0]
            head = head.split(" ", 1)[1] if head.startswith("void ") else head
            base, _, targs = head.partition("<")
            name = base.split("::")[-1] + ("<" + targs if targs else "")
            name = name.replace("__nv_bfloat16", "bf16").replace(" ", "")
            launches.append((name, {}))
            continue
        fields = line.split()
        if launches and len(fields) == 3 and fields[0] in METRICS:
            scale = UNITS.get(fields[1])
            try:
                value = float(fields[2].replace(",", ""))
            except ValueError:
                continue
            if scale is not None:
                launches[-1][1][METRICS[fields[0]]] = value * scale
    return launches


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with open(sys.argv[1], errors="replace") as f:
        launches = parse(f)
    if not launches:
        sys.exit(f"{sys.argv[1]}: no profiled launches")
    order, by_name = [], {}
    for name, m in launches:
        if name not in by_name:
            order.append(name)
            by_name[name] = []
        by_name[name].append(m)
    print(f"{'kernel':48s} {'n':>3s} {'median us':>10s} {'read MB':>9s} {'write MB':>9s} "
          f"{'GB/s':>7s}")
    for name in order:
        ms = [m for m in by_name[name] if "us" in m]
        if not ms:
            continue
        mid = sorted(ms, key=lambda m: m["us"])[len(ms) // 2]
        rd, wr = mid.get("read", 0.0), mid.get("write", 0.0)
        rate = (rd + wr) / (mid["us"] * 1e3) if mid["us"] > 0 else 0.0
        print(f"{name[:48]:48s} {len(ms):3d} {statistics.median(m['us'] for m in ms):10.1f} "
              f"{rd / 1e6:9.1f} {wr / 1e6:9.1f} {rate:7.0f}")


if __name__ == "__main__":
    main()
