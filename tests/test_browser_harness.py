"""The headless-browser harness (tests/browser.py) on small hand-made pages: it flags what is wrong, passes the rest."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import assert_page_ok, check_page, chromium_available, launch_browser, missing_reason
from PIL import Image

import fundiff

KATEX = Path(fundiff.__file__).parent / "report" / "assets" / "katex"

# Skip locally without a browser; under CI (which installs chromium and playwright) run anyway and fail loudly.
pytestmark = pytest.mark.skipif(not chromium_available() and not os.environ.get("CI"), reason=missing_reason())

HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>harness</title>
<link rel="stylesheet" href="assets/katex/katex.min.css">
<script defer src="assets/katex/katex.min.js"></script>
<script defer src="assets/katex/auto-render.min.js"></script>
<script>
document.addEventListener("DOMContentLoaded", () => renderMathInElement(document.body, {
  delimiters: [{left: "\\\\[", right: "\\\\]", display: true}, {left: "\\\\(", right: "\\\\)", display: false}],
  throwOnError: false,
}));
</script>
<style>body { font-family: sans-serif; max-width: 60rem; margin: 0 auto; padding: 1rem; }
img { max-width: 100%; } .katex-display { overflow-x: auto; overflow-y: hidden; }</style>
</head><body>
"""
MATHS = r"""<h2>Forward process</h2>
<h3>Noising</h3>
<p>The schedule \( \bar\alpha_t \) shrinks the clean image:</p>
<p>\[ x_t = \sqrt{\bar\alpha_t} x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon \]</p>
"""
IMAGES = '<img src="figure.png" alt="png"><img src="anim.gif" alt="gif">\n'


def write_page(root: Path, body: str) -> Path:
    """Write a page using the vendored KaTeX (copied next to it) plus a PNG and a GIF; return its path."""
    if not (root / "assets" / "katex").exists():
        shutil.copytree(KATEX, root / "assets" / "katex")
    Image.new("RGB", (64, 48), (200, 30, 30)).save(root / "figure.png")
    frames = [Image.new("P", (32, 32), i * 40) for i in range(3)]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    page = root / "page.html"
    page.write_text(HEAD + body + "</body></html>\n", encoding="utf-8")
    return page


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One chromium for the whole module."""
    with launch_browser() as b:
        yield b


def is_png(path: Path) -> bool:
    """A non-empty file with the PNG signature."""
    return path.is_file() and path.stat().st_size > 100 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_good_page_passes(tmp_path: Path, browser: Any) -> None:
    page = write_page(tmp_path, MATHS + IMAGES)
    result = check_page(page, tmp_path / "shots", "good", ["Forward process", "Noising"], browser=browser)
    assert_page_ok(result, ["Forward process", "Noising"])
    assert result["katex_count"] >= 2
    assert result["headings"] == ["Forward process", "Noising"]
    assert result["has_viewport_meta"]
    for kind in ("laptop", "phone"):
        assert is_png(tmp_path / "shots" / f"good-{kind}.png"), kind
    with Image.open(tmp_path / "shots" / "good-phone.png") as im:
        assert im.width == 390 * 2  # device_scale_factor 2
    with pytest.raises(AssertionError, match="headings"):
        assert_page_ok(result, ["Reverse process"])


def test_missing_image_is_broken(tmp_path: Path, browser: Any) -> None:
    page = write_page(tmp_path, MATHS + IMAGES + '<img src="nope.png" alt="missing">\n')
    result = check_page(page, tmp_path, "missing", [], browser=browser)
    assert result["broken_images"] == ["nope.png"]
    assert any("nope.png" in r for r in result["failed_requests"])
    with pytest.raises(AssertionError, match="did not load"):
        assert_page_ok(result, [])


def test_script_errors_are_caught(tmp_path: Path, browser: Any) -> None:
    body = MATHS + '<script>console.error("bad thing");</script>\n<script>throw new Error("x");</script>\n'
    result = check_page(write_page(tmp_path, body), tmp_path, "js", [], browser=browser)
    assert any("bad thing" in e for e in result["console_errors"])
    assert any("x" in e for e in result["page_errors"])
    with pytest.raises(AssertionError, match=r"(?s)console errors.*bad thing.*script errors"):
        assert_page_ok(result, [])


def test_malformed_latex_is_a_katex_error(tmp_path: Path, browser: Any) -> None:
    body = MATHS + r"<p>\[ \frac{1}{\notacommand} \]</p><p>\( \left( x \)</p>" + "\n"
    result = check_page(write_page(tmp_path, body), tmp_path, "latex", [], browser=browser)
    assert result["katex_error_count"] == 1, result["katex_error_texts"]
    assert result["katex_unknown_commands"] == ["\\notacommand"]
    assert result["katex_count"] > 0
    with pytest.raises(AssertionError, match=r"(?s)KaTeX errors.*unknown LaTeX commands"):
        assert_page_ok(result, [])


def test_external_request_is_reported_not_fetched(tmp_path: Path, browser: Any) -> None:
    body = MATHS + '<img src="https://example.com/remote.png" alt="remote">\n'
    result = check_page(write_page(tmp_path, body), tmp_path, "external", [], browser=browser)
    assert result["external_requests"] == ["https://example.com/remote.png"]
    assert not result["console_errors"]  # the harness's own abort is not reported twice
    with pytest.raises(AssertionError, match="self-contained"):
        assert_page_ok(result, [])


def test_phone_overflow_is_reported(tmp_path: Path, browser: Any) -> None:
    body = MATHS + '<div style="width: 900px; height: 10px">wide</div>\n'
    result = check_page(write_page(tmp_path, body), tmp_path, "wide", [], browser=browser)
    assert result["phone_overflow"]
    assert any(e.startswith("div") for e in result["phone_wide_elements"])
    with pytest.raises(AssertionError, match="sideways"):
        assert_page_ok(result, [])
