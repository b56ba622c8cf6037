"""Headless-browser checks of HTML pages: Debian's chromium driven by Python Playwright.

`check_page` opens a local page (file://) at a laptop and a phone viewport and collects what a person would notice:
console errors, script errors, failed or external requests, broken images, headings, KaTeX output, horizontal
overflow on the phone, plus a full-page screenshot of each. `assert_page_ok` turns that into assertions.

Playwright cannot download its own browsers on these machines (never run `playwright install`): it drives
/usr/bin/chromium (apt-get install chromium) through `executable_path`. Every request that is not local (file:,
data:, blob:, about:) is recorded and aborted, and chromium's host resolver maps every name to NOTFOUND, so a page
that reaches out is reported quickly instead of hanging on a network that is not there.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
]
LAPTOP = {"viewport": {"width": 1366, "height": 900}}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")
TIMEOUT_MS = 10_000
SCREENSHOT_TIMEOUT_MS = 120_000  # a long full page on a loaded 2-core machine (the test suite runs 4 workers)
KATEX_WAIT_MS = 300

# Make every <img> load now (lazy ones too), then wait (bounded) until each has loaded or failed.
_SETTLE_IMAGES_JS = """async (timeoutMs) => {
  const imgs = Array.from(document.images);
  for (const img of imgs) { if (img.loading === 'lazy') img.loading = 'eager'; }
  const done = (img) => img.complete ? Promise.resolve() : new Promise((resolve) => {
    img.addEventListener('load', resolve, {once: true});
    img.addEventListener('error', resolve, {once: true});
  });
  await Promise.race([Promise.all(imgs.map(done)), new Promise((r) => setTimeout(r, timeoutMs))]);
  await document.fonts.ready;
}"""

_INSPECT_JS = """() => {
  const doc = document.documentElement;
  const width = doc.clientWidth;
  const overflow = doc.scrollWidth > width + 1;
  // The outermost elements sticking out past the right edge, ignoring those clipped by a scrolling/hidden ancestor.
  const clipped = (el) => {
    for (let a = el.parentElement; a && a !== document.body && a !== doc; a = a.parentElement) {
      if (getComputedStyle(a).overflowX !== 'visible') return true;
    }
    return false;
  };
  const sticksOut = (el) => el.getBoundingClientRect().right > width + 1;
  const outermost = (el) => !(el.parentElement && el.parentElement !== document.body && sticksOut(el.parentElement));
  const tag = (el) => {
    const cls = typeof el.className === 'string' ? el.className.trim().split(/\\s+/).filter(Boolean) : [];
    return el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + cls.map((c) => '.' + c).join('');
  };
  const path = (el) => {
    const parts = [];
    for (let a = el; a && a !== document.body && parts.length < 4; a = a.parentElement) parts.unshift(tag(a));
    return parts.join(' > ');
  };
  const wide = !overflow ? [] : Array.from(document.body.querySelectorAll('*'))
    .filter((el) => sticksOut(el) && outermost(el) && !clipped(el))
    .slice(0, 5)
    .map((el) => `${path(el)} (right edge ${Math.round(el.getBoundingClientRect().right)}px)`);
  return {
    broken_images: Array.from(document.images)
      .filter((img) => !img.complete || img.naturalWidth === 0)
      .map((img) => img.getAttribute('src') || img.currentSrc || '(no src)'),
    headings: Array.from(document.querySelectorAll('h1, h2, h3, h4'))
      .map((h) => (h.textContent || '').replace(/\\s+/g, ' ').trim()),
    katex: document.querySelectorAll('.katex').length,
    katex_errors: document.querySelectorAll('.katex-error').length,
    katex_error_texts: Array.from(document.querySelectorAll('.katex-error'))
      .slice(0, 5).map((e) => (e.getAttribute('title') || e.textContent || '').trim()),
    // With throwOnError false an unknown command (\\notacommand) is drawn in KaTeX's errorColor, not as .katex-error.
    katex_unknown_commands: Array.from(new Set(Array.from(document.querySelectorAll('.katex-html [style*="color"]'))
      .filter((el) => el.style.color === 'rgb(204, 0, 0)' && !el.querySelector('[style*="color"]'))
      .map((el) => (el.textContent || '').trim())
      .filter((t) => t.startsWith(String.fromCharCode(92))))),  // a backslash
    has_viewport_meta: !!document.querySelector('meta[name="viewport"]'),
    scroll_width: doc.scrollWidth,
    client_width: width,
    overflow,
    wide_elements: wide,
  };
}"""


def chromium_available() -> bool:
    """True when both /usr/bin/chromium and the Python playwright package are installed."""
    return CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK) and importlib.util.find_spec("playwright") is not None


def missing_reason() -> str:
    """Why the browser checks cannot run here ('' when they can)."""
    missing = []
    if not (CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package (pip install playwright)")
    return "browser checks need " + " and ".join(missing) if missing else ""


@contextlib.contextmanager
def launch_browser() -> Iterator[Any]:
    """Start Playwright and Debian's headless chromium; yield the Browser, close both on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, timeout=30_000)
        try:
            yield browser
        finally:
            browser.close()


def _visit(browser: Any, url: str, options: dict, shot: Path, found: dict) -> dict:
    """Load `url` in a fresh context with `options`, record events into `found`, screenshot, return page facts."""
    context = browser.new_context(**options)
    context.set_default_timeout(TIMEOUT_MS)

    def route(r: Any) -> None:
        if r.request.url.startswith(LOCAL_SCHEMES):
            r.continue_()
        else:
            found["external_requests"].append(r.request.url)
            r.abort("blockedbyclient")

    def on_console(msg: Any) -> None:
        if msg.type == "error":
            loc = msg.location or {}
            if "ERR_BLOCKED_BY_CLIENT" in msg.text and not loc.get("url", "file:").startswith(LOCAL_SCHEMES):
                return  # our own abort of an external request, reported under external_requests
            where = f" ({loc.get('url', '')}:{loc.get('lineNumber', '')})" if loc.get("url") else ""
            found["console_errors"].append(f"{msg.text}{where}")

    def on_request(req: Any) -> None:
        if not req.url.startswith(LOCAL_SCHEMES) and req.url not in found["external_requests"]:
            found["external_requests"].append(req.url)

    def on_failed(req: Any) -> None:
        if req.url.startswith(LOCAL_SCHEMES):  # external ones are reported (and aborted) as external requests
            found["failed_requests"].append(f"{req.url}: {req.failure}")

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", on_console)
    page.on("pageerror", lambda err: found["page_errors"].append(f"{err.name}: {err.message}"))
    page.on("request", on_request)
    page.on("requestfailed", on_failed)
    try:
        page.goto(url, wait_until="load")
        page.evaluate(_SETTLE_IMAGES_JS, TIMEOUT_MS // 2)
        page.wait_for_timeout(KATEX_WAIT_MS)  # auto-render runs on load; give it (and its fonts) a moment
        page.evaluate("document.fonts.ready.then(() => true)")
        facts = page.evaluate(_INSPECT_JS)
        page.screenshot(path=str(shot), full_page=True, timeout=SCREENSHOT_TIMEOUT_MS)
    finally:
        context.close()
    return facts


def check_page(html: Path, artifacts: Path, name: str, headings: list[str], *, browser: Any = None) -> dict:
    """Open `html` at a laptop and a phone viewport; return what was seen (see module docstring).

    Screenshots go to `artifacts/{name}-laptop.png` and `artifacts/{name}-phone.png`. Pass `browser` (from
    `launch_browser`) to reuse one chromium across pages; otherwise one is started and closed here.
    """
    if browser is None:
        with launch_browser() as own:
            return check_page(html, artifacts, name, headings, browser=own)
    html = Path(html).resolve()
    if not html.is_file():
        raise FileNotFoundError(html)
    artifacts = Path(artifacts)
    artifacts.mkdir(parents=True, exist_ok=True)
    url = html.as_uri()
    kinds = ("console_errors", "page_errors", "failed_requests", "external_requests")
    found: dict[str, list[str]] = {key: [] for key in kinds}
    laptop_png, phone_png = artifacts / f"{name}-laptop.png", artifacts / f"{name}-phone.png"
    laptop = _visit(browser, url, LAPTOP, laptop_png, found)
    phone = _visit(browser, url, PHONE, phone_png, found)
    dedupe = {key: list(dict.fromkeys(values)) for key, values in found.items()}
    seen = laptop["headings"]
    return {
        "url": url,
        **dedupe,
        "broken_images": list(dict.fromkeys(laptop["broken_images"] + phone["broken_images"])),
        "headings": seen,
        "missing_headings": [h for h in headings if not any(h in text for text in seen)],
        "katex_count": laptop["katex"],
        "katex_error_count": laptop["katex_errors"],
        "katex_error_texts": laptop["katex_error_texts"],
        "katex_unknown_commands": laptop["katex_unknown_commands"],
        "has_viewport_meta": laptop["has_viewport_meta"],
        "phone_overflow": phone["overflow"],
        "phone_scroll_width": phone["scroll_width"],
        "phone_client_width": phone["client_width"],
        "phone_wide_elements": phone["wide_elements"],
        "screenshots": {"laptop": laptop_png, "phone": phone_png},
    }


def assert_page_ok(result: dict, headings: list[str]) -> None:
    """Assert the page loaded cleanly, is self-contained, shows `headings` and rendered its maths (see check_page).

    Every problem found is listed in the one AssertionError.
    """
    problems = []
    if result["console_errors"]:
        problems.append(f"console errors: {result['console_errors']}")
    if result["page_errors"]:
        problems.append(f"uncaught script errors: {result['page_errors']}")
    if result["failed_requests"]:
        problems.append(f"failed requests: {result['failed_requests']}")
    if result["external_requests"]:
        problems.append(f"requests outside the page's files (it must be self-contained): {result['external_requests']}")
    if result["broken_images"]:
        problems.append(f"images that did not load: {result['broken_images']}")
    missing = [h for h in headings if not any(h in text for text in result["headings"])]
    if missing:
        problems.append(f"headings {missing} not found among {result['headings']}")
    if result["katex_count"] == 0:
        problems.append("no .katex elements: the maths was not rendered by KaTeX")
    if result["katex_error_count"]:
        problems.append(f"{result['katex_error_count']} KaTeX errors, e.g. {result['katex_error_texts']}")
    if result["katex_unknown_commands"]:
        problems.append(f"unknown LaTeX commands (drawn in red by KaTeX): {result['katex_unknown_commands']}")
    if result["phone_overflow"]:
        problems.append(
            f"scrolls sideways on a phone: content is {result['phone_scroll_width']}px wide in a "
            f"{result['phone_client_width']}px viewport; too wide: {result['phone_wide_elements']}"
        )
    where = result.get("url", "page")
    assert not problems, f"{where} has {len(problems)} problem(s):\n  - " + "\n  - ".join(problems)
