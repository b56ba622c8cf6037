"""Training images/s with 1 and N processes (``torchrun --standalone --nproc-per-node N -m fundiff train ...``),
measured side by side: the runs alternate (1, N, 1, N, ...) so a noisy shared machine slows both alike, and each
row is the median of its rounds. The cores are shared: one process gets all ``--threads``, N processes
``threads // N`` each (at least one). Images/s is training images over the epoch's wall-clock seconds, read from
run.json (rank 0's clock: the slowest rank sets it).

    python bench/ddp_speed.py [--processes 2] [--threads 2] [--rounds 2] [--epochs 1] [-- TRAIN OPTIONS ...]

The default trains ``fundiff train class`` (the default recipe: batch 16, bf16) on the offline digits for one
epoch; pass train options after ``--`` (e.g. ``-- --batch-size 128 --precision fp32``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def one_run(processes: int, threads: int, epochs: int, extra: list[str], work: Path, tag: str) -> float:
    out = work / tag
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"] \
        if processes > 1 else [sys.executable]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [*launcher, "-m", "fundiff", "train", "class", "--epochs", str(epochs), "--out", str(out), *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    history = json.loads((out / "run.json").read_text())["history"]
    images = sum(h["images_per_s"] * h["seconds"] for h in history)
    return images / sum(h["seconds"] for h in history)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("extra", nargs="*", help="options for fundiff train, after --")
    a = parser.parse_args()
    rates: dict[int, list[float]] = {1: [], a.processes: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            for n in rates:
                threads = a.threads if n == 1 else max(1, a.threads // n)
                rates[n].append(one_run(n, threads, a.epochs, a.extra, Path(tmp), f"p{n}-r{r}"))
                print(f"round {r + 1}: {n} process(es) x {threads} thread(s): {rates[n][-1]:.1f} images/s", flush=True)
    one, many = statistics.median(rates[1]), statistics.median(rates[a.processes])
    print(f"\n| processes x threads | images/s (median of {a.rounds}) | vs 1 process |")
    print("|---|---|---|")
    print(f"| 1 x {a.threads} | {one:.1f} | 1.00 |")
    print(f"| {a.processes} x {max(1, a.threads // a.processes)} | {many:.1f} | {many / one:.2f} |")


if __name__ == "__main__":
    main()
