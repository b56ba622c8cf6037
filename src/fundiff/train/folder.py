"""Any image folder as training data (torchvision's ``ImageFolder`` convention, decoded with Pillow).

A folder of class subfolders (each subfolder's name is a class name and prompt; classes in sorted order) or a flat
folder of images (one class: for time-conditioned models). PNG, JPEG, WebP, BMP and GIF files of any size and mode:
alpha is laid on white, then each image is resized (shorter side, bicubic) and centre-cropped to ``image_size``
(``PIL.ImageOps.fit``) and kept as grey or RGB. Unreadable files are listed once and skipped.

When the decoded images fit the memory budget they are kept as uint8 (N, C, S, S) (4 bytes per pixel less than
float); otherwise :class:`FolderImages` decodes each batch from disk as it is drawn, so a folder larger than memory
trains in constant memory.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from fundiff.errors import UserError
from fundiff.nets.unet import supported_size, unet_depth

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")
CACHE_ENV = "FUNDIFF_DATA_CACHE_MB"
"""Decoded images are kept in memory up to this many MB (default: a quarter of the memory available, at most 4 GB);
beyond it each batch is decoded from the files."""
COLOUR_SAMPLE = 256
"""At most this many colour-mode files (evenly spread) are decoded to tell a colour folder from grey saved as RGB."""


@dataclass(frozen=True)
class FolderScan:
    """The image files of a folder, their labels, shorter sides and modes (read from their headers), and class
    names (empty for a flat folder)."""

    root: Path
    files: tuple[Path, ...]
    labels: tuple[int, ...]
    class_names: tuple[str, ...]
    skipped: tuple[tuple[Path, str], ...]
    sides: tuple[int, ...]
    modes: tuple[str, ...]


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def scan_folder(root: Path) -> FolderScan:
    """List a data folder: class subfolders when any subfolder holds images, else the folder's own images."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data folder {root} {'is a file, not a folder' if root.exists() else 'does not exist'}")
    subfolders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    per_class = {p.name: _images_in(p) for p in subfolders}
    if any(per_class.values()):
        empty = [name for name, files in per_class.items() if not files]
        if empty:
            raise UserError(f"class folder{'s' if len(empty) > 1 else ''} {', '.join(empty)} in {root} "
                            f"hold{'' if len(empty) > 1 else 's'} no images ({'/'.join(IMAGE_SUFFIXES)}); "
                            "add images or remove the folder")
        names = tuple(per_class)
        files = [(f, i) for i, name in enumerate(names) for f in per_class[name]]
    else:
        names, files = (), [(f, 0) for f in _images_in(root)]
    if not files:
        raise UserError(f"{root} holds no images ({'/'.join(IMAGE_SUFFIXES)}), directly or in class subfolders")
    readable, skipped = [], []
    for f, label in files:
        header = _header(f)
        (skipped.append((f, header)) if isinstance(header, str) else readable.append((f, label, *header)))
    if not readable:
        raise UserError(f"none of the {len(files)} image files in {root} can be read (e.g. {skipped[0][0].name}: "
                        f"{skipped[0][1]})")
    f, y, sides, modes = zip(*readable, strict=True)
    return FolderScan(root, f, y, names, tuple(skipped), sides, modes)


def _header(path: Path) -> tuple[int, str] | str:
    """The image's shorter side and mode from its header, or why Pillow cannot open it."""
    try:
        with Image.open(path) as im:
            return min(im.size), im.mode
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        return str(e).splitlines()[0][:120] or e.__class__.__name__


def infer_size(scan: FolderScan) -> int:
    """The median of the images' shorter sides, rounded to a size the UNet builds for."""
    return supported_size(statistics.median(scan.sides))


def infer_channels(scan: FolderScan) -> int:
    """3 when any image has colour (some pixel whose R, G and B differ), else 1."""
    colour = [f for f, mode in zip(scan.files, scan.modes, strict=True) if mode not in GREY_MODES]
    for f in _spread(colour, COLOUR_SAMPLE):
        a = np.asarray(_rgb(f))
        if (a[..., 0] != a[..., 1]).any() or (a[..., 1] != a[..., 2]).any():
            return 3
    return 1


def _spread(items: Sequence, k: int) -> list:
    if len(items) <= k:
        return list(items)
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)]


def _rgb(path: Path) -> Image.Image:
    """The image in RGB, transparency laid on white, turned upright by its EXIF orientation."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            white = Image.new("RGBA", im.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, im).convert("RGB")
        return im.convert("RGB")


def decode(path: Path, size: int, channels: int) -> np.ndarray:
    """One image file as uint8 (C, S, S): resized (shorter side) and centre-cropped to ``size`` px."""
    im = ImageOps.fit(_rgb(path), (size, size), Image.Resampling.BICUBIC)
    if channels == 1:
        return np.array(im.convert("L"))[None]
    return np.array(im).transpose(2, 0, 1).copy()


class FolderImages:
    """Images of a folder decoded on demand: ``images[idx]`` (a tensor of indices, a slice or an int) is float32
    (N, C, S, S) in [0, 1], read from the files, so only the asked batch is in memory."""

    def __init__(self, files: Sequence[Path], size: int, channels: int) -> None:
        self.files, self.size, self.channels = tuple(files), size, channels

    def __len__(self) -> int:
        return len(self.files)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.files), self.channels, self.size, self.size)

    def take(self, idx: torch.Tensor | Sequence[int]) -> FolderImages:
        return FolderImages([self.files[int(i)] for i in idx], self.size, self.channels)

    def __getitem__(self, idx: torch.Tensor | slice | int) -> torch.Tensor:
        if isinstance(idx, int):
            return self[torch.tensor([idx])][0]
        picked = range(len(self.files))[idx] if isinstance(idx, slice) else [int(i) for i in idx]
        batch = np.stack([decode(self.files[i], self.size, self.channels) for i in picked])
        return torch.from_numpy(batch).float().div_(255.0)


class CachedImages:
    """Decoded images kept as uint8 (N, C, S, S); ``images[idx]`` is float32 in [0, 1]."""

    def __init__(self, data: torch.Tensor) -> None:
        self.data = data

    def __len__(self) -> int:
        return int(self.data.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    def take(self, idx: torch.Tensor | Sequence[int]) -> CachedImages:
        return CachedImages(self.data[torch.as_tensor(idx, dtype=torch.long)])

    def __getitem__(self, idx: torch.Tensor | slice | int) -> torch.Tensor:
        return self.data[idx].float().div_(255.0)


def cache_budget() -> int:
    """Bytes of decoded images kept in memory (:data:`CACHE_ENV`, or a quarter of the available memory, <= 4 GB)."""
    if os.environ.get(CACHE_ENV):
        try:
            return max(0, int(float(os.environ[CACHE_ENV]) * 2 ** 20))
        except ValueError:
            raise UserError(f"{CACHE_ENV}={os.environ[CACHE_ENV]!r} is not a number of MB") from None
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        available = 8 * 2 ** 30
    return min(available // 4, 4 * 2 ** 30)


@dataclass
class FolderData:
    """What :func:`read_folder` found: the images, their labels, the class names and the files it skipped."""

    images: CachedImages | FolderImages
    labels: torch.Tensor
    class_names: tuple[str, ...]
    skipped: tuple[tuple[Path, str], ...]


def read_folder(root: Path, size: int | None = None, channels: int | None = None,
                progress: bool = True) -> FolderData:
    """A data folder at ``size`` px and ``channels`` (each by default from the data): every file decoded once (a
    file Pillow cannot decode is skipped and listed), and kept in memory when the decoded images fit the budget
    (:func:`cache_budget`), else read from disk batch by batch."""
    scan = scan_folder(root)
    size = infer_size(scan) if size is None else size
    channels = infer_channels(scan) if channels is None else channels
    if not unet_depth(size):
        raise UserError(f"--image-size {size} is not a size the UNet builds for; the nearest is {supported_size(size)}")
    if channels not in (1, 3):
        raise UserError(f"--channels {channels}: choose 1 (grey) or 3 (colour)")
    keep = len(scan.files) * channels * size * size <= cache_budget()
    decoded = torch.empty((len(scan.files) if keep else 0, channels, size, size), dtype=torch.uint8)
    good, skipped = [], list(scan.skipped)
    for i, f in enumerate(tqdm(scan.files, desc="read images", unit="img", disable=not progress, leave=False)):
        try:
            a = decode(f, size, channels)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            skipped.append((f, str(e).splitlines()[0][:120] or e.__class__.__name__))
            continue
        if keep:
            decoded[len(good)] = torch.from_numpy(a)  # filled in place: no second copy of the folder
        good.append(i)
    if not good:
        raise UserError(f"none of the {len(scan.files)} image files in {root} can be decoded")
    files = [scan.files[i] for i in good]
    images = CachedImages(decoded[:len(good)]) if keep else FolderImages(files, size, channels)
    labels = torch.tensor([scan.labels[i] for i in good], dtype=torch.int64)
    return FolderData(images, labels, scan.class_names, tuple(skipped))
