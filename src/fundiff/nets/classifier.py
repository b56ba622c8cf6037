"""Small convolutional classifiers: the judge's net (:mod:`fundiff.evaluate.judge`) and the noise-aware classifier
of classifier guidance (Dhariwal and Nichol 2021), the same net reading x_t with its time t / T as a second
channel."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open
from torch import nn

from fundiff.errors import UserError
from fundiff.io.files import save_safetensors, versions


class JudgeNet(nn.Module):
    """(B,C,S,S) -> K logits (the digits' judge: 1, 28, 10); ``features`` gives the 128-d embedding before the last
    layer."""

    def __init__(self, channels: int = 1, image_size: int = 28, num_classes: int = 10) -> None:
        super().__init__()
        self.shape = {"channels": channels, "image_size": image_size, "num_classes": num_classes}  # as DIGIT_SHAPE
        side = image_size // 4

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                                 nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                                 nn.MaxPool2d(2))

        self.body = nn.Sequential(block(channels, 32), block(32, 64), nn.Flatten(), nn.Linear(64 * side * side, 128),
                                  nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(128, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class NoisyClassifier(nn.Module):
    """(x_t (B,C,S,S), t / T (B,)) -> K logits: :class:`JudgeNet` on C + 1 channels, the last one t / T."""

    def __init__(self, channels: int = 1, image_size: int = 28, num_classes: int = 10) -> None:
        super().__init__()
        self.shape = {"channels": channels, "image_size": image_size, "num_classes": num_classes}
        self.net = JudgeNet(channels + 1, image_size, num_classes)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        time = t.to(x.dtype).reshape(-1, 1, 1, 1).expand(x.shape[0], 1, *x.shape[-2:])
        return self.net(torch.cat([x, time], 1))


CLASSIFIER_KIND = "fundiff-noisy-classifier"


def save_noisy_classifier(path: Path, net: NoisyClassifier, info: dict) -> None:
    """The classifier's weights and its record (minus the training time, so the same seed gives the same bytes)."""
    kept = {k: v for k, v in info.items() if k != "seconds"}
    meta = {"kind": CLASSIFIER_KIND, "info": json.dumps({**kept, **net.shape, "versions": versions()})}
    save_safetensors(Path(path), {k: v.contiguous() for k, v in net.state_dict().items()}, meta)


def load_noisy_classifier(path: Path) -> tuple[NoisyClassifier, dict]:
    """A classifier written by :func:`save_noisy_classifier`, in eval mode, and its record."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise UserError(f"{path} is not a readable safetensors file ({e})") from None
    if meta.get("kind") != CLASSIFIER_KIND:
        raise UserError(f"{path} is not a fundiff noise-aware classifier (kind {meta.get('kind')!r})")
    info = json.loads(meta["info"])
    net = NoisyClassifier(info["channels"], info["image_size"], info["num_classes"])
    net.load_state_dict(state)
    return net.eval(), info
