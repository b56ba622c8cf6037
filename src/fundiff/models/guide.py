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
"""The illusion default of classifier guidance's s (README, "Illusions": flip and rotate_90 anagrams of the digit
model read both ways 0.46 -> 0.73 and 0.59 -> 0.82 as s goes 0 -> 100, by the shipped judge and by two judges
trained on other digits)."""


def with_classifier(model: DiffusionModel, path: Path) -> DiffusionModel:
    """``model`` with the classifier in ``path`` (when the file exists) and classifier guidance at
    :data:`CLASSIFIER_SCALE` among its illusion defaults; refused when it was trained on another process."""
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
    return replace(model, classifier=classify, illusion_sampling=illusions,
                   info={**model.info, "classifier": {"file": path.name, **info}})
