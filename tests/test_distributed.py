"""``torchrun --nproc-per-node 2 -m fundiff train ...`` on the CPU (gloo): the same steps as one process at the same
global batch, rank 0 alone writes, a killed run resumes to the bytes of an unbroken one, and Ctrl-C stops all.

Equality is to float rounding: DDP sums gradients in another order than one process. The per-step losses and the
nets' outputs with batch statistics agree to 1e-5; the saved nets' outputs with running statistics to 2%, because the
spec's conv biases in front of BatchNorm get only rounding noise as gradients, which Adam turns into steps of
random sign (in one process as in two), and the running means follow those biases.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import write_idx

from fundiff.train import checkpoint as ckpt
from fundiff.train.distributed import Ranks

ARGS = ["class", "--width", "8", "--epochs", "2", "--batch-size", "16", "--lr-schedule", "exponential", "--precision",
        "fp32", "--sample-epochs", "2", "--holdout-per-class", "10"]
"""The exponential lr these tolerances were set with (the default's cosine keeps epoch 2's lr higher, 5.05e-4 against
3.16e-4, and the two runs' float rounding then drifts to 1.2e-5 in the nets' outputs)."""


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NO_COLOR="1", TERM="dumb")


def fundiff(cwd: Path, *args: str, processes: int = 1, env: dict | None = None, timeout: float = 300
            ) -> subprocess.CompletedProcess:
    """``python -m fundiff`` (one process) or ``torchrun --standalone --nproc-per-node N -m fundiff`` (N)."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"] \
        if processes > 1 else [sys.executable]
    return subprocess.run([*launcher, "-m", "fundiff", *args], cwd=cwd, env=env or _env(), capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def idx(tmp_path_factory, digits) -> Path:
    return write_idx(tmp_path_factory.mktemp("idx"), digits, per_class=24)


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory, idx) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("ddp")
    for n in (1, 2):
        proc = fundiff(work, "train", *ARGS, "--data-dir", str(idx), "--out", f"p{n}", processes=n)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return work / "p1", work / "p2"


def _losses(run: Path) -> list[float]:
    with open(run / "loss.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def _net(run: Path) -> torch.nn.Module:
    state, recipe, _ = ckpt.read_weights(run / "weights" / "epoch_002.safetensors")
    return ckpt.build_net(recipe, state)


def test_two_processes_take_the_steps_of_one(one_and_two):
    one, two = one_and_two
    a, b = _losses(one), _losses(two)
    assert len(a) == len(b) == 2 * 9  # 140 training images (240 less 10 per class) in batches of 16, two epochs
    assert torch.allclose(torch.tensor(a), torch.tensor(b), rtol=1e-5, atol=0)
    g = torch.Generator().manual_seed(0)
    x, t = torch.rand(8, 1, 28, 28, generator=g), torch.rand(8, generator=g)
    c = torch.eye(10)[torch.arange(8)]
    n1, n2 = _net(one), _net(two)
    with torch.no_grad():
        batch_stats = (n1.train()(x, t, c), n2.train()(x, t, c))
        running = (n1.eval()(x, t, c), n2.eval()(x, t, c))
    assert (batch_stats[0] - batch_stats[1]).abs().max() < 1e-5
    assert (running[0] - running[1]).abs().max() < 0.02 * running[0].abs().max()
    import json

    info = json.loads((two / "run.json").read_text())
    assert info["processes"] == 2 and "processes" not in json.loads((one / "run.json").read_text())


def test_only_rank_zero_writes_and_speaks(one_and_two):
    _, two = one_and_two
    names = sorted(p.relative_to(two).as_posix() for p in two.rglob("*") if p.is_file())
    assert names == ["checkpoint_002.safetensors", "loss.csv", "loss.png", "run.json", "samples/epoch_002.png",
                     "weights/epoch_002.safetensors"]


def test_a_killed_two_process_run_resumes_to_the_bytes_of_an_unbroken_one(tmp_path, idx, one_and_two):
    _, unbroken = one_and_two
    killed = fundiff(tmp_path, "train", *ARGS, "--data-dir", str(idx), "--out", "run", processes=2,
                     env=dict(_env(), FUNDIFF_FAULT_AT="replaced:run.json:2"))  # epoch 1 recorded, then killed
    assert killed.returncode != 0
    resumed = fundiff(tmp_path, "train", *ARGS, "--data-dir", str(idx), "--out", "run", "--resume", processes=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming run after epoch 1 of 2" in resumed.stdout
    for name in ("weights/epoch_002.safetensors", "checkpoint_002.safetensors", "loss.csv"):
        assert (tmp_path / "run" / name).read_bytes() == (unbroken / name).read_bytes(), name


def test_ctrl_c_stops_every_process(tmp_path, idx):
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "fundiff",
            "train", *ARGS, "--epochs", "200", "--data-dir", str(idx), "--out", "run"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "run" / "run.json").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (tmp_path / "run" / "run.json").is_file(), "training never started"
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: SIGINT to the foreground process group
    try:
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert not _running_with(str(tmp_path)), "processes still running after Ctrl-C"


def _running_with(text: str) -> list[str]:
    """Processes whose command line mentions ``text`` (read from /proc, no pgrep needed)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended meanwhile
            continue
        if text in args:
            found.append(f"{cmdline.parent.name}: {args[:200]}")
    return found


@pytest.mark.parametrize("n,world", [(16, 2), (17, 2), (1, 2), (10, 3)])
def test_shards_cover_the_batch_once(n, world):
    parts = [range(n)[Ranks(r, world).shard(n)] for r in range(world)]
    assert [i for p in parts for i in p] == list(range(n))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
