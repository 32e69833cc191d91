#!/usr/bin/env python3
"""The torch._grouped_mm peer of ../shared/docs/perf-anchors.md, measured on this machine.

Usage: python3 tests/bench/peer_grouped_mm.py OUT.json [SHAPE ...]
       PEER_SETTLE=S: every timing after S seconds of replays of the same graph (as `moe-tool
       bench --settle S`); default 0.

Same method as the anchors (and as `moe-tool bench`): bf16, random weights std 0.02, softmax
top-k routing on random logits, 3 weight sets rotated, a CUDA graph of 10 calls replayed, the
median per call. One call: tokens sorted by expert, x gathered, gate-up grouped GEMM, silu and
mul, down grouped GEMM, routing weight, scatter-add into a zeroed float32 output. The ceilings
(device-to-device copy, bf16 8192^3 matmul) are measured in the same run, so the floor is this
machine's. Only the peer's own code path is here; nothing of moe-tool is used.
"""
import json
import os
import statistics
import sys
import time

import torch

SHAPES = {  # E, top_k, H, I
    "mixtral": (8, 2, 4096, 14336),
    "qwen3-30b": (128, 8, 2048, 768),
    "deepseek-v3-tp8": (256, 8, 7168, 256),
    "gpt-oss-120b": (128, 4, 2880, 2880),
}
TOKENS = [1, 16, 64, 256, 1024, 4096]
SETTLE_S = float(os.environ.get("PEER_SETTLE", "0"))


def graph_time(fn, calls=10, replays=20):
    """Median microseconds per call of a graph of `calls` calls (fn(i) with i = 0..calls-1)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for i in range(3):
            fn(i)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(calls):
            fn(i)
    g.replay()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < SETTLE_S:  # steady clocks under the power limit
        g.replay()
        torch.cuda.synchronize()
    times = []
    for _ in range(replays):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1000.0 / calls)
    return statistics.median(times)


def ceilings():
    n = 1 << 30  # 2 GiB of bf16 each way
    src = torch.empty(n, dtype=torch.bfloat16, device="cuda")
    dst = torch.empty_like(src)
    us = graph_time(lambda i: dst.copy_(src), calls=5, replays=10)
    hbm = 2 * src.numel() * 2 / (us * 1e-6) / 1e9
    del src, dst
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    us = graph_time(lambda i: torch.mm(a, b), calls=5, replays=10)
    tflops = 2 * 8192**3 / (us * 1e-6) / 1e12
    return hbm, tflops


def moe_call(x, w13, w2, ids, weights, out):
    T, H = x.shape
    E, two_i, _ = w13.shape
    inter = two_i // 2
    flat = ids.flatten()
    order = torch.sort(flat, stable=True).indices
    tok = order // ids.shape[1]
    counts = torch.zeros(E, dtype=torch.int32, device=x.device)
    counts.scatter_add_(0, flat, torch.ones_like(flat, dtype=torch.int32))
    offs = torch.cumsum(counts, 0, dtype=torch.int32)
    xs = x.index_select(0, tok)
    h = torch._grouped_mm(xs, w13.transpose(-2, -1), offs=offs)
    a = torch.nn.functional.silu(h[:, :inter]) * h[:, inter:]
    y = torch._grouped_mm(a, w2.transpose(-2, -1), offs=offs)
    y = y.float() * weights.flatten().index_select(0, order).unsqueeze(1)
    out.zero_()
    out.index_add_(0, tok, y)


def main(path, names):
    torch.manual_seed(0)
    hbm, tflops = ceilings()
    print(f"ceilings: copy {hbm:.0f} GB/s, bf16 8192^3 {tflops:.0f} TFLOP/s", flush=True)
    rep = {"device": torch.cuda.get_device_name(), "hbm_gbs": hbm, "tensor_tflops": tflops,
           "peer": "torch._grouped_mm", "settle_s": SETTLE_S, "shapes": {}}
    for name in names:
        E, K, H, inter = SHAPES[name]
        sets = [(torch.randn(E, 2 * inter, H, dtype=torch.bfloat16, device="cuda") * 0.02,
                 torch.randn(E, H, inter, dtype=torch.bfloat16, device="cuda") * 0.02)
                for _ in range(3)]
        cells = []
        tokens = TOKENS + ([16384] if name == "qwen3-30b" else [])
        for T in tokens:
            x = torch.randn(T, H, dtype=torch.bfloat16, device="cuda")
            logits = torch.randn(T, E, device="cuda")
            weights, ids = torch.topk(torch.softmax(logits, -1), K, dim=-1)
            out = torch.empty(T, H, dtype=torch.float32, device="cuda")
            us = graph_time(lambda i: moe_call(x, *sets[i % 3], ids, weights, out))
            touched = int(torch.unique(ids).numel())
            bytes_touched = touched * 3 * H * inter * 2
            flops = 2 * T * K * 3 * H * inter
            floor = max(bytes_touched / (hbm * 1e9), flops / (tflops * 1e12)) * 1e6
            cells.append({"tokens": T, "us": us, "floor_us": floor, "x_floor": us / floor})
            print(f"{name:16s} T={T:6d} {us:9.1f} us  floor {floor:8.1f}  x{us / floor:.2f}",
                  flush=True)
            del x, out
        rep["shapes"][name] = cells
        del sets
        torch.cuda.empty_cache()
    with open(path, "w") as f:
        json.dump(rep, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:] or list(SHAPES))
