"""DeepFloyd IF stage II (64 -> 256 px) as a sampler over fundiff's loop, with the Part A reductions.

Stage II (``IFSuperResolutionPipeline``: ``DeepFloyd/IF-II-L-v1.0``, or ``-M``, or a local directory) is a
UNet on 6 channels: the 256 px x_t and the 64 px image upscaled (bilinear, align_corners) and noised by the
forward process of its ``image_noising_scheduler`` to ``noise_level`` (250), which it also takes as
``class_labels``. Its 6 output channels are eps and the learned-range variance, as in stage I, so the same
strided DDPM loop (:func:`fundiff.core.loop.sample_loop`) runs it, with CFG (gamma 4, diffusers' default).

So that illusions survive upsampling, stage II applies the reductions of stage I: an anagram's eps is
mean_i inverse_view_i(eps(view_i(x_t), view_i(upscaled), p_i)); a hybrid's is lowpass(eps_1) + highpass(eps_2)
with the filter scaled to 256 px (kernel 33 sigma 2 at 64 px -> kernel 129 sigma 8); a colour hybrid's is
g(eps_1) + c(eps_2) (greyscale and colour components, per pixel, so nothing to scale). An inpainted image is
upsampled and then put back into the 256 px original two ways: a naive paste with a hard mask edge
(:func:`naive_paste`) and a Laplacian-pyramid blend (:func:`laplacian_blend`), so the region outside the mask
keeps the original's detail and the seam is blended.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from fundiff.core.bands import frequency_bands, gaussian_lowpass, hybrid_denoiser
from fundiff.core.colour import colour_hybrid_denoiser
from fundiff.core.guidance import guidance_gate
from fundiff.core.loop import sample_loop
from fundiff.core.model import Condition, DiffusionModel, EpsFn
from fundiff.core.sampling import Sampling
from fundiff.core.schedule import Schedule, forward_process
from fundiff.core.views import anagram_denoiser, make_view
from fundiff.errors import UserError
from fundiff.models.deepfloyd.prompts import PromptEmbeddings
from fundiff.models.deepfloyd.stage1 import DeepFloydModel, binder, execution_device, load_pipeline, schedule_of

STAGE2_SAMPLING = Sampling(sampler="ddpm", stride=20, clip=True)
"""980, 960, ..., 0: the 50 steps of diffusers' IFSuperResolutionPipeline default."""


@dataclass(eq=False)
class Upsampler:
    """Stage II: its pipeline (the UNet), sampling schedule, image-noising schedule and the prompt embeddings
    it shares with stage I."""

    pipe: object
    schedule: Schedule
    noising: Schedule
    prompts: PromptEmbeddings
    image_size: int
    device: torch.device
    source: str
    default_guidance: float = 4.0
    noise_level: int = 250

    def bind(self, upscaled: Tensor) -> Callable[[Condition], EpsFn]:
        """condition -> eps_fn(x_t, k) = unet(cat(x_t, upscaled), k, prompt, class_labels=noise_level)."""

        def extra(x_t: Tensor) -> dict:
            level = torch.full((x_t.shape[0],), self.noise_level, device=x_t.device, dtype=torch.long)
            return {"sample": torch.cat([x_t, upscaled.to(x_t.dtype)], 1), "class_labels": level}

        return binder(self.pipe, self.prompts, self.device, "running stage II", extra)

    def guided(self, condition: Condition, upscaled: Tensor, guidance: float | None) -> EpsFn:
        """CFG at stage II: eps_u + gamma (eps_c - eps_u), eps_u from the prompt '' (None: just that one); no CFG
        (the conditional estimate alone) when gamma <= 1, as IFSuperResolutionPipeline (guidance_scale > 1)."""
        gamma = self.default_guidance if guidance is None else guidance
        bind = self.bind(upscaled)
        uncond = None if gamma <= 1.0 or condition is None else bind(None)
        return guidance_gate(bind(condition), uncond, gamma, (0.0, 1.0), self.schedule.noise_level)

    def describe(self) -> dict:
        return {"source": self.source, "image_size": self.image_size, "noise_level": self.noise_level,
                "default_guidance": self.default_guidance, "dtype": str(self.pipe.unet.dtype).removeprefix("torch.")}


def load_upsampler(stage1: DeepFloydModel, spec: str | None = None, noise_level: int = 250) -> Upsampler:
    """Stage II for ``stage1`` (same device, dtype, offload and prompt cache); ``spec`` None is IF-II-L."""
    pipe, source, _ = load_pipeline(spec, 2, stage1.options)
    unet = pipe.unet
    if unet.config.in_channels != 6:
        raise UserError(f"{source}: a stage II UNet takes 6 input channels, this one {unet.config.in_channels}")
    if stage1.prompts is None or unet.config.encoder_hid_dim != stage1.prompts.dim:
        raise UserError(f"{source} expects text embeddings of width {unet.config.encoder_hid_dim}, "
                        f"stage I {stage1.source} of width {getattr(stage1.prompts, 'dim', None)}")
    if not 0 <= noise_level < 1000:
        raise UserError(f"noise level {noise_level} is outside 0..999")
    from diffusers import DDPMScheduler

    noising = Schedule(DDPMScheduler.from_config(pipe.image_noising_scheduler.config).betas.double())
    return Upsampler(pipe, schedule_of(pipe.scheduler, source), noising, stage1.prompts, unet.config.sample_size,
                     execution_device(pipe, stage1.options), source, noise_level=noise_level)


def _low_res(up: Upsampler, images: Tensor) -> Tensor:
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3] \
            or images.shape[-1] > up.image_size:
        raise UserError(f"stage II upsamples RGB images (N, 3, 64, 64) in [0, 1]; got {tuple(images.shape)}")
    return images.float() * 2 - 1


def noised_upscale(up: Upsampler, x_lo: Tensor, g: torch.Generator) -> Tensor:
    """The stage-II condition: the 64 px image in [-1, 1] upscaled (bilinear, align_corners) and noised to
    ``noise_level`` by the image-noising schedule, with a draw from ``g``."""
    size = up.image_size
    upscaled = F.interpolate(x_lo, (size, size), mode="bilinear", align_corners=True)
    noise = torch.randn(upscaled.shape, generator=g)
    levels = torch.full((x_lo.shape[0],), up.noise_level)
    return forward_process(upscaled, levels, up.noising, noise).to(up.device)


def bound_model(up: Upsampler, images: Tensor, seed: int = 0) -> DiffusionModel:
    """Stage II as a :class:`DiffusionModel` bound to its low-resolution image: 256 px RGB in [-1, 1],
    prompt-conditioned, its denoiser eps(x_t, k) = unet(cat(x_t, u), k, prompt, class_labels=noise_level) with
    u = :func:`noised_upscale` of ``images`` (1, 3, 64, 64) in [0, 1] (the noise drawn with ``seed``). Every Part A
    operation runs on it (``fundiff.generate(bound_model(up, x64), "a photo of a dog")``)."""
    x_lo = _low_res(up, images)
    if x_lo.shape[0] != 1:
        raise UserError(f"bind stage II to one 64 px image at a time, got {x_lo.shape[0]}")
    upscaled = noised_upscale(up, x_lo, torch.Generator().manual_seed(seed))
    defaults = STAGE2_SAMPLING.over(Sampling(variance="learned", guidance=up.default_guidance,
                                             guidance_interval=(0.0, 1.0)))
    return DiffusionModel(name=f"{up.source} bound to its 64 px image", schedule=up.schedule,
                          image_size=up.image_size, channels=3, value_range=(-1.0, 1.0), conditioning="prompt",
                          bind=up.bind(upscaled), sampling=defaults, learned_variance=True, device=up.device,
                          info={"kind": "deepfloyd-IF-stage-II", "noise_level": up.noise_level, "seed": seed})


def _run(up: Upsampler, images: Tensor, make_eps: Callable[[Tensor], EpsFn], seed: int, sampling: Sampling) -> Tensor:
    """x_T ~ N(0, I) at 256 px, the noised upscaled condition (drawn in that order, as diffusers does), and the
    strided loop with the learned variance; settings left None in ``sampling`` are STAGE2_SAMPLING's (ddpm, clip).
    Returns (N, 3, 256, 256) in [0, 1]."""
    sampling = sampling.over(STAGE2_SAMPLING)
    x_lo, size = _low_res(up, images), up.image_size
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((x_lo.shape[0], 3, size, size), generator=g)
    upscaled = noised_upscale(up, x_lo, g)
    clip = (-1.0, 1.0) if sampling.clip else None
    out = sample_loop(make_eps(upscaled), x.to(up.device), sampling.timesteps(up.schedule.T), up.schedule, g,
                      sampling.sampler, "learned", clip)
    return ((out.float().cpu() + 1) / 2).clamp(0, 1)


def upsample(up: Upsampler, images: Tensor, condition: Condition = None, guidance: float | None = None,
             seed: int = 0, sampling: Sampling = STAGE2_SAMPLING) -> Tensor:
    """Plain stage II: (N, 3, 64, 64) in [0, 1] -> (N, 3, 256, 256) in [0, 1], conditioned on the prompt."""
    return _run(up, images, lambda u: up.guided(condition, u, guidance), seed, sampling)


def anagram_eps(up: Upsampler, upscaled: Tensor, conditions: Sequence[Condition], views: Sequence[str],
                guidance: float | None = None) -> EpsFn:
    """eps = mean_i inverse_view_i(eps(view_i(x_t), view_i(upscaled), p_i)): each view sees its view of the image."""
    if len(conditions) != len(views):
        raise UserError(f"{len(conditions)} prompts for {len(views)} views: give one prompt per view")
    vs = [make_view(v, up.image_size) for v in views]
    return anagram_denoiser([up.guided(c, v.view(upscaled), guidance) for c, v in zip(conditions, vs)], vs)


def upsample_anagram(up: Upsampler, images: Tensor, conditions: Sequence[Condition], views: Sequence[str],
                     guidance: float | None = None, seed: int = 0, sampling: Sampling = STAGE2_SAMPLING) -> Tensor:
    """Stage II of an anagram (see :func:`anagram_eps`), so every view still reads as its prompt at 256 px."""
    return _run(up, images, lambda u: anagram_eps(up, u, conditions, views, guidance), seed, sampling)


def upsample_hybrid(up: Upsampler, images: Tensor, conditions: Sequence[Condition], kernel: int = 33,
                    sigmas: Sequence[float] = (2.0,), guidance: float | None = None, seed: int = 0,
                    sampling: Sampling = STAGE2_SAMPLING) -> Tensor:
    """Stage II of a hybrid: eps = sum_i band_i(eps_i(x_t, upscaled)) with the stage-I bands scaled to 256 px
    (:func:`~fundiff.core.bands.frequency_bands` with scale 256 / 64 = 4: kernel 33 sigma 2 -> kernel 129 sigma 8)."""
    bands = frequency_bands(kernel, sigmas, max(1, up.image_size // images.shape[-1]))
    if len(bands) != len(conditions):
        raise UserError(f"{len(conditions)} prompts need {len(conditions) - 1} sigma(s), got {len(sigmas)}")
    return _run(up, images, lambda u: hybrid_denoiser([up.guided(c, u, guidance) for c in conditions], bands),
                seed, sampling)


def upsample_colour_hybrid(up: Upsampler, images: Tensor, conditions: Sequence[Condition],
                           guidance: float | None = None, seed: int = 0, sampling: Sampling = STAGE2_SAMPLING
                           ) -> Tensor:
    """Stage II of a colour hybrid: eps = g(eps_1(x_t, upscaled)) + c(eps_2(x_t, upscaled)) with g the greyscale
    and c the colour component (:mod:`fundiff.core.colour`); conditions are (greyscale prompt, colour prompt)."""
    return _run(up, images, lambda u: colour_hybrid_denoiser([up.guided(c, u, guidance) for c in conditions]),
                seed, sampling)


def upsample_inpainting(up: Upsampler, inpainted: Tensor, original: Tensor, mask: Tensor,
                        condition: Condition = None, guidance: float | None = None, seed: int = 0,
                        sampling: Sampling = STAGE2_SAMPLING, levels: int = 5) -> tuple[Tensor, Tensor, Tensor]:
    """(stage II of the inpainted image, its naive paste into the 256 px ``original`` and its Laplacian-pyramid
    blend with it); ``mask`` (1, 1, 64, 64) is 1 where new content went and is upscaled by nearest neighbour."""
    size = up.image_size
    if tuple(original.shape[-2:]) != (size, size):
        raise UserError(f"the original for blending must be {size}x{size}, got {tuple(original.shape[-2:])}")
    raw = upsample(up, inpainted, condition, guidance, seed, sampling)
    m = F.interpolate(mask.float(), (size, size), mode="nearest")
    return raw, naive_paste(raw, original.float(), m), laplacian_blend(raw, original.float(), m, levels)


def _down(x: Tensor) -> Tensor:
    """One pyramid level down: Gaussian blur (kernel 5, sigma 1), then 2x2 average."""
    return F.avg_pool2d(gaussian_lowpass(x, 5, 1.0), 2)


def _up(x: Tensor, size: Sequence[int]) -> Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def gaussian_pyramid(x: Tensor, levels: int) -> list[Tensor]:
    """[G_0 = x, G_1 = down(G_0), ...], ``levels`` entries (fewer if the image gets smaller than 4 px)."""
    pyramid = [x]
    while len(pyramid) < levels and min(pyramid[-1].shape[-2:]) >= 8:
        pyramid.append(_down(pyramid[-1]))
    return pyramid


def laplacian_pyramid(x: Tensor, levels: int) -> list[Tensor]:
    """[L_i = G_i - up(G_{i+1})] + [G_last]; :func:`reconstruct` inverts it exactly."""
    g = gaussian_pyramid(x, levels)
    return [g[i] - _up(g[i + 1], g[i].shape[-2:]) for i in range(len(g) - 1)] + [g[-1]]


def reconstruct(lap: Sequence[Tensor]) -> Tensor:
    """x = L_0 + up(L_1 + up(L_2 + ...))."""
    x = lap[-1]
    for level in reversed(lap[:-1]):
        x = level + _up(x, level.shape[-2:])
    return x


def laplacian_blend(a: Tensor, b: Tensor, mask: Tensor, levels: int = 5) -> Tensor:
    """Multi-resolution blending (Burt and Adelson): L_i = G_i(m) L_i(a) + (1 - G_i(m)) L_i(b), summed back;
    ``a`` where mask = 1, ``b`` where mask = 0, seams blended over a width that grows with the level."""
    m = mask.float().expand(a.shape[0], 1, *a.shape[-2:])
    gm = gaussian_pyramid(m, levels)
    la, lb = laplacian_pyramid(a.float(), len(gm)), laplacian_pyramid(b.float(), len(gm))
    return reconstruct([w * x + (1 - w) * y for w, x, y in zip(gm, la, lb)]).clamp(0, 1)


def naive_paste(raw: Tensor, original: Tensor, mask: Tensor) -> Tensor:
    """torch.where(mask, raw, original): ``raw`` where mask = 1, ``original`` exactly elsewhere, with a hard edge
    (the baseline the Laplacian blend improves on). ``mask`` (N or 1, 1, H, W) at the images' size."""
    sizes = [tuple(t.shape[-2:]) for t in (raw, original, mask)]
    if len(set(sizes)) != 1:
        raise UserError(f"a paste needs the raw image, original and mask at one size, got {sizes}")
    return torch.where(mask == 1, raw, original)
