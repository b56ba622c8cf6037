"""Render a :class:`~fundiff.report.page.Page` as one self-contained HTML file, ``DIR/index.html``.

The page opens from disk with no network: KaTeX (vendored in ``report/assets/katex``) is copied to
``DIR/assets/katex`` and renders the maths in the browser, the CSS (``report/style.css``) is inlined, and figures
are referenced by their paths relative to DIR, so they must lie inside it (a relative figure path is taken from the
current directory, like any path). The output depends only on the page and the files: rendering twice gives the
same bytes.

Text (titles, paragraphs, captions, cells, notes, footer) is HTML-escaped; in it, `backticks` mark inline code and
``\\(`` ... ``\\)`` inline maths, left for KaTeX's auto-render. A formula is display maths, ``\\[`` ... ``\\]``.

Pixel art: every image gets class "pixel" (CSS ``image-rendering: pixelated``: digit grids and their GIFs stay crisp
when scaled) unless its file name starts with "loss" or "plot", the matplotlib plots, which scale smoothly and
take a whole row of a figure grid (their <figure> has class "plot").
"""

from __future__ import annotations

import filecmp
import re
import shutil
from html import escape
from pathlib import Path
from urllib.parse import quote

from PIL import Image

from fundiff.errors import UserError
from fundiff.io.files import atomic_write
from fundiff.report.page import Figure, Page, Section, Table

KATEX_DIR = Path(__file__).parent / "assets" / "katex"
CSS_FILE = Path(__file__).parent / "style.css"
SMOOTH_PREFIXES = ("loss", "plot")
"""Images whose file name starts with one of these are plots: no "pixel" class."""

_INLINE = re.compile(r"(\\\(.*?\\\)|`[^`\n]+`)", re.DOTALL)
_NUM = r"[+\-\u2212]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:[eE][+\-]?\d+)?"
_NUMBER = re.compile(rf"{_NUM}(?:\s*(?:\u00b1|\+/-)\s*{_NUM})?\s*(?:%|\u00d7|x|s|ms)?")
_NUM_CLS = ' class="num"'
_SCRIPT = r"""<script>
document.addEventListener("DOMContentLoaded", function () {
  var toc = document.querySelector(".toc details");
  if (toc && window.matchMedia("(max-width: 600px)").matches) toc.open = false;
  if (typeof renderMathInElement === "function") {
    renderMathInElement(document.body, {delimiters: [{left: "\\[", right: "\\]", display: true},
      {left: "\\(", right: "\\)", display: false}], throwOnError: false});
  }
});
</script>"""


def render(page: Page, out_dir: Path, *, katex: Path = KATEX_DIR) -> Path:
    """Write ``out_dir/index.html`` (atomically) and the KaTeX assets beside it; returns the page's path.

    Raises :class:`UserError` when a figure is missing, unreadable or outside ``out_dir``. Without the KaTeX
    folder ``katex`` the page is still written, with its maths left as LaTeX source.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    has_katex = Path(katex).is_dir()
    text = page_html(page, out, katex=has_katex)
    if has_katex:
        copy_assets(Path(katex), out / "assets" / "katex")
    index = out / "index.html"
    atomic_write(index, lambda p: p.write_text(text, encoding="utf-8"))
    return index


def copy_assets(src: Path, dst: Path) -> None:
    """Copy the files under ``src`` to ``dst``, each one only when missing or different, each atomically."""
    for f in sorted(src.rglob("*")):
        if not f.is_file() or f.name.startswith("."):
            continue
        target = dst / f.relative_to(src)
        if not (target.is_file() and filecmp.cmp(f, target, shallow=False)):
            atomic_write(target, lambda p, f=f: shutil.copyfile(f, p))


def page_html(page: Page, out: Path, katex: bool = True) -> str:
    """The whole HTML document for ``page``, with figure paths relative to ``out``."""
    _check_sections(page.sections)
    body = [f"<header>\n<h1>{inline(page.title)}</h1>"]
    if page.subtitle:
        body.append(f'<p class="subtitle">{inline(page.subtitle)}</p>')
    body += ["</header>", toc_html(page.sections), "<main>"]
    body += [section_html(s, out) for s in page.sections]
    body.append("</main>")
    if page.footer:
        body.append("<footer>\n" + "\n".join(f"<p>{inline(line)}</p>" for line in page.footer) + "\n</footer>")
    scripts = [f'<script defer src="assets/katex/{n}"></script>' for n in ("katex.min.js", "auto-render.min.js")]
    tail = [*(scripts if katex else []), _SCRIPT]
    return "\n".join([_head(page, katex), '<body>\n<div class="page">', *body, "</div>", *tail, "</body>\n</html>\n"])


def _head(page: Page, katex: bool) -> str:
    css = CSS_FILE.read_text(encoding="utf-8")
    link = '<link rel="stylesheet" href="assets/katex/katex.min.css">\n' if katex else ""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<title>{escape(page.title)}</title>\n<link rel="icon" href="data:,">\n{link}'
        f"<style>\n{css}</style>\n</head>"
    )


def _check_sections(sections: list[Section]) -> None:
    seen: set[str] = set()
    for s in sections:
        if s.level not in (2, 3, 4):
            raise ValueError(f"section {s.id!r}: level must be 2, 3 or 4, not {s.level}")
        if not s.id or any(c.isspace() for c in s.id) or s.id in seen:
            raise ValueError(f"section id {s.id!r} is empty, has spaces or is used twice")
        seen.add(s.id)


def inline(text: str) -> str:
    """Escaped ``text`` with `backticks` as <code>; ``\\(`` ... ``\\)`` maths kept (escaped) for KaTeX."""
    parts = _INLINE.split(text)
    return "".join(
        f"<code>{escape(p[1:-1])}</code>" if i % 2 and p.startswith("`") else escape(p) for i, p in enumerate(parts)
    )


def _href(section_id: str) -> str:
    return escape("#" + quote(section_id, safe=""))


def toc_html(sections: list[Section]) -> str:
    """Contents: the level-2 sections, each with its level-3 sections nested; "" when there are none."""
    groups: list[list[Section]] = []
    for s in (s for s in sections if s.level in (2, 3)):
        if s.level == 2 or not groups or groups[-1][0].level != 2:
            groups.append([s])
        else:
            groups[-1].append(s)
    if not groups:
        return ""
    items = [_toc_item(g[0], "".join(_toc_item(c, "") for c in g[1:])) for g in groups]
    return (
        '<nav class="toc" aria-label="Contents">\n<details open>\n<summary>Contents</summary>\n<ol>\n'
        + "\n".join(items)
        + "\n</ol>\n</details>\n</nav>"
    )


def _toc_item(s: Section, children: str) -> str:
    sub = f"<ol>{children}</ol>" if children else ""
    return f'<li><a href="{_href(s.id)}">{inline(s.title)}</a>{sub}</li>'


def section_html(s: Section, out: Path) -> str:
    """A section: heading (with a "#" link to itself), paragraphs, formulas, figures, tables, notes."""
    tag, sid = f"h{s.level}", escape(s.id)
    parts = [f'<section>\n<{tag} id="{sid}">{inline(s.title)}<a class="anchor" href="{_href(s.id)}" '
             f'aria-label="Link to this section">#</a></{tag}>']
    parts += [f"<p>{inline(t)}</p>" for t in s.text]
    parts += [f'<div class="formula">\\[ {escape(f)} \\]</div>' for f in s.formulas]
    if s.figures:
        parts.append(figures_html(s.figures, out))
    parts += [table_html(t) for t in s.tables]
    parts += [f'<div class="note" role="note">{inline(n)}</div>' for n in s.notes]
    return "\n".join([*parts, "</section>"])


def figures_html(figures: list[Figure], out: Path) -> str:
    """One <figure>, or several in a responsive grid."""
    items = [figure_html(f, out) for f in figures]
    if len(items) == 1:
        return items[0]
    return '<div class="figures">\n' + "\n".join(items) + "\n</div>"


def figure_html(fig: Figure, out: Path) -> str:
    """<figure> with the image at its natural size (scaled down to fit) and its caption."""
    src, (w, h) = locate_image(Path(fig.path), out)
    plot = Path(fig.path).name.lower().startswith(SMOOTH_PREFIXES)
    cls, fcls = ("", ' class="plot"') if plot else (' class="pixel"', "")
    cap = f"\n<figcaption>{inline(fig.caption)}</figcaption>" if fig.caption else ""
    alt = escape(fig.alt or fig.caption)
    return f'<figure{fcls}>\n<img src="{src}" width="{w}" height="{h}" alt="{alt}"{cls}>{cap}\n</figure>'


def locate_image(path: Path, out: Path) -> tuple[str, tuple[int, int]]:
    """The escaped, URL-quoted path of ``path`` relative to ``out``, and the image's (width, height)."""
    try:
        rel = path.resolve().relative_to(out.resolve())
    except ValueError:
        raise UserError(f"figure {path} is outside the report directory {out}; it must be inside it") from None
    if not path.is_file():
        raise UserError(f"figure {path} does not exist")
    try:
        with Image.open(path) as im:
            size = im.size
    except OSError as e:
        raise UserError(f"figure {path} is not a readable image: {e}") from None
    return escape(quote(rel.as_posix())), size


def table_html(t: Table) -> str:
    """A table in a box that scrolls sideways when too wide; number cells (and all-number columns) right-aligned."""
    numeric = [_all_numbers([r[i] for r in t.rows if i < len(r)]) for i in range(len(t.header))]
    cols = zip(t.header, numeric, strict=True)
    head = "".join(f'<th scope="col"{_NUM_CLS if n else ""}>{inline(h)}</th>' for h, n in cols)
    rows = "\n".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in t.rows)
    cap = f'<p class="table-caption">{inline(t.caption)}</p>\n' if t.caption else ""
    label = escape(t.caption or "table")
    return (f'{cap}<div class="table-wrap" role="region" tabindex="0" aria-label="{label}">\n<table>\n'
            f"<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>\n</div>")


def is_number(cell: str) -> bool:
    """A number, maybe signed, with thousands commas, exponent, "± error" and a unit (%, ×, x, s, ms)."""
    return _NUMBER.fullmatch(cell.strip()) is not None


def _all_numbers(cells: list[str]) -> bool:
    filled = [c for c in cells if c.strip()]
    return bool(filled) and all(map(is_number, filled))


def _cell(text: str) -> str:
    return f'<td{_NUM_CLS if is_number(text) else ""}>{inline(text)}</td>'
