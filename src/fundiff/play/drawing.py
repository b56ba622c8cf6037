"""What the playground's page draws, as files: the sketch pad's drawing and the inpainting brush's mask become the
image and mask files the command line would read (each request in its own folder), and the Stop button's switch.

No web framework here: an editor value is the dict a Gradio ImageEditor/Sketchpad sends with ``type="numpy"``
(``background``, ``layers``, ``composite``; RGBA arrays or None).
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fundiff.errors import UserError
from fundiff.io.files import atomic_write
from fundiff.io.images import load_image, read_upright
from fundiff.io.pictures import to_pil
from fundiff.play.ops import Playground

EDITOR_SCALE = 8
"""The inpainting editor shows a model-size example this many times larger, so a brush can paint single pixels."""
EDITOR_MIN = 224
"""An uploaded image smaller than this (px, its shorter side) is enlarged in the editors."""
COVERED = 0.25
"""A model pixel is in the mask when the brush covered at least this share of it."""
INK = 8
"""A sketch is empty when its darkest and lightest pixels (laid on white) differ by less than this (of 255)."""


class StopRequestedError(Exception):
    """The Stop button was pressed: the work ends at its next step."""


class StopSwitch:
    """One switch per browser session: :meth:`arm` at the start of a run, :meth:`stop` from the Stop button."""

    def __init__(self) -> None:
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def arm(self, request: Any) -> threading.Event:
        event = threading.Event()
        with self._lock:
            self._events[_session(request)] = event
        return event

    def stop(self, request: Any) -> None:
        with self._lock:
            event = self._events.get(_session(request))
        if event is not None:
            event.set()


def _session(request: Any) -> str:
    return getattr(request, "session_hash", None) or "local"


class Inputs:
    """The files behind the page's images: each request's in a new numbered folder under ``workdir``."""

    def __init__(self, pg: Playground, workdir: Path) -> None:
        self.pg, self.workdir = pg, Path(workdir)
        self._count = itertools.count()
        self._lock = threading.Lock()

    def folder(self) -> Path:
        with self._lock:
            folder = self.workdir / f"{next(self._count):06d}"
        folder.mkdir(parents=True)
        return folder

    @staticmethod
    def image(path: str | Path | None, what: str = "image") -> Path:
        """The path of a given image (the page's or an API caller's upload), or one line saying it is missing."""
        if path is None or str(path).strip() == "":
            raise UserError(f"no {what} given: upload one (or keep the example)")
        return Path(path)

    def drawing(self, value: dict | None) -> str:
        """The sketch pad's picture (strokes over any uploaded image) as ``drawing.png``; an empty pad is one
        line."""
        flat = _flat(_composite(value))
        if flat is None or int(flat.max()) - int(flat.min()) < INK:
            raise UserError("the sketch pad is empty: draw something (a digit for the digit model) or upload an "
                            "image, then press Run")
        return str(_save(Image.fromarray(flat), self.folder() / "drawing.png"))

    @staticmethod
    def uploaded(path: str | None) -> tuple[str, str]:
        """An uploaded file, checked to be an image (one line if not), for the endpoint and for the page."""
        read_upright(Inputs.image(path))
        return str(path), str(path)

    @staticmethod
    def editor_background(path: str | None) -> dict:
        """An uploaded image as an editor's background, to draw or paint on (enlarged to at least
        :data:`EDITOR_MIN` px by whole pixels, so a model-size image can be painted pixel by pixel); one line if the
        file is not an image."""
        img = read_upright(Inputs.image(path)).convert("RGBA")
        scale = max(1, EDITOR_MIN // min(img.size))
        if scale > 1:
            img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
        return {"background": np.asarray(img), "layers": [], "composite": None}

    def painted(self, value: dict | None) -> tuple[str, str]:
        """The inpainting editor's image and brush strokes as ``image.png`` and ``mask.png`` (white = paint new
        content), the mask snapped to the model's pixels: one is masked where the brush covered a quarter of it."""
        background = None if value is None else value.get("background")
        if background is None:
            raise UserError("no image to inpaint: upload one (or keep the example)")
        image = _flat(np.asarray(background))
        strokes = [np.asarray(a) for a in (value.get("layers") or []) if a is not None]
        painted = np.zeros(image.shape[:2], dtype=bool)
        for layer in strokes:
            if layer.ndim == 3 and layer.shape[:2] == painted.shape:
                painted |= layer[..., -1] > 0 if layer.shape[-1] in (2, 4) else layer.max(-1) > 0
        mask = snap_mask(painted, self.pg.model.image_size)
        if not mask.any():
            raise UserError("the mask covers nothing: paint over the part of the image to replace, then press Run")
        folder = self.folder()
        return (str(_save(Image.fromarray(image), folder / "image.png")),
                str(_save(Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)), folder / "mask.png")))

    def editor_start(self) -> dict:
        """The inpainting editor's first value: the example enlarged :data:`EDITOR_SCALE` times, with the default
        mask already painted (in a translucent red) so Run works at once."""
        example = load_image(self.pg.example(), self.pg.model.image_size, self.pg.model.channels)
        a = np.asarray(to_pil(example[0]))
        big = a.repeat(EDITOR_SCALE, 0).repeat(EDITOR_SCALE, 1)
        mask = default_mask(self.pg.model.image_size).repeat(EDITOR_SCALE, 0).repeat(EDITOR_SCALE, 1)
        layer = np.zeros((*mask.shape, 4), dtype=np.uint8)
        layer[mask] = (255, 59, 48, 160)
        background = np.dstack([big if big.ndim == 3 and big.shape[-1] == 3 else np.repeat(big.reshape(
            *big.shape[:2], 1), 3, -1), np.full(big.shape[:2], 255, np.uint8)])
        return {"background": background, "layers": [layer], "composite": None}

    def default_mask(self) -> Path:
        """The API's default mask for the example image (:func:`default_mask` at the example's size), as a file."""
        path = self.workdir / "default" / "mask.png"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            example = load_image(self.pg.example(), self.pg.model.image_size, self.pg.model.channels)
            mask = default_mask(example.shape[-1])
            _save(Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)), path)
        return path


def default_mask(size: int) -> np.ndarray:
    """The upper half of the image (rows [0, size/2)): an example region to repaint."""
    mask = np.zeros((size, size), dtype=bool)
    mask[: size // 2] = True
    return mask


def snap_mask(painted: np.ndarray, size: int) -> np.ndarray:
    """A painted (H, W) boolean at the image's size -> the same-size mask whose centre square is a size x size grid
    of blocks, each fully in where the brush covered at least :data:`COVERED` of it (so the command's mask loader,
    which centre-crops and samples nearest, reads exactly that grid); outside the square: not masked."""
    h, w = painted.shape
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    square = Image.fromarray(painted[top:top + s, left:left + s].astype(np.float32))
    cover = np.asarray(square.resize((size, size), Image.Resampling.BOX)) >= COVERED
    out = np.zeros_like(painted)
    out[top:top + s, left:left + s] = np.asarray(Image.fromarray(cover.astype(np.uint8) * 255).resize(
        (s, s), Image.Resampling.NEAREST)) > 127
    return out


def _composite(value: dict | None) -> np.ndarray | None:
    """The editor's picture: its composite, else its background with the layers drawn over it."""
    if value is None:
        return None
    if value.get("composite") is not None:
        return np.asarray(value["composite"])
    parts = [np.asarray(p) for p in [value.get("background"), *(value.get("layers") or [])] if p is not None]
    if not parts:
        return None
    out = Image.new("RGBA", parts[0].shape[1::-1], (255, 255, 255, 0))
    for p in parts:
        out.alpha_composite(Image.fromarray(_rgba(p)).resize(out.size))
    return np.asarray(out)


def _rgba(a: np.ndarray) -> np.ndarray:
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 4:
        return a.astype(np.uint8)
    rgb = np.repeat(a, 3, -1) if a.shape[-1] == 1 else a[..., :3]
    return np.dstack([rgb, np.full(a.shape[:2], 255, np.uint8)]).astype(np.uint8)


def _flat(a: np.ndarray | None) -> np.ndarray | None:
    """An (H, W[, C]) picture laid on white, as (H, W, 3) uint8 RGB (what a PNG of it shows)."""
    if a is None:
        return None
    rgba = _rgba(np.asarray(a))
    alpha = rgba[..., 3:4].astype(np.float32) / 255
    return (rgba[..., :3] * alpha + 255 * (1 - alpha)).round().astype(np.uint8)


def _save(img: Image.Image, path: Path) -> Path:
    atomic_write(path, lambda p: img.save(p, format="PNG"))
    return path
