"""Adapter: DeepFloyd IF stage I (text -> 64x64 RGB) through diffusers, as a prompt-conditioned DiffusionModel.

``--model deepfloyd`` is ``DeepFloyd/IF-I-L-v1.0``; ``deepfloyd:IF-I-M-v1.0`` (or ``deepfloyd:M``, ``:XL``)
picks another size; a local directory holding an ``IFPipeline`` (``model_index.json``) loads from disk.
The pipeline is loaded with ``IFPipeline.from_pretrained(source, variant="fp16", torch_dtype=...)`` and no
text encoder: prompts come from :class:`~fundiff.models.deepfloyd.prompts.PromptEmbeddings`, whose T5
encoder is loaded only for a prompt missing from the cache.
The UNet is called as ``unet(x_t, t, encoder_hidden_states=emb)`` and
its 6 output channels are split into eps (0-2) and the learned-range variance v (3-5), so fundiff's
sampler takes log var = frac log beta_t + (1 - frac) log posterior, frac = (v + 1) / 2.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from fundiff.core.model import Condition, DiffusionModel, EpsFn, Prediction
from fundiff.core.sampling import Sampling
from fundiff.core.schedule import Schedule
from fundiff.errors import UserError
from fundiff.models.deepfloyd.hub import hub_error, oom_guard, quiet
from fundiff.models.deepfloyd.prompts import PromptEmbeddings, default_cache_path, t5_loader

STAGE1 = {"M": "DeepFloyd/IF-I-M-v1.0", "L": "DeepFloyd/IF-I-L-v1.0", "XL": "DeepFloyd/IF-I-XL-v1.0"}
STAGE2 = {"M": "DeepFloyd/IF-II-M-v1.0", "L": "DeepFloyd/IF-II-L-v1.0"}
PIPELINE_CLASS = {1: "IFPipeline", 2: "IFSuperResolutionPipeline"}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_PIPELINES: dict[tuple, object] = {}


@dataclass(frozen=True)
class LoadOptions:
    """How DeepFloyd is loaded: ``dtype`` auto (fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16, model CPU
    ``offload`` (CUDA only), and the prompt-embedding ``cache`` file (None: the default one)."""

    device: str = "cpu"
    dtype: str = "auto"
    offload: bool = False
    cache: Path | None = None

    def torch_dtype(self) -> torch.dtype:
        if self.dtype == "auto":
            return torch.float16 if torch.device(self.device).type == "cuda" else torch.float32
        if self.dtype not in DTYPES:
            raise UserError(f"unknown --dtype {self.dtype!r}; choose auto, {', '.join(DTYPES)}")
        return DTYPES[self.dtype]


@dataclass(eq=False)
class DeepFloydModel(DiffusionModel):
    """Stage I as a DiffusionModel, plus what stage II, ``fundiff embed`` and the pipeline path
    (:mod:`fundiff.models.deepfloyd.pipeline`: its UNet and scheduler config) share with it."""

    prompts: PromptEmbeddings | None = None
    source: str = ""
    options: LoadOptions = LoadOptions()
    pipe: object = None


def _index_class(path: Path) -> str | None:
    try:
        return json.loads((path / "model_index.json").read_text()).get("_class_name")
    except (OSError, json.JSONDecodeError):
        return None


def is_deepfloyd_spec(spec: str) -> bool:
    """``deepfloyd``, ``deepfloyd:NAME``, or a local directory holding an IFPipeline."""
    if spec == "deepfloyd" or spec.startswith("deepfloyd:"):
        return True
    path = Path(spec).expanduser()
    return path.is_dir() and _index_class(path) in PIPELINE_CLASS.values()


def resolve_source(spec: str | None, stage: int) -> tuple[str, bool]:
    """(hub id or local directory, is_local) for a stage-I (1) or stage-II (2) spec; None is the default (L)."""
    table, roman = (STAGE1, "I") if stage == 1 else (STAGE2, "II")
    spec = "deepfloyd" if spec is None else spec
    path = Path(spec).expanduser()
    if path.is_dir():
        found = _index_class(path)
        if found != PIPELINE_CLASS[stage]:
            raise UserError(f"{path} holds a {found or 'no diffusers pipeline'}, not DeepFloyd stage {roman} "
                            f"({PIPELINE_CLASS[stage]})")
        return str(path), True
    name = spec.removeprefix("deepfloyd").removeprefix(":") or "L"
    name = name.removeprefix("DeepFloyd/")
    key = name.removeprefix(f"IF-{roman}-").removesuffix("-v1.0")
    if key not in table:
        known = ", ".join(f"deepfloyd:IF-{roman}-{k}-v1.0" for k in table)
        raise UserError(f"unknown DeepFloyd stage {roman} model {spec!r}: use {known}, or a local directory")
    return table[key], False


def _has_accelerate() -> bool:
    import importlib.util

    return importlib.util.find_spec("accelerate") is not None


def _has_variant(folder: Path, variant: str) -> bool:
    return folder.is_dir() and any(f".{variant}." in p.name or f".{variant}-" in p.name for p in folder.iterdir())


def load_pipeline(spec: str | None, stage: int, opts: LoadOptions):
    """IFPipeline (stage 1) or IFSuperResolutionPipeline (stage 2) without text encoder, safety checker and
    watermarker: fp16 weights (``variant="fp16"``) in ``opts.torch_dtype()``, on ``opts.device`` or with model
    CPU offload. Loaded once per process."""
    source, local = resolve_source(spec, stage)
    dtype = opts.torch_dtype()
    key = (stage, source, opts.device, dtype, opts.offload)
    if key in _PIPELINES:
        return _PIPELINES[key], source, local
    try:
        import diffusers
    except ImportError:
        raise UserError("DeepFloyd needs diffusers and transformers: pip install 'fundiff[deepfloyd]'") from None
    if opts.offload and torch.device(opts.device).type != "cuda":
        raise UserError("--offload moves models between the CPU and a CUDA GPU; it needs --device cuda")
    variant = "fp16" if not local or _has_variant(Path(source) / "unet", "fp16") else None
    none = dict(text_encoder=None, tokenizer=None, safety_checker=None, feature_extractor=None, watermarker=None)
    try:
        with oom_guard(f"loading {source}"), quiet():
            pipe = getattr(diffusers, PIPELINE_CLASS[stage]).from_pretrained(
                source, variant=variant, torch_dtype=dtype, requires_safety_checker=False,
                low_cpu_mem_usage=_has_accelerate(), **none)
            pipe.set_progress_bar_config(disable=True)
            if opts.offload:
                pipe.enable_model_cpu_offload(device=opts.device)
            else:
                pipe.to(opts.device)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - mapped to one line; the cause is named in it
        raise hub_error(e, source) from None
    _PIPELINES[key] = pipe
    return pipe, source, local


def offload_others(pipe) -> None:
    """With model CPU offload, move every other loaded pipeline's models back to the CPU (stage I's UNet stays on
    the GPU after its last call until told), so stage I and stage II never sit on the GPU together."""
    for other in _PIPELINES.values():
        if other is not pipe and getattr(other, "_all_hooks", None):
            other.maybe_free_model_hooks()


def schedule_of(scheduler, source: str) -> Schedule:
    """The DDPM betas of the pipeline's scheduler config (IF: squaredcos_cap_v2, T = 1000, learned range)."""
    from diffusers import DDPMScheduler

    cfg = dict(scheduler.config)
    if cfg.get("prediction_type", "epsilon") != "epsilon" or cfg.get("variance_type") != "learned_range":
        raise UserError(f"{source}: expected an epsilon-prediction scheduler with learned_range variance, got "
                        f"{cfg.get('prediction_type')!r} / {cfg.get('variance_type')!r}")
    return Schedule(DDPMScheduler.from_config(cfg).betas.double())


def execution_device(pipe, opts: LoadOptions) -> torch.device:
    return torch.device(opts.device) if opts.offload else pipe.unet.device


def prompt_store(spec: str, source: str, local: bool, opts: LoadOptions, dim: int) -> PromptEmbeddings:
    load, reason = t5_loader(source, local, opts.device, opts.torch_dtype())
    hint = spec if load is not None else "deepfloyd"  # every IF-I repo on the Hub holds the same T5-XXL
    return PromptEmbeddings(opts.cache or default_cache_path(), load, dim, hint, reason)


PART_A_SAMPLING = Sampling(sampler="ddpm", stride=30, variance="learned", clip=True, guidance=7.0,
                           guidance_interval=(0.0, 1.0))
"""Stage I's defaults for Part A (spec 1.4-1.9): every 30th of T = 1000 steps (990, 960, ..., 0), the learned
variance, CFG gamma 7 at every step."""


def deepfloyd_model(spec: str, opts: LoadOptions) -> DeepFloydModel:
    """Stage I of DeepFloyd IF as a DiffusionModel: 64x64 RGB in [-1, 1], prompt-conditioned, learned variance,
    CFG 7 by default; bind(None) is the empty prompt ''."""
    pipe, source, local = load_pipeline(spec, 1, opts)
    unet = pipe.unet
    prompts = prompt_store(spec, source, local, opts, unet.config.encoder_hid_dim)
    device = execution_device(pipe, opts)
    info = {"kind": "deepfloyd-IF-stage-I", "source": source, "dtype": str(unet.dtype).removeprefix("torch."),
            "offload": opts.offload, "prompt_cache": str(prompts.path)}
    return DeepFloydModel(name=spec, schedule=schedule_of(pipe.scheduler, source), image_size=unet.config.sample_size,
                          channels=3, value_range=(-1.0, 1.0), learned_variance=True, conditioning="prompt",
                          bind=binder(pipe, prompts, device, "running stage I"), sampling=PART_A_SAMPLING,
                          device=device, info=info,
                          prompts=prompts, source=source, options=opts, pipe=pipe)


def binder(pipe, prompts: PromptEmbeddings, device: torch.device, where: str,
           extra: Callable[[torch.Tensor], dict] | None = None) -> Callable[[Condition], EpsFn]:
    """condition -> eps_fn(x_t, k) calling ``pipe.unet(x_t, k, encoder_hidden_states=emb, **extra(x_t))``
    (``extra`` may replace the UNet's input by ``sample``); the prompt and '' (None) are embedded or looked up
    at bind time."""
    unet = pipe.unet

    def bind(condition: Condition) -> EpsFn:
        prompt = "" if condition is None else str(condition)
        prompts.ensure([prompt, ""])
        emb = prompts.get(prompt).to(device, unet.dtype)
        offload_others(pipe)

        @torch.no_grad()
        def eps_fn(x_t: torch.Tensor, k: torch.Tensor) -> Prediction:
            kwargs = extra(x_t) if extra is not None else {}
            model_in = kwargs.pop("sample", x_t)
            with oom_guard(where):
                out = unet(model_in.to(unet.dtype), k, encoder_hidden_states=emb.expand(x_t.shape[0], -1, -1),
                           **kwargs).sample.to(x_t.dtype)
            c = x_t.shape[1]
            return Prediction(out[:, :c], out[:, c:])

        return eps_fn

    return bind


def dynamic_thresholding(eps_fn: EpsFn, schedule: Schedule, ratio: float = 0.95, max_value: float = 1.5) -> EpsFn:
    """diffusers' dynamic thresholding (Imagen) as a denoiser wrapper: x0_hat = (x_t - sqrt(1 - abar) eps) / sqrt(abar),
    s = clamp(quantile(|x0_hat|, ratio), 1, max_value) per image, x0_hat <- clamp(x0_hat, -s, s) / s, and eps is
    recomputed from it, so fundiff's update (which clips to [-1, 1], a no-op now) steps as diffusers does.
    Wrap the guided denoiser (after CFG), as IFPipeline thresholds the guided estimate."""

    def thresholded(x_t: torch.Tensor, k: torch.Tensor) -> Prediction:
        pred = eps_fn(x_t, k)
        abar = schedule.abar(k).to(x_t.device, x_t.dtype).view(-1, 1, 1, 1)
        x0 = (x_t - (1 - abar).sqrt() * pred.eps) / abar.sqrt()
        s = torch.quantile(x0.abs().flatten(1).float(), ratio, dim=1).clamp(1, max_value).to(x0.dtype)
        x0 = x0.clamp(-s.view(-1, 1, 1, 1), s.view(-1, 1, 1, 1)) / s.view(-1, 1, 1, 1)
        return Prediction((x_t - abar.sqrt() * x0) / (1 - abar).sqrt(), pred.variance)

    return thresholded
