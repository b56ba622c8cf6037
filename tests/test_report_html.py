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
from fundiff.report.runner import StageResult


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


def _rate(hits: int, images: int, lo: float, hi: float) -> dict:
    return {"rate": round(hits / images, 4), "hits": hits, "images": images, "ci95": [lo, hi]}


def _evaluation(models: tuple[str, ...] = ("digits", "fashion")) -> StageResult:
    """A fake ``parta/evaluate`` stage record in the layout of ``run_evaluate_models``."""
    def one(k: int) -> dict:
        r = _rate(56 + k, 180, 0.25, 0.38)
        res = {"edit": {"i_start": 8, "t_start": 225, **_rate(150, 200, 0.69, 0.80)},
               **{f"anagram_{v}": {"views": ["identity", v], "both": r} for v in
                  ("transpose", "flip", "rotate_90", "rotate_180")},
               "anagram_3view": {"all": _rate(20, 180, 0.07, 0.17)},
               "hybrid": {"kernel": 33, "sigma": 1.75, "shrink_px": 9, "near": r, "both_shrunk": r,
                          "both_lowpass": _rate(30, 180, 0.12, 0.23)}}
        if k == 0:
            res["drawn"] = {"images": 30, "raw_accuracy": 0.9, "edited": {"24": {"t_start": 81, "accuracy": 0.8}}}
        return res
    results = {m: one(k) for k, m in enumerate(models)}
    return StageResult("parta/evaluate", {"models": list(models)}, {"pairs": 90, "per_pair": 2, "per_target": 20,
                                                                    "results": results}, 1.0)


def _anagram_stage() -> StageResult:
    rec = {"file": "anagrams.png", "caption": "Visual anagrams; typical results, not picked.", "settings": {"seed": 0},
           "measured": {"model": "digits", "what": "both readings at once",
                        "rates": [["anagram_flip", "both", "flip"], ["anagram_rotate_90", "both", "rotate 90"]]}}
    return StageResult("parta/1.8", {}, {"figures": [rec]}, 1.0)


def _caption(res: dict, sid: str = "a-1-8") -> str:
    from fundiff.report import sections_a

    (fig,) = next(s for s in sections_a.part_a(res, Path("out")) if s.id == sid).figures
    return fig.caption


def test_picture_captions_quote_the_measured_rate_when_the_evaluation_ran() -> None:
    with_eval = _caption({"parta/1.8": _anagram_stage(), "parta/evaluate": _evaluation()})
    assert with_eval.startswith("Visual anagrams; typical results, not picked. Measured on the digits model")
    assert ("over all 90 ordered pairs, 2 images each, both readings at once: flip 0.31 (95% CI 0.25-0.38, 180 "
            "images); rotate 90 0.31 (95% CI 0.25-0.38, 180 images).") in with_eval
    assert with_eval.endswith("Settings: seed 0.")
    without = _caption({"parta/1.8": _anagram_stage()})
    assert without == "Visual anagrams; typical results, not picked. Settings: seed 0."
    assert "95% CI" not in without


def test_measured_table_has_a_column_group_per_model(tmp_path: Path) -> None:
    from fundiff.report import sections_a

    s = sections_a.measured({"parta/evaluate": _evaluation()}, tmp_path)
    rates, drawn = s.tables
    assert rates.header == ["measure", "digits rate", "digits 95% CI", "digits images", "fashion rate",
                            "fashion 95% CI", "fashion images"]
    rows = {r[0]: r[1:] for r in rates.rows}
    assert [r[0] for r in rates.rows][1:5] == [f"anagram, {v}: both readings at once"
                                              for v in ("flip", "rotate 90", "rotate 180", "transpose")]
    assert rows["class edit (SDEdit toward a class), the target read"][:3] == ["0.75", "0.69-0.80", "200"]
    assert rows["anagram, flip: both readings at once"] == ["0.31", "0.25-0.38", "180", "0.32", "0.25-0.38", "180"]
    assert rows["three-view anagram (upright, rotate 90, rotate 180): all three at once"][:3] == ["0.11", "0.07-0.17",
                                                                                                 "180"]
    assert rows["hybrid: near & far, far = shrunk to 9 px and enlarged"][0] == "0.31"
    assert rows["hybrid: near & far, far = the low-pass copy"][:3] == ["0.17", "0.12-0.23", "180"]
    assert [r[0] for r in drawn.rows] == ["digits: pen drawings"]  # fashion draws clothes: no drawings
    none = sections_a.measured({}, tmp_path)
    assert not none.tables and "Not measured" in none.notes[0]


def test_the_learning_rate_section_says_when_report_004s_lr_runs_at_another_batch():
    from fundiff.report.sections_b import _batch_note

    def trained(batch: int) -> dict:
        return {"train/lr": StageResult("train/lr", {}, {"recipe": {"batch_size": batch}}, 1.0)}

    assert "this run trains at batch 16, with 4x the optimizer steps" in _batch_note(trained(16), "lr")[0]
    assert _batch_note(trained(64), "lr") == [] and _batch_note({}, "lr") == []
