"""The playground as users meet it: ``fundiff play`` started as a command, called through ``gradio_client`` (every
named endpoint, with its defaults and with bad input), two users at once, and in Debian's chromium through
Playwright (a digit drawn with the mouse and edited, an anagram, no request leaving the machine, no console error,
screenshots at laptop and phone widths in test-artifacts/)."""

from __future__ import annotations

import io
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402
from play_server import play_server  # noqa: E402

from fundiff.core.views import make_view  # noqa: E402
from fundiff.evaluate.judge import predict, train_judge  # noqa: E402
from fundiff.train.data import split_holdout  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
FLIP = make_view("flip", 28)
ENDPOINTS = ("/generate", "/denoise", "/edit", "/inpaint", "/anagram", "/hybrid")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("play") / "play.log"
    with play_server("--model", "digits", log=log) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return Client(server, verbose=False)


@pytest.fixture(scope="module")
def judge(digits):
    train, held = split_holdout(digits)
    net, info = train_judge(train, held, epochs=2, progress=False)
    assert info["held_out_accuracy"] > 0.95
    return net


def read(path: str) -> torch.Tensor:
    """A result PNG at the model's size as (1, 1, 28, 28) in [0, 1]."""
    a = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255
    assert a.shape == (28, 28), a.shape
    return torch.from_numpy(a)[None, None]


def images(gallery: list[dict]) -> torch.Tensor:
    return torch.cat([read(item["image"]) for item in gallery])


def test_every_endpoint_answers_with_its_defaults(client):
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(ENDPOINTS) <= set(api)
    for name in ENDPOINTS:
        assert all(p["parameter_has_default"] for p in api[name]["parameters"]), name
        out = client.predict(api_name=name)
        took, command = [o for o in out if isinstance(o, str) and (o.startswith("took") or o.startswith("fundiff"))]
        assert took.startswith("took **") and command.startswith(f"fundiff {name[1:]} ") and "--seed 0" in command


def test_results_are_what_was_asked(client, judge):
    samples, _, _, command = client.predict("7", 4, 5, 20, 0, api_name="/generate")
    assert command == "fundiff generate --model digits --prompt 7 --n 4 --seed 0"
    assert (predict(judge, images(samples)) == 7).float().mean() >= 0.75
    upright, flipped, third, _, command = client.predict("0", "8", "flip", "(none)", "rotate_180", 2, 10, 10, 0,
                                                         api_name="/anagram")
    assert len(upright) == len(flipped) == 2 and third == []
    assert torch.equal(images(flipped), FLIP.view(images(upright)))  # the second view is the first, flipped
    assert "--prompt 0 --prompt 8 --views flip --n 2 --steps 10" in command
    near, far, _, command = client.predict("1", "0", 1.75, 2, 10, 10, 0, api_name="/hybrid")
    assert len(near) == len(far) == 2 and command.endswith("--low 1 --high 0 --n 2 --steps 10 --seed 0")


def test_the_command_shown_makes_the_same_bytes(client, tmp_path, monkeypatch, capsys):
    """The Edit tab's command line, run on the file it offers for download, writes the page's images."""
    strip, _, command, drawing = client.predict(handle_file(_drawn_seven(tmp_path)), "7", 5, 20, 3,
                                                api_name="/edit")
    assert command == "fundiff edit seven.png --model digits --prompt 7 --seed 3" and Path(drawing).name == "seven.png"
    work = tmp_path / "cli"
    work.mkdir()
    shutil.copy(drawing, work / "seven.png")
    monkeypatch.chdir(work)
    from helpers import fundiff_in_process

    code, _, err = fundiff_in_process(monkeypatch, capsys, *command.split()[1:], "--out", "out")
    assert code == 0, err
    cli = sorted((work / "out").glob("edit_i*.png"))
    assert len(cli) == len(strip) - 1
    for item, path in zip(strip[1:], cli):
        assert np.array_equal(np.asarray(Image.open(item["image"]).convert("L")),
                              np.asarray(Image.open(path).convert("L"))), path.name


def _drawn_seven(folder: Path) -> Path:
    """A 7 in black marker on white paper, 200 px."""
    a = np.full((200, 200), 255, np.uint8)
    a[40:60, 50:150] = 0
    for y in range(60, 170):
        x = int(150 - (y - 60) * 0.6)
        a[y, x - 10:x + 10] = 0
    path = folder / "seven.png"
    Image.fromarray(a).save(path)
    return path


@pytest.mark.parametrize("call, message", [
    (lambda c, tmp: c.predict("eleven", api_name="/generate"), "is class-conditioned: give a class 0-9"),
    (lambda c, tmp: c.predict(handle_file(_not_an_image(tmp)), api_name="/denoise"), "cannot read image"),
    (lambda c, tmp: c.predict(handle_file(_blank(tmp, "image.png", 255)), handle_file(_blank(tmp, "mask.png", 0)),
                              api_name="/inpaint"), "has no white (1) pixels"),
    (lambda c, tmp: c.predict("3", "3", "flip", "(none)", "rotate_180", 0, api_name="/anagram"),
     "less than minimum value 1"),
])
def test_bad_input_is_one_readable_line_and_the_app_keeps_serving(client, tmp_path, call, message):
    with pytest.raises(Exception) as caught:
        call(client, tmp_path)
    text = str(caught.value)
    assert message in text and "Traceback" not in text, text
    assert client.predict(api_name="/denoise")[-1].startswith("fundiff denoise")


def _not_an_image(folder: Path) -> Path:
    path = folder / "notes.png"
    path.write_text("this is not a picture")
    return path


def _blank(folder: Path, name: str, value: int) -> Path:
    path = folder / name
    Image.fromarray(np.full((28, 28), value, np.uint8)).save(path)
    return path


def test_two_users_at_once_are_both_served(server):
    """Two clients submit at the same moment; Gradio's queue answers both (one after the other)."""
    results, errors = {}, []

    def user(name: str) -> None:
        try:
            results[name] = Client(server, verbose=False).predict(api_name="/edit")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=user, args=(n,)) for n in ("ana", "bob")]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and set(results) == {"ana", "bob"}, errors
    assert results["ana"][-1] == results["bob"][-1]  # same defaults, same command
    assert time.perf_counter() - t0 < 60


@pytest.fixture(scope="module")
def browser():
    from browser import chromium_available, missing_reason

    if not chromium_available():
        pytest.skip(missing_reason())
    from browser import CHROMIUM, CHROMIUM_ARGS
    from playwright.sync_api import sync_playwright

    args = [a if not a.startswith("--host-resolver-rules") else "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE "
            "127.0.0.1" for a in CHROMIUM_ARGS]
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args, timeout=30_000)
        yield b
        b.close()


def open_page(browser, server: str, viewport: dict, seen: dict):
    """A page of the app that records console errors and aborts (and records) any request leaving 127.0.0.1."""
    context = browser.new_context(**viewport)
    context.set_default_timeout(60_000)

    def route(r) -> None:
        url = r.request.url
        if url.startswith((server.rstrip("/"), "data:", "blob:")):
            r.continue_()
        else:
            seen["external"].append(url)
            r.abort("blockedbyclient")

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: seen["console"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen["console"].append(str(e)))
    page.goto(server, wait_until="networkidle")
    return context, page


def wait_for_command(page, prefix: str) -> None:
    page.wait_for_function(
        "(p) => [...document.querySelectorAll('.fundiff-command textarea')].some(t => t.value.startsWith(p))",
        arg=prefix, timeout=120_000)


def gallery_images(page, elem_id: str) -> list[torch.Tensor]:
    """The pictures a gallery shows, fetched from the app as the browser does, at the model's size."""
    srcs = [img.get_attribute("src") for img in page.locator(f"#{elem_id}").locator("img").all()]
    out = []
    for src in dict.fromkeys(s for s in srcs if s and "/file=" in s):
        body = page.request.get(src).body()
        out.append(torch.from_numpy(np.asarray(Image.open(io.BytesIO(body)).convert("L"), dtype=np.float32) / 255)
                   [None, None])
    return out


def test_in_the_browser_draw_a_digit_edit_it_and_make_an_anagram(browser, server, judge):
    ARTIFACTS.mkdir(exist_ok=True)
    seen = {"external": [], "console": []}
    context, page = open_page(browser, server, {"viewport": {"width": 1366, "height": 900}}, seen)
    try:
        open_tab(page, "Edit (SDEdit)")
        panel = page.get_by_role("tabpanel")
        panel.get_by_role("button", name="Run").click()  # nothing drawn yet: one line in the page, no traceback
        page.get_by_text("the sketch pad is empty", exact=False).first.wait_for(timeout=60_000)
        assert "Traceback" not in page.content()
        pad = page.locator("#fundiff-sketch")
        pad.get_by_role("button", name="Brush").first.click()
        box = pad.locator("canvas").first.bounding_box()
        cx, cy, s = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, 90
        page.mouse.move(cx - 0.6 * s, cy - s)  # a 7: the bar, then the stem
        page.mouse.down()
        for x, y in ((cx + 0.6 * s, cy - s), (cx - 0.1 * s, cy + s)):
            page.mouse.move(x, y, steps=12)
        page.mouse.up()
        _choose_class(page, panel, "7")
        panel.get_by_role("button", name="Run").click()
        wait_for_command(page, "fundiff edit drawing.png --model digits --prompt 7")
        page.screenshot(path=str(ARTIFACTS / "play-edit-laptop.png"), full_page=True)
        edits = gallery_images(page, "fundiff-edits")
        x = torch.cat(edits)
        read = predict(judge, x).tolist()
        assert len(x) == 7 and read[0] == 7, read  # the drawing as the model reads it is a 7 ...
        assert sum(r == 7 for r in read[1:]) >= 5, read  # ... and so are (nearly) all its edits
        open_tab(page, "Anagram")
        panel = page.get_by_role("tabpanel")
        panel.get_by_role("button", name="Run").click()
        wait_for_command(page, "fundiff anagram --model digits")
        upright = gallery_images(page, "fundiff-upright")
        turned = gallery_images(page, "fundiff-turned")
        assert len(upright) == len(turned) == 2
        assert all(torch.equal(FLIP.view(a), b) for a, b in zip(upright, turned))
        page.screenshot(path=str(ARTIFACTS / "play-anagram-laptop.png"), full_page=True)
    finally:
        context.close()
    phone, page = open_page(browser, server, {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
                                              "is_mobile": True, "has_touch": True}, seen)
    try:
        page.screenshot(path=str(ARTIFACTS / "play-generate-phone.png"), full_page=True)
        open_tab(page, "Edit (SDEdit)")
        page.screenshot(path=str(ARTIFACTS / "play-edit-phone.png"), full_page=True)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 392, f"the page is {width} px wide on a 390 px phone"
    finally:
        phone.close()
    assert seen["external"] == [], seen["external"]
    assert seen["console"] == [], seen["console"]


def open_tab(page, name: str) -> None:
    """Click the tab ``name``; on a phone, the tabs that do not fit are behind the "More tabs" button."""
    tab = page.get_by_role("tab", name=name)
    if not tab.is_visible():
        page.get_by_role("button", name="More tabs").click()
        tab = page.locator("button:visible", has_text=name).last  # the menu's, not the hidden row measuring the tabs
    tab.click()


def _choose_class(page, panel, value: str) -> None:
    """Pick ``value`` in the tab's first dropdown (the class)."""
    box = panel.get_by_label("class").first
    box.click()
    box.fill(value)
    page.get_by_role("option", name=value, exact=True).click()
