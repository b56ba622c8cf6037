"""Through the command line (``python -m fundiff.cli``): output folders that cannot be written are one line before any
work; --resume finds the data folder a run was trained on by itself; weights files with broken or lying metadata are
one line, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from helpers import assert_one_line_error, run_cli, tiny_recipe, write_idx
from safetensors.torch import save_file

from fundiff.train.checkpoint import build_net, save_weights

LONG = "n" * 300  # one path component longer than any file system takes (ENAMETOOLONG)


def run_all(*commands: list) -> list[subprocess.CompletedProcess]:
    """Several ``fundiff`` commands, two at a time (each is mostly Python start-up)."""
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda args: run_cli(*args), commands))


# ---- 1. output folders that cannot be written: one line, before any work -----------------------------------------

def test_train_and_report_refuse_unwritable_outputs_before_any_work(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("a file, not a folder")
    outs = {"under a file": (afile / "x", "afile is a file"), "under /proc": (Path("/proc/fundiff-x"), "/proc"),
            "name too long": (tmp_path / LONG / "run", "File name too long"),
            "a file itself": (afile, "afile")}
    if os.path.isdir("/sys") and not os.access("/sys", os.W_OK):  # read-only or not permitted, where there is one
        outs["not permitted"] = (Path("/sys/fundiff-x"), "/sys")
    commands = []
    for out, _ in outs.values():
        # --data-dir names a folder that does not exist: were data loaded before the check, that would be the error
        commands.append(["train", "class", "--width", "8", "--epochs", "1", "--data-dir", tmp_path / "none",
                         "--out", out])
        commands.append(["report", "--profile", "tiny", "--out", out])
    procs = run_all(*commands)
    for (what, (_, fragment)), train, report in zip(outs.items(), procs[::2], procs[1::2]):
        line = assert_one_line_error(train, fragment)
        assert "IDX" not in line and "does not exist" not in line, (what, line)
        assert_one_line_error(report, fragment)
    assert afile.read_text() == "a file, not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # nothing made on the way


# ---- 4. --resume finds the run's data folder by itself -----------------------------------------------------------

def fundiff(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NO_COLOR="1", TERM="dumb", COLUMNS="200",
                **(env or {}))
    return subprocess.run([sys.executable, "-m", "fundiff.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=full, timeout=300)


def test_resume_uses_the_recorded_data_folder(tmp_path, digits):
    """Trained with a relative --data-dir, stopped after epoch 1, resumed from another directory without --data-dir:
    it trains on the same files and keeps the run's record. A data folder that has gone is one line naming it, and
    another one is refused."""
    a, b = tmp_path / "a", tmp_path / "b"
    b.mkdir()
    write_idx(a / "digits", digits)
    train = ["train", "denoiser", "--width", "8", "--epochs", "2", "--batch-size", "50"]
    stop = {"FUNDIFF_FAULT_AT": "replaced:run.json:2"}  # killed after epoch 1 was recorded
    stopped = fundiff(*train, "--data-dir", "digits", "--out", "run", cwd=a, env=stop)
    assert stopped.returncode == 137, stopped.stderr[-2000:]
    before = json.loads((a / "run" / "run.json").read_text())
    assert before["epoch"] == 1 and before["data"]["data_dir"] == str((a / "digits").resolve())

    # another folder of the same name elsewhere: refused, and the run is untouched
    write_idx(b / "digits", digits, per_class=70)
    other = fundiff(*train, "--resume", "--data-dir", "digits", "--out", a / "run", cwd=b)
    assert_one_line_error(other, "trained on")
    assert json.loads((a / "run" / "run.json").read_text()) == before

    resumed = fundiff(*train, "--resume", "--out", a / "run", cwd=b)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stdout and str(a / "digits") in resumed.stdout
    after = json.loads((a / "run" / "run.json").read_text())
    assert after["status"] == "done" and after["epoch"] == 2
    assert after["data"] == before["data"]  # the same source, as first recorded

    # the data folder is gone: one line, naming it, saying what to do (resume with -> --epochs 2 is the saved one)
    shutil.move(a / "digits", tmp_path / "moved")
    gone = fundiff(*train, "--resume", "--out", a / "run", cwd=b)
    line = assert_one_line_error(gone, str((a / "digits").resolve()), "--data-dir")
    assert "missing" in line
    # given again (its new place is another folder): refused as other data, untouched
    moved = fundiff(*train, "--resume", "--data-dir", tmp_path / "moved", "--out", a / "run", cwd=b)
    assert_one_line_error(moved, "trained on")


# ---- 5. weights files whose metadata is missing, malformed or lying ----------------------------------------------

def _weights_cases(d: Path) -> dict[str, tuple[Path, str]]:
    r = tiny_recipe("class", "ddpm", epochs=1)
    state = {k: v.contiguous() for k, v in build_net(r).state_dict().items()}
    good = d / "good.safetensors"
    save_weights(good, state, r, 1)
    recipe = r.to_dict()
    unet = {"width": 8, "conditioning": "class", "time_injection": "add", "num_classes": 10, "in_channels": 1}
    base = {"kind": "fundiff-unet-weights", "recipe": json.dumps(recipe), "epoch": "1", "unet": json.dumps(unet)}

    def write(name: str, meta: dict | None, tensors: dict | None = None) -> Path:
        p = d / f"{name}.safetensors"
        save_file(tensors if tensors is not None else state, str(p), metadata=meta)
        return p

    wide = {k: v.contiguous() for k, v in build_net(tiny_recipe("class", "ddpm", width=16)).state_dict().items()}
    cases = {
        "no metadata": (write("none", None), "not a fundiff UNet weights file"),
        "kind only": (write("kind", {"kind": "fundiff-unet-weights"}), "no recipe and no epoch"),
        "no epoch": (write("noepoch", {k: v for k, v in base.items() if k != "epoch"}), "no epoch"),
        "recipe not JSON": (write("badjson", {**base, "recipe": "{width: 8"}), "broken metadata"),
        "recipe a list": (write("list", {**base, "recipe": "[1, 2]"}), "not an object"),
        "width a string": (write("strwidth", {**base, "recipe": json.dumps({**recipe, "width": "8"})}), "width"),
        "unknown model": (write("model", {**base, "recipe": json.dumps({**recipe, "model": "gan"})}), "gan"),
        "negative width": (write("negwidth", {**base, "recipe": json.dumps({**recipe, "width": -8})}), "width"),
        "sample epochs words": (write("words", {**base, "recipe": json.dumps({**recipe, "sample_epochs": "ab"})}),
                                "sample_epochs"),
        "epoch not a number": (write("epoch", {**base, "epoch": "last"}), "broken metadata"),
        "unet not JSON": (write("unetjson", {**base, "unet": "{"}), "unet"),
        "unet contradicts recipe": (write("unet", {**base, "unet": json.dumps({**unet, "width": 16})}),
                                    "contradicts"),
        "tensors of another width": (write("wide", base, wide), "do not fit the width-8 class net"),
        "huge width, small tensors": (write("huge", {**base, "recipe": json.dumps({**recipe, "width": 10 ** 7}),
                                                     "unet": json.dumps({**unet, "width": 10 ** 7})}),
                                      "--width 10000000 is out of range"),
        "a tensor missing": (write("missing", base, {k: v for k, v in state.items() if k != "out.weight"}),
                             "missing"),
    }
    return {"good": (good, ""), **cases}


THROUGH_THE_CLI = ("good", "kind only", "recipe not JSON", "width a string", "epoch not a number",
                   "unet contradicts recipe", "tensors of another width", "huge width, small tensors")
"""A sample of the cases through ``fundiff sample`` (each is a process start); all of them in-process below."""


def test_weights_with_bad_metadata_are_one_line_errors(tmp_path):
    cases = {k: v for k, v in _weights_cases(tmp_path).items() if k in THROUGH_THE_CLI}
    procs = run_all(*[["sample", path, "--stride", "100", "--per-class", "1", "--out", tmp_path / f"out-{i}"]
                      for i, (path, _) in enumerate(cases.values())])
    for (what, (path, fragment)), proc in zip(cases.items(), procs):
        if what == "good":
            assert proc.returncode == 0, proc.stderr[-2000:]
            continue
        line = assert_one_line_error(proc, fragment)
        assert path.name in line, (what, line)
    assert [p.name for p in tmp_path.glob("out-*")] == ["out-0"]  # only the good file wrote anything


def test_read_weights_and_build_net_say_the_same_in_process(tmp_path):
    """The same files through the library calls the commands use: every one a UserError."""
    from fundiff.errors import UserError
    from fundiff.train.checkpoint import load_model, read_weights

    for what, (path, fragment) in _weights_cases(tmp_path).items():
        if what == "good":
            load_model(path)
            continue
        with pytest.raises(UserError, match=None) as e:
            read_weights(path)
        assert fragment in str(e.value), (what, str(e.value))
        with pytest.raises(UserError):
            load_model(path)
    r = tiny_recipe("class", "ddpm")
    with pytest.raises(UserError, match="do not fit"):
        build_net(r, {k: v for k, v in build_net(tiny_recipe("class", width=4)).state_dict().items()})
    assert isinstance(build_net(r, build_net(r).state_dict()), torch.nn.Module)
