"""Adapter: any diffusers ``UNet2DModel`` directory with epsilon prediction as a DiffusionModel.

The directory is either a pipeline (``model_index.json`` with ``unet/`` and ``scheduler/``) or a
bare model (``config.json`` of a UNet2DModel beside a ``scheduler_config.json``). The scheduler
config gives the schedule (its betas, whatever ``beta_schedule`` made them); a UNet with twice the
image channels and ``variance_type="learned_range"`` predicts its variance.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from fundiff.core.model import Condition, DiffusionModel, EpsFn, Prediction
from fundiff.core.sampling import Sampling
from fundiff.core.schedule import Schedule
from fundiff.errors import UserError

DISCRETE_SCHEDULERS = ("DDPMScheduler", "DDIMScheduler", "PNDMScheduler", "DPMSolverMultistepScheduler",
                       "EulerDiscreteScheduler")
LATENT_PARTS = ("vae", "vqvae", "text_encoder")


def is_hub_id(spec: str) -> bool:
    """``owner/name`` as the Hugging Face Hub spells a repository (e.g. ``google/ddpm-cifar10-32``)."""
    parts = spec.split("/")
    return len(parts) == 2 and all(p and p[0].isalnum() and p.replace("-", "").replace("_", "").replace(".", "")
                                   .isalnum() for p in parts)


def from_hub(repo_id: str) -> Path:
    """The local snapshot of a Hub repository (downloaded when online; the cache when offline)."""
    from huggingface_hub import snapshot_download

    from fundiff.models.deepfloyd.hub import hub_error, quiet

    try:
        with quiet():
            return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*/*.json",
                                                                   "*/*.safetensors"]))
    except Exception as e:  # noqa: BLE001 - offline, gated, missing: one line that says which
        raise hub_error(e, repo_id) from None


def is_diffusers_dir(path: Path) -> bool:
    """A pipeline directory or a bare UNet2DModel directory."""
    path = Path(path)
    return (path / "model_index.json").is_file() or (path / "config.json").is_file()


def _parts(path: Path) -> tuple[Path, Path]:
    """(unet dir, scheduler dir) of a pipeline or a bare model directory."""
    if (path / "unet" / "config.json").is_file():
        return path / "unet", path / "scheduler"
    return path, path


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read {path}: {e}") from None


def load_scheduler_schedule(scheduler_dir: Path) -> tuple[Schedule, dict]:
    """The betas of the DDPMScheduler that ``scheduler_config.json`` describes, and the config."""
    from diffusers import DDPMScheduler

    cfg_path = scheduler_dir / "scheduler_config.json"
    if not cfg_path.is_file():
        raise UserError(f"{scheduler_dir} has no scheduler_config.json: fundiff needs the training schedule")
    cfg = _read_json(cfg_path)
    if cfg.get("_class_name", "DDPMScheduler") not in DISCRETE_SCHEDULERS:
        raise UserError(f"{scheduler_dir}: a {cfg['_class_name']} is not a discrete DDPM schedule")
    if cfg.get("prediction_type", "epsilon") != "epsilon":
        raise UserError(f"{scheduler_dir}: prediction_type {cfg['prediction_type']!r} is not supported; "
                        "fundiff's samplers need an epsilon-prediction model")
    sched = DDPMScheduler.from_config(cfg)
    return Schedule(sched.betas.double()), cfg


def diffusers_unet_model(spec: str | Path, device: torch.device | str = "cpu") -> DiffusionModel:
    """Load a diffusers UNet2DModel (a local directory or a Hub id) and its schedule; class-conditioned when it
    has class embeddings (such a model has no null class, so it samples with guidance 1 by default)."""
    try:
        from diffusers import UNet2DModel
    except ImportError:
        raise UserError("diffusers models need the diffusers package: pip install 'fundiff[diffusers]'") from None
    path = Path(spec).expanduser()
    if not path.exists():
        path = from_hub(str(spec))
    _refuse_latent_pipeline(path)
    unet_dir, sched_dir = _parts(path)
    config = _read_json(unet_dir / "config.json")
    if config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise UserError(f"{unet_dir} holds a {config['_class_name']}, not a UNet2DModel")
    schedule, sched_cfg = load_scheduler_schedule(sched_dir)
    try:
        unet = UNet2DModel.from_pretrained(str(unet_dir)).to(device).eval()
    except (OSError, ValueError, RuntimeError) as e:
        raise UserError(f"cannot load the UNet in {unet_dir}: {str(e).splitlines()[0]}") from None
    channels = unet.config.in_channels
    learned = unet.config.out_channels == 2 * channels
    if learned and sched_cfg.get("variance_type") != "learned_range":
        raise UserError(f"{unet_dir} predicts a variance of type {sched_cfg.get('variance_type')!r}; "
                        "only 'learned_range' is supported")
    n_classes = int(unet.config.num_class_embeds or 0)
    if unet.config.class_embed_type is not None and not n_classes:
        raise UserError(f"{unet_dir}: class_embed_type {unet.config.class_embed_type!r} is not supported")
    if unet.config.time_embedding_type == "fourier":
        raise UserError(f"{unet_dir}: a Fourier-time (score SDE) UNet is not a discrete DDPM model")
    bind = _binder(unet, channels, n_classes)
    size = _square_size(unet_dir, unet.config.sample_size)
    stride = max(1, round(schedule.T * 3 / 100))
    sampling = Sampling(sampler="ddpm", stride=stride, variance="learned" if learned else "posterior", clip=True,
                        guidance=1.0, guidance_interval=(0.0, 1.0))
    return DiffusionModel(name=str(spec), schedule=schedule, image_size=size,
                          channels=channels, value_range=(-1.0, 1.0), learned_variance=learned,
                          conditioning="class" if n_classes else "none", bind=bind, num_classes=n_classes,
                          sampling=sampling, device=torch.device(device),
                          info={"kind": "diffusers-UNet2DModel", "path": str(path)})


def _refuse_latent_pipeline(path: Path) -> None:
    index = path / "model_index.json"
    if index.is_file():
        parts = [p for p in LATENT_PARTS if p in _read_json(index)]
        if parts:
            raise UserError(f"{path} is a pipeline with {', '.join(parts)}; fundiff needs a pixel-space UNet2DModel")


def _square_size(unet_dir: Path, size: object) -> int:
    if isinstance(size, list | tuple):
        if len(set(size)) != 1:
            raise UserError(f"{unet_dir}: non-square sample_size {size} is not supported")
        size = size[0]
    if size is None:
        raise UserError(f"{unet_dir}: its config has no sample_size")
    return int(size)


def _binder(unet, channels: int, n_classes: int):
    """condition -> eps_fn; class models get the class label (or one per image), their 'unconditional' is
    refused."""

    def bind(condition: Condition) -> EpsFn:
        if n_classes and condition is None:
            raise UserError("this diffusers class model has no null class: give --class, and --guidance 1 (it "
                            "cannot do classifier-free guidance)")

        per_image = torch.as_tensor([int(c) for c in condition], device=unet.device) \
            if isinstance(condition, list | tuple) else None  # made once, not at every step

        @torch.no_grad()
        def eps_fn(x_t: torch.Tensor, k: torch.Tensor) -> Prediction:
            labels = per_image if per_image is not None else (
                None if condition is None else torch.full_like(k, int(condition)))
            out = unet(x_t.to(unet.dtype), k, class_labels=labels).sample.to(x_t.dtype)
            if out.shape[1] == 2 * channels:
                return Prediction(out[:, :channels], out[:, channels:])
            return Prediction(out)

        return eps_fn

    return bind
