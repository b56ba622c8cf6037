"""The playground's page (``fundiff play``): a Gradio app with one tab per Part A idea, over :mod:`fundiff.play.ops`.

Every tab has the CLI's settings (class or prompt, guidance, steps, seed), a Run and a Stop button, the seconds the
work took and the equivalent ``fundiff`` command line. Each operation is a named API endpoint (``/generate``,
``/denoise``, ``/edit``, ``/inpaint``, ``/anagram``, ``/hybrid``) whose every parameter has a default (an image, the
bundled example), so ``gradio_client`` can call it with none. The sketch pad and the mask brush feed those
endpoints through a first, private step that turns the drawing into the image (and mask) files the command line
would read. A user's mistake is shown in the page in one line (``gr.Error``) and the app keeps serving.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import torch

from fundiff.core.views import VIEW_NAMES
from fundiff.errors import UserError
from fundiff.io.pictures import to_pil
from fundiff.play.drawing import Inputs, StopRequestedError, StopSwitch
from fundiff.play.ops import NONE, Answer, Images, Knobs, Playground
from fundiff.play.worker import TorchWorker

CSS = """
img { image-rendering: pixelated; }
.fundiff-command textarea { font-family: ui-monospace, monospace; }
"""
PROGRESS_EVERY = 0.25
"""Seconds between two progress messages (or two pictures of the denoising) sent to the page."""
PROGRESS = gr.Progress()
"""The handlers' progress parameter: Gradio passes each call its own tracker in its place."""
ILLUSION_VIEWS = [v for v in VIEW_NAMES if v not in ("identity", "negate")]
TAB_NOTES = {
    "generate": "Samples from pure noise, with classifier-free guidance toward the class (spec 1.5-1.6). The "
                "denoising is shown while it runs: x_t and the clean image predicted from it.",
    "denoise": "An image noised to timestep t (1.1), then denoised three ways: a Gaussian blur (1.2), one step of "
               "the denoiser (1.3), and step by step (1.4).",
    "edit": "SDEdit (1.7): draw something, or upload a photo or drawing; it is noised to several levels and "
            "denoised toward the class. The more noise, the less of the drawing stays.",
    "inpaint": "Inpainting (1.7.2): paint over the part to replace with the brush; the rest stays as it is.",
    "anagram": "Visual anagrams (1.8): one image that reads as the first class upright and as the second under the "
               "view (a third class under a second view, if given).",
    "hybrid": "Hybrid images (1.9): the low frequencies follow one class, the high ones another. Near: the image; "
              "far: as seen from three times the distance (shrunk to a third and enlarged back).",
}


def image_file(value: Path | None, label: str) -> gr.File:
    """An endpoint's image (or mask) input: a file handed on as it is, so :mod:`fundiff.io.images` reads it as the
    command line does, and says in one line when it is not an image (Gradio's Image input would decode it first and
    fail with a bare "Error"). The page fills it from its picture, sketch pad or editor."""
    return gr.File(None if value is None else str(value), type="filepath", visible=False, label=label)


def upload_button(text: str) -> gr.UploadButton:
    return gr.UploadButton(text, file_types=["image"], type="filepath", size="sm")


def gallery(pictures: Images) -> list[tuple[Any, str]]:
    return [(to_pil(x), caption) for x, caption in pictures]


class App:
    """The page of one :class:`Playground`: its components, the handlers and the stop switches."""

    def __init__(self, pg: Playground, workdir: Path, worker: TorchWorker | None = None) -> None:
        self.pg, self.inputs, self.stops = pg, Inputs(pg, workdir), StopSwitch()
        self.worker = worker or TorchWorker()

    # Building blocks ------------------------------------------------------------------------------------------
    def condition(self, label: str, index: int = 0, allow_none: bool = False, illusion: str | None = None
                  ) -> gr.components.Component:
        """A class dropdown (class models; any name or number can be typed), a prompt box (text models), or a
        hidden "(none)" (unconditional models)."""
        pg = self.pg
        if pg.model.conditioning == "class":
            choices = ([NONE] if allow_none else []) + pg.conditions
            value = NONE if allow_none else pg.default_condition(index, illusion)
            return gr.Dropdown(choices, value=value, label=label, allow_custom_value=True, filterable=True)
        if pg.model.conditioning == "prompt":
            return gr.Textbox(pg.default_condition(index, illusion), label=label)
        return gr.Textbox(NONE, label=label, visible=False)

    def knobs(self, illusion: bool = False) -> list[gr.components.Component]:
        guidance, steps = self.pg.defaults(illusion)
        return [gr.Slider(0, 20, value=guidance, step=0.5, label="guidance (CFG scale)"),
                gr.Slider(1, self.pg.T, value=steps, step=1, label="steps"),
                gr.Number(0, label="seed", precision=0, minimum=0, maximum=2**32 - 1)]

    @staticmethod
    def footer() -> tuple[gr.Markdown, gr.Textbox]:
        took = gr.Markdown("", label="took", elem_classes="fundiff-took")
        command = gr.Textbox(label="the same from the command line", interactive=False, buttons=["copy"],
                             elem_classes="fundiff-command")
        return took, command

    # Handlers -------------------------------------------------------------------------------------------------
    def _run(self, request: gr.Request | None, progress: gr.Progress, work: Callable[[Callable], Answer],
             shape: Callable[[Answer], tuple], show: Callable[[dict], None] | None = None) -> tuple:
        """``shape(work(callback))`` on the torch thread (:mod:`fundiff.play.worker`); the callback moves the
        page's progress bar, passes each step to ``show`` and stops at the Stop button. A user's mistake becomes one
        line in the page."""
        stop, shown = self.stops.arm(request), [time.perf_counter()]

        def callback(d: dict) -> None:
            if stop.is_set():
                raise StopRequestedError
            if show is not None:
                show(d)
            if time.perf_counter() - shown[0] > PROGRESS_EVERY:  # each update is a message to the page
                shown[0] = time.perf_counter()
                progress((d["i"] + 1, None), desc="denoising", unit="steps")

        try:
            return self.worker.run(lambda: shape(work(callback)))
        except UserError as e:
            raise gr.Error(str(e), print_exception=False) from None
        except StopRequestedError:
            raise gr.Error("stopped before the end: nothing was made", title="Stopped",
                           print_exception=False) from None
        except Exception as e:  # a fault of fundiff's, not the user's: one line in the page, the traceback in the log
            logging.getLogger("fundiff.play").exception("the playground failed")
            raise gr.Error(f"fundiff failed ({type(e).__name__}: {e}); the details are in the terminal that runs "
                           "fundiff play", print_exception=False) from None

    def stop(self, request: gr.Request) -> None:
        self.stops.stop(request)

    @staticmethod
    def shown(fn: Callable) -> Callable:
        """``fn`` with a user's mistake shown in the page as one line."""

        def run(*args: Any) -> Any:
            try:
                return fn(*args)
            except UserError as e:
                raise gr.Error(str(e), print_exception=False) from None

        return run

    @staticmethod
    def knob_values(guidance: float, steps: float, seed: float) -> Knobs:
        return Knobs(guidance, None if steps is None else int(steps), _seed(seed))

    def generate_stream(self, condition: str, n: float, guidance: float, steps: float, seed: float,
                        request: gr.Request, progress: gr.Progress = PROGRESS) -> Iterator[tuple]:
        """Generate, yielding the denoising as it goes: x_t and the predicted clean image of the first samples."""
        frames: queue.Queue = queue.Queue()
        knobs, model, last, latest = self.knob_values(guidance, steps, seed), self.pg.model, [0.0], [None]

        def show(d: dict) -> None:
            latest[0] = d
            if time.perf_counter() - last[0] > PROGRESS_EVERY:
                last[0] = time.perf_counter()
                frames.put(("frame", _pair_strip(_pair(model, d))))

        def shape(a: Answer) -> tuple:
            final = _pair_strip(_pair(model, latest[0])) if latest[0] is not None else gr.skip()
            return gallery(a.outputs["samples"]), final, _took(a), a.command

        def work() -> None:
            try:
                frames.put(("done", self._run(request, progress, lambda cb: self.pg.generate(
                    condition, _count(n), knobs, cb), shape, show)))
            except gr.Error as e:
                frames.put(("error", e))

        threading.Thread(target=contextvars.copy_context().run, args=(work,), daemon=True).start()
        try:
            while (item := frames.get())[0] == "frame":
                yield gr.skip(), item[1], gr.skip(), gr.skip()
        finally:
            self.stops.stop(request)  # a cancelled or closed stream stops the work at its next step
        if item[0] == "error":
            raise item[1]
        yield item[1]

    def denoise(self, image: str, t: float, condition: str, guidance: float, steps: float, seed: float,
                request: gr.Request, progress: gr.Progress = PROGRESS) -> tuple:
        return self._run(request, progress, lambda cb: self.pg.denoise(
            self.inputs.image(image), int(t), condition, self.knob_values(guidance, steps, seed), cb),
            lambda a: (gallery(a.outputs["result"]), gallery(a.outputs["strip"]), _took(a), a.command))

    def edit(self, image: str, condition: str, guidance: float, steps: float, seed: float,
             request: gr.Request, progress: gr.Progress = PROGRESS) -> tuple:
        return self._run(request, progress, lambda cb: self.pg.edit(
            self.inputs.image(image), condition, self.knob_values(guidance, steps, seed), cb),
            lambda a: (gallery(a.outputs["input"] + a.outputs["edits"]), _took(a), a.command,
                       str(a.files["image"])))

    def inpaint(self, image: str, mask: str, condition: str, guidance: float, steps: float, seed: float,
                request: gr.Request, progress: gr.Progress = PROGRESS) -> tuple:
        return self._run(request, progress, lambda cb: self.pg.inpaint(
            self.inputs.image(image), self.inputs.image(mask, "mask"), condition,
            self.knob_values(guidance, steps, seed), cb),
            lambda a: (gallery(a.outputs["result"]), _took(a), a.command, [str(p) for p in a.files.values()]))

    def anagram(self, first: str, second: str, view: str, third: str, view_3: str, n: float, guidance: float,
                steps: float, seed: float, request: gr.Request, progress: gr.Progress = PROGRESS) -> tuple:
        three = _given(third)
        conditions, views = [first, second, *([third] if three else [])], [view, *([view_3] if three else [])]

        def shape(a: Answer) -> tuple:
            shown = [gallery(p) for p in a.outputs.values()]
            return shown[0], shown[1], shown[2] if three else [], _took(a), a.command

        return self._run(request, progress, lambda cb: self.pg.anagram(
            conditions, views, _count(n), self.knob_values(guidance, steps, seed), cb), shape)

    def hybrid(self, low: str, high: str, sigma: float, n: float, guidance: float, steps: float, seed: float,
               request: gr.Request, progress: gr.Progress = PROGRESS) -> tuple:
        default = self.pg.default_sigma()
        return self._run(request, progress, lambda cb: self.pg.hybrid(
            low, high, _count(n), None if sigma is None or float(sigma) == default else float(sigma),
            self.knob_values(guidance, steps, seed), cb),
            lambda a: (gallery(a.outputs["near"]), gallery(a.outputs["far"]), _took(a), a.command))

    # The page -------------------------------------------------------------------------------------------------
    def build(self) -> gr.Blocks:
        pg = self.pg
        with gr.Blocks(title=f"fundiff playground: {pg.spec}", analytics_enabled=False) as demo:
            gr.Markdown(f"# fundiff playground\nModel **{pg.spec}**: {_describe(pg)}. Every result can be made "
                        "again from the command line shown under it.")
            with gr.Tabs():
                self._generate_tab()
                self._denoise_tab()
                self._edit_tab()
                self._inpaint_tab()
                self._anagram_tab()
                self._hybrid_tab()
        return demo

    def _buttons(self) -> tuple[gr.Button, gr.Button]:
        with gr.Row():
            run = gr.Button("Run", variant="primary")
            stop = gr.Button("Stop", variant="stop")
        return run, stop

    def _wire(self, run: gr.Button, stop: gr.Button, fn: Callable, inputs: list, outputs: list, api: str,
              before: tuple[Callable, list, list] | None = None) -> None:
        """Run -> ``fn`` as the API endpoint ``/api``, after a private ``before`` step when given (the drawing to
        files); Stop stops it."""
        if before is None:
            event = run.click(fn, inputs, outputs, api_name=api, concurrency_id="work")
        else:
            step, step_in, step_out = before
            event = run.click(step, step_in, step_out, api_visibility="private").success(
                fn, inputs, outputs, api_name=api, concurrency_id="work")
        stop.click(self.stop, None, None, cancels=[event], api_visibility="private", queue=False)

    def _generate_tab(self) -> None:
        with gr.Tab("Generate", id="generate"):
            gr.Markdown(TAB_NOTES["generate"])
            with gr.Row():
                with gr.Column():
                    cond = self.condition("class" if self.pg.conditions else "prompt")
                    n = gr.Slider(1, 8, value=4, step=1, label="images")
                    knobs = self.knobs()
                    run, stop = self._buttons()
                with gr.Column():
                    samples = _gallery(label="samples", columns=4)
                    live = gr.Image(label="denoising: x_t (top) and the clean image it predicts (bottom)",
                                    interactive=False, height=160, format="png")
                    took, command = self.footer()
            self._wire(run, stop, self.generate_stream, [cond, n, *knobs], [samples, live, took, command],
                       "generate")

    def _denoise_tab(self) -> None:
        with gr.Tab("Forward and denoise", id="denoise"):
            gr.Markdown(TAB_NOTES["denoise"])
            with gr.Row():
                with gr.Column():
                    shown = gr.Image(str(self.pg.example()), label="image", interactive=False, height=200,
                                     format="png")
                    upload = upload_button("upload another image")
                    image = image_file(self.pg.example(), "image")
                    t = gr.Slider(0, self.pg.T - 1, value=self.pg.T // 2, step=1, label="timestep t")
                    cond = self.condition("class (optional)" if self.pg.conditions else "prompt", allow_none=True)
                    knobs = self.knobs()
                    run, stop = self._buttons()
                with gr.Column():
                    result = _gallery(label="original, noisy, blur, one step, iterative", columns=5)
                    strip = _gallery(label="iterative denoising, every 5th step", columns=6)
                    took, command = self.footer()
            upload.upload(self.shown(self.inputs.uploaded), upload, [image, shown], api_visibility="private")
            self._wire(run, stop, self.denoise, [image, t, cond, *knobs], [result, strip, took, command], "denoise")

    def _edit_tab(self) -> None:
        with gr.Tab("Edit (SDEdit)", id="edit"):
            gr.Markdown(TAB_NOTES["edit"])
            with gr.Row():
                with gr.Column():
                    pad = gr.Sketchpad(label="draw here (pick the brush first)", type="numpy", image_mode="RGBA",
                                       canvas_size=(280, 280), height=340, layers=False, transforms=(),
                                       elem_id="fundiff-sketch",
                                       brush=gr.Brush(default_size=18, colors=["#000000"], color_mode="fixed"))
                    upload = upload_button("or upload a photo or drawing to draw on")
                    cond = self.condition("class" if self.pg.conditions else "prompt")
                    knobs = self.knobs()
                    run, stop = self._buttons()
                    image = image_file(self.pg.example(), "image")
                with gr.Column():
                    strip = _gallery(label="your image as the model reads it, then the edits (more noise to the "
                                           "right)", columns=4, elem_id="fundiff-edits")
                    took, command = self.footer()
                    drawing = gr.File(label="drawing.png (the command's input)", interactive=False)
            upload.upload(self.shown(self.inputs.editor_background), upload, pad, api_visibility="private")
            self._wire(run, stop, self.edit, [image, cond, *knobs], [strip, took, command, drawing], "edit",
                       (self.shown(self.inputs.drawing), [pad], [image]))

    def _inpaint_tab(self) -> None:
        with gr.Tab("Inpaint", id="inpaint"):
            gr.Markdown(TAB_NOTES["inpaint"])
            with gr.Row():
                with gr.Column():
                    editor = gr.ImageEditor(self.inputs.editor_start(), type="numpy", image_mode="RGBA",
                                            sources=(), label="paint the part to replace (the brush)", height=340,
                                            brush=gr.Brush(default_size=24, colors=["#ff3b30"], color_mode="fixed"),
                                            layers=False, transforms=(), elem_id="fundiff-mask")
                    upload = upload_button("upload another image")
                    cond = self.condition("class" if self.pg.conditions else "prompt")
                    knobs = self.knobs()
                    run, stop = self._buttons()
                    image = image_file(self.pg.example(), "image")
                    mask = image_file(self.inputs.default_mask(), "mask")
                with gr.Column():
                    result = _gallery(label="original, mask, inpainted", columns=3)
                    took, command = self.footer()
                    files = gr.File(label="image.png and mask.png (the command's inputs)", file_count="multiple",
                                    interactive=False)
            upload.upload(self.shown(self.inputs.editor_background), upload, editor, api_visibility="private")
            self._wire(run, stop, self.inpaint, [image, mask, cond, *knobs], [result, took, command, files],
                       "inpaint", (self.shown(self.inputs.painted), [editor], [image, mask]))

    def _anagram_tab(self) -> None:
        with gr.Tab("Anagram", id="anagram"):
            gr.Markdown(TAB_NOTES["anagram"])
            with gr.Row():
                with gr.Column():
                    first = self.condition("upright", 0, illusion="anagram")
                    second = self.condition("under the view", 1, illusion="anagram")
                    view = gr.Dropdown(ILLUSION_VIEWS, value="flip", label="view")
                    with gr.Accordion("a third class (three-view anagram)", open=False):
                        third = self.condition("under the second view", allow_none=True)
                        view_3 = gr.Dropdown(ILLUSION_VIEWS, value="rotate_180", label="second view")
                    n = gr.Slider(1, 8, value=2, step=1, label="images")
                    knobs = self.knobs(illusion=True)
                    run, stop = self._buttons()
                with gr.Column():
                    upright = _gallery(label="upright", columns=4, elem_id="fundiff-upright")
                    turned = _gallery(label="under the view", columns=4, elem_id="fundiff-turned")
                    turned_3 = _gallery(label="under the second view", columns=4, visible=False)
                    took, command = self.footer()
            third.change(lambda c: gr.update(visible=_given(c)), third, turned_3, api_visibility="private",
                         queue=False)
            self._wire(run, stop, self.anagram, [first, second, view, third, view_3, n, *knobs],
                       [upright, turned, turned_3, took, command], "anagram")

    def _hybrid_tab(self) -> None:
        with gr.Tab("Hybrid", id="hybrid"):
            gr.Markdown(TAB_NOTES["hybrid"])
            with gr.Row():
                with gr.Column():
                    low = self.condition("from far (low frequencies)", 0, illusion="hybrid")
                    high = self.condition("from near (high frequencies)", 1, illusion="hybrid")
                    sigma = gr.Slider(0.5, 4, value=self.pg.default_sigma(), step=0.25, label="low-pass sigma")
                    n = gr.Slider(1, 8, value=2, step=1, label="images")
                    knobs = self.knobs(illusion=True)
                    run, stop = self._buttons()
                with gr.Column():
                    near = _gallery(label="near", columns=4)
                    far = _gallery(label="far", columns=4)
                    took, command = self.footer()
            self._wire(run, stop, self.hybrid, [low, high, sigma, n, *knobs], [near, far, took, command], "hybrid")


def _gallery(label: str, columns: int, **options: Any) -> gr.Gallery:
    """An output gallery of PNGs (exact pixels, not WebP's lossy ones), as tall as its pictures."""
    return gr.Gallery(label=label, columns=columns, height="auto", format="png", object_fit="contain", **options)


def _describe(pg: Playground) -> str:
    m = pg.model
    kind = {"class": f"{m.num_classes} classes", "prompt": "text prompts", "none": "unconditional"}[m.conditioning]
    return f"{m.channels}x{m.image_size}x{m.image_size} px, {kind}, {'flow matching' if m.is_flow else 'DDPM'}"


def _given(condition: str | None) -> bool:
    """A condition chosen (not "(none)" or empty)."""
    return condition is not None and str(condition).strip() not in ("", NONE)


def _took(a: Answer) -> str:
    return f"took **{a.seconds:.2f} s**"


def _seed(value: float | None) -> int:
    if value is None:
        return 0
    if float(value) != int(value) or not 0 <= int(value) <= 2**32 - 1:
        raise gr.Error(f"the seed must be a whole number from 0 to {2**32 - 1}, got {value}", print_exception=False)
    return int(value)


def _count(n: float | None) -> int:
    return 1 if n is None else int(n)


def _pair(model: Any, d: dict) -> torch.Tensor:
    """x_t and x0_hat of up to four samples of a sampler step, in [0, 1]."""
    return torch.cat([model.to_unit_range(d[k][:4].float().cpu()).clamp(0, 1) for k in ("x", "x0_hat")])


def _pair_strip(frame: torch.Tensor) -> Any:
    """The x_t (top row) and x0_hat (bottom row) of up to four samples as one picture."""
    from PIL import Image

    from fundiff.io.pictures import grid_array

    return Image.fromarray(grid_array(frame, nrow=len(frame) // 2, scale=1))
