"""``fundiff report`` end to end: the smoke profile (tiny nets, real data, the shipped digit model) with tiny
DeepFloyd IF models, through the command line in this process. The page is opened in headless chromium;
screenshots at laptop and phone widths go to test-artifacts/."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest
from browser import assert_page_ok, check_page, chromium_available, missing_reason
from helpers import fundiff_in_process
from tiny_if import tiny_if

from fundiff.cli.app import main
from fundiff.report import parta_digits
from fundiff.report.runner import STATE, read_marker
from fundiff.report.sections_a import SECTIONS

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
HEADINGS = [title for _, _, title, _, _ in SECTIONS] + [
    "Part A measured with the judge", "Part B: Diffusion models from scratch", "1.1 Implementing the UNet",
    "1.2 Using the UNet to train a denoiser", "1.2.1 Training", "1.2.2 Out-of-distribution testing",
    "1.2.3 Denoising pure noise", "2.1 Adding time conditioning to the UNet", "2.2 Training the UNet",
    "2.3 Sampling from the UNet", "2.4 Adding class-conditioning to the UNet",
    "2.5 Sampling from the class-conditioned UNet", "Extras", "Flow matching", "Removing the learning-rate scheduler",
    "DeepFloyd IF and stage-II upsampling", "Measurements", "Sample quality", "Stages and times"]


fundiff = fundiff_in_process


def _args(out: Path) -> list:
    tiny = tiny_if()
    return ["report", "--profile", "smoke", "--out", out, "--deepfloyd", tiny.stage1, "--stage-2", tiny.stage2,
            "--prompt-cache", tiny.cache]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The smoke report, built once (about 3 minutes on one thread)."""
    out = tmp_path_factory.mktemp("report") / "r"
    mp = pytest.MonkeyPatch()
    mp.setattr(sys, "argv", ["fundiff", *map(str, _args(out))])
    try:
        main()
    except SystemExit as e:
        assert not e.code, e
    finally:
        mp.undo()
    return out


def test_report_writes_the_page_record_and_log(built):
    html = (built / "index.html").read_text()
    assert all(h.split(" (")[0].replace("'", "&#x27;") in html for h in HEADINGS)
    record = json.loads((built / "report.json").read_text())
    assert record["kind"] == "fundiff-report" and record["profile"] == "smoke"
    assert record["command"].startswith("fundiff report --out")
    assert record["stages"]["train/class-ddpm"]["reused"] is False
    log = (built / "report.log").read_text()
    n = len(record["stages"])
    assert f"[1/{n}]" in log and f"all {n} stages finished" in log and n >= 30
    assert (built / "assets" / "katex" / "katex.min.js").is_file()
    assert "https://" not in html and "http://" not in html


def test_every_deliverable_has_its_picture(built):
    html = (built / "index.html").read_text()
    for f in ("parta/1.8/anagrams.png", "parta/1.9/hybrids.png", "parta/1.7.2/inpainting.png",
              "partb/denoiser/denoiser_ood_sigmas.png", "partb/class-ddpm/class-ddpm_epoch_001.gif",
              "partb/learning-rate/loss_comparison.png", "deepfloyd/1.8_anagram/"):
        assert f in html, f
    assert "not run" not in html.split('id="deepfloyd"')[1][:2000]  # the tiny IF models ran
    for sid, nxt in (("a-1-8", "a-1-9"), ("a-1-9", "a-measured")):  # typical pictures with the measured rate
        part = html.split(f'id="{sid}"')[1].split(f'id="{nxt}"')[0]
        assert "typical results, not picked" in part and "over 1 of the 90 ordered pairs" in part, sid
        assert "(95% CI " in part and "1 image)" in part, sid
    measured = html.split('id="a-measured"')[1].split('id="part-b"')[0]
    assert "digits 95% CI" in measured and "three-view anagram" in measured
    assert "parta/evaluate/digits/hybrid.png" in measured and "parta/evaluate/digits/anagram_3view.png" in measured


def test_rerun_reuses_everything_quickly(built, monkeypatch, capsys):
    t0 = time.perf_counter()
    code, _, err = fundiff(monkeypatch, capsys, *_args(built))
    assert code == 0, err
    assert time.perf_counter() - t0 < 30
    record = json.loads((built / "report.json").read_text())
    assert all(s["reused"] for s in record["stages"].values())


def test_an_interrupted_stage_continues_on_rerun(built, tmp_path, monkeypatch, capsys):
    out = tmp_path / "copy"
    shutil.copytree(built, out)
    args = _args(out)
    (out / STATE / "stages" / "parta__1.8.json").unlink()  # as if killed during 1.8
    (out / "parta" / "1.8" / "anagrams.png").write_bytes(b"half")

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(parta_digits, "anagrams", interrupted)
    code, _, err = fundiff(monkeypatch, capsys, *args)
    assert code == 130 and "interrupted" in err
    assert read_marker(out, "parta/1.8") is None
    monkeypatch.undo()
    code, _, err = fundiff(monkeypatch, capsys, *args)
    assert code == 0, err
    stages = json.loads((out / "report.json").read_text())["stages"]
    assert [n for n, s in stages.items() if not s["reused"]] == ["parta/1.8"]
    from PIL import Image

    assert Image.open(out / "parta" / "1.8" / "anagrams.png").size[0] > 100


@pytest.mark.parametrize("args, fragment", [
    (["--profile", "fast"], "unknown profile"),
    (["--data", "cifar"], "unknown data set"),
    (["--data-dir", "/nonexistent"], "is not a directory"),
])
def test_bad_options_are_one_line_errors(tmp_path, monkeypatch, capsys, args, fragment):
    code, _, err = fundiff(monkeypatch, capsys, "report", "--out", tmp_path / "r", *args)
    assert code == 2 and err.count("\n") == 1 and fragment in err, err
    assert not (tmp_path / "r").exists()


def test_other_settings_or_a_foreign_folder_are_refused(built, tmp_path, monkeypatch, capsys):
    code, _, err = fundiff(monkeypatch, capsys, "report", "--out", built, "--profile", "smoke", "--seed", "1")
    assert code == 2 and "other settings" in err and "--force" in err
    (tmp_path / "mine.txt").write_text("keep me")
    code, _, err = fundiff(monkeypatch, capsys, "report", "--out", tmp_path, "--profile", "smoke")
    assert code == 2 and "holds no fundiff report" in err
    assert (tmp_path / "mine.txt").read_text() == "keep me"


@pytest.mark.skipif(not chromium_available() and not os.environ.get("CI"), reason=missing_reason())
def test_page_in_a_headless_browser(built):
    result = check_page(built / "index.html", ARTIFACTS, "report", HEADINGS)
    assert_page_ok(result, HEADINGS)
    assert result["katex_count"] >= 15
    for shot in result["screenshots"].values():
        assert Path(shot).stat().st_size > 10_000
