"""Take the README's pictures of a built report (docs/report*.png): section 2.5 at laptop width, the visual anagrams
(1.8) at laptop width and section 1.4 at phone width, each the top of its section, in headless chromium.

    python tools/report_pictures.py REPORT_DIR        # e.g. after `fundiff report --out REPORT_DIR`

Playwright drives Debian's /usr/bin/chromium (never `playwright install`); the page is opened from disk and every
request that is not local is aborted.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

DOCS = Path(__file__).resolve().parents[1] / "docs"
LAPTOP = {"viewport": {"width": 900, "height": 900}}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 1, "is_mobile": True}
SHOTS = [("b-2-5", LAPTOP, 1300, "report.png"), ("a-1-8", LAPTOP, 560, "report-anagrams.png"),
         ("a-1-4", PHONE, 600, "report-phone.png")]
LOCAL = ("file:", "data:", "blob:", "about:")


def shoot(browser, page_url: str, section: str, context: dict, height: int, out: Path) -> None:
    """The top ``height`` px of the section whose heading has id ``section``, as a palette PNG."""
    ctx = browser.new_context(**context)
    page = ctx.new_page()
    page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(LOCAL) else r.abort())
    page.goto(f"{page_url}#{section}", wait_until="load")
    page.evaluate("document.fonts.ready")
    page.locator(f"#{section}").locator("xpath=..").screenshot(path=str(out))
    shot = Image.open(out).convert("RGB")
    shot.crop((0, 0, shot.width, min(shot.height, height))).quantize(256).save(out, optimize=True)
    ctx.close()
    print(f"wrote {out}")


def main(report: Path) -> None:
    url = (report / "index.html").resolve().as_uri()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        for section, context, height, name in SHOTS:
            shoot(browser, url, section, context, height, DOCS / name)
        browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
