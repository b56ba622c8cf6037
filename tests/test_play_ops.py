"""The playground's pieces without a server: the operations and their command lines, the drawings as files, the stop
switch, the one torch thread, the start-up checks; and the illusions' joint estimates (fewer net calls, same
numbers)."""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from fundiff import parta as ops
from fundiff.core.contract import one_by_one
from fundiff.errors import UserError
from fundiff.io.images import load_image, load_mask
from fundiff.models import load
from fundiff.play.drawing import Inputs, StopRequestedError, StopSwitch, default_mask, snap_mask
from fundiff.play.ops import Knobs, Playground
from fundiff.play.serve import check_port
from fundiff.play.worker import TorchWorker


@pytest.fixture(scope="module")
def pg() -> Playground:
    return Playground(load("digits", "cpu"), "digits")


@pytest.fixture
def inputs(pg, tmp_path) -> Inputs:
    return Inputs(pg, tmp_path)


def test_generate_answers_with_images_seconds_and_the_command(pg):
    a = pg.generate("7", 3, Knobs(seed=5))
    assert len(a.outputs["samples"]) == 3 and a.seconds > 0
    assert a.command == "fundiff generate --model digits --prompt 7 --n 3 --seed 5"
    moved = pg.generate("7", 1, Knobs(guidance=2.5, steps=10, seed=5))
    assert moved.command.endswith("--n 1 --guidance 2.5 --steps 10 --seed 5")  # only the knobs moved off the card


def test_operations_give_what_the_library_gives(pg, tmp_path):
    """The page's numbers are the library's: the same call, the same bytes."""
    example = pg.example()
    a = pg.edit(example, "3", Knobs(seed=1))
    x0 = load_image(example, 28, 1, True, "auto", True)
    direct = ops.edit(pg.model, x0, 3, seed=1)
    assert all(torch.equal(x[0], img) for x, (img, _) in zip(direct.values(), a.outputs["edits"]))
    mask = tmp_path / "mask.png"
    Image.fromarray(np.where(default_mask(28), 255, 0).astype(np.uint8)).save(mask)
    b = pg.inpaint(example, mask, "8", Knobs(seed=2))
    inpainted = ops.inpaint(pg.model, load_image(example, 28, 1, True), load_mask(mask, 28), 8, seed=2)
    assert torch.equal(b.outputs["result"][2][0], inpainted[0])
    assert b.command == "fundiff inpaint digit.png --model digits --mask mask.png --prompt 8 --seed 2"


def test_three_view_anagrams_and_hybrids_show_every_reading(pg):
    a = pg.anagram(["9", "2", "6"], ["flip", "rotate_180"], 2, Knobs())
    assert list(a.outputs) == ["identity", "flip", "rotate_180"] and all(len(v) == 2 for v in a.outputs.values())
    assert "--prompt 9 --prompt 2 --prompt 6 --views flip rotate_180 --n 2" in a.command
    h = pg.hybrid("0", "4", 1, None, Knobs())
    assert [c for _, c in h.outputs["near"]] == ["near: 4"] and [c for _, c in h.outputs["far"]] == ["far: 0"]


@pytest.mark.parametrize("call, message", [
    (lambda pg: pg.generate("eleven", 1, Knobs()), "give a class 0-9"),
    (lambda pg: pg.anagram(["3", "(none)"], ["flip"], 1, Knobs()), "choose a class"),
    (lambda pg: pg.generate("3", 1, Knobs(guidance=float("nan"))), "finite"),
    (lambda pg: pg.generate("3", 1, Knobs(steps=0)), "at least 1"),
    (lambda pg: pg.denoise(pg.example(), 300, None, Knobs()), "outside 0..299"),
])
def test_bad_settings_are_one_line(pg, call, message):
    with pytest.raises(UserError, match=message):
        call(pg)


def test_a_drawing_becomes_the_file_the_command_reads(inputs):
    pad = np.zeros((280, 280, 4), np.uint8)  # transparent, as the sketch pad sends it
    pad[60:220, 130:150] = (0, 0, 0, 255)  # a black stroke: a 1
    path = inputs.drawing({"background": None, "layers": [pad], "composite": pad})
    x = load_image(path, 28, 1, True, "auto", True)
    assert x.max() > 0.9 and x[..., :4].max() < 0.1  # light ink on black, framed like MNIST
    with pytest.raises(UserError, match="the sketch pad is empty"):
        inputs.drawing({"background": None, "layers": [np.zeros_like(pad)], "composite": np.zeros_like(pad)})
    with pytest.raises(UserError, match="the sketch pad is empty"):
        inputs.drawing(None)


def test_the_brush_becomes_a_mask_on_the_models_pixels(inputs):
    start = inputs.editor_start()
    assert start["background"].shape == (224, 224, 4) and start["layers"][0][..., 3].any()
    image, mask = inputs.painted(start)
    m = load_mask(mask, 28)
    assert torch.equal(m[0, 0].bool(), torch.from_numpy(default_mask(28)))
    with pytest.raises(UserError, match="the mask covers nothing"):
        inputs.painted({**start, "layers": [np.zeros_like(start["layers"][0])]})


def test_snap_mask_keeps_a_pixel_the_brush_covered_a_quarter_of():
    painted = np.zeros((56, 56), bool)
    painted[0:2, 0:1] = True  # half of model pixel (0, 0)
    painted[10, 10] = True  # a quarter of (5, 5)
    m = snap_mask(painted, 28)
    small = m[::2, ::2]
    assert small[0, 0] and small[5, 5] and small.sum() == 2 and m[:2, :2].all()


def test_an_upload_that_is_not_an_image_is_one_line(inputs, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    for fn in (inputs.editor_background, inputs.uploaded):
        with pytest.raises(UserError, match="cannot read image"):
            fn(str(bad))
    with pytest.raises(UserError, match="no image given"):
        inputs.uploaded(None)


def test_small_uploads_are_enlarged_in_the_editor(inputs, pg):
    bg = inputs.editor_background(str(pg.example()))["background"]
    assert bg.shape == (224, 224, 4)


def test_the_stop_switch_stops_the_work_at_its_next_step(pg, tmp_path):
    """The Stop button sets its session's switch; the callback of the running operation raises at the next step."""
    gr = pytest.importorskip("gradio")
    from fundiff.play.app import App

    app = App(pg, tmp_path, TorchWorker())
    steps = []

    def work(callback):
        def cb(d):
            steps.append(d["i"])
            if d["i"] == 2:
                app.stop(None)
            callback(d)

        return pg.generate("3", 1, Knobs(), cb)

    with pytest.raises(gr.Error, match="stopped before the end"):
        app._run(None, lambda *a, **k: None, work, lambda a: a)
    assert steps == [0, 1, 2]
    assert app._run(None, lambda *a, **k: None, lambda cb: pg.generate("3", 1, Knobs(), cb), lambda a: a.command)


def test_stop_switches_are_per_session():
    switch, alice, bob = StopSwitch(), type("R", (), {"session_hash": "a"}), type("R", (), {"session_hash": "b"})
    a, b = switch.arm(alice), switch.arm(bob)
    switch.stop(alice)
    assert a.is_set() and not b.is_set()
    assert issubclass(StopRequestedError, Exception)


def test_the_torch_worker_runs_everything_on_one_thread():
    worker = TorchWorker()
    names = {worker.run(lambda: threading.current_thread().name) for _ in range(3)}
    assert len(names) == 1 and names.pop().startswith("fundiff-torch")
    with pytest.raises(ZeroDivisionError):
        worker.run(lambda: 1 / 0)


def test_a_busy_port_or_a_bad_host_is_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(UserError, match="choose another --port"):
            check_port("127.0.0.1", s.getsockname()[1])
    with pytest.raises(UserError, match="from 0 to 65535"):
        check_port("127.0.0.1", 70000)
    with pytest.raises(UserError, match="not an address of this machine"):
        check_port("no-such-host.invalid", 7860)


def test_fundiff_play_without_gradio_says_how_to_get_it(monkeypatch, capsys):
    import builtins

    from helpers import fundiff_in_process

    real = builtins.__import__

    def no_gradio(name, *args, **kwargs):
        if name == "gradio" or name.startswith("gradio."):
            raise ImportError("No module named 'gradio'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gradio)
    monkeypatch.delitem(__import__("sys").modules, "gradio", raising=False)
    code, _, err = fundiff_in_process(monkeypatch, capsys, "play", "--port", "0")
    assert code == 2 and err.strip() == ('fundiff: error: fundiff play needs Gradio, an optional extra: pip install '
                                         '"fundiff[play]" (in a clone of fundiff: pip install -e ".[play]")'), err


def test_joint_estimates_are_the_separate_ones_in_fewer_net_calls(pg):
    """An anagram's and a hybrid's guided estimates in two net calls per step (conditional, unconditional), not two
    per view: the same images."""
    calls = []
    original = pg.model.bind

    def counting(condition):
        fn = original(condition)

        def call(x, k):
            calls.append(len(x))
            return fn(x, k)

        return call

    model = __import__("dataclasses").replace(pg.model, bind=counting)
    s = ops.settings(model, None, illusion=True)
    joint, separate = ops.joint_guided(model, [9, 2], s), one_by_one([ops.guided(model, c, s) for c in (9, 2)])
    x, k = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(0)), torch.full((3,), 200)
    calls.clear()
    together = joint([x, x.flip(-2)], k)
    assert calls == [6, 6]  # one call for both conditions, one for both unconditional estimates
    calls.clear()
    apart = separate([x, x.flip(-2)], k)
    assert calls == [3, 3, 3, 3]
    for a, b in zip(together, apart):
        assert torch.allclose(a.value, b.value, atol=1e-5)
    with_joint = ops.anagram(model, [9, 2], ["identity", "flip"], 2, seed=0)
    original_joint = ops.joint_guided
    try:
        ops.joint_guided = lambda m, c, s: one_by_one([ops.guided(m, ci, s) for ci in c])
        without = ops.anagram(model, [9, 2], ["identity", "flip"], 2, seed=0)
    finally:
        ops.joint_guided = original_joint
    assert torch.allclose(with_joint, without, atol=1e-4)
