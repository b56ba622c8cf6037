"""The noise-aware classifier of classifier guidance (Dhariwal and Nichol 2021), trained on a class model's own
training split and noising process: cross-entropy of p_phi(y | x_t, t) on x_t = sqrt(abar_t) x_0 +
sqrt(1 - abar_t) eps, t uniform over the model's T steps, the digits shifted by up to 2 px as the judge's are."""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from fundiff.core.model import DiffusionModel
from fundiff.errors import UserError
from fundiff.evaluate.judge import fit_one_cycle, random_shift
from fundiff.io.guard import prepare_file
from fundiff.models import load
from fundiff.models.guide import CLASSIFIER_FILE
from fundiff.nets.classifier import NoisyClassifier, save_noisy_classifier
from fundiff.progress import say
from fundiff.train.data import Digits, load_data, split_holdout

CLASSIFIER_EPOCHS = 30
"""30 epochs of the 4,500 offline training digits (about 100 s on 2 cores): the shipped digit classifier."""
REPORTED_LEVELS = (0.1, 0.5, 0.9)
"""Noise levels t / T at which the held-out accuracy is recorded."""


def train_noisy_classifier(model: DiffusionModel, train: Digits, held_out: Digits, epochs: int = CLASSIFIER_EPOCHS,
                           seed: int = 0, progress: bool = True) -> tuple[NoisyClassifier, dict]:
    """Adam (one-cycle, peak lr 3e-3, batch 128) on the model's noised training images; returns the net (eval
    mode) and its record: held-out accuracy at each of :data:`REPORTED_LEVELS`."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = NoisyClassifier(train.channels, train.image_size, train.num_classes)
    t0 = time.perf_counter()

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        k = torch.randint(0, model.schedule.T, (len(idx),), generator=g)
        x_t = noised(model, random_shift(train.images[idx], g), k, g)
        return F.cross_entropy(net(x_t, model.schedule.model_time(k)), train.labels[idx])

    fit_one_cycle(net, len(train), epochs, g, batch_loss, "train classifier", progress)
    net.eval()
    accuracy = {f"{lv:g}": noisy_accuracy(net, model, held_out, lv, seed) for lv in REPORTED_LEVELS}
    return net, {"held_out_accuracy_at_t": accuracy, "held_out_images": len(held_out), "train_images": len(train),
                 "epochs": epochs, "seed": seed, **schedule_record(model),
                 "seconds": round(time.perf_counter() - t0, 1)}


def schedule_record(model: DiffusionModel) -> dict:
    """The noising process a classifier was trained on: T and the first and last beta."""
    betas = model.schedule.betas
    return {"T": model.schedule.T, "betas": [round(float(betas[0]), 8), round(float(betas[-1]), 8)]}


def noised(model: DiffusionModel, x01: torch.Tensor, k: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """x_t = sqrt(abar_k) x_0 + sqrt(1 - abar_k) eps, x_0 in the model's range."""
    x0 = model.to_model_range(x01)
    abar = model.schedule.abar(k).to(x0.dtype).view(-1, 1, 1, 1)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * torch.randn(x0.shape, generator=g)


@torch.no_grad()
def noisy_accuracy(net: NoisyClassifier, model: DiffusionModel, digits: Digits, level: float, seed: int = 0) -> float:
    """How often ``net`` reads ``digits`` right once noised to t / T = ``level``."""
    k = torch.full((len(digits),), max(0, round(level * model.schedule.T) - 1))
    x_t = noised(model, digits.images, k, torch.Generator().manual_seed(seed))
    return round(float((net(x_t, model.schedule.model_time(k)).argmax(1) == digits.labels).float().mean()), 4)


def run_train_classifier(spec: str, data_dir: Path | None, epochs: int, seed: int, out: Path | None,
                         force: bool) -> Path:
    """Train the noise-aware classifier of the class model ``spec`` on its recipe's data (or ``data_dir``'s IDX
    files), on the CPU (97 s for the digits), and write it to ``out`` (default: the run folder's
    :data:`CLASSIFIER_FILE`, where loading the run finds it); returns the file."""
    if not 1 <= epochs <= 1000:
        raise UserError(f"--epochs {epochs} is out of range (1 to 1000; {CLASSIFIER_EPOCHS} for the digits)")
    model = load(spec, "cpu")
    recipe = model.info.get("recipe") or {}
    if model.conditioning != "class" or model.is_flow or not recipe:
        raise UserError(f"{spec} is not a class-conditioned DDPM model trained by fundiff; classifier guidance "
                        "needs one (fundiff train class)")
    if out is None:
        if not Path(spec).is_dir():
            raise UserError(f"give --out FILE for {spec} (a run folder keeps its classifier as {CLASSIFIER_FILE})")
        out = Path(spec) / CLASSIFIER_FILE
    out = prepare_file(Path(out), force)
    data = load_data(recipe.get("data", "mnist"), data_dir)
    train, held = split_holdout(data, recipe.get("holdout_per_class", 50))
    net, info = train_noisy_classifier(model, train, held, epochs, seed)
    info.update(data=data.source, model=model.name)
    save_noisy_classifier(out, net, info)
    acc = ", ".join(f"{a:.3f} at t/T {lv}" for lv, a in info["held_out_accuracy_at_t"].items())
    say(f"classifier: held-out accuracy {acc} on {len(held)} images ({info['seconds']} s) -> {out}")
    return out
