#!/usr/bin/env python3
"""Machine code of two revisions' kernels, side by side: a refactor check that needs no GPU.

Usage: python3 tests/bench/cubin_diff.py OLD_REV NEW_REV [SOURCE ...]
       (SOURCE: kernel files under kernels/, default gemm_tma.cu; NEW_REV "." is the working tree)

Each revision's kernels/ is compiled to an sm_90a cubin at the same temporary path (names of
anonymous namespaces hash the path), then every ELF section is compared byte for byte. It prints
each kernel whose machine code (.text) differs, with the differing 16-byte instructions as hex,
and exits 0 when every section is identical, 1 otherwise. A refactor that leaves the cubin
identical changes nothing a GPU could run.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

NVCC = os.environ.get("NVCC", "/usr/local/cuda/bin/nvcc")
FLAGS = ["-cubin", "-std=c++17", "-O3", "--expt-relaxed-constexpr",
         "-gencode=arch=compute_90a,code=sm_90a", "-I."]


def export(rev, dst):
    os.makedirs(dst)
    if rev == ".":
        shutil.copytree("kernels", os.path.join(dst, "kernels"))
        return
    archive = subprocess.run(["git", "archive", rev, "kernels"], check=True, capture_output=True)
    subprocess.run(["tar", "x", "-C", dst], input=archive.stdout, check=True)


def sections(path):
    out = subprocess.run(["readelf", "-S", "-W", path], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True).stdout
    found = {}
    for line in out.splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+[0-9a-f]+\s+([0-9a-f]+)\s+([0-9a-f]+)", line)
        if m:
            found[m.group(1)] = (int(m.group(2), 16), int(m.group(3), 16))
    return found


def build(rev, source, work):
    tree = os.path.join(work, "tree")
    shutil.rmtree(tree, ignore_errors=True)
    export(rev, tree)
    out = os.path.join(work, f"{rev.replace('/', '_')}.{source}.cubin")
    subprocess.run([NVCC, *FLAGS, source, "-o", out], cwd=os.path.join(tree, "kernels"), check=True)
    return out


def compare(old, new):
    a, b = open(old, "rb").read(), open(new, "rb").read()
    sa, sb = sections(old), sections(new)
    same = True
    if set(sa) != set(sb):
        print(f"  section names differ: {sorted(set(sa) ^ set(sb))[:8]}")
        return False
    texts = [n for n in sa if n.startswith(".text")]
    for name, (off, size) in sa.items():
        off_b, size_b = sb[name]
        x, y = a[off:off + size], b[off_b:off_b + size_b]
        if x == y:
            continue
        same = False
        print(f"  {name}: {size} -> {size_b} bytes")
        if name.startswith(".text") and size == size_b:
            for i in range(0, size, 16):
                if x[i:i + 16] != y[i:i + 16]:
                    print(f"    +{i:#x}: {x[i:i + 16].hex()} -> {y[i:i + 16].hex()}")
    print(f"  {len(texts)} kernels, {'all sections identical' if same else 'differences above'}")
    return same


def main():
    if len(sys.argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    old_rev, new_rev, sources = sys.argv[1], sys.argv[2], sys.argv[3:] or ["gemm_tma.cu"]
    work = tempfile.mkdtemp(prefix="cubin-diff-")
    try:
        ok = True
        for source in sources:
            print(f"{source}: {old_rev} -> {new_rev}")
            ok &= compare(build(old_rev, source, work), build(new_rev, source, work))
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
