"""Part 0 (text to image) as diffusers' ``IFPipeline`` and ``IFSuperResolutionPipeline`` make it, over fundiff's pieces.

The Part A loops (spec 1.4-1.9) take the spec's strided timesteps and clamp x0_hat to [-1, 1]. Part 0 is meant to
give the pipelines' images for a seed, so here everything follows the pipelines' ``__call__`` and
``DDPMScheduler.step`` instead:

- timesteps: ``DDPMScheduler.set_timesteps(steps)`` with the pipeline's scheduler config (IF: "leading"
  spacing, so 100 steps are 990, 980, ..., 0 and 50 are 980, 960, ..., 0);
- random draws from one CPU ``torch.Generator`` in the pipelines' order and dtype: x_T, (stage II: the noise
  of the upscaled image), then one z per step after the UNet call whenever t > 0 (on a last step above 0, too);
- CFG as one UNet call over [x_t; x_t] with the embeddings [''; prompt], eps = eps_u + gamma (eps_c - eps_u)
  with the conditional learned variance, and only when gamma > 1 (``do_classifier_free_guidance``);
- x0_hat dynamically thresholded (Imagen; :func:`~fundiff.models.deepfloyd.stage1.dynamic_thresholding`) or
  clipped, as the scheduler config says; the step is fundiff's :func:`~fundiff.core.loop.ddpm_update` with the
  learned-range variance;
- stage II: the 64 px image upscaled (bilinear, align_corners), noised to ``noise_level`` by the
  image-noising scheduler's forward process, concatenated to x_t and given as ``class_labels``.

The draws are the pipelines' (same generator, order, shape and dtype); the loop's arithmetic runs in float64 (the
UNet in its own dtype), so the images match the pipelines' to their float32 (or fp16) rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from fundiff.core.guidance import cfg
from fundiff.core.loop import ddpm_update
from fundiff.core.model import Condition, EpsFn, Prediction
from fundiff.core.schedule import Schedule, forward_process
from fundiff.errors import UserError
from fundiff.models.deepfloyd.hub import oom_guard
from fundiff.models.deepfloyd.stage1 import DeepFloydModel, dynamic_thresholding, execution_device, offload_others
from fundiff.models.deepfloyd.stage2 import Upsampler, _low_res
from fundiff.progress import step_bar

Callback = Callable[[dict], None]
Prompts = Condition | Sequence[str]
"""A prompt for every image (None: the empty prompt ''), or a list of prompts."""


def pipeline_timesteps(scheduler, steps: int) -> list[int]:
    """The descending timesteps of ``DDPMScheduler.set_timesteps(steps)`` under ``scheduler``'s config (its
    ``timestep_spacing`` and ``steps_offset``): what IFPipeline / IFSuperResolutionPipeline step through."""
    from diffusers import DDPMScheduler

    T = scheduler.config.num_train_timesteps
    if not 1 <= steps <= T:
        raise UserError(f"the number of steps must be in 1..{T}, got {steps}")
    s = DDPMScheduler.from_config(scheduler.config)
    s.set_timesteps(steps)
    return [int(k) for k in s.timesteps]


def pipeline_schedule(scheduler) -> Schedule:
    """The scheduler's own betas and abar (float32, as diffusers computes them; the Part A loops use float64)."""
    from diffusers import DDPMScheduler

    return Schedule(DDPMScheduler.from_config(scheduler.config).betas)


def x0_rule(scheduler, schedule: Schedule) -> tuple[Callable[[EpsFn], EpsFn], tuple[float, float] | None]:
    """(denoiser wrapper, clip range) doing what ``DDPMScheduler.step`` does to x0_hat under ``scheduler``'s
    config: dynamic thresholding (``thresholding``: ratio, ``sample_max_value``), else a clamp to
    +-``clip_sample_range`` (``clip_sample``), else nothing."""
    cfg_ = scheduler.config
    if cfg_.get("thresholding", False):
        ratio, max_value = cfg_.get("dynamic_thresholding_ratio", 0.995), cfg_.get("sample_max_value", 1.0)
        return (lambda eps_fn: dynamic_thresholding(eps_fn, schedule, ratio, max_value)), None
    if cfg_.get("clip_sample", True):
        r = float(cfg_.get("clip_sample_range", 1.0))
        return (lambda eps_fn: eps_fn), (-r, r)
    return (lambda eps_fn: eps_fn), None


def if_denoiser(pipe, embeds: Tensor, uncond: Tensor | None, gamma: float, where: str,
                extra: Callable[[Tensor], dict] | None = None) -> EpsFn:
    """eps_fn(x_t, k) calling ``pipe.unet`` as the IF pipelines do. ``embeds`` (B, 77, D) are the prompts' T5
    embeddings for the B images; with ``uncond`` (B, 77, D) it is CFG in one call over the batch [x_t; x_t] with
    [uncond; embeds]: eps = eps_u + gamma (eps_c - eps_u) (:func:`~fundiff.core.guidance.cfg`), the conditional
    variance. ``extra(x_t)`` gives more UNet arguments (stage II: ``sample`` replacing x_t, ``class_labels``)."""
    unet = pipe.unet
    hidden = embeds if uncond is None else torch.cat([uncond, embeds])

    @torch.no_grad()
    def eps_fn(x_t: Tensor, k: Tensor) -> Prediction:
        kwargs = extra(x_t) if extra is not None else {}
        model_in, t = kwargs.pop("sample", x_t), k
        if uncond is not None:
            model_in, t = torch.cat([model_in, model_in]), torch.cat([k, k])
            kwargs = {name: torch.cat([v, v]) for name, v in kwargs.items()}
        with oom_guard(where):
            out = unet(model_in.to(unet.dtype), t, encoder_hidden_states=hidden, **kwargs).sample.to(x_t.dtype)
        c = x_t.shape[1]
        if uncond is None:
            return Prediction(out[:, :c], out[:, c:])
        out_u, out_c = out.chunk(2)
        pred_u, pred_c = Prediction(out_u[:, :c], out_u[:, c:]), Prediction(out_c[:, :c], out_c[:, c:])
        return cfg(lambda *_: pred_c, lambda *_: pred_u, gamma)(x_t, k)

    return eps_fn


def if_loop(eps_fn: EpsFn, x: Tensor, timesteps: Sequence[int], schedule: Schedule, generator: torch.Generator,
            clip: tuple[float, float] | None = None, noise_dtype: torch.dtype = torch.float32, desc: str = "",
            progress: bool = True, callback: Callback | None = None) -> Tensor:
    """The pipelines' loop: for k in ``timesteps`` (then the clean image, k' = -1), x <- ddpm_update(x, eps_fn(x, k))
    from k to the next entry with the learned-range variance, log var = frac log beta_t + (1 - frac) log
    posterior (posterior clamped at 1e-20, as diffusers). z ~ N(0, I) is drawn after the call on the CPU from
    ``generator`` in ``noise_dtype`` (the pipeline's) whenever k > 0, as ``DDPMScheduler.step`` draws it.
    ``callback`` gets {"i", "k", "k_prev", "x", "x0_hat"}; with ``progress`` a tqdm bar labelled ``desc``
    (:func:`fundiff.progress.step_bar`) counts the steps."""
    ks = [*timesteps, -1]
    with step_bar(len(timesteps), (desc or True) if progress else False, callback) as report:
        for i, (k, k_prev) in enumerate(zip(ks[:-1], ks[1:])):
            abar_t, abar_prev = (schedule.abar(v).to(x.device, x.dtype) for v in (k, k_prev))
            pred = eps_fn(x, torch.full((x.shape[0],), k, dtype=torch.long, device=x.device))
            z = torch.randn(x.shape, generator=generator, dtype=noise_dtype).to(x.device, x.dtype) if k > 0 else None
            x, x0_hat = ddpm_update(x, pred, abar_t, abar_prev, z, "learned", clip)
            if report is not None:
                report({"i": i, "k": k, "k_prev": k_prev, "x": x, "x0_hat": x0_hat})
    return x


def _loop_dtype(device: torch.device) -> torch.dtype:
    """float64 for the loop's arithmetic (not on MPS, which lacks it): the thresholded x0_hat goes through
    eps and back in :func:`if_loop`, which at t near T (sqrt(abar) ~ 1e-4) loses float32's precision."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def _generator(seed: int | torch.Generator) -> torch.Generator:
    return seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)


def _prompt_list(prompts: Prompts) -> list[str]:
    if prompts is None or isinstance(prompts, (str, int)):
        return ["" if prompts is None else str(prompts)]
    if not prompts:
        raise UserError("give at least one prompt")
    return [str(p) for p in prompts]


def _gamma(guidance: float | None, default: float) -> float:
    gamma = default if guidance is None else guidance
    if gamma < 0:
        raise UserError(f"guidance must be >= 0, got {gamma}")
    return gamma


def _embeddings(store, prompts: list[str], device: torch.device, dtype: torch.dtype, gamma: float
                ) -> tuple[Tensor, Tensor | None]:
    """(B, 77, D) embeddings of ``prompts`` and, when gamma > 1, of '' for each (None otherwise)."""
    store.ensure([*prompts, ""])
    emb = torch.cat([store.get(p) for p in prompts]).to(device, dtype)
    uncond = store.get("").to(device, dtype).expand_as(emb).contiguous() if gamma > 1 else None
    return emb, uncond


def text_to_image(model: DeepFloydModel, prompts: Prompts = None, n: int = 1, steps: int = 100,
                  guidance: float | None = None, seed: int | torch.Generator = 0, callback: Callback | None = None,
                  progress: bool = True) -> Tensor:
    """Stage I as ``IFPipeline(prompt_embeds=..., negative_prompt_embeds=emb[''], num_inference_steps=steps,
    guidance_scale=guidance (default 7), num_images_per_prompt=n, generator=Generator().manual_seed(seed))``:
    x_T ~ N(0, I) (P n, 3, 64, 64) for P prompts (each repeated n times, in order), then :func:`if_loop` over
    :func:`pipeline_timesteps` with CFG and the scheduler's thresholding. Returns (P n, 3, 64, 64) in [0, 1].
    ``seed`` may be a generator, continued (as a notebook passing one generator to both stages)."""
    if n < 1:
        raise UserError("n must be at least 1")
    pipe, plist = model.pipe, _prompt_list(prompts)
    if pipe is None:
        raise UserError(f"model {model.name} has no IF pipeline to run")
    gamma, timesteps = _gamma(guidance, model.default_guidance), pipeline_timesteps(pipe.scheduler, steps)
    unet, device = pipe.unet, execution_device(pipe, model.options)
    emb, uncond = _embeddings(model.prompts, plist, device, unet.dtype, gamma)
    emb, uncond = emb.repeat_interleave(n, 0), None if uncond is None else uncond.repeat_interleave(n, 0)
    offload_others(pipe)
    g = _generator(seed)
    size = unet.config.sample_size
    x = torch.randn((len(plist) * n, unet.config.in_channels, size, size), generator=g, dtype=unet.dtype)
    schedule = pipeline_schedule(pipe.scheduler)
    wrap, clip = x0_rule(pipe.scheduler, schedule)
    eps_fn = wrap(if_denoiser(pipe, emb, uncond, gamma, "running stage I"))
    out = if_loop(eps_fn, x.to(device, _loop_dtype(device)), timesteps, schedule, g, clip, unet.dtype, "stage I",
                  progress, callback)
    return ((out.float().cpu() + 1) / 2).clamp(0, 1)


def super_resolve(up: Upsampler, images: Tensor, prompts: Prompts = None, steps: int = 50,
                  guidance: float | None = None, seed: int | torch.Generator = 0, noise_level: int | None = None,
                  callback: Callback | None = None, progress: bool = True) -> Tensor:
    """Stage II as ``IFSuperResolutionPipeline(image=2 images - 1, prompt_embeds=..., negative_prompt_embeds=emb[''],
    num_inference_steps=steps, guidance_scale=guidance (default 4), noise_level=noise_level (default 250),
    generator=Generator().manual_seed(seed))``: x_T ~ N(0, I) at 256 px, then u = forward(upscale(x_lo), noise_level)
    with its own draw, then :func:`if_loop` with eps = unet(cat(x_t, u), k, prompt, class_labels=noise_level).
    ``images`` (N, 3, 64, 64) in [0, 1]; ``prompts`` one for all or one per image. Returns (N, 3, 256, 256) in
    [0, 1]."""
    x_lo = _low_res(up, images)
    n, plist = x_lo.shape[0], _prompt_list(prompts)
    if len(plist) == 1:
        plist = plist * n
    if len(plist) != n:
        raise UserError(f"{len(plist)} prompts for {n} images: give one prompt, or one per image")
    level = up.noise_level if noise_level is None else noise_level
    if not 0 <= level < up.noising.T:
        raise UserError(f"noise level {level} is outside 0..{up.noising.T - 1}")
    pipe, gamma = up.pipe, _gamma(guidance, up.default_guidance)
    timesteps, unet, size = pipeline_timesteps(pipe.scheduler, steps), pipe.unet, up.image_size
    emb, uncond = _embeddings(up.prompts, plist, up.device, unet.dtype, gamma)
    offload_others(pipe)
    g = _generator(seed)
    x = torch.randn((n, unet.config.in_channels // 2, size, size), generator=g, dtype=unet.dtype)
    upscaled = F.interpolate(x_lo, (size, size), mode="bilinear", align_corners=True)
    noise = torch.randn(upscaled.shape, generator=g, dtype=unet.dtype).float()
    noising = pipeline_schedule(pipe.image_noising_scheduler)
    upscaled = forward_process(upscaled, torch.full((n,), level), noising, noise).to(up.device)
    labels = torch.full((n,), level, dtype=torch.long, device=up.device)

    def extra(x_t: Tensor) -> dict:
        return {"sample": torch.cat([x_t, upscaled.to(x_t.dtype)], 1), "class_labels": labels}

    schedule = pipeline_schedule(pipe.scheduler)
    wrap, clip = x0_rule(pipe.scheduler, schedule)
    eps_fn = wrap(if_denoiser(pipe, emb, uncond, gamma, "running stage II", extra))
    out = if_loop(eps_fn, x.to(up.device, _loop_dtype(up.device)), timesteps, schedule, g, clip, unet.dtype, "stage II",
                  progress, callback)
    return ((out.float().cpu() + 1) / 2).clamp(0, 1)
