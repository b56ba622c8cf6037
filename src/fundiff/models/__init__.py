"""Resolving ``--model``: the digit model fundiff ships, a fundiff run or weights file, DeepFloyd IF stage I
(``deepfloyd``, ``deepfloyd:NAME``, a local IFPipeline directory), or a diffusers UNet2DModel directory,
each as a :class:`~fundiff.core.model.DiffusionModel`."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import torch

from fundiff.core.model import DiffusionModel
from fundiff.errors import UserError
from fundiff.models.deepfloyd.stage1 import LoadOptions, deepfloyd_model, is_deepfloyd_spec
from fundiff.models.diffusers_unet import diffusers_unet_model, is_diffusers_dir
from fundiff.models.fundiff_unet import digit_model
from fundiff.train.checkpoint import RUN_FILE, load_model

SHIPPED = {"digits": "digits.safetensors"}
"""Models inside the package: name -> file in fundiff/assets (a card ``<stem>.json`` beside it)."""


def shipped_path(name: str) -> Path:
    """The file of a shipped model."""
    return Path(str(resources.files("fundiff") / "assets" / SHIPPED[name]))


def shipped_card(name: str) -> dict:
    """The recipe, training command and measured numbers stored beside a shipped model."""
    card = shipped_path(name).with_suffix(".json")
    return json.loads(card.read_text()) if card.is_file() else {}


def load_diffusion_model(spec: str, device: torch.device | str = "cpu", *, prompt_cache: Path | None = None,
                         dtype: str = "auto", offload: bool = False) -> DiffusionModel:
    """``digits`` (shipped), a fundiff run directory or weights file, DeepFloyd IF, or a diffusers model directory.

    ``prompt_cache``, ``dtype`` (auto | fp32 | fp16 | bf16) and ``offload`` only concern DeepFloyd.
    """
    if spec in SHIPPED:
        path = shipped_path(spec)
        if not path.is_file():
            raise UserError(f"the shipped model {spec!r} is missing from this install ({path})")
        return _fundiff_model(path, spec, device, {"card": shipped_card(spec)})
    path = Path(spec).expanduser()
    if path.is_dir() and (path / RUN_FILE).is_file():
        return _fundiff_model(path, str(path), device)
    if path.is_file() and path.suffix == ".safetensors":
        return _fundiff_model(path, str(path), device)
    if is_deepfloyd_spec(spec):
        return deepfloyd_model(spec, LoadOptions(str(torch.device(device)), dtype, offload, prompt_cache))
    if path.is_dir() and is_diffusers_dir(path):
        model = diffusers_unet_model(path, device)
        model.info["device"] = str(device)
        return model
    raise UserError(f"unknown model {spec!r}: use one of {', '.join(SHIPPED)}, deepfloyd[:IF-I-M-v1.0], a fundiff "
                    "run directory or weights file, or a diffusers UNet2DModel or IFPipeline directory")


def _fundiff_model(path: Path, name: str, device: torch.device | str, extra: dict | None = None) -> DiffusionModel:
    net, recipe, epoch = load_model(path, None, device)
    return digit_model(net, recipe, name, {"epoch": epoch, "source": str(path), "device": str(device),
                                           **(extra or {})})
