"""Run directories: weights (safetensors + JSON metadata), resumable training state, loading.

A run directory holds ``run.json`` (recipe, seed, data source, versions, epoch, history,
optimizer and scheduler state), ``checkpoint_EEE.safetensors`` (model, EMA and Adam tensors of the
last finished epoch), ``weights/epoch_NNN.safetensors`` (sampling weights at chosen epochs),
``loss.csv`` and pictures. Every file is written atomically.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors import SafetensorError as SafetensorsError
from safetensors.torch import load_file, safe_open

from fundiff.errors import UserError
from fundiff.io.files import save_safetensors
from fundiff.nets.diffusers_net import DiffusersUNet, DiffusersUNetConfig
from fundiff.nets.unet import UNet, UNetConfig
from fundiff.train.recipes import Recipe

RUN_FILE = "run.json"
WEIGHTS_KIND = "fundiff-unet-weights"


def unet_config(recipe: Recipe) -> UNetConfig:
    """The net for a recipe: none (denoiser), time or class conditioning; flow time-only nets multiply. A
    ``--net diffusers`` recipe gets a :class:`DiffusersUNetConfig` (the same fields; its ``to_dict()``, what the
    records' "unet" entry holds, adds ``"net": "diffusers"`` and the UNet2DModel's arguments)."""
    cond = {"denoiser": "none", "time": "time", "class": "class"}[recipe.model]
    mul = recipe.objective == "flow" and recipe.model == "time"
    kind = DiffusersUNetConfig if recipe.net == "diffusers" else UNetConfig
    return kind(width=recipe.width, conditioning=cond, time_injection="mul" if mul else "add",
                num_classes=recipe.num_classes, in_channels=recipe.channels, image_size=recipe.image_size)


def make_net(config: UNetConfig) -> UNet | DiffusersUNet:
    """The net a config builds: fundiff's UNet, or the diffusers UNet2DModel wrapper for a DiffusersUNetConfig."""
    return DiffusersUNet(config) if isinstance(config, DiffusersUNetConfig) else UNet(config)


def _plain(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    return {prefix + k: v.detach().cpu().contiguous() for k, v in state.items()}


def save_weights(path: Path, state: dict[str, torch.Tensor], recipe: Recipe, epoch: int, dtype=None) -> None:
    """Sampling weights with the recipe in the safetensors metadata, so the file describes itself."""
    tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v) for k, v in _plain(state).items()}
    meta = {"kind": WEIGHTS_KIND, "recipe": json.dumps(recipe.to_dict()), "epoch": str(epoch),
            "unet": json.dumps(unet_config(recipe).to_dict())}
    save_safetensors(Path(path), tensors, meta)


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
    recipe, epoch = _described(path, meta)
    check_shapes(recipe, state, path)
    return state, recipe, epoch


def _described(path: Path, meta: dict[str, str]) -> tuple[Recipe, int]:
    """The recipe and epoch the metadata of a weights file names, checked: missing, malformed (bad JSON, wrong
    types, impossible values) or self-contradicting metadata is one UserError."""
    bad = f"{path} has broken metadata, so it cannot say which net its tensors belong to"
    missing = [k for k in ("recipe", "epoch") if k not in meta]
    if missing:
        raise UserError(f"{bad}: no {' and no '.join(missing)} entry")
    try:
        fields = json.loads(meta["recipe"])
    except ValueError as e:
        raise UserError(f"{bad}: its recipe entry is not JSON ({e})") from None
    if not isinstance(fields, dict):
        raise UserError(f"{bad}: its recipe entry is a JSON {type(fields).__name__}, not an object")
    try:
        _check_types(fields)
        recipe = Recipe.from_dict(fields)
    except UserError as e:
        raise UserError(f"{bad}: its recipe is invalid ({e})") from None
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise UserError(f"{bad}: its recipe is invalid ({e})") from None
    try:
        epoch = int(meta["epoch"])
    except ValueError:
        epoch = -1
    if epoch < 0:
        raise UserError(f"{bad}: its epoch {meta['epoch']!r} is not a whole number >= 0")
    if "unet" in meta:
        try:
            unet = json.loads(meta["unet"])
        except ValueError as e:
            raise UserError(f"{bad}: its unet entry is not JSON ({e})") from None
        expected = unet_config(recipe).to_dict()
        if not isinstance(unet, dict) or unet.get("net", "fundiff") != expected.get("net", "fundiff") or any(
                k in unet and unet[k] != v for k, v in expected.items()):
            raise UserError(f"{bad}: its unet entry {unet!r} contradicts its recipe (which builds {expected})")
    return recipe, epoch


def _check_types(fields: dict) -> None:
    """TypeError when a recipe field read from a file has another type than the field's (a string width, a float
    epoch count, words for the sample epochs...)."""
    default = Recipe()
    for f in dataclasses.fields(Recipe):
        if f.name not in fields:
            continue
        want, v = getattr(default, f.name), fields[f.name]
        if f.name == "class_names":
            ok = isinstance(v, list) and all(isinstance(x, str) for x in v)
        elif isinstance(want, tuple):
            ok = isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
        elif isinstance(want, bool):
            ok = isinstance(v, bool)
        elif isinstance(want, float):
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        else:
            ok = type(v) is type(want)
        if not ok:
            kind = ("a list of names" if f.name == "class_names" else "a list of numbers") if isinstance(want, tuple) \
                else f"of type {type(want).__name__}"
            raise TypeError(f"{f.name} is {v!r}, not {kind}")


def check_shapes(recipe: Recipe, state: dict[str, torch.Tensor], source: object = "the weights") -> None:
    """UserError unless ``state`` holds exactly the tensors, of exactly the shapes, of the recipe's net (checked on
    torch's "meta" device: nothing is allocated, whatever width the metadata claims)."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in make_net(unet_config(recipe)).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got == expected:
        return
    what = f"the width-{recipe.width} {recipe.model} net{' (diffusers)' if recipe.net == 'diffusers' else ''} its " \
           "metadata names"
    missing, extra = sorted(expected.keys() - got.keys()), sorted(got.keys() - expected.keys())
    if missing or extra:
        detail = (f"{len(missing)} tensors missing (e.g. {missing[0]})" if missing else "") + \
                 ("; " if missing and extra else "") + \
                 (f"{len(extra)} unexpected (e.g. {extra[0]})" if extra else "")
    else:
        k = next(k for k in expected if expected[k] != got[k])
        detail = f"{k} is {list(got[k])}, the net needs {list(expected[k])}"
    raise UserError(f"{source}: its tensors do not fit {what}: {detail}")


def build_net(recipe: Recipe, state: dict[str, torch.Tensor] | None = None) -> UNet | DiffusersUNet:
    """The recipe's net (fundiff's UNet, or for ``--net diffusers`` a diffusers UNet2DModel behind the same
    ``forward(x, t, c)``), with ``state`` loaded when given (tensors that do not fit it are a UserError)."""
    if state is not None:
        check_shapes(recipe, state)
    net = make_net(unet_config(recipe))
    if state is not None:
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return net


def read_run(run_dir: Path) -> dict:
    """The run.json of a training run directory, checked."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise UserError(f"{run_dir} is not a fundiff run directory (no {RUN_FILE})")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UserError(f"{path} is corrupt ({e}); train again into another --out") from None
    if not isinstance(info, dict) or info.get("kind") != "fundiff-run" or not isinstance(info.get("data"), dict):
        raise UserError(f"{path} is not a fundiff run file; give a folder written by fundiff train")
    return info


def weights_path(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / "weights" / f"epoch_{epoch:03d}.safetensors"


def available_epochs(run_dir: Path) -> list[int]:
    """The epochs whose weights/epoch_EEE.safetensors exist (other names in weights/ are not fundiff's)."""
    stems = (p.stem.split("_", 1)[1] for p in (Path(run_dir) / "weights").glob("epoch_*.safetensors"))
    return sorted(int(e) for e in stems if e.isascii() and e.isdigit())


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
    save_safetensors(Path(run_dir) / checkpoint_name(epoch), tensors)
    return {"param_groups": opt_state["param_groups"]}


def load_checkpoint(run_dir: Path, epoch: int, net: UNet, ema: UNet | None, optimizer: torch.optim.Optimizer,
                    opt_json: dict) -> None:
    """Restore what :func:`save_checkpoint` wrote for ``epoch``."""
    path = Path(run_dir) / checkpoint_name(epoch)
    try:
        tensors = load_file(str(path))
    except (SafetensorsError, OSError) as e:
        raise UserError(f"cannot resume: {path} is missing or corrupt ({e})") from None
    try:
        net.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        if ema is not None:
            ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        params = [p for group in optimizer.param_groups for p in group["params"]]
        state: dict[int, dict] = {}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, pid, name = k.split(".", 2)
                state.setdefault(int(pid), {})[name] = _like(v, params[int(pid)])
        optimizer.load_state_dict({"state": state, "param_groups": opt_json["param_groups"]})
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot resume: {path} does not fit the run's net and optimizer ({first})") from None


def _like(saved: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """A saved per-parameter optimizer tensor in its parameter's memory layout (a fused Adam walks the moments in
    the parameter's storage order, so a channels-last weight needs channels-last moments); scalars as saved."""
    if saved.shape != param.shape:
        return saved
    return torch.empty_like(param, dtype=saved.dtype).copy_(saved)
