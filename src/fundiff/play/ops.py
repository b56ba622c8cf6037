"""The playground's operations, without any web framework: what a page sends in (conditions as text, numbers, image
files), an :class:`Answer` out (labelled image batches, the seconds it took, the equivalent command line).

Each operation calls :mod:`fundiff.parta` as the matching command does (:mod:`fundiff.results.parta`), with the
model's card for every setting left at its default, and reads image and mask files with the same loaders
(:func:`~fundiff.io.images.load_image`, :func:`~fundiff.io.images.load_mask`); so the command line it shows,
run on the files the page offers for download, writes the same bytes.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch

from fundiff import parta as ops
from fundiff.core.loop import Callback
from fundiff.core.model import DiffusionModel
from fundiff.core.sampling import Sampling
from fundiff.core.views import make_view
from fundiff.errors import UserError
from fundiff.evaluate.parta import shrink_far
from fundiff.io.images import image_size_of, load_image, load_mask
from fundiff.results.parta import condition_of

Images = list[tuple[torch.Tensor, str]]
"""Pictures of one output: (image (C, H, W) in [0, 1], caption) pairs."""
EXAMPLES = {"digits": "digit.png", "fashion": "sneaker.png"}
"""The bundled example image of each shipped model (tools/ship_examples.py); other models: a photo or the digit."""
PAIRS = {"digits": {"anagram": ("9", "2"), "hybrid": ("0", "4")},
         "fashion": {"anagram": ("Trouser", "Bag"), "hybrid": ("Bag", "Trouser")}}
"""The illusions a shipped model's page starts with: pairs that read both ways with the page's defaults (seed 0, the
judge of the data): digits 9 upright / 2 flipped in 4 of 4 images, the hybrid of 0 far / 4 near in 2 of 4 (README,
"Illusions": pairs of round digits work; bags and trousers read in every view)."""
NONE = "(none)"
"""The condition choice meaning "unconditional"."""
STRIP_EVERY = 5
"""The denoise tab's strip shows x_t every this many steps (spec 1.4: every 5th)."""


@dataclass
class Knobs:
    """What every operation takes besides its own inputs; None: the model's card decides."""

    guidance: float | None = None
    steps: int | None = None
    seed: int = 0


@dataclass
class Answer:
    """An operation's result: ``outputs`` (name -> pictures), ``seconds`` of work, and ``command``, the ``fundiff``
    command line that makes the same images (its input files are ``files``: name -> path)."""

    outputs: dict[str, Images]
    seconds: float
    command: str
    files: dict[str, Path] = field(default_factory=dict)


class Playground:
    """One loaded model and the six Part A operations on it, each timed and described as a command line."""

    def __init__(self, model: DiffusionModel, spec: str) -> None:
        self.model, self.spec = model, spec

    # What the page offers -------------------------------------------------------------------------------------
    @property
    def conditions(self) -> list[str]:
        """The classes a page lists (their names when the model has them), empty for prompt and unconditional
        models."""
        m = self.model
        if m.conditioning != "class":
            return []
        return list(m.class_names) if m.class_names else [str(c) for c in range(m.num_classes)]

    def default_condition(self, index: int = 0, illusion: str | None = None) -> str:
        """A starting condition: for the shipped models' illusions, a pair measured to work (:data:`PAIRS`); else the
        ``index``-th class (3, 7, 5 for digits) or prompt."""
        choices = self.conditions
        if not choices:
            return ["a high quality photo", "an oil painting of a man", "a pencil sketch of a dog"][index % 3]
        if illusion is not None and self.spec in PAIRS and index < 2:
            return PAIRS[self.spec][illusion][index]
        picks = [3, 7, 5] if self.model.num_classes == 10 else [index, index + 1, index + 2]
        return choices[picks[index % 3] % len(choices)]

    def defaults(self, illusion: bool = False) -> tuple[float, int]:
        """(guidance, steps) of the model's card (its illusion settings for anagrams and hybrids)."""
        s = ops.settings(self.model, None, illusion=illusion)
        return s.guidance, len(s.timesteps(self.model.schedule.T))

    def example(self) -> Path:
        """The bundled example image that suits the model."""
        root = resources.files("fundiff") / "assets"
        if self.spec in EXAMPLES:
            return Path(str(root / "examples" / EXAMPLES[self.spec]))
        if self.model.channels == 3:
            return Path(str(root / "photos" / "chelsea.jpg"))
        return Path(str(root / "examples" / EXAMPLES["digits"]))

    def default_sigma(self) -> float:
        """The hybrid's low-pass sigma for this model's image size (:func:`fundiff.parta.hybrid_sigma`)."""
        return ops.hybrid_sigma(self.model.image_size)

    @property
    def T(self) -> int:
        return self.model.schedule.T

    # The operations -------------------------------------------------------------------------------------------
    def generate(self, condition: str | None, n: int, knobs: Knobs, callback: Callback | None = None) -> Answer:
        """Samples from pure noise with CFG (spec 1.5, 1.6)."""
        cond = self._condition(condition)
        s = self._sampling(knobs)
        with _Timer() as t:
            x = ops.generate(self.model, cond, n, seed=knobs.seed, sampling=s, callback=callback)
        return Answer({"samples": _each(x, "sample")}, t.seconds,
                      self._command("generate", [], self._prompts(condition) + ["--n", n], knobs))

    def denoise(self, image: Path, t: int, condition: str | None, knobs: Knobs,
                callback: Callback | None = None) -> Answer:
        """Noise an image to timestep t (1.1), then denoise it by Gaussian blur, in one step and iteratively
        (1.2-1.4)."""
        x0 = self._image(image)
        ops.check_timestep(self.model, t)
        cond = self._condition(condition)
        with _Timer() as timer:
            r = ops.denoise(self.model, x0, t, cond, seed=knobs.seed, sampling=self._sampling(knobs),
                            strip_every=STRIP_EVERY, callback=callback)
        shown = [(r[k][0], label) for k, label in (("noisy", f"noisy, t = {t}"), ("blur", "Gaussian blur"),
                                                     ("one_step", "one step"), ("iterative", "iterative"))]
        levels = [*r["timesteps"].tolist()[::STRIP_EVERY], 0]  # the strip: x_t every STRIP_EVERY steps, then x_0
        strip = [(f, f"x_t at t = {k}") for f, k in zip(r["strip"][:, 0], levels)]
        return Answer({"result": [(x0[0], "original"), *shown], "strip": strip}, timer.seconds,
                      self._command("denoise", [image], self._prompts(condition) + ["--t", t], knobs),
                      {"image": image})

    def edit(self, image: Path, condition: str | None, knobs: Knobs, callback: Callback | None = None) -> Answer:
        """SDEdit (spec 1.7): the image noised to each i_start's timestep and denoised toward the condition."""
        x0 = self._image(image, fit=self.model.mnist_framing)
        cond = self._condition(condition)
        s = self._sampling(knobs)
        ks = ops.timesteps(self.model, ops.settings(self.model, s))
        with _Timer() as t:
            results = ops.edit(self.model, x0, cond, seed=knobs.seed, sampling=s, callback=callback)
        strip = [(x[0], f"i_start {i} (t = {ks[i]})") for i, x in results.items()]
        return Answer({"input": [(x0[0], "your image, as the model reads it")], "edits": strip}, t.seconds,
                      self._command("edit", [image], self._prompts(condition), knobs), {"image": image})

    def inpaint(self, image: Path, mask: Path, condition: str | None, knobs: Knobs,
                callback: Callback | None = None) -> Answer:
        """Inpainting (spec 1.7.2): new content where the mask is white, the original elsewhere."""
        x0 = self._image(image)
        m = ops.check_mask(load_mask(mask, self.model.image_size, image_size_of(image)))
        cond = self._condition(condition)
        with _Timer() as t:
            x = ops.inpaint(self.model, x0, m, cond, seed=knobs.seed, sampling=self._sampling(knobs),
                            callback=callback)
        pictures = [(x0[0], "original"), (m.expand_as(x0)[0], "mask"), (x[0], "inpainted")]
        return Answer({"result": pictures}, t.seconds,
                      self._command("inpaint", [image], ["--mask", mask, *self._prompts(condition)], knobs),
                      {"image": image, "mask": mask})

    def anagram(self, conditions: Sequence[str], views: Sequence[str], n: int, knobs: Knobs,
                callback: Callback | None = None) -> Answer:
        """Visual anagrams (spec 1.8): one image per sample that reads as each condition under its view; shown
        upright and under every other view."""
        views = ["identity", *[v for v in views if v != "identity"]]
        conds = [self._condition(c, required=True) for c in conditions]
        ops.check_anagram(self.model, conds, views)
        s = self._sampling(knobs, illusion=True)
        with _Timer() as t:
            x = ops.anagram(self.model, conds, views, n, seed=knobs.seed, sampling=s, callback=callback)
        outputs = {v: _each(make_view(v, self.model.image_size).view(x), f"{c} ({_shown(v)})")
                   for v, c in zip(views, conditions, strict=True)}
        opts = [a for c in conditions for a in ("--prompt", c)] + ["--views", *views[1:], "--n", n]
        return Answer(outputs, t.seconds, self._command("anagram", [], opts, knobs, illusion=True))

    def hybrid(self, low: str, high: str, n: int, sigma: float | None, knobs: Knobs,
               callback: Callback | None = None) -> Answer:
        """Hybrid images (spec 1.9): ``high`` from near, ``low`` from far. "Far" is the image as a person sees it
        from three times the distance: shrunk to a third of its side and enlarged back."""
        conds = [self._condition(c, required=True) for c in (low, high)]
        kernel = 33
        sigmas = ops.check_hybrid(self.model, conds, kernel, None if sigma is None else [sigma])
        s = self._sampling(knobs, illusion=True)
        with _Timer() as t:
            x = ops.hybrid(self.model, conds, n, kernel, sigmas, seed=knobs.seed, sampling=s, callback=callback)
        opts = ["--low", low, "--high", high, "--n", n] + ([] if sigma is None else ["--sigma", sigma])
        return Answer({"near": _each(x, f"near: {high}"), "far": _each(shrink_far(x), f"far: {low}")},
                      t.seconds, self._command("hybrid", [], opts, knobs, illusion=True))

    # Helpers --------------------------------------------------------------------------------------------------
    def _condition(self, text: str | None, required: bool = False) -> object:
        """A page's condition: "(none)" or empty is unconditional (refused where ``required``), else checked by
        the model (a class number or name; a prompt for text models)."""
        text = None if text is None or str(text).strip() in ("", NONE) else str(text).strip()
        if text is None and required and self.model.conditioning != "none":
            raise UserError("choose a class or write a prompt for each part of the illusion")
        return condition_of(self.model, text, None)

    def _prompts(self, condition: str | None) -> list[object]:
        text = None if condition is None or str(condition).strip() in ("", NONE) else str(condition).strip()
        return [] if text is None else ["--prompt", text]

    def _sampling(self, knobs: Knobs, illusion: bool = False) -> Sampling:
        """The card's settings with the knobs the user moved: guidance, and steps when they differ from the
        card's (so the card's own grid, a stride for instance, stays when the slider was not touched)."""
        guidance, steps = self.defaults(illusion)  # Sampling checks what is given (finite guidance, steps >= 1)
        return Sampling(guidance=None if knobs.guidance is None or knobs.guidance == guidance else
                        float(knobs.guidance),
                        steps=None if knobs.steps is None or knobs.steps == steps else int(knobs.steps))

    def _image(self, path: Path, fit: bool = False) -> torch.Tensor:
        m = self.model
        return load_image(Path(path), m.image_size, m.channels, m.light_on_dark, "auto", fit)

    def _command(self, op: str, args: Sequence[object], options: Sequence[object], knobs: Knobs,
                 illusion: bool = False) -> str:
        """``fundiff OP ARGS --model SPEC OPTIONS`` plus the sampling options that differ from the card's and
        the seed; input files by their names (the page offers them for download)."""
        s = self._sampling(knobs, illusion)
        tail = [*(["--guidance", s.guidance] if s.guidance is not None else []),
                *(["--steps", s.steps] if s.steps is not None else []), "--seed", knobs.seed]
        words = ["fundiff", op, *(_name(a) for a in args), "--model", self.spec, *(_name(o) for o in options), *tail]
        return shlex.join(str(w) for w in words)


def _name(value: object) -> object:
    """Files by their names (in the folder the page's downloads go to); numbers as the CLI writes them."""
    if isinstance(value, Path):
        return value.name
    if isinstance(value, float):
        return f"{value:g}"
    return value


def _each(x: torch.Tensor, caption: str) -> Images:
    return [(img, caption) for img in x]


def _shown(view: str) -> str:
    return "upright" if view == "identity" else f"under {view.replace('_', ' ')}"


class _Timer:
    """``with _Timer() as t: ...``; then ``t.seconds``."""

    def __enter__(self) -> _Timer:
        self.t0, self.seconds = time.perf_counter(), 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0

