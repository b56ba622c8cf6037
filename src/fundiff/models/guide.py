"""A model's noise-aware classifier, attached for classifier guidance of its illusions."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from fundiff.core.model import DiffusionModel
from fundiff.errors import UserError
from fundiff.nets.classifier import load_noisy_classifier

CLASSIFIER_FILE = "classifier.safetensors"
"""The classifier of a training run, in its folder (``fundiff train-classifier RUN`` writes it)."""
CLASSIFIER_SCALE = 100.0
"""The anagrams' default classifier-guidance scale s (README, "Illusions": the digit model's flip anagrams read both
ways 0.46 at s = 0, 0.58 at 10, 0.67 at 30, 0.73 at 100, 0.76 at 300, by the shipped judge; 0.47 -> 0.74 by a judge
trained on all 60,000 MNIST training digits)."""
HYBRID_CLASSIFIER_SCALE = 30.0
"""The hybrids' default s: each band takes its share of the gradient, and a larger s draws the low class over the
near reading (near and far both: 0.22 at s = 0, 0.51 at 10, 0.63 at 20, 0.69 at 30, 0.64 at 50, 0.52 at 100; by
the 60,000-digit judges 0.16, -, 0.53, 0.57, 0.54, 0.42)."""


def with_classifier(model: DiffusionModel, path: Path) -> DiffusionModel:
    """``model`` with the classifier in ``path`` (when the file exists) and classifier guidance among its illusion
    defaults (:data:`CLASSIFIER_SCALE`, hybrids :data:`HYBRID_CLASSIFIER_SCALE`); refused when it was trained on
    another process."""
    if not path.is_file():
        return model
    if model.is_flow or model.conditioning != "class":
        raise UserError(f"{path}: classifier guidance needs a class-conditioned DDPM model; {model.name} is not one")
    net, info = load_noisy_classifier(path)
    betas = model.schedule.betas
    mine = [model.schedule.T, round(float(betas[0]), 8), round(float(betas[-1]), 8)]
    if [info.get("T"), *info.get("betas", [None, None])] != mine or info.get("num_classes") != model.num_classes:
        raise UserError(f"{path} was trained for another model (T, betas, classes {info.get('T')}, "
                        f"{info.get('betas')}, {info.get('num_classes')}); retrain it: fundiff train-classifier "
                        f"{model.name} --force")
    net = net.to(model.device)

    def classify(x_t: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        return net(x_t, model.schedule.model_time(level).to(x_t.device))

    illusions = replace(model.illusions(), classifier_scale=CLASSIFIER_SCALE)
    hybrids = replace(model.hybrids(), classifier_scale=HYBRID_CLASSIFIER_SCALE)
    return replace(model, classifier=classify, illusion_sampling=illusions, hybrid_sampling=hybrids,
                   info={**model.info, "classifier": {"file": path.name, **info}})
