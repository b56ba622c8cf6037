"""End-to-end CLI runs of every Part A command on the shipped digit model, and their one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_error, run_cli
from PIL import Image

from fundiff.evaluate.drawings import draw_digit


@pytest.fixture(scope="module")
def images(tmp_path_factory, digits) -> dict[str, Path]:
    """A real MNIST digit (28x28 PNG), a drawn 7 (256x256, dark on white), a transparent drawing,
    a mask and a non-binary mask."""
    d = tmp_path_factory.mktemp("images")
    paths = {k: d / f"{k}.png" for k in ("digit", "drawn", "transparent", "mask", "grey_mask", "small_mask")}
    three = digits.images[(digits.labels == 3).nonzero()[0, 0], 0]
    Image.fromarray((three.numpy() * 255).astype(np.uint8)).save(paths["digit"])
    draw_digit(7).save(paths["drawn"])
    ink = np.asarray(draw_digit(1)) < 128
    rgba = np.zeros((256, 256, 4), np.uint8)
    rgba[ink, 3] = 255
    Image.fromarray(rgba, "RGBA").save(paths["transparent"])
    mask = np.zeros((28, 28), np.uint8)
    mask[:12] = 255
    Image.fromarray(mask).save(paths["mask"])
    Image.fromarray(mask // 2).save(paths["grey_mask"])
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(paths["small_mask"])
    (d / "not_an_image.png").write_text("hello")
    paths["broken"] = d / "not_an_image.png"
    return paths


def _ok(proc, out: Path) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "args.json").read_text())


def test_noise_and_denoise(images, tmp_path):
    rec = _ok(run_cli("noise", images["digit"], "--t", "75", "150", "225", "--out", tmp_path / "n"), tmp_path / "n")
    assert rec["args"]["t"] == [75, 150, 225] and rec["model"]["name"] == "digits"
    assert {"noisy_t75.png", "noise.png", "input.png"} <= set(rec["files"])
    out = tmp_path / "d"
    rec = _ok(run_cli("denoise", images["digit"], "--t", "150", "--class", "3", "--out", out), out)
    assert {"blur_t150.png", "one_step_t150.png", "iterative_t150.png", "strip_t150.png", "comparison.png"} <= set(
        rec["files"])
    assert rec["args"]["columns"] == ["original", "noisy", "blur", "one_step", "iterative"]


FAST = ("--stride", "9")
"""The spec's 34-step Part A grid, where a test is not about the card's 300-step default."""


def test_generate_is_reproducible_to_the_byte(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        _ok(run_cli("generate", "--class", "5", "--n", "3", "--seed", "4", "--gif", *FAST, "--out", out), out)
    assert (a / "samples.png").read_bytes() == (b / "samples.png").read_bytes()
    assert (a / "samples.gif").is_file() and (a / "strip.png").is_file()
    with Image.open(a / "sample_00.png") as im:
        assert im.size == (28, 28)


def test_edit_takes_drawings_and_photos(images, tmp_path):
    # the digit model's own grid is DPM-Solver's 20 steps (299, 284, ..., 15); --stride 9 is the spec's 34-step
    # Part A grid (297, 288, ...)
    for name, grid, t_start in (("drawn", (), [224, 150]), ("transparent", ("--stride", "9"), [252, 207])):
        out = tmp_path / name
        rec = _ok(run_cli("edit", images[name], "--i-start", "5", "10", "--prompt", "7", *grid, "--out", out), out)
        assert rec["args"]["fit"] is True and rec["args"]["i_start"] == [5, 10]
        assert rec["args"]["t_start"] == t_start
        assert (out / "edit_i05.png").is_file()
        with Image.open(out / "input.png") as im:
            a = np.asarray(im)
        assert a[0].mean() < 30 and a.max() > 200, "drawings become light strokes on dark, like MNIST"


def test_inpaint_keeps_the_outside_pixels(images, tmp_path):
    for args in (("--mask", images["mask"]), ("--box", "0", "0", "28", "12")):
        out = tmp_path / args[0].strip("-")
        rec = _ok(run_cli("inpaint", images["digit"], *args, "--class", "8", *FAST, "--out", out), out)
        assert rec["args"]["condition"] == 8
        src = np.asarray(Image.open(out / "input.png"))
        res = np.asarray(Image.open(out / "inpainted.png"))
        assert np.array_equal(src[12:], res[12:]), "every pixel outside the mask is the original"


def test_anagram_and_hybrids(tmp_path):
    out = tmp_path / "a"
    rec = _ok(run_cli("anagram", "--prompt", "6", "--prompt", "9", "--views", "rotate_180", "--n", "2", *FAST, "--out",
                      out), out)
    assert rec["args"]["views"] == ["identity", "rotate_180"] and "anagram_00_rotate_180.png" in rec["files"]
    out = tmp_path / "h"
    rec = _ok(run_cli("hybrid", "--low", "0", "--high", "1", "--n", "2", *FAST, "--out", out), out)
    assert rec["args"]["kernel"] == 33 and rec["args"]["sigmas"] == [1.75]  # the default below 64 px
    out = tmp_path / "h3"
    rec = _ok(run_cli("hybrid", "--low", "0", "--mid", "8", "--high", "1", "--sigma", "3", "1", "--n", "1", *FAST,
                      "--out", out), out)
    assert rec["args"]["conditions"] == [0, 8, 1] and rec["args"]["sigmas"] == [3.0, 1.0]


@pytest.mark.parametrize("args, fragment", [
    (("edit", "{broken}"), "cannot read image"),
    (("edit", "{missing}"), "cannot read image"),
    (("inpaint", "{digit}", "--mask", "{grey_mask}"), "not binary"),
    (("inpaint", "{digit}", "--mask", "{small_mask}"), "10x10"),
    (("inpaint", "{digit}"), "--mask"),
    (("anagram", "--prompt", "1", "--prompt", "2", "--views", "spin"), "known views: identity"),
    (("generate", "--model", "nope"), "unknown model 'nope'"),
    (("edit", "{digit}", "--i-start", "20"), "i_start 20 is outside 0..19"),
    (("edit", "{digit}", "--stride", "9", "--i-start", "34"), "i_start 34 is outside 0..33"),
    (("edit", "{digit}", "--i-start", "-1"), "i_start -1"),
    (("generate", "--class", "10"), "class 10 is outside 0-9"),
    (("generate", "--prompt", "a rocket ship"), "class-conditioned"),
    (("generate", "--prompt", "3", "--class", "3"), "not both"),
    (("generate", "--stride", "0"), "stride"),
    (("noise", "{digit}", "--t", "300"), "timestep 300"),
    (("denoise", "{digit}", "--method", "magic"), "unknown method"),
    (("inpaint", "{digit}", "--box", "0", "0", "40", "5"), "box"),
    (("generate", "--variance", "learned"), "no learned variance"),
    (("generate", "--variance", "wide"), "unknown variance 'wide'"),
    (("generate", "--guidance-interval", "0.9,0.5"), "--guidance-interval"),
    (("generate", "--stride", "3", "--steps", "5"), "not both"),
    (("generate", "--sampler", "euler"), "DDPM model: use --sampler ddpm, ddim or dpmpp-2m"),
])
def test_bad_input_is_one_error_line(images, tmp_path, args, fragment):
    subst = {k: str(v) for k, v in images.items()} | {"missing": str(tmp_path / "missing.png")}
    proc = run_cli(*(a.format(**subst) for a in args), "--out", tmp_path / "out")
    assert_one_line_error(proc, fragment)
    assert not (tmp_path / "out" / "args.json").exists()


def test_an_existing_output_is_not_overwritten(tmp_path):
    out = tmp_path / "g"
    _ok(run_cli("generate", "--n", "1", *FAST, "--out", out), out)
    before = (out / "samples.png").read_bytes()
    assert_one_line_error(run_cli("generate", "--n", "1", "--seed", "9", "--out", out), "--force")
    assert (out / "samples.png").read_bytes() == before


def test_generate_equals_sample_for_the_same_seed(tmp_path):
    """One generation path: `generate --class 7 --n 2` and `sample digits --classes 7 --per-class 2` use the same
    card defaults (DDPM over all 300 steps, beta variance, clip, CFG 5 on 0.5-0.9), so the same seed gives the
    same images."""
    g, s = tmp_path / "g", tmp_path / "s"
    rec = _ok(run_cli("generate", "--class", "7", "--n", "2", "--seed", "1", "--out", g), g)
    proc = run_cli("sample", "digits", "--classes", "7", "--per-class", "2", "--seed", "1", "--out", s)
    assert proc.returncode == 0, proc.stderr
    npz = np.load(s / "samples.npz")
    assert npz["labels"].tolist() == [7, 7] and npz["images"].shape == (2, 28, 28)
    for i in range(2):
        png = np.asarray(Image.open(g / f"sample_{i:02d}.png"))
        assert png.shape == (28, 28) and np.array_equal(png, npz["images"][i]), i
    meta = json.loads((s / "sample.json").read_text())
    assert meta["sampling"] == rec["sampling"]
    assert (rec["sampling"]["sampler"], rec["sampling"]["steps"], rec["sampling"]["stride"]) == ("dpmpp-2m", 20, None)
    assert rec["sampling"]["guidance"] == 5 and rec["sampling"]["guidance_interval"] == [0.5, 0.9]


def test_default_output_folder_names_the_settings_given(images, tmp_path):
    """outputs/COMMAND-STEM-<settings given>-sSEED, with the stem and settings made safe for a file name."""
    proc = run_cli("generate", "--class", "7", "--n", "1", "--steps", "3", "--guidance", "3", "--seed", "2",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    odd = tmp_path / "My Digit (3)!.png"
    odd.write_bytes(images["digit"].read_bytes())
    proc = run_cli("noise", odd, "--t", "10", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in (tmp_path / "outputs").iterdir())
    assert names == ["generate-class7-steps3-g3-s2", "noise-my_digit_3-s0"], names
    for name in names:
        assert (tmp_path / "outputs" / name / "args.json").is_file()


def test_sampling_options_override_the_card(tmp_path):
    """Every sampling option given replaces the card's; the rest stay the card's; args.json records them all."""
    out = tmp_path / "g"
    rec = _ok(run_cli("generate", "--class", "2", "--n", "1", "--sampler", "ddpm", "--steps", "3", "--variance",
                      "posterior", "--no-clip",
                      "--guidance", "2", "--guidance-interval", "0,1", "--classifier-scale", "7", "--out", out), out)
    assert rec["sampling"] == {"sampler": "ddpm", "steps": 3, "stride": None, "variance": "posterior", "clip": False,
                               "guidance": 2.0, "guidance_interval": [0.0, 1.0], "classifier_scale": 7.0}
    assert rec["guidance"] == 2.0 and rec["model"]["sampling"]["guidance"] == 5.0


def test_option_groups_in_help():
    proc = run_cli("generate", "--help")
    assert proc.returncode == 0, proc.stderr
    for flag in ("--model", "--prompt-cache", "--cache", "--guidance", "--guidance-interval", "--sampler", "--steps",
                 "--stride", "--variance", "--clip", "--no-clip", "--seed", "--out", "--force", "--upsample",
                 "--classifier-scale"):
        assert flag in proc.stdout, flag
    proc = run_cli("sample", "--help")
    assert proc.returncode == 0 and "--guidance-interval" in proc.stdout and "--variance" in proc.stdout


def test_force_replaces_an_earlier_run(tmp_path):
    """--force writes into a folder holding an earlier run's files, and (as its help says) they are removed."""
    out = tmp_path / "g"
    _ok(run_cli("generate", "--n", "2", "--steps", "2", "--out", out), out)
    rec = _ok(run_cli("generate", "--n", "1", "--steps", "2", "--seed", "1", "--force", "--out", out), out)
    assert rec["seed"] == 1
    assert sorted(p.name for p in out.iterdir()) == sorted(["args.json", *rec["files"]])
