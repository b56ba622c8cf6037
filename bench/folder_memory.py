"""Peak memory of reading a large image folder, kept in memory against streamed from disk.

Generates a folder of ``--images`` small PNG files on the fly (random coloured 32 px images in 10 class folders),
then, in a fresh process each, reads it the way ``fundiff train --data DIR`` does and draws ``--batches`` random
training batches of 64: once with the decoded images kept in memory (uint8), once streamed (FUNDIFF_DATA_CACHE_MB=0,
what a folder larger than the memory budget gets). Prints each process's peak resident memory (ru_maxrss) and time.

    python bench/folder_memory.py [--images 100000] [--size 32] [--batches 200] [--dir /tmp/folder-bench]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

CHILD = """
import resource, sys, time, torch
from fundiff.train.data import load_folder
t0 = time.perf_counter()
data = load_folder(sys.argv[1], progress=False)
read = time.perf_counter() - t0
g = torch.Generator().manual_seed(0)
t0 = time.perf_counter()
for _ in range(int(sys.argv[2])):
    x = data.images[torch.randint(0, len(data), (64,), generator=g)]
draw = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{type(data.images).__name__} {len(data)} {peak:.0f} {read:.1f} {draw:.2f}")
"""


def make_folder(root: Path, n: int, size: int) -> None:
    rng = np.random.default_rng(0)
    for c in range(10):
        (root / str(c)).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        a = rng.integers(0, 256, (size // 4, size // 4, 3), dtype=np.uint8)
        Image.fromarray(a).resize((size, size), Image.Resampling.NEAREST).save(root / str(i % 10) / f"{i:06d}.png")


def measure(root: Path, batches: int, stream: bool) -> list[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", **({"FUNDIFF_DATA_CACHE_MB": "0"} if stream else {}))
    out = subprocess.run([sys.executable, "-c", CHILD, str(root), str(batches)], env=env, capture_output=True,
                         text=True, check=True)
    return out.stdout.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--dir", type=Path, default=None, help="where to write the folder (default: a temporary one)")
    a = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = a.dir or Path(tmp) / "folder"
        t0 = time.perf_counter()
        if not root.exists():
            make_folder(root, a.images, a.size)
        print(f"{a.images:,} PNG files of {a.size} px RGB in {root} ({time.perf_counter() - t0:.0f} s to write)")
        decoded = a.images * 3 * a.size * a.size / 2 ** 20
        print(f"\n| images kept | images | peak memory (MB) | read (s) | {a.batches} batches of 64 (s) |")
        print("|---|---|---|---|---|")
        for stream in (False, True):
            kind, n, peak, read, draw = measure(root, a.batches, stream)
            what = "streamed from the files" if stream else f"in memory (uint8, {decoded:.0f} MB)"
            print(f"| {what} ({kind}) | {int(n):,} | {peak} | {read} | {draw} |")


if __name__ == "__main__":
    main()
