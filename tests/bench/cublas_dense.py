#!/usr/bin/env python3
"""cuBLAS (torch.mm) on the dense equivalent of a MoE cell: what the GEMMs could reach here.

Usage: python3 tests/bench/cublas_dense.py OUT.json [ROWS H I]
       (default: qwen3-30b at 16384 tokens: 131072 rows = tokens x top_k, H 2048, I 768)

One expert holding every routed row: gate-up [ROWS, H] x [H, 2I], silu-and-mul, down [ROWS, I] x
[I, H], each timed alone and then the three in one call, by the anchors' method (a CUDA graph of
10 calls replayed, the median per call, 3 weight sets rotated; peer_grouped_mm.graph_time). To
compare with `moe-tool bench --experts 1 --top-k 1 --hidden H --intermediate I --tokens ROWS
--breakdown` in the same run: the same FLOPs with no grouping at all, so the difference is the
GEMM kernels'. Nothing of moe-tool is used.
"""
import json
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from peer_grouped_mm import graph_time  # noqa: E402


def main():
    out = sys.argv[1]
    rows, h, inter = (int(v) for v in sys.argv[2:5]) if len(sys.argv) >= 5 else (131072, 2048, 768)
    torch.manual_seed(0)
    x = torch.randn(rows, h, dtype=torch.bfloat16, device="cuda")
    w13 = [torch.randn(h, 2 * inter, dtype=torch.bfloat16, device="cuda") * 0.02 for _ in range(3)]
    w2 = [torch.randn(inter, h, dtype=torch.bfloat16, device="cuda") * 0.02 for _ in range(3)]
    gu = torch.empty(rows, 2 * inter, dtype=torch.bfloat16, device="cuda")
    act = torch.randn(rows, inter, dtype=torch.bfloat16, device="cuda")
    y = torch.empty(rows, h, dtype=torch.bfloat16, device="cuda")

    def call(i):
        torch.mm(x, w13[i % 3], out=gu)
        g, u = gu.chunk(2, dim=1)
        torch.mm(torch.nn.functional.silu(g) * u, w2[i % 3], out=y)

    res = {"rows": rows, "hidden": h, "intermediate": inter}
    for name, fn, flops in (
        ("gate_up_us", lambda i: torch.mm(x, w13[i % 3], out=gu), 2 * rows * h * 2 * inter),
        ("down_us", lambda i: torch.mm(act, w2[i % 3], out=y), 2 * rows * inter * h),
        ("call_us", call, 2 * rows * h * 3 * inter),
    ):
        us = graph_time(fn)
        res[name] = us
        res[name.replace("_us", "_tflops")] = flops / (us * 1e-6) / 1e12
        print(f"cuBLAS dense {name[:-3]}: {us:.1f} us, {res[name.replace('_us', '_tflops')]:.0f} TFLOP/s",
              flush=True)
    # cuBLAS's kernels for the two GEMMs (their names give the tile, cluster and schedule)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        call(0)
        torch.cuda.synchronize()
    res["kernels"] = sorted({e.name for e in prof.events() if e.device_type.name == "CUDA"})
    for k in res["kernels"]:
        print("kernel:", k, flush=True)
    res["device"] = torch.cuda.get_device_name()
    with open(out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
