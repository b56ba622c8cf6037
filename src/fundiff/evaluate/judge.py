"""The judge: a small CNN classifier trained on a data set's training split (digits, clothes or an image folder, at
its size and channels), whose 128-d penultimate features also serve the Frechet distance."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open
from torch import nn
from tqdm import tqdm

from fundiff.errors import UserError
from fundiff.io.files import save_safetensors, versions
from fundiff.nets.classifier import JudgeNet
from fundiff.train.data import Digits

JUDGE_KIND = "fundiff-digit-judge"
DIGIT_SHAPE = {"channels": 1, "image_size": 28, "num_classes": 10}


def random_shift(x: torch.Tensor, g: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Shift each image by up to ``max_shift`` pixels in x and y (zero fill): the judge's augmentation."""
    n, c, s = x.shape[0], x.shape[1], x.shape[-1]
    padded = F.pad(x, [max_shift] * 4)
    dx, dy = (torch.randint(0, 2 * max_shift + 1, (n,), generator=g) for _ in range(2))
    rows = (dy[:, None] + torch.arange(s)[None])[:, None, :, None].expand(n, c, s, s + 2 * max_shift)
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(s)[None])[:, None, None, :].expand(n, c, s, s)
    return out.gather(3, cols)


FAR_SIZES = (7, 14)
"""A far judge also sees digits shrunk to 7-14 px and enlarged back: a third (9 px) and a half (14 px) of 28."""


def shrink(x: torch.Tensor, size: int) -> torch.Tensor:
    """x as seen from far: shrunk to size x size (area averaging) and enlarged back (bilinear, antialiased)."""
    small = F.interpolate(x.float(), size=(size, size), mode="area")
    return F.interpolate(small, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False, antialias=True)


def random_far(x: torch.Tensor, g: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Each image, with probability ``p``, shrunk to a size drawn from :data:`FAR_SIZES` and enlarged back: the far
    judge's augmentation, so it reads a digit seen from far as a person does (a sharp-only judge reads under
    half of the real held-out digits shrunk to 9 px)."""
    pick = torch.rand(x.shape[0], generator=g) < p
    sizes = torch.randint(FAR_SIZES[0], FAR_SIZES[1] + 1, (x.shape[0],), generator=g)
    out = x.clone()
    for size in sizes[pick].unique().tolist():
        m = pick & (sizes == size)
        out[m] = shrink(x[m], size)
    return out


def train_judge(train: Digits, held_out: Digits, epochs: int = 8, seed: int = 0, progress: bool = True,
                far: bool = False) -> tuple[JudgeNet, dict]:
    """Adam (one-cycle, peak lr 3e-3) on shifted training digits (and, for a ``far`` judge, digits seen from far:
    :func:`random_far`); returns the net and its held-out accuracy (a far judge's also on the held-out digits
    shrunk to a third)."""
    torch.manual_seed(seed)
    net = JudgeNet(train.channels, train.image_size, train.num_classes)
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        x = random_shift(train.images[idx], g)
        return F.cross_entropy(net(random_far(x, g) if far else x), train.labels[idx])

    fit_one_cycle(net, len(train), epochs, g, batch_loss, "train judge", progress)
    acc = float((predict(net.eval(), held_out.images) == held_out.labels).float().mean())
    shape = {k: v for k, v in net.shape.items() if v != DIGIT_SHAPE[k]}  # a digit judge's record as before
    info = {**shape, "held_out_accuracy": acc, "held_out_images": len(held_out), "train_images": len(train),
            "epochs": epochs, "seed": seed, "seconds": round(time.perf_counter() - t0, 1)}
    if far:
        info.update(far=True, far_sizes=list(FAR_SIZES), held_out_shrunk_accuracy=shrunk_accuracy(net, held_out))
    return net, info


def fit_one_cycle(net: nn.Module, n_train: int, epochs: int, g: torch.Generator,
                  batch_loss: Callable[[torch.Tensor], torch.Tensor], desc: str, progress: bool = True) -> None:
    """Adam (lr 1e-3, one-cycle to a peak of 3e-3) over ``epochs`` shuffles of ``n_train`` images in batches of 128;
    ``batch_loss(indices)`` is each batch's loss. The judge's and the noise-aware classifier's training."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    steps = epochs * ((n_train + 127) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    with tqdm(total=steps, disable=not progress, desc=desc, unit="batch") as bar:
        for _ in range(epochs):
            net.train()
            for idx in torch.randperm(n_train, generator=g).split(128):
                loss = batch_loss(idx)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")


def shrunk_accuracy(net: JudgeNet, digits: Digits, size: int = 9) -> float:
    """How often ``net`` reads real digits shrunk to ``size`` px and enlarged back: the ceiling of a far reading."""
    return float((predict(net, shrink(digits.images, size)) == digits.labels).float().mean())


@torch.no_grad()
def predict(net: JudgeNet, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([net(b).argmax(1) for b in images.float().clamp(0, 1).split(500)])


@torch.no_grad()
def features(net: JudgeNet, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([net.features(b) for b in images.float().clamp(0, 1).split(500)]).double()


def save_judge(path: Path, net: JudgeNet, info: dict) -> None:
    """The judge's weights and its record (minus the training time, so the same seed gives the same bytes)."""
    kept = {k: v for k, v in info.items() if k != "seconds"}
    meta = {"kind": JUDGE_KIND, "info": json.dumps({**kept, "versions": versions()})}
    tensors = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_safetensors(Path(path), tensors, meta)


def judge_record(path: Path) -> dict:
    """A judge file's record (held-out accuracy, data, epochs, seed, versions), read without its weights."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"judge {path} does not exist; train one with: fundiff judge train --out {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise UserError(f"{path} is not a readable safetensors file ({e})") from None
    if meta.get("kind") != JUDGE_KIND:
        raise UserError(f"{path} is not a fundiff judge (kind {meta.get('kind')!r})")
    return json.loads(meta["info"])


def load_judge(path: Path) -> tuple[JudgeNet, dict]:
    info = judge_record(path)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise UserError(f"{path} is not a readable safetensors file ({e})") from None
    net = JudgeNet(info.get("channels", 1), info.get("image_size", 28), info.get("num_classes", 10))
    net.load_state_dict(state)
    return net.eval(), info
