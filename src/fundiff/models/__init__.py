"""Loading any model a user can name into one :class:`~fundiff.core.model.DiffusionModel`: the models fundiff
ships (``digits``: MNIST digits, ``fashion``: Fashion-MNIST clothes), a fundiff run directory or weights file (DDPM
or flow matching) or a folder ``fundiff export`` wrote from one, DeepFloyd IF stage I (``deepfloyd``,
``deepfloyd:NAME``, a local IFPipeline directory), or a diffusers UNet2DModel (a local directory or a Hub id such as
``google/ddpm-cifar10-32``)."""

from __future__ import annotations

import json
from dataclasses import replace
from importlib import resources
from pathlib import Path

import torch

from fundiff.core.model import DiffusionModel
from fundiff.core.sampling import Sampling
from fundiff.errors import UserError
from fundiff.io.files import pick_device
from fundiff.models.deepfloyd.stage1 import LoadOptions, deepfloyd_model, is_deepfloyd_spec
from fundiff.models.diffusers_unet import diffusers_unet_model, is_diffusers_dir, is_hub_id
from fundiff.models.export import is_exported_dir, load_exported
from fundiff.models.fundiff_unet import fundiff_model
from fundiff.models.guide import CLASSIFIER_FILE, with_classifier
from fundiff.train.checkpoint import RUN_FILE, load_model

SHIPPED = {"digits": "digits.safetensors", "fashion": "fashion.safetensors"}
"""Models inside the package: name -> file in fundiff/assets (a card ``<stem>.json`` beside it; both written by
tools/ship_model.py)."""
MODEL_HELP = ("digits or fashion (shipped), a fundiff run directory, weights file or export, deepfloyd[:IF-I-M-v1.0] "
              "or a local IF directory, or a diffusers UNet2DModel directory or Hub id")


def shipped_path(name: str) -> Path:
    """The file of a shipped model."""
    return Path(str(resources.files("fundiff") / "assets" / SHIPPED[name]))


def shipped_card(name: str) -> dict:
    """The recipe, training command and measured numbers stored beside a shipped model."""
    card = shipped_path(name).with_suffix(".json")
    return json.loads(card.read_text()) if card.is_file() else {}


def card_sampling(card: dict) -> Sampling:
    """The sampling settings a shipped model's card sets over its recipe's (``"sampling"``: where a measurement
    chose otherwise, e.g. DPM-Solver++(2M) in 20 steps for the digit model, where it scores as DDPM-300 does)."""
    given = dict(card.get("sampling") or {})
    if given.get("guidance_interval") is not None:
        given["guidance_interval"] = tuple(given["guidance_interval"])
    return Sampling(**given)


def load(spec: str | Path, device: torch.device | str = "auto", *, epoch: int | None = None,
         precision: str | None = None, prompt_cache: Path | None = None, dtype: str = "auto",
         offload: bool = False) -> DiffusionModel:
    """The model ``spec`` names, on ``device`` ("auto": CUDA when there is one).

    ``epoch`` picks a fundiff run's weights saved after that epoch and ``precision`` (fp32 | bf16) overrides the
    precision its recipe samples in; ``prompt_cache``, ``dtype`` (auto | fp32 |
    fp16 | bf16) and ``offload`` only concern DeepFloyd.
    """
    spec, device = str(spec), pick_device(str(device))
    if spec in SHIPPED:
        path = shipped_path(spec)
        if not path.is_file():
            raise UserError(f"the shipped model {spec!r} is missing from this install ({path})")
        card = shipped_card(spec)
        model = _fundiff(path, spec, device, epoch, precision, {"card": card})
        model = with_classifier(model, path.with_name(f"{path.stem}-{CLASSIFIER_FILE}"))
        return replace(model, sampling=card_sampling(card).over(model.sampling))
    path = Path(spec).expanduser()
    if path.is_dir() and (path / RUN_FILE).is_file():
        return with_classifier(_fundiff(path, str(path), device, epoch, precision), path / CLASSIFIER_FILE)
    if path.is_file() and path.suffix == ".safetensors":
        return _fundiff(path, str(path), device, epoch, precision)
    if epoch is not None:
        raise UserError(f"--epoch picks the weights of a fundiff run; {spec} is not one")
    if path.is_dir() and is_exported_dir(path):  # before the generic diffusers folder: it carries fundiff's recipe
        return load_exported(path, device, precision)
    if is_deepfloyd_spec(spec):
        return deepfloyd_model(spec, LoadOptions(str(device), dtype, offload, prompt_cache))
    if not path.exists() and path.parent.is_dir() and path.parent != Path("."):
        raise UserError(f"unknown model {spec!r}: the folder {path.parent} has no {path.name!r}; check the name")
    if (path.is_dir() and is_diffusers_dir(path)) or (not path.exists() and is_hub_id(spec)):
        return diffusers_unet_model(spec, device)
    if path.exists():
        raise UserError(f"{spec} is not a model fundiff can load: use {MODEL_HELP}")
    raise UserError(f"unknown model {spec!r} (no such file or directory): use {MODEL_HELP}")


load_diffusion_model = load


def _fundiff(path: Path, name: str, device: torch.device, epoch: int | None, precision: str | None,
             extra: dict | None = None) -> DiffusionModel:
    net, recipe, ep = load_model(path, epoch, device)
    if precision is not None:
        recipe = replace(recipe, precision=precision)
    return fundiff_model(net, recipe, name, device, {"epoch": ep, "source": str(path), **(extra or {})})
