"""The command line in subprocesses: one-line errors, untouched run directories, train -> sample."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_one_line_error, run_cli
from PIL import Image
from safetensors.torch import save_file

from fundiff.cli.options import int_list as _int_list
from fundiff.errors import UserError
from fundiff.evaluate.judge import JudgeNet, save_judge


def snapshot(d: Path) -> dict:
    """Every file under d with its bytes and mtime."""
    return {p.relative_to(d).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns) for p in d.rglob("*") if p.is_file()}


def write_idx_pair(d: Path, n: int, seed: int = 0, truncate: bool = False) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    img = bytes([0, 0, 8, 3]) + struct.pack(">III", n, 28, 28) + rng.integers(0, 256, n * 784, dtype=np.uint8).tobytes()
    lbl = bytes([0, 0, 8, 1]) + struct.pack(">I", n) + (np.arange(n) % 10).astype(np.uint8).tobytes()
    (d / "train-images-idx3-ubyte").write_bytes(img[:-100] if truncate else img)
    (d / "train-labels-idx1-ubyte").write_bytes(lbl)
    return d


def test_int_list():
    assert _int_list("0-9", "--classes") == list(range(10))
    assert _int_list("1,5,20", "--x") == [1, 5, 20]
    assert _int_list("3, 5-7", "--x") == [3, 5, 6, 7]
    with pytest.raises(UserError, match="--classes"):
        _int_list("one", "--classes")


@pytest.mark.parametrize(("args", "fragment"), [
    (["--epochs", "0"], "--epochs 0"),
    (["--data", "nope"], "nope"),
    (["--width", "-3"], "--width -3"),
    (["--epochs", "abc"], "--epochs"),
    (["--lr-schedule", "step"], "step"),
    (["--sample-epochs", "1,x"], "--sample-epochs"),
])
def test_train_bad_options_are_one_line_errors(tmp_path, args, fragment):
    out = tmp_path / "run"
    proc = run_cli("train", "class", "--out", out, *args)
    assert_one_line_error(proc, fragment)
    assert not out.exists() or not any(out.iterdir())


def test_train_unknown_model(tmp_path):
    assert_one_line_error(run_cli("train", "unet", "--out", tmp_path / "r"), "unet")


def test_train_bad_data_dirs(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(run_cli("train", "class", "--data-dir", empty, "--out", tmp_path / "r1"), "missing IDX")
    assert_one_line_error(run_cli("train", "class", "--data-dir", tmp_path / "absent", "--out", tmp_path / "r2"),
                          "does not exist")
    corrupt = write_idx_pair(tmp_path / "corrupt", 30, truncate=True)
    assert_one_line_error(run_cli("train", "class", "--data-dir", corrupt, "--out", tmp_path / "r3"), "truncated")
    for r in ("r1", "r2", "r3"):
        assert not (tmp_path / r / "run.json").exists()


def test_sample_bad_sources(tmp_path, denoiser_run):
    assert_one_line_error(run_cli("sample", denoiser_run, "--out", tmp_path / "s0"), "denoiser")
    judge = tmp_path / "judge.safetensors"
    save_judge(judge, JudgeNet(), {})
    assert_one_line_error(run_cli("sample", judge, "--out", tmp_path / "s1"), "not a fundiff UNet weights file")
    rand = tmp_path / "random.safetensors"
    save_file({"w": torch.randn(4, 4)}, str(rand))
    assert_one_line_error(run_cli("sample", rand, "--out", tmp_path / "s2"), "not a fundiff UNet weights file")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"definitely not safetensors")
    assert_one_line_error(run_cli("sample", junk, "--out", tmp_path / "s3"), "not a readable safetensors file")
    assert_one_line_error(run_cli("sample", tmp_path / "nothing", "--out", tmp_path / "s4"))
    for s in ("s0", "s1", "s2", "s3", "s4"):
        assert not (tmp_path / s).exists()


# ---- one real tiny run through the CLI ----------------------------------------------------------------

@pytest.fixture(scope="module")
def cli_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    proc = run_cli("train", "class", "--width", "8", "--epochs", "1", "--batch-size", "256", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return out


def test_cli_train_writes_a_run(cli_run):
    info = json.loads((cli_run / "run.json").read_text())
    assert info["status"] == "done" and info["epoch"] == 1
    assert info["recipe"]["width"] == 8 and info["recipe"]["batch_size"] == 256
    assert info["data"]["train_images"] == 4500 and info["data"]["held_out_images"] == 500
    for name in ("loss.csv", "loss.png", "checkpoint_001.safetensors", "weights/epoch_001.safetensors",
                 "samples/epoch_001.png"):
        assert (cli_run / name).is_file(), name


def test_cli_train_refuses_a_used_directory(cli_run):
    before = snapshot(cli_run)
    assert_one_line_error(run_cli("train", "class", "--width", "8", "--epochs", "1", "--out", cli_run),
                          "--resume")
    assert snapshot(cli_run) == before


@pytest.mark.parametrize("args", [["--width", "16", "--epochs", "1"], ["--lr", "0.5"], ["--objective", "flow"],
                                  ["--recipe", "spec"]])
def test_cli_resume_with_a_different_recipe_touches_nothing(cli_run, args):
    before = snapshot(cli_run)
    proc = run_cli("train", "class", "--out", cli_run, "--resume", *args)
    assert_one_line_error(proc, "different recipe")
    assert snapshot(cli_run) == before


def test_cli_resume_with_different_data_touches_nothing(cli_run, tmp_path):
    before = snapshot(cli_run)
    other = write_idx_pair(tmp_path / "idx", 600)
    proc = run_cli("train", "class", "--out", cli_run, "--resume", "--data-dir", other)
    assert_one_line_error(proc, "trained on")
    assert snapshot(cli_run) == before


def test_cli_resume_without_a_run(tmp_path):
    assert_one_line_error(run_cli("train", "class", "--resume", "--out", tmp_path / "none"), "cannot resume")


def test_cli_sample_end_to_end(cli_run, tmp_path):
    args = ("sample", cli_run, "--sampler", "ddim", "--steps", "10", "--gif", "--seed", "3")
    outs = [tmp_path / "s1", tmp_path / "s2"]
    for o in outs:
        proc = run_cli(*args, "--out", o)
        assert proc.returncode == 0, proc.stderr
    s = outs[0]
    png = Image.open(s / "samples.png")
    assert png.format == "PNG" and png.size == ((10 * 30 + 2) * 2, (4 * 30 + 2) * 2)  # 10 classes x 4 rows
    npz = np.load(s / "samples.npz")
    assert npz["images"].dtype == np.uint8 and npz["images"].shape == (40, 28, 28)
    assert npz["labels"].tolist() == list(range(10)) * 4
    gif = Image.open(s / "samples.gif")
    assert gif.format == "GIF" and gif.n_frames == 10
    meta = json.loads((s / "sample.json").read_text())
    assert (meta["sampling"]["sampler"], meta["sampling"]["steps"], meta["seed"], meta["epoch"]) == ("ddim", 10, 3, 1)
    assert meta["sampling"]["guidance"] == meta["model"]["sampling"]["guidance"]  # the card's, as none was given
    assert meta["classes"] == list(range(10)) and meta["per_class"] == 4
    # the same command twice: identical bytes
    for name in ("samples.png", "samples.gif"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    assert np.array_equal(np.load(outs[1] / "samples.npz")["images"], npz["images"])


def test_cli_sample_from_a_weights_file_and_classes(cli_run, tmp_path):
    proc = run_cli("sample", cli_run / "weights" / "epoch_001.safetensors", "--classes", "3,5", "--per-class", "2",
                   "--sampler", "ddim", "--steps", "3", "--out", tmp_path / "s")
    assert proc.returncode == 0, proc.stderr
    npz = np.load(tmp_path / "s" / "samples.npz")
    assert npz["labels"].tolist() == [3, 5, 3, 5] and npz["images"].shape == (4, 28, 28)


@pytest.mark.parametrize(("args", "fragment"), [
    (["--steps", "0"], "--steps"), (["--steps", "301"], "--steps"),
    (["--classes", "11"], "class 11 is outside 0-9"),
    (["--per-class", "0"], "--per-class"), (["--guidance", "-1"], "--guidance"), (["--epoch", "7"], "7"),
    (["--sampler", "euler", "--steps", "2"], "DDPM model: use --sampler ddpm, ddim or dpmpp-2m"),
    (["--sampler", "magic"], "magic"),
])
def test_cli_sample_bad_options(cli_run, tmp_path, args, fragment):
    assert_one_line_error(run_cli("sample", cli_run, "--out", tmp_path / "s", *args), fragment)
    assert not (tmp_path / "s").exists()
