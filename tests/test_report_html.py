"""The report page renderer: a small Page with every element kind, rendered into a temporary folder (fast)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from fundiff.errors import UserError
from fundiff.report import html
from fundiff.report.html import is_number, render
from fundiff.report.page import Figure, Page, Section, Table


def _png(path: Path, size: tuple[int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, 128).save(path)
    return path


def _gif(path: Path, size: tuple[int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [Image.new("P", size, i) for i in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def _page(out: Path) -> Page:
    grid = _png(out / "parta" / "sample grid.png", (56, 28))
    gif = _gif(out / "parta" / "samples.gif", (40, 30))
    loss = _png(out / "partb" / "loss_run.png", (320, 240))
    return Page(
        title="Fun With Diffusion Models",
        subtitle="A & B, offline",
        sections=[
            Section("part-a", "Part A", level=2, text=["Intro with `code <b>` and \\(x_t < 1 \\& y\\)."]),
            Section("forward", "The forward process", level=3,
                    text=["Beware <script>alert(1)</script> in text."],
                    formulas=["x_t = \\sqrt{\\bar\\alpha_t} x_0 + \\sqrt{1 - \\bar\\alpha_t}\\,\\epsilon, a<b"],
                    figures=[Figure(grid, "Digits, one per column", alt=""), Figure(gif, "The sampling", "A GIF")]),
            Section("detail", "A detail", level=4, notes=["not run: pass --deepfloyd to enable it"]),
            Section("part-b", "Part B", level=2, figures=[Figure(loss, "Training loss")],
                    tables=[Table(["run", "loss", "time"], [["exp", "0.0123", "12.5 s"], ["const", "1,024", "—"]],
                                  caption="Runs")]),
        ],
        footer=["Made with fundiff 0.1.0"],
    )


@pytest.fixture
def rendered(tmp_path: Path) -> tuple[Path, str]:
    out = tmp_path / "report"
    index = render(_page(out), out)
    return index, index.read_text(encoding="utf-8")


def test_page_structure(rendered: tuple[Path, str]) -> None:
    index, text = rendered
    assert index.name == "index.html" and index.is_file()
    for sid, tag in [("part-a", "h2"), ("forward", "h3"), ("detail", "h4"), ("part-b", "h2")]:
        assert f'<{tag} id="{sid}">' in text
        assert f'href="#{sid}"' in text
    toc = text[text.index('<nav class="toc"'):text.index("</nav>")]
    assert "#forward" in toc and "#detail" not in toc  # level 4 is not in the contents
    assert "<h1>Fun With Diffusion Models</h1>" in text and "A &amp; B, offline" in text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in text
    assert '<meta charset="utf-8">' in text and "<title>Fun With Diffusion Models</title>" in text
    assert "<footer>" in text and "Made with fundiff 0.1.0" in text


def test_figures(rendered: tuple[Path, str]) -> None:
    _, text = rendered
    grid = '<img src="parta/sample%20grid.png" width="56" height="28" alt="Digits, one per column" class="pixel">'
    assert grid in text
    assert '<img src="parta/samples.gif" width="40" height="30" alt="A GIF" class="pixel">' in text
    assert '<img src="partb/loss_run.png" width="320" height="240" alt="Training loss">' in text
    assert 'loading="lazy"' not in text
    assert text.count('<div class="figures">') == 1  # two figures share a grid; the lone one does not
    assert "<figcaption>The sampling</figcaption>" in text


def test_text_is_escaped_code_and_maths_kept(rendered: tuple[Path, str]) -> None:
    _, text = rendered
    assert "<script>alert" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<code>code &lt;b&gt;</code>" in text
    assert "\\(x_t &lt; 1 \\&amp; y\\)" in text
    assert '<div class="formula">\\[ x_t = \\sqrt{\\bar\\alpha_t} x_0' in text and "a&lt;b \\]</div>" in text


def test_notes_and_tables(rendered: tuple[Path, str]) -> None:
    _, text = rendered
    assert '<div class="note" role="note">not run: pass --deepfloyd to enable it</div>' in text
    assert '<div class="table-wrap"' in text and '<p class="table-caption">Runs</p>' in text
    assert '<td class="num">0.0123</td>' in text and '<td class="num">1,024</td>' in text
    assert '<td class="num">12.5 s</td>' in text and "<td>exp</td>" in text and "<td>—</td>" in text
    assert '<th scope="col" class="num">loss</th>' in text and '<th scope="col">run</th>' in text


@pytest.mark.parametrize("cell,expected", [("3", True), ("-0.5", True), ("1e-4", True), ("12,345", True),
                                           ("97.5%", True), ("0.12 ± 0.03", True), ("3.2 s", True),
                                           ("", False), ("exp", False), ("v1", False), ("2024-01-02", False)])
def test_is_number(cell: str, expected: bool) -> None:
    assert is_number(cell) is expected


def test_no_network_references(rendered: tuple[Path, str]) -> None:
    _, text = rendered
    assert "http://" not in text and "https://" not in text and "//cdn" not in text
    for ref in re.findall(r'(?:src|href)="([^"#]+)"', text):
        assert ref.startswith(("assets/", "parta/", "partb/", "data:")), ref


def test_scripts_and_katex(rendered: tuple[Path, str]) -> None:
    index, text = rendered
    if not html.KATEX_DIR.is_dir():
        pytest.skip("KaTeX is not vendored")
    assert '<link rel="stylesheet" href="assets/katex/katex.min.css">' in text
    assert text.index('<script defer src="assets/katex/katex.min.js">') < text.index("renderMathInElement(")
    assert '<script defer src="assets/katex/auto-render.min.js"></script>' in text
    assert '{left: "\\\\[", right: "\\\\]", display: true}' in text
    for name in ("katex.min.css", "katex.min.js", "auto-render.min.js"):
        assert (index.parent / "assets" / "katex" / name).read_bytes() == (html.KATEX_DIR / name).read_bytes()
    assert list((index.parent / "assets" / "katex" / "fonts").glob("*.woff2"))


def test_assets_copied_only_when_missing_or_different(tmp_path: Path) -> None:
    src = tmp_path / "katex"
    _write(src / "katex.min.js", "js")
    _write(src / "fonts" / "a.woff2", "font")
    out = tmp_path / "out"
    render(Page("T"), out, katex=src)
    dst = out / "assets" / "katex"
    assert (dst / "fonts" / "a.woff2").read_text() == "font"
    _write(dst / "katex.min.js", "stale")
    mtime = (dst / "fonts" / "a.woff2").stat().st_mtime_ns
    render(Page("T"), out, katex=src)
    assert (dst / "katex.min.js").read_text() == "js"
    assert (dst / "fonts" / "a.woff2").stat().st_mtime_ns == mtime  # unchanged file not rewritten
    assert not [p for p in dst.rglob("*") if p.name.startswith(".")]  # no temporary files left


def test_without_katex_the_page_still_renders(tmp_path: Path) -> None:
    index = render(Page("T", sections=[Section("a", "A", formulas=["x"])]), tmp_path, katex=tmp_path / "none")
    text = index.read_text(encoding="utf-8")
    assert "assets/katex" not in text and "\\[ x \\]" in text and not (tmp_path / "assets").exists()


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_deterministic(tmp_path: Path) -> None:
    out = tmp_path / "report"
    first = render(_page(out), out).read_bytes()
    second = render(_page(out), out).read_bytes()
    assert first == second


def test_figure_outside_or_missing_raises(tmp_path: Path) -> None:
    out = tmp_path / "report"
    outside = _png(tmp_path / "elsewhere.png", (10, 10))
    with pytest.raises(UserError, match="outside"):
        render(Page("T", sections=[Section("a", "A", figures=[Figure(outside, "x")])]), out)
    with pytest.raises(UserError, match="does not exist"):
        render(Page("T", sections=[Section("a", "A", figures=[Figure(out / "gone.png", "x")])]), out)
    (out / "bad.png").write_text("not an image")
    with pytest.raises(UserError, match="not a readable image"):
        render(Page("T", sections=[Section("a", "A", figures=[Figure(out / "bad.png", "x")])]), out)
    assert not (out / "index.html").exists()


def test_bad_sections_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="used twice"):
        render(Page("T", sections=[Section("a", "A"), Section("a", "B")]), tmp_path)
    with pytest.raises(ValueError, match="level"):
        render(Page("T", sections=[Section("a", "A", level=5)]), tmp_path)
