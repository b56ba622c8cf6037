"""Run directories: weights (safetensors + JSON metadata), resumable training state, loading.

A run directory holds ``run.json`` (recipe, seed, data source, versions, epoch, history,
optimizer and scheduler state), ``checkpoint_EEE.safetensors`` (model, EMA and Adam tensors of the
last finished epoch), ``weights/epoch_NNN.safetensors`` (sampling weights at chosen epochs),
``loss.csv`` and pictures. Every file is written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError as SafetensorsError
from safetensors.torch import load_file, safe_open, save_file

from fundiff.errors import UserError
from fundiff.io.files import atomic_write
from fundiff.nets.unet import UNet, UNetConfig
from fundiff.train.recipes import Recipe

RUN_FILE = "run.json"
WEIGHTS_KIND = "fundiff-unet-weights"


def unet_config(recipe: Recipe) -> UNetConfig:
    """The spec's net for a recipe: none (denoiser), time or class conditioning; flow time-only nets multiply."""
    cond = {"denoiser": "none", "time": "time", "class": "class"}[recipe.model]
    mul = recipe.objective == "flow" and recipe.model == "time"
    return UNetConfig(width=recipe.width, conditioning=cond, time_injection="mul" if mul else "add")


def _plain(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    return {prefix + k: v.detach().cpu().contiguous() for k, v in state.items()}


def save_weights(path: Path, state: dict[str, torch.Tensor], recipe: Recipe, epoch: int, dtype=None) -> None:
    """Sampling weights with the recipe in the safetensors metadata, so the file describes itself."""
    tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v) for k, v in _plain(state).items()}
    meta = {"kind": WEIGHTS_KIND, "recipe": json.dumps(recipe.to_dict()), "epoch": str(epoch),
            "unet": json.dumps(unet_config(recipe).to_dict())}
    atomic_write(Path(path), lambda p: save_file(tensors, str(p), metadata=meta))


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], Recipe, int]:
    """Load a weights file written by :func:`save_weights`; wrong or corrupt files are a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorsError, OSError, ValueError) as e:
        raise UserError(f"{path} is not a readable safetensors file ({e})") from None
    if meta.get("kind") != WEIGHTS_KIND:
        raise UserError(f"{path} is not a fundiff UNet weights file (kind {meta.get('kind')!r})")
    return state, Recipe.from_dict(json.loads(meta["recipe"])), int(meta["epoch"])


def build_net(recipe: Recipe, state: dict[str, torch.Tensor] | None = None) -> UNet:
    net = UNet(unet_config(recipe))
    if state is not None:
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return net


def read_run(run_dir: Path) -> dict:
    """The run.json of a training run directory, checked."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise UserError(f"{run_dir} is not a fundiff run directory (no {RUN_FILE})")
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path} is corrupt: {e}") from None
    if info.get("kind") != "fundiff-run":
        raise UserError(f"{path} is not a fundiff run file")
    return info


def weights_path(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / "weights" / f"epoch_{epoch:03d}.safetensors"


def available_epochs(run_dir: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in (Path(run_dir) / "weights").glob("epoch_*.safetensors"))


def load_model(source: Path, epoch: int | None = None, device: torch.device | str = "cpu") -> tuple[UNet, Recipe, int]:
    """A trained net in eval mode from a run directory (its last saved epoch, or ``epoch``) or a weights file."""
    source = Path(source)
    if source.is_dir():
        read_run(source)
        epochs = available_epochs(source)
        if not epochs:
            raise UserError(f"{source} has no saved weights yet")
        if epoch is None:
            epoch = epochs[-1]
        if epoch not in epochs:
            raise UserError(f"{source} has weights for epochs {epochs}, not {epoch}")
        source = weights_path(source, epoch)
    state, recipe, ep = read_weights(source)
    net = build_net(recipe, state).to(device).eval()
    return net.to(memory_format=torch.channels_last), recipe, ep


def checkpoint_name(epoch: int) -> str:
    return f"checkpoint_{epoch:03d}.safetensors"


def save_checkpoint(run_dir: Path, epoch: int, net: UNet, ema: UNet | None, optimizer: torch.optim.Optimizer) -> dict:
    """Model, EMA and Adam tensors to checkpoint_EEE.safetensors (a new file per epoch, so run.json
    always names a complete one); returns the JSON part of the optimizer state."""
    tensors = _plain(net.state_dict(), "model.")
    if ema is not None:
        tensors.update(_plain(ema.state_dict(), "ema."))
    opt_state = optimizer.state_dict()
    for pid, st in opt_state["state"].items():
        for name, v in st.items():
            tensors[f"opt.{pid}.{name}"] = torch.as_tensor(v).detach().cpu().contiguous()
    atomic_write(Path(run_dir) / checkpoint_name(epoch), lambda p: save_file(tensors, str(p)))
    return {"param_groups": opt_state["param_groups"]}


def load_checkpoint(run_dir: Path, epoch: int, net: UNet, ema: UNet | None, optimizer: torch.optim.Optimizer,
                    opt_json: dict) -> None:
    """Restore what :func:`save_checkpoint` wrote for ``epoch``."""
    path = Path(run_dir) / checkpoint_name(epoch)
    try:
        tensors = load_file(str(path))
    except (SafetensorsError, OSError) as e:
        raise UserError(f"cannot resume: {path} is missing or corrupt ({e})") from None
    net.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if ema is not None:
        ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": opt_json["param_groups"]})
