"""The update functions (DDPM, DDIM, DPM-Solver++(2M), Euler) and the one sampling loop every feature runs on
(spec.md 1.4, Part B).

A loop walks a grid of levels (DDPM timestep indices ending at -1, or flow times ending at 1.0); at each step it
calls the (wrapped) denoiser, applies an update, then an optional projection (inpainting) and a callback.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from fundiff.core.contract import Denoiser, EpsFn, Output, Prediction, Velocity, VelocityFn
from fundiff.core.sampling import Sampling
from fundiff.core.schedule import FlowPath, Schedule

Callback = Callable[[dict], None]
Projection = Callable[[torch.Tensor, int | float], torch.Tensor]
"""project(x_t', level') -> x_t': applied after every step (level -1 or 1.0 is the clean image), e.g. inpainting."""
Step = Callable[[torch.Tensor, Output, int | float, int | float, torch.Generator | None],
                tuple[torch.Tensor, torch.Tensor]]
"""step(x, prediction, level, next_level, generator) -> (x at next_level, x0_hat)."""


def predict_x0(x_t: torch.Tensor, eps: torch.Tensor, abar_t: torch.Tensor) -> torch.Tensor:
    """x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
    return (x_t - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()


def step_variance(pred: Prediction, abar_t: torch.Tensor, abar_prev: torch.Tensor, kind: str) -> torch.Tensor:
    """Variance of the step t -> t' with beta_t = 1 - abar_t / abar_t':
    "beta": beta_t (spec Part B); "posterior": beta_t (1 - abar_t') / (1 - abar_t);
    "learned": exp(frac log beta_t + (1 - frac) log posterior), frac = (v + 1) / 2 (learned range)."""
    beta_t = 1 - abar_t / abar_prev
    if kind == "beta":
        return beta_t
    posterior = (beta_t * (1 - abar_prev) / (1 - abar_t)).clamp(min=1e-20)
    if kind == "posterior":
        return posterior
    if pred.variance is None:
        raise ValueError("variance='learned' needs a model that predicts its variance")
    frac = (pred.variance + 1) / 2
    return torch.exp(frac * beta_t.log() + (1 - frac) * posterior.log())


def ddpm_update(x_t: torch.Tensor, pred: Prediction, abar_t: torch.Tensor, abar_prev: torch.Tensor,
                noise: torch.Tensor | None, variance: str = "beta", clip: tuple[float, float] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """One strided DDPM step t -> t' (spec 1.4); returns (x_t', x0_hat).

    x_t' = sqrt(abar_t') beta_t / (1 - abar_t) x0_hat + sqrt(alpha_t) (1 - abar_t') / (1 - abar_t) x_t
           + sqrt(var) z,  alpha_t = abar_t / abar_t', and no noise on the last step (noise=None).
    """
    alpha_t = abar_t / abar_prev
    beta_t = 1 - alpha_t
    x0_hat = predict_x0(x_t, pred.eps, abar_t)
    if clip is not None:
        x0_hat = x0_hat.clamp(*clip)
    mean = (abar_prev.sqrt() * beta_t / (1 - abar_t)) * x0_hat + (alpha_t.sqrt() * (1 - abar_prev) / (1 - abar_t)) * x_t
    if noise is None:
        return mean, x0_hat
    return mean + step_variance(pred, abar_t, abar_prev, variance).sqrt() * noise, x0_hat


def ddim_update(x_t: torch.Tensor, pred: Prediction, abar_t: torch.Tensor, abar_prev: torch.Tensor,
                noise: torch.Tensor | None = None, clip: tuple[float, float] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """One deterministic DDIM step (eta = 0): x_t' = sqrt(abar_t') x0_hat + sqrt(1 - abar_t') eps_hat.

    With clipping, eps_hat is recomputed from the clipped x0_hat so the two stay consistent.
    """
    x0_hat = predict_x0(x_t, pred.eps, abar_t)
    eps = pred.eps
    if clip is not None:
        x0_hat = x0_hat.clamp(*clip)
        eps = (x_t - abar_t.sqrt() * x0_hat) / (1 - abar_t).sqrt()
    return abar_prev.sqrt() * x0_hat + (1 - abar_prev).sqrt() * eps, x0_hat


def euler_update(x_t: torch.Tensor, pred: Velocity, t: float, t_next: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One Euler step of the flow ODE: x_t' = x_t + (t' - t) u(x_t, t); returns (x_t', x1_hat = x_t + (1 - t) u)."""
    return x_t + (t_next - t) * pred.v, x_t + (1 - t) * pred.v


def dpmpp_2m_update(x_s: torch.Tensor, x0_s: torch.Tensor, s: tuple[float, float], t: tuple[float, float],
                    previous: tuple[float, torch.Tensor] | None = None) -> torch.Tensor:
    """One DPM-Solver++(2M) step s -> t in data prediction (Lu et al. 2022, Alg. 2) on x_s = alpha_s x0 + sigma_s e,
    with ``s`` = (alpha_s, sigma_s), ``t`` likewise and lambda = log(alpha / sigma), h = lambda_t - lambda_s:

        x_t = (sigma_t / sigma_s) x_s - alpha_t (e^-h - 1) D,
        D = (1 + 1 / 2r) x0_s - (1 / 2r) x0_prev,  r = (lambda_s - lambda_prev) / h  (``previous`` = (lambda_prev,
        x0_prev)), or D = x0_s without one (first order: DDIM). e^-h = sigma_t alpha_s / (alpha_t sigma_s) stays
        finite at pure noise (alpha_s = 0) and the clean image (sigma_t = 0, where x_t = D)."""
    (alpha_s, sigma_s), (alpha_t, sigma_t) = s, t
    exp_neg_h = sigma_t * alpha_s / (alpha_t * sigma_s)
    d = x0_s
    if previous is not None and 0 < exp_neg_h and alpha_s > 0:
        h = -math.log(exp_neg_h)
        r = (math.log(alpha_s / sigma_s) - previous[0]) / h
        d = (1 + 1 / (2 * r)) * x0_s - (1 / (2 * r)) * previous[1]
    return (sigma_t / sigma_s) * x_s - alpha_t * (exp_neg_h - 1) * d


def dpm_solver_step(process: Schedule | FlowPath, clip: tuple[float, float] | None = None) -> Step:
    """DPM-Solver++(2M) (:func:`dpmpp_2m_update`) as a loop step, for a DDPM schedule (alpha = sqrt(abar),
    sigma = sqrt(1 - abar), x0_hat from eps) or a flow path (alpha = t, sigma = 1 - t, x1_hat = x_t + (1 - t) u).
    It remembers the last (lambda, x0_hat) while the levels follow on; the step to the clean image is first order,
    as diffusers' ``DPMSolverMultistepScheduler`` takes it (``final_sigmas_type="zero"``)."""
    memory: dict = {}

    def coefficients(level: int | float) -> tuple[float, float]:
        if isinstance(process, FlowPath):
            return float(level), 1.0 - float(level)
        abar = float(process.abar(level))
        return math.sqrt(abar), math.sqrt(1.0 - abar)

    def step(x: torch.Tensor, pred: Output, level: int | float, next_level: int | float, g: torch.Generator | None):
        x0_hat = process.x0_hat(x, pred, level)
        if clip is not None:
            x0_hat = x0_hat.clamp(*clip)
        (alpha_s, sigma_s), t = coefficients(level), coefficients(next_level)
        previous = memory.get("previous") if memory.get("next") == level else None
        out = dpmpp_2m_update(x, x0_hat, (alpha_s, sigma_s), t, previous)
        lam = math.log(alpha_s / sigma_s) if alpha_s > 0 else -math.inf
        memory.update(previous=(lam, x0_hat), next=next_level)
        return out, x0_hat

    return step


def ddpm_step(schedule: Schedule, sampler: str = "ddpm", variance: str = "beta",
              clip: tuple[float, float] | None = None) -> Step:
    """The strided DDPM (or DDIM) step from index k to k' on ``schedule``; noise z is drawn on the CPU from the
    generator (after the model call, none on the last step) so a seed gives the same image on any device."""

    def step(x: torch.Tensor, pred: Prediction, k: int, k_prev: int, g: torch.Generator | None):
        abar_t, abar_prev = (schedule.abar(v).to(x.dtype).to(x.device) for v in (k, k_prev))
        if sampler == "ddim":
            return ddim_update(x, pred, abar_t, abar_prev, clip=clip)
        noise = None if k_prev < 0 else torch.randn(x.shape, generator=g).to(x.device)
        return ddpm_update(x, pred, abar_t, abar_prev, noise, variance, clip)

    return step


def euler_step(x: torch.Tensor, pred: Velocity, t: float, t_next: float, g: torch.Generator | None = None):
    """:func:`euler_update` as a loop step."""
    return euler_update(x, pred, t, t_next)


def make_step(process: Schedule | FlowPath, s: Sampling, value_range: tuple[float, float]) -> Step:
    """The update a model's process and resolved sampling settings call for: DPM-Solver++(2M) when asked (either
    process), Euler on a flow path, else the DDPM/DDIM step with the chosen variance and (when ``s.clip``) x0_hat
    clamped to ``value_range``."""
    if s.sampler == "dpmpp-2m":
        return dpm_solver_step(process, value_range if s.clip else None)
    if isinstance(process, FlowPath):
        return euler_step
    return ddpm_step(process, "ddim" if s.sampler == "ddim" else "ddpm", s.variance or "beta",
                     value_range if s.clip else None)


def level_tensor(level: int | float, x: torch.Tensor) -> torch.Tensor:
    """(B,) levels for a denoiser: long timestep indices for DDPM, float32 times for flow."""
    dtype = torch.long if isinstance(level, int) else torch.float32
    return torch.full((x.shape[0],), level, dtype=dtype, device=x.device)


@dataclass(eq=False)
class Chunk:
    """One slice of a batch in the sampling loop: its denoiser, its x_t, its own update (a multistep solver keeps
    its memory per slice), generator and projection; ``x0_hat`` is the last step's estimate of the clean image."""

    fn: Denoiser
    x: torch.Tensor
    step: Step
    generator: torch.Generator | None = None
    project: Projection | None = None
    x0_hat: torch.Tensor | None = None


def run_chunks(chunks: Sequence[Chunk], levels: Sequence[int | float], callback: Callback | None = None
               ) -> torch.Tensor:
    """The one sampling loop, over the slices of a batch in lockstep: for each pair (level, next) of ``levels`` and
    each slice, x <- step(x, fn(x, level), level, next), then its ``project`` (if any); ``callback`` gets the whole
    batch after each level, {"i", "k", "k_prev", "x", "x0_hat"}. A slice's result depends on its own inputs alone,
    so slicing a batch changes its cost (smaller net calls stay in cache), not what each slice computes."""
    for i, (cur, nxt) in enumerate(zip(levels[:-1], levels[1:])):
        for c in chunks:
            pred = c.fn(c.x, level_tensor(cur, c.x))
            c.x, c.x0_hat = c.step(c.x, pred, cur, nxt, c.generator)
            if c.project is not None:
                c.x = c.project(c.x, nxt)
        if callback is not None:
            callback({"i": i, "k": cur, "k_prev": nxt, "x": _joined([c.x for c in chunks]),
                      "x0_hat": _joined([c.x0_hat for c in chunks])})
    return _joined([c.x for c in chunks])


def _joined(parts: list[torch.Tensor]) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def run_loop(fn: Denoiser, x: torch.Tensor, levels: Sequence[int | float], step: Step,
             generator: torch.Generator | None = None, callback: Callback | None = None,
             project: Projection | None = None) -> torch.Tensor:
    """:func:`run_chunks` on one batch: for each pair (level, next) of ``levels``, x <- step(x, fn(x, level), level,
    next); then ``project`` (if given) maps x, and ``callback`` gets {"i", "k", "k_prev", "x", "x0_hat"}."""
    return run_chunks([Chunk(fn, x, step, generator, project)], levels, callback)


def sample_loop(eps_fn: EpsFn, x: torch.Tensor, timesteps: Sequence[int], schedule: Schedule,
                generator: torch.Generator | None = None, sampler: str = "ddpm", variance: str = "beta",
                clip: tuple[float, float] | None = None, callback: Callback | None = None,
                project: Projection | None = None) -> torch.Tensor:
    """DDPM/DDIM sampling from timesteps[0] down through ``timesteps`` (descending) to the clean image."""
    return run_loop(eps_fn, x, schedule.levels(list(timesteps)), ddpm_step(schedule, sampler, variance, clip),
                    generator, callback, project)


def euler_loop(velocity_fn: VelocityFn, x: torch.Tensor, steps: int, callback: Callback | None = None) -> torch.Tensor:
    """Flow-matching sampling by Euler (spec): x <- x + (1 / N) u_theta(x, i / N), i = 0..N-1, from x_0 ~ N(0, I)."""
    path = FlowPath(steps)
    return run_loop(velocity_fn, x, path.levels(list(range(steps - 1, -1, -1))), euler_step, None, callback)
