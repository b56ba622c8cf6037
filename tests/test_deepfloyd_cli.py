"""The DeepFloyd command line on tiny models: fundiff embed, Part 0 (generate --steps-1 --steps-2), --upsample on
every Part A command, fundiff parta end to end (and resumed), and one-line errors. In-process (fundiff.cli.main),
which is the console script's code path, to keep the 2-core test budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from helpers import fundiff_in_process  # noqa: E402
from PIL import Image  # noqa: E402
from tiny_if import tiny_if  # noqa: E402

from fundiff.models.deepfloyd.prompts import ASSIGNMENT_PROMPTS, load_cache  # noqa: E402

fundiff = fundiff_in_process


def one_line_error(result, *fragments: str) -> str:
    code, _, err = result
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and lines[0].startswith("fundiff: error:"), err
    assert all(f in lines[0] for f in fragments), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """A 96x80 'photo' (not square, not 64 px: the loader crops and resizes it)."""
    g = torch.Generator().manual_seed(0)
    pixels = (torch.rand(80, 96, 3, generator=g) * 255).to(torch.uint8).numpy()
    path = tmp_path_factory.mktemp("img") / "campanile.jpg"
    Image.fromarray(pixels).save(path)
    return path


def _size(path: Path) -> tuple[int, int]:
    return Image.open(path).size


def test_embed_computes_and_merges(tmp_path, monkeypatch, capsys):
    tiny, cache = tiny_if(), tmp_path / "mine.safetensors"
    code, out, _ = fundiff(monkeypatch, capsys, "embed", "a photo of a cat", "", "--model", tiny.stage1,
                           "--cache", cache)
    assert code == 0 and "2 computed" in out
    assert set(load_cache(cache)) == {"a photo of a cat", ""} and load_cache(cache)[""].shape == (1, 77, 16)
    code, out, _ = fundiff(monkeypatch, capsys, "embed", "a photo of a cat", "--model", tiny.stage1_no_encoder,
                           "--cache", cache, "--merge", tiny.cache)
    assert code == 0 and "0 computed" in out and set(load_cache(cache)) == {*ASSIGNMENT_PROMPTS, "a photo of a cat"}


def test_part0_text_to_image_in_two_stages(tmp_path, monkeypatch, capsys):
    tiny = tiny_if()
    code, _, err = fundiff(monkeypatch, capsys, "generate", "--model", tiny.stage1, "--stage-2", tiny.stage2,
                           "--cache", tiny.cache, "--prompt", "a rocket ship", "--steps-1", 5, "--steps-2", 2,
                           "--n", 2, "--seed", 180, "--out", tmp_path / "p0")
    assert code == 0, err
    args = json.loads((tmp_path / "p0" / "args.json").read_text())
    assert args["sampling"]["steps"] == 5 and args["steps_2"] == 2 and args["stage_2"]["image_size"] == 256
    assert args["model"]["kind"] == "deepfloyd-IF-stage-I" and args["args"]["condition"] == "a rocket ship"
    assert _size(tmp_path / "p0" / "sample_00.png") == (64, 64)
    assert _size(tmp_path / "p0" / "sample_256_01.png") == (256, 256)


@pytest.mark.parametrize(("command", "expected"), [
    (["noise", "{img}"], ["noisy_256_t250.png", "noisy_256_t750.png"]),
    (["denoise", "{img}", "--t", 500], ["iterative_t500_256.png", "one_step_t500_256.png"]),
    (["edit", "{img}", "--i-start", 1, 3, "--prompt", "a rocket ship"], ["edit_i01_256.png", "edit_i03_256.png"]),
    (["inpaint", "{img}", "--box", 24, 2, 40, 30],
     ["inpainted_256_original.png", "inpainted_256_raw.png", "inpainted_256_naive_paste.png",
      "inpainted_256_laplacian_blend.png"]),
    (["anagram", "--prompt", "an oil painting of an old man", "--prompt",
      "an oil painting of people around a campfire", "--n", 1],
     ["anagram_256_00_identity.png", "anagram_256_00_flip.png"]),
    (["hybrid", "--low", "a lithograph of a skull", "--high", "a lithograph of waterfalls", "--n", 1],
     ["hybrid_256_00.png", "hybrid_256_00_far.png"]),
])
def test_upsample_on_every_command(tmp_path, monkeypatch, capsys, photo, command, expected):
    tiny = tiny_if()
    args = [str(photo) if a == "{img}" else a for a in command]
    extra = [] if command[0] == "noise" else ["--stride", 330]
    code, _, err = fundiff(monkeypatch, capsys, *args, "--model", tiny.stage1, "--stage-2", tiny.stage2, "--cache",
                           tiny.cache, "--upsample", "--steps-2", 1, *extra, "--out", tmp_path / "o")
    assert code == 0, err
    for name in expected:
        assert _size(tmp_path / "o" / name) == (256, 256), name
    files = json.loads((tmp_path / "o" / "args.json").read_text())["files"]
    assert all(name in files for name in expected)


def test_parta_writes_every_deliverable_and_resumes(tmp_path, monkeypatch, capsys, photo):
    tiny, out = tiny_if(), tmp_path / "parta"
    args = ["parta", "--model", tiny.stage1, "--stage-2", tiny.stage2, "--cache", tiny.cache, "--image", photo,
            "--steps-1", 3, "--steps-2", 1, "--stride", 45, "--n", 2, "--out", out]
    code, stdout, err = fundiff(monkeypatch, capsys, *args)
    assert code == 0, err
    sections = sorted(str(p.parent.relative_to(out)) for p in out.rglob("args.json"))
    assert sections == sorted([*(f"0_text_to_image/steps3-{s}" for s in (
        "a_man_wearing_a_hat", "a_rocket_ship", "an_oil_painting_of_a_snowy_mountain_village")),
        "1.1_forward", "1.2-1.3_denoise", "1.4_iterative", "1.5_sampling", "1.6_cfg", "1.7_sdedit/test",
        "1.7.2_inpaint/test", "1.7.3_text/test", *(f"1.8_anagram/{p}" for p in (
            "1-an_old_man-people_around_a_campfire", "2-a_snowy_mountain_village-the_amalfi_cost",
            "3-waterfalls-a_skull")),
        *(f"1.9_hybrid/{p}" for p in ("1-a_skull-waterfalls", "2-a_dog-the_amalfi_cost",
                                      "3-a_man_wearing_a_hat-a_pencil"))])
    sdedit = json.loads((out / "1.7_sdedit/test/args.json").read_text())
    assert sdedit["args"]["i_start"] == [1, 3, 5, 7, 10, 20] and sdedit["guidance"] == 7.0 and sdedit["seed"] == 180
    assert sdedit["args"]["condition"] == "a high quality photo"
    assert json.loads((out / "1.5_sampling/args.json").read_text())["guidance"] == 1.0
    assert json.loads((out / "1.7.3_text/test/args.json").read_text())["args"]["condition"] == "a rocket ship"
    assert _size(out / "1.7.2_inpaint/test/inpainted_256_laplacian_blend.png") == (256, 256)
    inpainting = json.loads((out / "1.7.2_inpaint/test/args.json").read_text())
    assert inpainting["args"]["columns_256"] == ["original", "raw", "naive_paste", "laplacian_blend"]
    assert _size(out / "1.8_anagram/1-an_old_man-people_around_a_campfire/anagram_00_flip.png") == (64, 64)
    summary = json.loads((out / "parta.json").read_text())
    assert len(summary["ran"]) == 17 and summary["already_done"] == []
    (out / "1.6_cfg" / "args.json").unlink()  # as if interrupted there
    code, stdout, _ = fundiff(monkeypatch, capsys, *args)
    assert code == 0 and "1 sections written, 16 already done" in stdout


def test_uncached_prompt_without_text_encoder(tmp_path, monkeypatch, capsys):
    tiny = tiny_if()
    line = one_line_error(fundiff(monkeypatch, capsys, "generate", "--model", tiny.stage1_no_encoder, "--cache",
                                  tiny.cache, "--prompt", "a photo of a cat", "--stride", 330, "--out", tmp_path / "o"),
                          "no T5 text encoder", "fundiff embed 'a photo of a cat' --model deepfloyd")
    assert str(tiny.cache) in line


@pytest.mark.parametrize(("args", "fragments"), [
    (["generate", "--upsample", "--class", 3, "--steps", 5], ["--upsample", "stage II"]),
    (["generate", "--model", "deepfloyd:IF-I-Q-v1.0"], ["unknown DeepFloyd stage I model"]),
    (["generate", "--model", "{stage1}", "--stage-2", "{stage1}", "--steps-2", 1, "--stride", 330],
     ["not DeepFloyd stage II"]),
    (["generate", "--model", "{stage1}", "--offload", "--device", "cpu"], ["--offload", "cuda"]),
    (["generate", "--model", "{stage1}", "--dtype", "fp8"], ["--dtype"]),
    (["embed", "--cache", "{tmp}/x.json", "--model", "{stage1}", "a"], [".pth", ".safetensors"]),
    (["parta", "--model", "digits", "--image", "{img}"], ["not a prompt model"]),
    (["parta", "--model", "{stage1}", "--image", "{tmp}/missing.png"], ["no such image file"]),
])
def test_one_line_errors(tmp_path, monkeypatch, capsys, photo, args, fragments):
    tiny = tiny_if()
    subst = {"{stage1}": str(tiny.stage1), "{img}": str(photo)}
    args = [subst.get(a, str(a).replace("{tmp}", str(tmp_path))) for a in args]
    one_line_error(fundiff(monkeypatch, capsys, *args, "--cache", tiny.cache, "--out", tmp_path / "o")
                   if args[0] != "embed" else fundiff(monkeypatch, capsys, *args), *fragments)


def test_missing_weights_is_one_line(tmp_path, monkeypatch, capsys):
    import shutil

    shutil.copytree(tiny_if().stage1, tmp_path / "IF", ignore=shutil.ignore_patterns("diffusion_pytorch_model.*"))
    one_line_error(fundiff(monkeypatch, capsys, "generate", "--model", tmp_path / "IF", "--out", tmp_path / "o"),
                   "cannot load DeepFloyd")
