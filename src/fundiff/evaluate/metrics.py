"""Scoring samples with the judge: per-class accuracy and Frechet distance vs held-out real digits."""

from __future__ import annotations

import torch

from fundiff.evaluate.frechet import frechet_distance
from fundiff.evaluate.judge import JudgeNet, features, predict
from fundiff.train.data import Digits


def stratified(data: Digits, per_class: int, seed: int = 0) -> Digits:
    """Up to ``per_class`` images of each class, picked with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    idx = []
    for c in range(data.num_classes):
        cls = (data.labels == c).nonzero().flatten()
        idx.append(cls[torch.randperm(len(cls), generator=g)[:per_class]])
    return data.subset(torch.cat(idx), f"{per_class} per class").materialised()


def accuracy_table(judge: JudgeNet, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Share of images the judge reads as their label: overall and per class."""
    pred = predict(judge, images)
    hit = (pred == labels).float()
    per = {str(c): round(float(hit[labels == c].mean()), 4) for c in labels.unique().tolist()}
    return {"overall": round(float(hit.mean()), 4), "per_class": per}


def class_shares(judge: JudgeNet, images: torch.Tensor, num_classes: int) -> dict:
    """Share of the images the judge reads as each class (an unconditional model's coverage of the classes)."""
    counts = torch.bincount(predict(judge, images), minlength=num_classes).float()
    return {str(c): round(float(v / len(images)), 4) for c, v in enumerate(counts)}


def frechet_report(judge: JudgeNet, samples: torch.Tensor, train: Digits, held_out: Digits, per_class: int) -> dict:
    """FD(samples, held-out) and its baseline FD(train-split real, held-out) at the same n."""
    n_per = min(per_class, int(torch.bincount(held_out.labels).min()))
    real = stratified(held_out, n_per)
    other = stratified(train, max(1, len(samples) // train.num_classes), seed=1)
    f_real = features(judge, real.images)
    fd = frechet_distance(features(judge, samples), f_real)
    base = frechet_distance(features(judge, other.images), f_real)
    return {"frechet": round(fd, 3), "frechet_real_vs_real": round(base, 3), "ratio": round(fd / base, 3),
            "n_samples": len(samples), "n_held_out": len(real), "n_real_baseline": len(other)}
