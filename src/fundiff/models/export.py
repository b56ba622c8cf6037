"""A trained fundiff net in diffusers' folder layout, and back (``fundiff export``; ``--model OUT``).

The folder is what a diffusers ``DDPMPipeline.save_pretrained`` would write for fundiff's UNet, plus the recipe::

    OUT/model_index.json                         {"_class_name": "DDPMPipeline", "unet": ["fundiff.nets.hub",
                                                   "UNetModel"], "scheduler": ["diffusers", SCHEDULER]}
    OUT/unet/config.json                          the UNetConfig fields (what UNetModel.save_pretrained writes)
    OUT/unet/diffusion_pytorch_model.safetensors  the net's float32 tensors, fundiff's parameter names
    OUT/scheduler/scheduler_config.json           the training process as a diffusers scheduler
    OUT/fundiff.json                              the recipe, epoch, data and run the weights come from

DDPM nets get a ``DDPMScheduler`` that takes fundiff's full DDPM step (linear betas = torch.linspace(beta_start,
beta_end, T); ``variance_type="fixed_large"`` is fundiff's "beta" variance, the spec's; ``clip_sample`` off: fundiff
clamps x0_hat to its [0, 1] data range, diffusers only to a symmetric [-r, r]). Flow nets get a
``FlowMatchEulerDiscreteScheduler`` (shift 1): its sigma is fundiff's 1 - t, its timestep sigma * T and its model
output the negated velocity, so set_timesteps(T) walks fundiff's Euler grid t = i / T exactly.

A ``--net diffusers`` run's net is a diffusers ``UNet2DModel`` already: ``model_index.json`` names
``["diffusers", "UNet2DModel"]``, ``unet/`` is what its own ``save_pretrained`` writes (its config.json, its
parameter names) and ``fundiff.json`` keeps the recipe, so ``--model OUT`` gives the run's model back. That net
takes ``t * 1000`` (float) as its timestep, [0, 1] images and class index K for "no class"
(:mod:`fundiff.nets.diffusers_net`).

Reading needs no diffusers for fundiff's own UNet: fundiff loads the tensors itself, checked against the recipe as a
run's weights are.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from fundiff.core.model import DiffusionModel
from fundiff.errors import UserError
from fundiff.io.files import save_safetensors, versions, write_json, write_text
from fundiff.models.fundiff_unet import fundiff_model
from fundiff.nets.unet import UNet
from fundiff.train.checkpoint import _check_types, build_net, unet_config
from fundiff.train.recipes import Recipe

EXPORT_FILE = "fundiff.json"
EXPORT_KIND = "fundiff-export"
UNET_DIR, SCHEDULER_DIR = "unet", "scheduler"
UNET_CONFIG = "config.json"
UNET_WEIGHTS = "diffusion_pytorch_model.safetensors"
SCHEDULER_CONFIG = "scheduler_config.json"
MODEL_INDEX = "model_index.json"
UNET_LIBRARY, UNET_CLASS = "fundiff.nets.hub", "UNetModel"
DIFFUSERS_UNET = ("diffusers", "UNet2DModel")
"""What model_index.json names for a ``--net diffusers`` run's net."""
"""The module and class diffusers' ``model_index.json`` names for the unet (the caller imports the module before
from_pretrained)."""
PIPELINE = "DDPMPipeline"
LAYOUT_FILES = (MODEL_INDEX, f"{UNET_DIR}/{UNET_CONFIG}", f"{UNET_DIR}/{UNET_WEIGHTS}",
                f"{SCHEDULER_DIR}/{SCHEDULER_CONFIG}", EXPORT_FILE)


def need_diffusers() -> str:
    """diffusers' version; a UserError saying how to install it when it is missing (checked before any work)."""
    try:
        import diffusers
    except ImportError:
        raise UserError("fundiff export writes diffusers' layout and needs the diffusers package: pip install "
                        "'fundiff[diffusers]'") from None
    return diffusers.__version__


def scheduler_name(recipe: Recipe) -> str:
    return "FlowMatchEulerDiscreteScheduler" if recipe.objective == "flow" else "DDPMScheduler"


def make_scheduler(recipe: Recipe):
    """The diffusers scheduler that takes fundiff's full-grid step for the recipe's process (module docstring)."""
    if recipe.objective == "flow":
        from diffusers import FlowMatchEulerDiscreteScheduler

        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=recipe.T, shift=1.0)
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=recipe.T, beta_start=recipe.beta_start, beta_end=recipe.beta_end,
                         beta_schedule="linear", variance_type="fixed_large", clip_sample=False,
                         prediction_type="epsilon", thresholding=False, timestep_spacing="leading", steps_offset=0)


def write_layout(out: Path, net: UNet, recipe: Recipe, record: dict) -> list[str]:
    """Write the diffusers folder for ``net`` (trained with ``recipe``) into ``out``, each file atomically, and
    ``fundiff.json`` = ``record`` + the recipe; returns the files written (relative to ``out``)."""
    version = need_diffusers()
    out = Path(out)
    if recipe.net == "diffusers":  # the wrapped UNet2DModel, as its own save_pretrained writes it
        model, unet_class = net.unet, list(DIFFUSERS_UNET)
    else:
        from fundiff.nets.hub import UNetModel

        model, unet_class = UNetModel.from_unet(net), [UNET_LIBRARY, UNET_CLASS]
    scheduler = make_scheduler(recipe)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    save_safetensors(out / UNET_DIR / UNET_WEIGHTS, tensors, {"format": "pt"})
    write_text(out / UNET_DIR / UNET_CONFIG, model.to_json_string())
    write_text(out / SCHEDULER_DIR / SCHEDULER_CONFIG, scheduler.to_json_string())
    write_json(out / MODEL_INDEX, {"_class_name": PIPELINE, "_diffusers_version": version,
                                   "scheduler": ["diffusers", scheduler_name(recipe)],
                                   "unet": unet_class})
    write_json(out / EXPORT_FILE, {"kind": EXPORT_KIND, **record, "recipe": recipe.to_dict(),
                                   "unet": net.config.to_dict(), "versions": versions()})
    return list(LAYOUT_FILES)


def is_exported_dir(path: Path) -> bool:
    """A folder ``fundiff export`` wrote (its fundiff.json beside a unet/ folder)."""
    path = Path(path)
    return (path / EXPORT_FILE).is_file() and (path / UNET_DIR).is_dir()


def _read_json(path: Path, what: str) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path.parent} has no {path.name}: {what}; export the run again") from None
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is unreadable ({e}); export the run again") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path} is not a JSON object; export the run again")
    return obj


def read_export(path: Path) -> tuple[dict[str, torch.Tensor], Recipe, dict]:
    """(state, recipe, fundiff.json) of an exported folder, checked: the recipe valid, the unet's config.json the
    net the recipe builds, the tensors of exactly its shapes (else one UserError)."""
    path = Path(path)
    info = _read_json(path / EXPORT_FILE, "the recipe of the exported net")
    if info.get("kind") != EXPORT_KIND or not isinstance(info.get("recipe"), dict):
        raise UserError(f"{path / EXPORT_FILE} is not a fundiff export record; export the run again")
    try:
        _check_types(info["recipe"])
        recipe = Recipe.from_dict(info["recipe"])
    except UserError as e:
        raise UserError(f"{path / EXPORT_FILE}: its recipe is invalid ({e})") from None
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise UserError(f"{path / EXPORT_FILE}: its recipe is invalid ({e})") from None
    config = _read_json(path / UNET_DIR / UNET_CONFIG, "the unet's config")
    if recipe.net == "diffusers":  # UNet2DModel's own config.json: the arguments fundiff built it with
        expected = {"_class_name": DIFFUSERS_UNET[1], **unet_config(recipe).unet2d}
    else:
        expected = {"_class_name": UNET_CLASS, **unet_config(recipe).to_dict()}
    wrong = {k: config.get(k) for k, v in expected.items() if config.get(k, 28 if k == "image_size" else None) != v}
    if wrong:
        raise UserError(f"{path / UNET_DIR / UNET_CONFIG} says {wrong}, but the recipe in {EXPORT_FILE} builds "
                        f"{expected}; export the run again")
    weights = path / UNET_DIR / UNET_WEIGHTS
    if not weights.is_file():
        raise UserError(f"{weights} is missing; export the run again")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{weights} is not a readable safetensors file ({e}); export the run again") from None
    if recipe.net == "diffusers":  # the UNet2DModel's names, inside fundiff's wrapper
        state = {f"unet.{k}": v for k, v in state.items()}
    return state, recipe, info


def load_exported(path: Path, device: torch.device, precision: str | None = None) -> DiffusionModel:
    """An exported folder as the :class:`DiffusionModel` its run gives: the same recipe (sampling defaults) and
    weights, the net in eval mode and channels-last as :func:`fundiff.train.checkpoint.load_model` builds it."""
    from dataclasses import replace

    state, recipe, info = read_export(path)
    if precision is not None:
        recipe = replace(recipe, precision=precision)
    try:
        net = build_net(recipe, state)
    except UserError as e:
        raise UserError(f"{path / UNET_DIR / UNET_WEIGHTS}: {e}") from None
    net = net.to(device).eval().to(memory_format=torch.channels_last)
    return fundiff_model(net, recipe, str(path), device, {"epoch": info.get("epoch"), "source": str(path),
                                                         "exported_from": info.get("run")})
