"""Part A operations (spec.md 1.1-1.9) on any :class:`DiffusionModel`: the Python API behind the CLI.

Images go in and come out in [0, 1] as (N, C, H, W); each operation converts to the model's data
range, runs the samplers of :mod:`fundiff.sampling` over bound denoisers, and converts back. Every
random draw comes from one ``torch.Generator`` seeded with ``seed``: the same seed, the same image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from fundiff.core import edits
from fundiff.core.bands import frequency_bands, gaussian_lowpass, hybrid_denoiser
from fundiff.core.guidance import cfg
from fundiff.core.loop import Callback, Projection, sample_loop
from fundiff.core.model import Condition, DiffusionModel, EpsFn
from fundiff.core.schedule import evenly_spaced_timesteps, strided_timesteps
from fundiff.core.views import anagram_denoiser, make_view
from fundiff.errors import UserError


@dataclass(frozen=True)
class Sampling:
    """How the strided loop runs: ``stride`` (default about 3% of T: 30 for T = 1000, 9 for T = 300)
    or ``steps`` evenly spaced, the update (``ddpm`` with the learned or posterior variance, or
    deterministic ``ddim``), and whether x0_hat is clamped to the model's data range."""

    stride: int | None = None
    steps: int | None = None
    sampler: str = "ddpm"
    clip: bool = True

    def timesteps(self, T: int) -> list[int]:
        """Descending timesteps, e.g. T = 1000, stride 30: 990, 960, ..., 0 (34 entries)."""
        if self.sampler not in ("ddpm", "ddim"):
            raise UserError(f"unknown sampler {self.sampler!r}; choose one of: ddpm, ddim")
        if self.stride is not None and self.steps is not None:
            raise UserError("give --stride or --steps, not both")
        try:
            if self.steps is not None:
                return evenly_spaced_timesteps(T, self.steps)
            return strided_timesteps(T, max(1, round(T * 3 / 100)) if self.stride is None else self.stride)
        except ValueError as e:
            raise UserError(str(e)) from None

    def to_dict(self) -> dict:
        return asdict(self)


def guided(model: DiffusionModel, condition: Condition, guidance: float | None) -> EpsFn:
    """CFG (spec 1.6): eps = eps_u + gamma (eps_c - eps_u), eps_u from the unconditional binding; the
    bare conditional denoiser when gamma = 1, no condition, or an unconditional model."""
    gamma = model.default_guidance if guidance is None else guidance
    if gamma < 0:
        raise UserError(f"guidance must be >= 0, got {gamma}")
    cond = model.denoiser(condition)
    if condition is None or gamma == 1.0 or model.conditioning == "none":
        return cond
    return cfg(cond, model.denoiser(None), gamma)


def run_loop(model: DiffusionModel, eps_fn: EpsFn, x_t: torch.Tensor, timesteps: Sequence[int],
             generator: torch.Generator, sampling: Sampling, callback: Callback | None = None,
             project: Projection | None = None) -> torch.Tensor:
    """The sampler over ``timesteps``: learned variance when the model has it, else the posterior's."""
    return sample_loop(eps_fn, x_t, timesteps, model.schedule, generator, callback=callback, project=project,
                       **_update_args(model, sampling))


def _update_args(model: DiffusionModel, sampling: Sampling) -> dict:
    """sampler, variance (learned when the model has one, else the posterior's) and clip range of a step."""
    return {"sampler": sampling.sampler, "variance": "learned" if model.learned_variance else "posterior",
            "clip": model.value_range if sampling.clip else None}


def _device(model: DiffusionModel) -> torch.device:
    return torch.device(model.info.get("device", "cpu"))


def _prepare(model: DiffusionModel, images: torch.Tensor) -> torch.Tensor:
    expected = (model.channels, model.image_size, model.image_size)
    if images.dim() != 4 or tuple(images.shape[1:]) != expected:
        raise UserError(f"images of shape {tuple(images.shape)} do not fit model {model.name}: expected (N, "
                        f"{expected[0]}, {expected[1]}, {expected[2]})")
    return model.to_model_range(images.float()).to(_device(model))


def _out(model: DiffusionModel, x: torch.Tensor) -> torch.Tensor:
    return model.to_unit_range(x.float().cpu()).clamp(0, 1)


def check_timestep(model: DiffusionModel, k: int) -> int:
    if not 0 <= k < model.schedule.T:
        raise UserError(f"timestep {k} is outside 0..{model.schedule.T - 1} for model {model.name}")
    return k


def noise(model: DiffusionModel, images: torch.Tensor, ks: Sequence[int], seed: int = 0) -> list[torch.Tensor]:
    """Forward process (spec 1.1) at each timestep in ``ks``: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps."""
    x0, g = _prepare(model, images), torch.Generator().manual_seed(seed)
    return [_out(model, edits.noise_to(x0, check_timestep(model, k), model.schedule, g)) for k in ks]


def denoise(model: DiffusionModel, images: torch.Tensor, k: int, condition: Condition = None,
            guidance: float | None = None, seed: int = 0, sampling: Sampling = Sampling(),
            blur: tuple[int, float] = (5, 2.0), strip_every: int = 5) -> dict[str, torch.Tensor]:
    """Noise to timestep k, then denoise three ways (spec 1.2-1.4): Gaussian blur, one step, and the
    strided loop from k (timesteps [k] + the strided ones below it); ``strip`` holds x_t every
    ``strip_every`` steps of the loop (S, N, C, H, W)."""
    x0, g = _prepare(model, images), torch.Generator().manual_seed(seed)
    x_t = edits.noise_to(x0, check_timestep(model, k), model.schedule, g)
    eps_fn = guided(model, condition, guidance)
    timesteps = [k] + [s for s in sampling.timesteps(model.schedule.T) if s < k]
    strip = Strip(strip_every)
    x_iter = run_loop(model, eps_fn, x_t, timesteps, g, sampling, strip)
    one = edits.one_step_denoise(eps_fn, x_t, k, model.schedule)
    return {"noisy": _out(model, x_t), "blur": _out(model, edits.blur_denoise(x_t, *blur)),
            "one_step": _out(model, one), "iterative": _out(model, x_iter),
            "strip": torch.stack([_out(model, s) for s in [x_t, *strip.frames, x_iter]]),
            "timesteps": torch.tensor(timesteps)}


class Strip:
    """A sampler callback keeping x_t after every ``every``-th step (spec 1.4's 'every 5th step')."""

    def __init__(self, every: int = 5) -> None:
        self.every, self.frames = max(1, every), []

    def __call__(self, d: dict) -> None:
        if (d["i"] + 1) % self.every == 0 and d["k_prev"] >= 0:
            self.frames.append(d["x"].detach())


def generate(model: DiffusionModel, n: int = 1, condition: Condition = None, guidance: float | None = None,
             seed: int = 0, sampling: Sampling = Sampling(), callback: Callback | None = None) -> torch.Tensor:
    """Sampling (spec 1.5, 1.6): the strided loop from pure noise x_T ~ N(0, I), with CFG when conditioned."""
    if n < 1:
        raise UserError("n must be at least 1")
    g = torch.Generator().manual_seed(seed)
    shape = (n, model.channels, model.image_size, model.image_size)
    x = torch.randn(shape, generator=g).to(_device(model))
    eps_fn = guided(model, condition, guidance)
    return _out(model, run_loop(model, eps_fn, x, sampling.timesteps(model.schedule.T), g, sampling, callback))


def edit(model: DiffusionModel, images: torch.Tensor, i_starts: Sequence[int], condition: Condition = None,
         guidance: float | None = None, seed: int = 0, sampling: Sampling = Sampling()) -> dict[int, torch.Tensor]:
    """SDEdit (spec 1.7): for each i_start, noise the images to timesteps[i_start] and run 1.6 from there.

    Each i_start draws from its own generator seeded with ``seed``, so one result never depends on the others.
    """
    x0 = _prepare(model, images)
    timesteps = sampling.timesteps(model.schedule.T)
    for i in i_starts:
        edits.check_i_start(timesteps, i)
    eps_fn = guided(model, condition, guidance)
    return {i: _out(model, edits.sdedit(eps_fn, x0, timesteps, i, model.schedule, torch.Generator().manual_seed(seed),
                                        **_update_args(model, sampling))) for i in i_starts}


def inpaint(model: DiffusionModel, images: torch.Tensor, mask: torch.Tensor, condition: Condition = None,
            guidance: float | None = None, seed: int = 0, sampling: Sampling = Sampling()) -> torch.Tensor:
    """Inpainting (spec 1.7.2, RePaint): sample from noise, projecting after every step
    x_t <- m x_t + (1 - m) forward(x_orig, t); outside the mask the result is the original exactly."""
    x0 = _prepare(model, images)
    m = mask.float().to(x0.device).expand_as(x0)
    if not torch.all((m == 0) | (m == 1)) or m.sum() == 0:
        raise UserError("the mask must be binary (0 or 1) with at least one 1 (where new content goes)")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(x0.shape, generator=g).to(x0.device)
    project = edits.repaint_projection(x0, m, model.schedule, g)
    eps_fn = guided(model, condition, guidance)
    out = run_loop(model, eps_fn, x, sampling.timesteps(model.schedule.T), g, sampling, project=project)
    return torch.where(m.cpu() == 1, _out(model, out), images.float().cpu())


def anagram(model: DiffusionModel, conditions: Sequence[Condition], views: Sequence[str], n: int = 1,
            guidance: float | None = None, seed: int = 0, sampling: Sampling = Sampling()) -> torch.Tensor:
    """Visual anagrams (spec 1.8): eps = mean_i inverse_view_i(eps(view_i(x_t), p_i)); images shown upright."""
    if len(conditions) != len(views):
        raise UserError(f"{len(conditions)} prompts for {len(views)} views: give one prompt per view")
    vs = [make_view(v, model.image_size) for v in views]
    eps_fn = anagram_denoiser([guided(model, c, guidance) for c in conditions], vs)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, model.channels, model.image_size, model.image_size), generator=g).to(_device(model))
    return _out(model, run_loop(model, eps_fn, x, sampling.timesteps(model.schedule.T), g, sampling))


def hybrid(model: DiffusionModel, conditions: Sequence[Condition], n: int = 1, kernel: int = 33,
           sigmas: Sequence[float] = (2.0,), guidance: float | None = None, seed: int = 0,
           sampling: Sampling = Sampling()) -> torch.Tensor:
    """Hybrid images (spec 1.9, factorized diffusion): eps = lowpass(eps_1) + highpass(eps_2), or three
    bands (low, middle, high) for three conditions and two sigmas."""
    bands = frequency_bands(kernel, sigmas)
    if len(bands) != len(conditions):
        raise UserError(f"{len(conditions)} prompts need {len(conditions) - 1} sigma(s), got {len(sigmas)}")
    eps_fn = hybrid_denoiser([guided(model, c, guidance) for c in conditions], bands)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, model.channels, model.image_size, model.image_size), generator=g).to(_device(model))
    return _out(model, run_loop(model, eps_fn, x, sampling.timesteps(model.schedule.T), g, sampling))


def lowpass_view(images: torch.Tensor, kernel: int = 33, sigma: float = 2.0) -> torch.Tensor:
    """What a hybrid looks like from far away: its low-pass copy."""
    return gaussian_lowpass(images, kernel, sigma)
