"""Bad input through the real CLI (issue 11): one line, exit 2, before any work, nothing written outside --out,
nothing overwritten without --force, strictly valid JSON. docs/reliability.md lists what each test checks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from helpers import fundiff_in_process, tiny_recipe
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from tiny_if import tiny_if  # noqa: E402

FAST = ("--stride", "100")  # 3 steps of the digit model


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def strict_json(path: Path) -> dict:
    """json.loads that refuses NaN and Infinity (RFC 8259)."""

    def refuse(name: str) -> None:
        raise ValueError(f"{path} holds {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture
def cli(monkeypatch, capsys, tmp_path):
    """``fundiff ARGS`` in this process, in a fresh working folder: (exit code, stdout, stderr)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    def run(*args):
        return fundiff_in_process(monkeypatch, capsys, *args)

    run.work = work
    return run


def one_line(result: tuple[int, str, str], *fragments: str) -> str:
    code, out, err = result
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("fundiff: error: "), (code, err)
    assert "Traceback" not in err + out
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "digit.png"
    img = Image.new("L", (28, 28))
    img.paste(255, (12, 4, 16, 24))  # a 1
    img.save(path)
    return path


# 1. Text that becomes a folder name never leaves the output root.
@pytest.mark.parametrize("command", [
    ("generate", "--prompt", "a/../../../../x"),
    ("anagram", "--prompt", "../../x", "--prompt", "y/../../../z", "--n", "1"),
    ("hybrid", "--low", "../../../lo", "--high", "/etc/hi", "--n", "1"),
])
def test_a_prompt_cannot_write_outside_the_output_folder(cli, command):
    tiny = tiny_if()
    deep = cli.work / "a" / "b" / "c" / "d"
    deep.mkdir(parents=True)
    import os

    os.chdir(deep)
    code, _, err = cli(*command, "--model", tiny.stage1, "--steps", "2", "--device", "cpu")
    assert code == 0, err
    written = [p for p in cli.work.rglob("*") if p.is_file()]
    assert written and all(deep / "outputs" in p.parents for p in written), written
    (folder,) = (deep / "outputs").iterdir()
    assert "/" not in folder.name and ".." not in folder.name


# 2. Nothing replaced without --force; with it, an earlier run's files go.
def test_sample_refuses_a_folder_with_files_and_force_removes_the_earlier_run(cli):
    out = cli.work / "s"
    out.mkdir()
    (out / "samples.png").write_bytes(b"mine")
    one_line(cli("sample", "digits", "--out", out, "--per-class", "1", *FAST), "--force")
    assert (out / "samples.png").read_bytes() == b"mine"
    assert cli("sample", "digits", "--out", out, "--per-class", "1", "--gif", "--force", *FAST)[0] == 0
    assert (out / "samples.gif").is_file()
    (out / "notes.txt").write_text("keep")
    assert cli("sample", "digits", "--out", out, "--per-class", "1", "--seed", "3", "--force", *FAST)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "sample.json", "samples.npz", "samples.png"]


def test_an_edit_with_other_i_starts_leaves_no_older_edit_behind(cli, digit_png):
    out = cli.work / "e"
    assert cli("edit", digit_png, "--i-start", "0", "1", "--out", out, *FAST)[0] == 0
    one_line(cli("edit", digit_png, "--i-start", "0", "--out", out, *FAST), "--force")
    assert cli("edit", digit_png, "--i-start", "0", "--out", out, "--force", *FAST)[0] == 0
    assert not (out / "edit_i01.png").exists() and (out / "edit_i00.png").exists()
    assert strict_json(out / "args.json")["args"]["i_start"] == [0]


def test_figures_and_evaluate_replace_nothing_without_force(cli, tmp_path):
    from helpers import CPU  # noqa: F401 - the tiny run below trains on the CPU

    from fundiff.train import checkpoint as ckpt

    run = cli.work / "run"
    (run / "figures").mkdir(parents=True)
    (run / "figures" / "loss_run.png").write_bytes(b"mine")
    recipe = tiny_recipe("class")
    ckpt.save_weights(ckpt.weights_path(run, 1), ckpt.build_net(recipe).state_dict(), recipe, 1)
    (run / ckpt.RUN_FILE).write_text(json.dumps({"kind": "fundiff-run", "data": {"source": "x"}}))
    one_line(cli("figures", run), "--force")
    assert (run / "figures" / "loss_run.png").read_bytes() == b"mine"


# 3. An output that cannot be written: one line, before any work.
@pytest.mark.parametrize("where", ["under-a-file", "proc", "too-long"])
@pytest.mark.parametrize("command", [
    ("generate", "--n", "1", *FAST), ("sample", "digits", "--per-class", "1", *FAST),
    ("judge", "train", "--epochs", "1"), ("evaluate-parta", "--pairs", "1", "--per-pair", "1", "--per-target", "1"),
])
def test_an_output_that_cannot_be_written_is_one_line_before_the_work(cli, where, command):
    (cli.work / "afile").write_text("")
    out = {"under-a-file": cli.work / "afile" / "x", "proc": Path("/proc/fundiff-x/y"),
           "too-long": cli.work / ("n" * 300) / "x"}[where]
    before = tree(cli.work)
    code, out_text, err = cli(*command, "--out", out)
    one_line((code, out_text, err))
    assert "sampling" not in err and "train" not in out_text.lower()
    assert tree(cli.work) == before


# 5. NaN and infinity are refused everywhere; records are strict JSON.
@pytest.mark.parametrize("args", [
    ("generate", "--guidance", "nan"), ("generate", "--guidance", "inf"), ("generate", "--guidance", "-inf"),
    ("hybrid", "--low", "1", "--high", "7", "--sigma", "nan"),
    ("train", "class", "--lr", "nan"), ("train", "class", "--ema-decay", "inf"),
    ("evaluate-parta", "--guidance", "nan"),
])
def test_non_finite_numbers_are_refused(cli, args):
    one_line(cli(*args), "finite")


def test_denoise_blur_sigma_nan_is_refused(cli, digit_png):
    one_line(cli("denoise", digit_png, "--blur-sigma", "nan"), "--blur-sigma", "finite")


def test_every_record_is_strict_json(cli, digit_png):
    assert cli("denoise", digit_png, "--out", "d", "--t", "100", *FAST)[0] == 0
    strict_json(cli.work / "d" / "args.json")


def test_write_json_refuses_nan(tmp_path):
    from fundiff.io.files import write_json

    with pytest.raises(ValueError):
        write_json(tmp_path / "x.json", {"x": float("nan")})
    assert not (tmp_path / "x.json").exists() and not list(tmp_path.iterdir())


# 6. One line instead of a traceback.
@pytest.mark.parametrize("args,fragment", [
    (("generate", "--device", "cuda"), "--device"),
    (("generate", "--device", "tpu"), "--device"),
    (("generate", "--seed", "99999999999999999999"), "--seed"),
    (("generate", "--seed", "-1"), "--seed"),
    (("train", "class", "--seed", "99999999999999999999"), "--seed"),
    (("generate", "--prompt", "³"), "class"),
    (("anagram", "--prompt", "1", "--prompt", "2", "--n", "-3"), "--n"),
    (("sample", "digits", "--per-class", "1000000"), "--per-class"),
    (("generate", "--n", "100000"), "--n"),
])
def test_one_line_instead_of_a_traceback(cli, args, fragment):
    if "cuda" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    one_line(cli(*args), fragment)
    assert not (cli.work / "outputs").exists()


@pytest.mark.parametrize("args,fragment", [
    (("--blur-kernel", "4"), "odd"), (("--blur-kernel", "0"), "odd"), (("--blur-sigma", "0"), "sigma"),
    (("--blur-kernel", "999"), "at most 57"), (("--t", "5000"), "timestep 5000"),
])
def test_denoise_blur_and_timesteps_are_checked_first(cli, digit_png, args, fragment):
    one_line(cli("denoise", digit_png, *args), fragment)
    assert not (cli.work / "outputs").exists()


def test_sample_out_a_file(cli):
    (cli.work / "f").write_text("")
    one_line(cli("sample", "digits", "--out", "f"), "is a file")


# 7. Work without an end or a meaning.
@pytest.mark.parametrize("args,fragment", [
    (("hybrid", "--low", "1", "--high", "7", "--kernel", "999"), "at most 57"),
    (("hybrid", "--low", "1", "--high", "7", "--kernel", "32"), "odd"),
    (("hybrid", "--low", "1", "--high", "7", "--n", "0"), "--n"),
    (("anagram", "--prompt", "1", "--prompt", "7", "--n", "0"), "--n"),
    (("anagram", "--prompt", "1", "--prompt", "7", "--views", "negate"), "negate"),
    (("anagram", "--prompt", "1", "--prompt", "7", "--prompt", "2"), "one prompt per view"),
    (("edit", "IMG", "--i-start", "99", *FAST), "i_start 99"),
    (("inpaint", "IMG", "--box", "0", "0", "0", "0"), "box"),
])
def test_meaningless_work_is_refused_before_it_starts(cli, digit_png, args, fragment):
    one_line(cli(*[str(digit_png) if a == "IMG" else a for a in args]), fragment)
    assert not (cli.work / "outputs").exists()


def test_classes_on_a_time_model_are_refused(cli):
    from fundiff.train import checkpoint as ckpt

    recipe = tiny_recipe("time")
    path = cli.work / "time.safetensors"
    ckpt.save_weights(path, ckpt.build_net(recipe).state_dict(), recipe, 1)
    one_line(cli("sample", path, "--classes", "3", *FAST), "--classes")
    assert cli("sample", path, "--per-class", "1", "--out", "t", *FAST)[0] == 0


def test_the_library_refuses_the_same_things(digits_model):
    from fundiff import anagram, generate, hybrid
    from fundiff.errors import UserError

    with pytest.raises(UserError, match="negate"):
        anagram(digits_model, [1, 7], ["identity", "negate"])
    with pytest.raises(UserError, match="at most 57"):
        hybrid(digits_model, [1, 7], kernel=999)
    with pytest.raises(UserError, match="at most"):
        generate(digits_model, 3, n=10**7)


@pytest.fixture(scope="module")
def digits_model():
    from fundiff import load

    return load("digits", "cpu")


@pytest.mark.parametrize("args,fragment", [
    (("--width", "100000"), "--width"), (("--batch-size", "10000000"), "--batch-size"),
    (("--epochs", "1000000000"), "--epochs"), (("--lr", "50"), "--lr"),
    (("--sample-epochs", "5", "--epochs", "2"), "--sample-epochs"),
])
def test_training_that_cannot_end_or_fit_is_refused(cli, args, fragment):
    one_line(cli("train", "class", "--out", "r", *args), fragment)
    assert not (cli.work / "r").exists()


def test_a_diverging_training_stops_with_one_line(cli, monkeypatch):
    import torch

    import fundiff.train.loop as loop

    real = loop.batch_loss
    monkeypatch.setattr(loop, "batch_loss", lambda *a: real(*a) * torch.tensor(float("nan")))
    code, out, err = cli("train", "class", "--out", "r", "--width", "8", "--epochs", "1")
    last = err.strip().splitlines()[-1]  # after the progress bar, which closes on its own line
    assert code == 2 and "Traceback" not in err and err.count("fundiff: error:") == 1
    assert last.startswith("fundiff: error: training diverged at step 1: the loss is nan; lower --lr"), last
    strict_json(cli.work / "r" / "run.json")
