"""User image files in, model-sized tensors out (Part A editing: SDEdit and inpainting).

Every image file goes through the same procedure, so any photo or drawing reaches the model the same way:

1. Open it with PIL. A missing, unreadable, truncated or not-an-image file is a ``UserError`` (one line).
2. ``ImageOps.exif_transpose``: phone photos stored sideways with an EXIF orientation come out upright.
3. Transparency (RGBA, LA, PA, or a palette/grey image with a transparent colour) is composited over white.
4. Convert to "L" (1 channel) or "RGB" (3 channels). CMYK and other colour modes go through RGB.
   16-bit grey ("I;16*", "I") is divided by 65535; float grey ("F") is taken as [0, 1], or as [0, 255]
   when a value exceeds 1. These keep their precision (mode "F") and are repeated for 3 channels.
5. Centre-crop to a square (the shorter side; the longer side loses equal margins).
6. Resize to size x size with Lanczos.
7. To a float32 tensor (1, C, size, size) in [0, 1].
8. If the model's data are light on a dark background (``light_on_dark``, like MNIST and Fashion-MNIST), invert:
   ``invert="auto"`` inverts when the background is light, i.e. the image's outer ring (its outer 1/14 on each
   side) averages above 0.5 (dark ink on white paper; clothes on a white backdrop, even dark ones that fill most
   of the frame), "yes" always, "no" never.
9. If ``fit`` (MNIST framing, for drawings), after inversion: take the bounding box of the ink (luminance
   above 0.1 of its maximum), pad it to a centred square, resize that to round(size * 20 / 28) pixels,
   and paste it on a black size x size canvas so its centre of mass lands at the canvas centre (shifted
   no further than keeps the whole drawing on the canvas), as LeCun et al. framed the NIST digits.
   An image whose brightest pixel is below 0.1 has no ink and is a ``UserError``.

Masks (1 = where new content goes) must be binary files of the image's own size; they are centre-cropped
like the image (step 5) and resized with nearest neighbour (step 6), so their pixels match the image's.
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from fundiff.errors import UserError
from fundiff.io.files import atomic_write
from fundiff.io.pictures import to_uint8

INVERT_CHOICES = ("auto", "yes", "no")
INK_FRACTION = 0.1  # ink: luminance above this fraction of the brightest pixel (step 9)
MNIST_BOX = 20 / 28  # MNIST digits fill a 20 x 20 box in a 28 x 28 image
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, what PIL's convert("L") uses


def load_image(path: Path, size: int, channels: int, light_on_dark: bool = False, invert: str = "auto",
               fit: bool = False) -> torch.Tensor:
    """Any image file -> (1, channels, size, size) float32 in [0, 1], by steps 1-9 of the module docstring."""
    if channels not in (1, 3):
        raise UserError(f"images have 1 or 3 channels, not {channels}")
    if invert not in INVERT_CHOICES:
        raise UserError(f"invert must be one of {', '.join(INVERT_CHOICES)}, not {invert!r}")
    img = _to_mode(_over_white(read_upright(path)), channels)
    x = _to_tensor(_square(img, size, Image.Resampling.LANCZOS), channels)
    if light_on_dark and (invert == "yes" or (invert == "auto" and _background(x) > 0.5)):
        x = 1 - x
    return _fit(x, size, path) if fit else x


def load_mask(path: Path, size: int, image_size: tuple[int, int] | None = None) -> torch.Tensor:
    """A binary mask file -> (1, 1, size, size) float32 of exact 0s and 1s (1 = where new content goes).

    Black (0) keeps the image, white (255, or 1 in a 0/1 file) is repainted. ``image_size`` is the
    (width, height) of the image the mask belongs to (:func:`image_size_of`); the mask must match it.
    """
    img = read_upright(path)
    if image_size is not None and tuple(img.size) != tuple(image_size):
        raise UserError(f"mask {path} is {img.size[0]}x{img.size[1]} but its image is "
                        f"{image_size[0]}x{image_size[1]} (width x height): draw the mask on the image itself")
    gray = np.asarray(img.convert("L") if img.mode in ("L", "1", "P", "RGB", "RGBA", "LA") else
                      img.convert("RGB").convert("L"))
    values = set(np.unique(gray).tolist())
    if not (values <= {0, 255} or values <= {0, 1}):
        odd = sorted(values - {0, 1, 255})
        raise UserError(f"mask {path} is not binary: it has grey values such as {odd[:3] or sorted(values)} "
                        "besides 0 and 255; save it as a black-and-white PNG (not JPEG)")
    binary = Image.fromarray(np.where(gray > 0, 255, 0).astype(np.uint8))
    m = torch.from_numpy(np.asarray(_square(binary, size, Image.Resampling.NEAREST)) > 127).float()
    if not m.any():
        raise UserError(f"mask {path} has no white (1) pixels in its centre square at {size}x{size}: "
                        "nothing to repaint")
    return m[None, None]


def image_size_of(path: Path) -> tuple[int, int]:
    """(width, height) of an image file as shown upright (after its EXIF orientation)."""
    return read_upright(path).size


def box_mask(box: Sequence[int], size: int) -> torch.Tensor:
    """(1, 1, size, size) mask, 1 inside the box (x0, y0, x1, y1) = columns [x0, x1), rows [y0, y1).

    Coordinates are pixels of the size x size model image (after crop and resize), like a PIL box.
    """
    try:
        x0, y0, x1, y1 = (operator.index(v) for v in box)
    except (TypeError, ValueError):
        raise UserError(f"a box is 4 integers x0 y0 x1 y1, not {box!r}") from None
    if not (0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size):
        raise UserError(f"box {x0} {y0} {x1} {y1} must have 0 <= x0 < x1 <= {size} and 0 <= y0 < y1 <= {size} "
                        f"(pixels of the {size}x{size} image, x is the column)")
    m = torch.zeros(1, 1, size, size)
    m[..., y0:y1, x0:x1] = 1.0
    return m


def save_image(x: torch.Tensor, path: Path, scale: int = 1) -> Path:
    """(1, C, H, W) or (C, H, W) in [0, 1] (C = 1 or 3) -> PNG at ``path``, each pixel a scale x scale block;
    a batch (N, C, H, W) is written as one row (see :func:`fundiff.io.pictures.save_grid` for other layouts)."""
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] not in (1, 3) or scale < 1:
        raise ValueError(f"save_image wants (N, C, H, W) or (C, H, W) with C in (1, 3), got {tuple(x.shape)}, "
                         f"scale {scale}")
    if x.shape[0] > 1:
        from fundiff.io.pictures import save_grid

        return save_grid(x, path, nrow=x.shape[0], scale=scale)
    a = to_uint8(x)[0].repeat(scale, axis=0).repeat(scale, axis=1)
    img = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
    path = Path(path)
    atomic_write(path, _png_writer(img))
    return path


def _png_writer(img: Image.Image) -> Callable[[Path], None]:
    return lambda p: img.save(p, format="PNG")


def read_upright(path: Path) -> Image.Image:
    """Steps 1-2: the decoded image, upright; any failure is one line. PIL's warnings (corrupt EXIF data, a
    very large image) are not printed: the file either decodes or is refused in that one line."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                im.load()
                return ImageOps.exif_transpose(im)
    except FileNotFoundError:
        reason = "no such file"
    except IsADirectoryError:
        reason = "it is a directory"
    except Image.UnidentifiedImageError:
        reason = "not an image file PIL can read (PNG, JPEG, WebP, BMP, GIF, TIFF, ...)"
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
    raise UserError(f"cannot read image {path}: {reason}")


def _is_deep(img: Image.Image) -> bool:
    return img.mode == "F" or img.mode.startswith("I")


def _over_white(img: Image.Image) -> Image.Image:
    """Step 3: composite any transparency over white."""
    if _is_deep(img) or (img.mode not in ("RGBA", "LA", "PA") and "transparency" not in img.info):
        return img
    white = Image.new("RGBA", img.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, img.convert("RGBA")).convert("RGB")


def _to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Step 4: "L" or "RGB" (8-bit), or "F" grey in [0, 1] for 16-bit and float files."""
    if _is_deep(img):
        a = np.nan_to_num(np.asarray(img, dtype=np.float64))
        peak = 65535.0 if img.mode != "F" else (255.0 if a.max() > 1 else 1.0)
        return Image.fromarray(np.clip(a / peak, 0, 1).astype(np.float32))
    if img.mode not in ("L", "RGB", "1", "P"):
        img = img.convert("RGB")  # CMYK, YCbCr, ...
    return img.convert("L" if channels == 1 else "RGB")


def _square(img: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    """Steps 5-6: the centred square, resized to size x size."""
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return img.crop((left, top, left + s, top + s)).resize((size, size), resample)


def _to_tensor(img: Image.Image, channels: int) -> torch.Tensor:
    """Step 7: (1, channels, H, W) float32 in [0, 1]."""
    a = np.asarray(img, dtype=np.float32)
    a = a if img.mode == "F" else a / 255.0
    a = a[..., None] if a.ndim == 2 else a
    x = torch.from_numpy(a.transpose(2, 0, 1).copy()).clamp(0, 1)
    return x.expand(channels, -1, -1).clone()[None]


def _background(x: torch.Tensor) -> float:
    """Step 8: the mean of the outer ring of an image (1, C, H, W), all channels: its background."""
    w = max(1, x.shape[-1] // 14)
    ring = torch.ones(x.shape[-2:], dtype=torch.bool)
    ring[w:-w, w:-w] = False
    return float(x[..., ring].mean())


def _luminance(x: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W) grey."""
    return x[0] if x.shape[0] == 1 else np.tensordot(np.asarray(_LUMA, dtype=x.dtype), x, axes=1)


def _fit(x: torch.Tensor, size: int, path: Path) -> torch.Tensor:
    """Step 9: frame the ink as MNIST does (20/28 box, centred by its centre of mass)."""
    a = x[0].numpy()
    lum = _luminance(a)
    if lum.max() < INK_FRACTION:
        raise UserError(f"image {path} has no ink to fit (after inversion its brightest pixel is "
                        f"{lum.max():.2f}): check the invert setting, or do not fit it")
    ink = lum > INK_FRACTION * lum.max()
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    patch = _resize_square(_pad_square(a[:, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]),
                           max(1, round(size * MNIST_BOX)))
    w = _luminance(patch)
    n = patch.shape[-1]
    centre = np.arange(n) + 0.5
    total = w.sum()
    cy = (w.sum(1) @ centre) / total if total > 0 else n / 2
    cx = (w.sum(0) @ centre) / total if total > 0 else n / 2
    top = int(np.clip(np.floor(size / 2 - cy + 0.5), 0, size - n))
    left = int(np.clip(np.floor(size / 2 - cx + 0.5), 0, size - n))
    canvas = np.zeros((a.shape[0], size, size), dtype=np.float32)
    canvas[:, top:top + n, left:left + n] = patch
    return torch.from_numpy(canvas)[None]


def _pad_square(a: np.ndarray) -> np.ndarray:
    """(C, h, w) -> (C, s, s), s = max(h, w), zeros around, content centred."""
    c, h, w = a.shape
    s = max(h, w)
    out = np.zeros((c, s, s), dtype=np.float32)
    out[:, (s - h) // 2:(s - h) // 2 + h, (s - w) // 2:(s - w) // 2 + w] = a
    return out


def _resize_square(a: np.ndarray, n: int) -> np.ndarray:
    """(C, s, s) -> (C, n, n) with Lanczos per channel, clipped to [0, 1]."""
    chans = [np.asarray(Image.fromarray(ch).resize((n, n), Image.Resampling.LANCZOS)) for ch in a]
    return np.clip(np.stack(chans), 0, 1).astype(np.float32)
