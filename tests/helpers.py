"""Helpers shared by the tests (tiny recipes, tiny runs, the CLI in a subprocess)."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from fundiff.train.data import Digits
from fundiff.train.loop import Trainer
from fundiff.train.recipes import make_recipe

CPU = torch.device("cpu")


def per_class_subset(data: Digits, per_class: int) -> Digits:
    """The first ``per_class`` images of each digit, in a fixed order."""
    idx = torch.cat([(data.labels == c).nonzero().flatten()[:per_class] for c in range(10)]).sort().values
    return data.subset(idx, f"first {per_class} per class")


def tiny_recipe(model: str = "class", objective: str = "ddpm", recipe: str = "default", **kw):
    """Width 8, 2 epochs, batch 64, 5 held-out images per class, weights and samples of the last epoch only
    (overridable)."""
    base = dict(width=8, epochs=2, batch_size=64, holdout_per_class=5)
    base.update(kw)
    base.setdefault("sample_epochs", (base["epochs"],))
    return make_recipe(model, objective, recipe, **base)


def train_run(recipe, run_dir: Path, data: Digits, **kw) -> Trainer:
    trainer = Trainer(recipe, run_dir, data, CPU, progress=False, **kw)
    trainer.run()
    return trainer


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m fundiff.cli ARGS`` in a subprocess (one thread, no colours), text output."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NO_COLOR="1", TERM="dumb",
               COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "fundiff.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Non-zero exit, stderr exactly one line "fundiff: error: ...", no traceback; returns the line."""
    assert proc.returncode != 0, proc
    lines = proc.stderr.strip("\n").splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("fundiff: error:"), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def fundiff_in_process(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run ``fundiff ARGS`` in this process (the console script's code path): (exit code, stdout, stderr)."""
    from fundiff.cli.app import main

    monkeypatch.setattr(sys, "argv", ["fundiff", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def write_idx(d: Path, digits: Digits, per_class: int = 60) -> Path:
    """The first ``per_class`` digits of each class as the standard IDX training files in ``d``."""
    d.mkdir(parents=True, exist_ok=True)
    sub = per_class_subset(digits, per_class)
    img = (sub.images[:, 0] * 255).round().numpy().astype(np.uint8)
    lbl = sub.labels.numpy().astype(np.uint8)
    (d / "train-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">III", len(img), 28, 28)
                                                 + img.tobytes())
    (d / "train-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", len(lbl)) + lbl.tobytes())
    return d
