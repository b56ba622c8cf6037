"""Part A operations (spec.md 1.1-1.9) on any :class:`DiffusionModel`: the Python API behind the CLI.

Images go in and come out in [0, 1] as (N, C, H, W) tensors; each operation converts to the model's data
range, runs the one sampling loop of :mod:`fundiff.core.loop` over wrapped denoisers, and converts back.
Sampling settings not given come from the model's card (``model.sampling``). Every random draw comes from
one ``torch.Generator`` seeded with ``seed``: the same seed, the same image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from fundiff.core import edits
from fundiff.core.bands import check_blur, frequency_bands, gaussian_lowpass, hybrid_denoiser
from fundiff.core.colour import colour_hybrid_denoiser
from fundiff.core.contract import Condition, Denoiser, Joint, one_by_one, split_output
from fundiff.core.guidance import classifier_guidance, classifier_shift, guidance_gate, log_prob_gradient
from fundiff.core.loop import Callback, Chunk, Projection, make_step, run_chunks, run_loop
from fundiff.core.model import DiffusionModel
from fundiff.core.sampling import Sampling
from fundiff.core.views import VIEW_NAMES, View, anagram_denoiser, make_view
from fundiff.errors import UserError
from fundiff.progress import step_bar

SPEC_I_STARTS = (1, 3, 5, 7, 10, 20)
"""The spec's SDEdit i_start values (1.7), on its 34-step grid."""
Conditions = Condition | Sequence[Condition]


def settings(model: DiffusionModel, sampling: Sampling | None = None, guidance: float | None = None,
             illusion: bool = False, hybrid: bool = False) -> Sampling:
    """The settings a run uses: ``sampling`` (and ``guidance``) where given, the model's card elsewhere (its
    illusion defaults for anagrams when ``illusion``, its hybrid defaults when ``hybrid``)."""
    asked = sampling or Sampling()
    if guidance is not None:
        asked = replace(asked, guidance=guidance)
    s = asked.over(model.hybrids() if hybrid else model.illusions() if illusion else model.sampling)
    if s.variance == "learned" and not model.learned_variance:
        raise UserError(f"model {model.name} has no learned variance; use --variance beta or posterior")
    if model.is_flow and s.sampler not in ("euler", "dpmpp-2m"):
        raise UserError(f"model {model.name} is a flow-matching model: it samples with euler or dpmpp-2m, not "
                        f"{s.sampler}")
    if s.classifier_scale and model.classifier is None:
        raise UserError(f"model {model.name} has no noise-aware classifier for --classifier-scale; train one: "
                        f"fundiff train-classifier {model.name}")
    if not model.is_flow and s.sampler == "euler":
        raise UserError(f"model {model.name} is a DDPM model: use --sampler ddpm, ddim or dpmpp-2m")
    return s


def spec_part_a(model: DiffusionModel) -> Sampling:
    """The spec's Part A loop (1.4-1.9): strided steps (stride about 3% of T), the learned variance (or the
    posterior's), CFG at every step, x0_hat clamped."""
    return Sampling(stride=max(1, round(model.schedule.T * 3 / 100)), guidance_interval=(0.0, 1.0), clip=True,
                    variance="learned" if model.learned_variance else ("posterior" if not model.is_flow else None))


def guided(model: DiffusionModel, condition: Conditions, s: Sampling) -> Denoiser:
    """CFG (spec 1.6): eps = eps_u + gamma (eps_c - eps_u) where the noise level is in the guidance interval,
    eps_u from the unconditional binding; the bare conditional denoiser when gamma = 1, no condition, or an
    unconditional model. With ``s.classifier_scale`` and a model classifier, classifier guidance on top
    (:func:`~fundiff.core.guidance.classifier_guidance`)."""
    cond = model.denoiser(condition)
    if condition is None or model.conditioning == "none":
        return cond
    if s.guidance != 1.0:
        cond = guidance_gate(cond, model.denoiser(None), s.guidance, s.guidance_interval, model.schedule.noise_level)
    if not s.classifier_scale or model.classifier is None:
        return cond
    return classifier_guidance(cond, log_prob_gradient(model.classifier, _class_labels(model, condition)),
                               s.classifier_scale, model.schedule.abar)


def _class_labels(model: DiffusionModel, condition: Conditions) -> torch.Tensor:
    """The class of each image, a per-image list as it is, or the one class of all of them (a 1-element tensor)."""
    checked = model.check_condition(condition)
    return torch.tensor(checked if isinstance(checked, list) else [checked])


def with_classifier_guidance(model: DiffusionModel, conditions: Sequence[Condition], s: Sampling,
                             joint: Joint) -> Joint:
    """``joint`` with classifier guidance of input i toward condition i (:func:`classifier_shift`), when
    ``s.classifier_scale`` asks for it and the model has a classifier; the labels are read once, not every step."""
    if not s.classifier_scale or model.classifier is None:
        return joint
    grads = [log_prob_gradient(model.classifier, _class_labels(model, c)) for c in conditions]

    def fn(xs: Sequence[torch.Tensor], level: torch.Tensor) -> list:
        return [o.with_value(o.value - classifier_shift(x, level[:1].expand(len(x)), grad, s.classifier_scale,
                                                        model.schedule.abar), o.variance)
                for o, x, grad in zip(joint(xs, level), xs, grads, strict=True)]

    return fn


def joint_guided(model: DiffusionModel, conditions: Sequence[Condition], s: Sampling) -> Joint:
    """The guided estimates of all ``conditions`` (condition i on input i), as :func:`guided` computes each, in
    fewer net calls: for a class model, every conditional estimate in one call (a class per image) and, where CFG
    applies, every unconditional one in a second; other models one condition after another. The same formula; the
    larger calls take less time per image (``python bench/play.py``)."""
    if model.conditioning != "class" or any(c is None or isinstance(c, list | tuple) for c in conditions):
        return one_by_one([guided(model, c, s) for c in conditions])
    uncond = model.denoiser(None) if s.guidance != 1.0 else None

    gated: dict[tuple[int, ...], Denoiser] = {}  # by the inputs' sizes, bound once (they stay the same every step)

    def joint(xs: Sequence[torch.Tensor], level: torch.Tensor) -> list:
        sizes = tuple(len(x) for x in xs)
        if sizes not in gated:
            per_image = [c for c, n in zip(conditions, sizes, strict=True) for _ in range(n)]
            gated[sizes] = guidance_gate(model.denoiser(per_image), uncond, s.guidance,
                                         s.guidance_interval or (0.0, 1.0), model.schedule.noise_level)
        return split_output(gated[sizes](torch.cat(list(xs)), level[:1].expand(sum(sizes))), sizes)

    return with_classifier_guidance(model, conditions, s, joint)


def timesteps(model: DiffusionModel, s: Sampling) -> list[int]:
    return s.timesteps(model.schedule.T)


def sample(model: DiffusionModel, fn: Denoiser, x: torch.Tensor, ks: Sequence[int], s: Sampling,
           generator: torch.Generator, callback: Callback | None = None, project: Projection | None = None,
           progress: bool = False) -> torch.Tensor:
    """The one loop over timesteps ``ks`` with the model's update for ``s``."""
    step = make_step(model.schedule, s, model.value_range)
    with step_bar(len(ks), progress, callback) as cb:
        return run_loop(fn, x, model.schedule.levels(list(ks)), step, generator, cb, project)


def _prepare(model: DiffusionModel, images: torch.Tensor) -> torch.Tensor:
    expected = (model.channels, model.image_size, model.image_size)
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4 or tuple(images.shape[1:]) != expected:
        raise UserError(f"images of shape {tuple(images.shape)} do not fit model {model.name}: expected (N, "
                        f"{expected[0]}, {expected[1]}, {expected[2]})")
    return model.to_model_range(images.float()).to(model.device)


def _out(model: DiffusionModel, x: torch.Tensor) -> torch.Tensor:
    return model.to_unit_range(x.float().cpu()).clamp(0, 1)


PIXELS_PER_RUN = 1_600_000
"""At most this many pixel values are sampled at once: about 2,000 digits at 28 px, 130 colour images at 64 px."""


def max_images(model: DiffusionModel) -> int:
    """How many images one call samples at once (they all go through the net together, so memory grows with it)."""
    return max(1, PIXELS_PER_RUN // (model.channels * model.image_size ** 2))


def check_count(model: DiffusionModel, n: int, what: str = "n") -> None:
    """1 <= n <= :func:`max_images`, said in one line before any work."""
    if n < 1:
        raise UserError(f"{what} must be at least 1, got {n}")
    if n > max_images(model):
        raise UserError(f"{what} asks for {n:,} images; model {model.name} samples at most {max_images(model):,} "
                        f"at once ({model.image_size} px): ask for fewer and run again with another --seed")


def _noise(model: DiffusionModel, n: int, g: torch.Generator) -> torch.Tensor:
    check_count(model, n)
    return torch.randn((n, model.channels, model.image_size, model.image_size), generator=g).to(model.device)


def check_timestep(model: DiffusionModel, k: int) -> int:
    if not 0 <= k < model.schedule.T:
        raise UserError(f"timestep {k} is outside 0..{model.schedule.T - 1} for model {model.name}")
    return k


def noise(model: DiffusionModel, images: torch.Tensor, ts: Sequence[int], seed: int = 0) -> list[torch.Tensor]:
    """Forward process (spec 1.1) at each timestep in ``ts``: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps."""
    x0, g = _prepare(model, images), torch.Generator().manual_seed(seed)
    return [_out(model, edits.noise_to(x0, check_timestep(model, k), model.schedule, g)) for k in ts]


def _both(first: Callback, second: Callback | None) -> Callback:
    """A callback calling ``first`` and then ``second`` (when given)."""
    if second is None:
        return first

    def both(d: dict) -> None:
        first(d)
        second(d)

    return both


class Strip:
    """A sampler callback keeping x_t after every ``every``-th step (spec 1.4's 'every 5th step')."""

    def __init__(self, total: int, every: int = 5) -> None:
        self.total, self.every, self.frames = total, max(1, every), []

    def __call__(self, d: dict) -> None:
        if (d["i"] + 1) % self.every == 0 and d["i"] + 1 < self.total:
            self.frames.append(d["x"].detach())


def denoise(model: DiffusionModel, images: torch.Tensor, k: int, condition: Condition = None, *,
            guidance: float | None = None, seed: int = 0, sampling: Sampling | None = None,
            blur: tuple[int, float] = (5, 2.0), strip_every: int = 5, progress: bool = False,
            callback: Callback | None = None) -> dict[str, torch.Tensor]:
    """Noise to timestep k, then denoise three ways (spec 1.2-1.4): Gaussian blur, one step, and the loop
    from k (timesteps [k] + the grid's below it); ``strip`` holds x_t every ``strip_every`` steps (S, N, C, H, W):
    at timesteps[::strip_every], then the result."""
    s = settings(model, sampling, guidance)
    check_blur(*blur, model.image_size)
    x0, g = _prepare(model, images), torch.Generator().manual_seed(seed)
    x_t = edits.noise_to(x0, check_timestep(model, k), model.schedule, g)
    fn = guided(model, condition, s)
    ks = [k] + [j for j in timesteps(model, s) if j < k]
    strip = Strip(len(ks), strip_every)
    x_iter = sample(model, fn, x_t, ks, s, g, _both(strip, callback), progress=progress)
    one = edits.one_step_denoise(fn, x_t, k, model.schedule)
    return {"noisy": _out(model, x_t), "blur": _out(model, edits.blur_denoise(x_t, *blur)),
            "one_step": _out(model, one), "iterative": _out(model, x_iter),
            "strip": torch.stack([_out(model, f) for f in [x_t, *strip.frames, x_iter]]),
            "timesteps": torch.tensor(ks)}


def generate(model: DiffusionModel, condition: Conditions = None, n: int = 1, *, guidance: float | None = None,
             seed: int = 0, sampling: Sampling | None = None, callback: Callback | None = None,
             progress: bool = False) -> torch.Tensor:
    """Sampling (spec 1.5, 1.6; Part B): the loop from pure noise x_T ~ N(0, I), with CFG when conditioned.

    ``condition`` is one class or prompt for all ``n`` images, or one per image (a list of length n).
    """
    s = settings(model, sampling, guidance)
    g = torch.Generator().manual_seed(seed)
    x = _noise(model, n, g)
    if isinstance(condition, list | tuple) and len(condition) != n:
        raise UserError(f"{len(condition)} conditions for {n} images: give one, or one per image")
    size = chunk_size(model)
    chunks = [Chunk(guided(model, list(condition[a:a + size]) if isinstance(condition, list | tuple) else condition, s),
                    x[a:a + size], make_step(model.schedule, s, model.value_range),
                    g if a == 0 else chunk_generator(seed, a // size)) for a in range(0, n, size)]
    with step_bar(len(timesteps(model, s)), progress, callback) as cb:
        return _out(model, run_chunks(chunks, model.schedule.levels(timesteps(model, s)), cb))


CPU_CHUNK_PIXELS = 64 * 28 * 28
"""On a CPU, ``generate`` passes at most this many pixel values through the net at once: 64 digits (``python
bench/speed.py``: 512 digits in chunks of 32, 64, 128, 256 or all at once took 49.8, 47.7, 52.3, 65.2 and 75.7 ms per
image with DPM-Solver++(2M)-20 on 2 threads; a small net call stays in cache)."""


def chunk_size(model: DiffusionModel) -> int:
    """Images per net call when sampling: :data:`CPU_CHUNK_PIXELS` worth on a CPU, everything at once on a GPU."""
    if model.device.type != "cpu":
        return max_images(model)
    return max(1, CPU_CHUNK_PIXELS // (model.channels * model.image_size ** 2))


def chunk_generator(seed: int, chunk: int) -> torch.Generator:
    """The step noise of slice ``chunk`` >= 1 of a batch (slice 0 continues the batch's own generator, so a batch
    that fits in one slice draws what it always drew)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + chunk) % (1 << 63))


def default_i_starts(model: DiffusionModel, s: Sampling) -> list[int]:
    """The spec's i_start values (1, 3, 5, 7, 10, 20 of 34 steps) scaled to the model's grid, so they start
    from about the same noise levels on any grid."""
    n = len(timesteps(model, s))
    return sorted({min(n - 1, round(i * n / 34)) for i in SPEC_I_STARTS})


def edit(model: DiffusionModel, images: torch.Tensor, condition: Condition = None,
         i_starts: Sequence[int] | None = None, *, guidance: float | None = None, seed: int = 0,
         sampling: Sampling | None = None, progress: bool = False, callback: Callback | None = None
         ) -> dict[int, torch.Tensor]:
    """SDEdit (spec 1.7): for each i_start, noise the images to timesteps[i_start] and run 1.6 from there.

    Each i_start draws from its own generator seeded with ``seed``, so one result never depends on the others.
    """
    s = settings(model, sampling, guidance)
    x0, ks = _prepare(model, images), timesteps(model, s)
    i_starts = list(default_i_starts(model, s) if i_starts is None else i_starts)
    for i in i_starts:
        edits.check_i_start(ks, i)
    fn = guided(model, condition, s)
    step = make_step(model.schedule, s, model.value_range)
    out = {}
    for i in i_starts:
        with step_bar(len(ks) - i, progress, callback) as cb:
            x = edits.sdedit(fn, x0, ks, i, model.schedule, step, torch.Generator().manual_seed(seed), cb)
        out[i] = _out(model, x)
    return out


def inpaint(model: DiffusionModel, images: torch.Tensor, mask: torch.Tensor, condition: Condition = None, *,
            guidance: float | None = None, seed: int = 0, sampling: Sampling | None = None,
            progress: bool = False, callback: Callback | None = None) -> torch.Tensor:
    """Inpainting (spec 1.7.2, RePaint): sample from noise, projecting after every step
    x_t <- m x_t + (1 - m) forward(x_orig, t); outside the mask the result is the original exactly."""
    s = settings(model, sampling, guidance)
    x0 = _prepare(model, images)
    m = check_mask(mask.float().to(x0.device)).expand_as(x0)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(x0.shape, generator=g).to(x0.device)
    project = edits.repaint_projection(x0, m, model.schedule, g)
    out = sample(model, guided(model, condition, s), x, timesteps(model, s), s, g, callback, project, progress)
    return torch.where(m.cpu() == 1, _out(model, out), images.float().cpu().expand_as(m.cpu()))


def check_mask(mask: torch.Tensor) -> torch.Tensor:
    """A mask is binary (0 or 1) with at least one 1 (where new content goes), and not all ones."""
    if not torch.all((mask == 0) | (mask == 1)) or mask.sum() == 0:
        raise UserError("the mask must be binary (0 or 1) with at least one 1 (where new content goes)")
    return mask


def views_of(model: DiffusionModel, views: Sequence[str | View]) -> list[View]:
    """View names (see :data:`~fundiff.core.views.VIEW_NAMES`) or View objects, for the model's image size; a
    view the model cannot read is refused (negate: -x lies outside a [0, 1] model's data)."""
    out = [make_view(v, model.image_size) if isinstance(v, str) else v for v in views]
    lo, hi = model.value_range
    if lo != -hi and any(v.name == "negate" for v in out):
        suited = ", ".join(n for n in VIEW_NAMES if n != "negate")
        raise UserError(f"view negate needs a model whose pixels are centred on 0 (DeepFloyd: [-1, 1]); model "
                        f"{model.name} draws in [{lo:g}, {hi:g}], where -x is never an image: use {suited}")
    return out


def anagram(model: DiffusionModel, conditions: Sequence[Condition], views: Sequence[str | View] = ("identity", "flip"),
            n: int = 1, *, guidance: float | None = None, seed: int = 0, sampling: Sampling | None = None,
            progress: bool = False, callback: Callback | None = None) -> torch.Tensor:
    """Visual anagrams (spec 1.8): eps = mean_i inverse_view_i(eps(view_i(x_t), p_i)); images shown upright."""
    check_anagram(model, conditions, views)
    check_per_image(conditions, n)
    s = settings(model, sampling, guidance, illusion=True)
    fn = anagram_denoiser(joint_guided(model, conditions, s), views_of(model, views))
    g = torch.Generator().manual_seed(seed)
    x = _noise(model, n, g)
    return _out(model, sample(model, fn, x, timesteps(model, s), s, g, callback, progress=progress))


def check_per_image(conditions: Sequence[Conditions], n: int) -> None:
    """A condition given per image (a list) has one entry for each of the ``n`` images."""
    for c in conditions:
        if isinstance(c, list | tuple) and len(c) != n:
            raise UserError(f"{len(c)} conditions for {n} images: give one, or one per image")


def check_anagram(model: DiffusionModel, conditions: Sequence[Condition], views: Sequence[str | View]) -> None:
    """One condition per view, each known to the model, and views the model can read."""
    if len(conditions) != len(views):
        raise UserError(f"{len(conditions)} prompts for {len(views)} views: give one prompt per view")
    views_of(model, views)
    for c in conditions:
        model.check_condition(c)


def hybrid_sigma(image_size: int) -> float:
    """The default low-pass sigma of a hybrid: 1.75 below 64 px (measured at 28 px: the two readings balance,
    README), the spec's 2 at 64 px, scaled with the image above."""
    return 1.75 if image_size < 64 else 2.0 * image_size / 64


def hybrid(model: DiffusionModel, conditions: Sequence[Condition], n: int = 1, kernel: int = 33,
           sigmas: Sequence[float] | None = None, *, guidance: float | None = None, seed: int = 0,
           sampling: Sampling | None = None, progress: bool = False, callback: Callback | None = None
           ) -> torch.Tensor:
    """Hybrid images (spec 1.9, factorized diffusion): eps = lowpass(eps_1) + highpass(eps_2), or three
    bands (low, middle, high) for three conditions and two sigmas."""
    sigmas = check_hybrid(model, conditions, kernel, sigmas)
    check_per_image(conditions, n)
    bands = frequency_bands(kernel, sigmas)
    s = settings(model, sampling, guidance, hybrid=True)
    fn = hybrid_denoiser(joint_guided(model, conditions, s), bands)
    g = torch.Generator().manual_seed(seed)
    x = _noise(model, n, g)
    return _out(model, sample(model, fn, x, timesteps(model, s), s, g, callback, progress=progress))


def check_hybrid(model: DiffusionModel, conditions: Sequence[Condition], kernel: int,
                 sigmas: Sequence[float] | None) -> list[float]:
    """The hybrid's sigmas (given or default), after checking there is one band per condition and that each
    Gaussian fits the model's image (:func:`~fundiff.core.bands.check_blur`)."""
    sigmas = hybrid_sigmas(model, len(conditions), sigmas)
    if len(conditions) not in (2, 3) or len(sigmas) != len(conditions) - 1:
        raise UserError(f"{len(conditions)} prompts need {len(conditions) - 1} sigma(s), got {len(sigmas)}; "
                        "a hybrid takes 2 or 3 prompts")
    for sigma in sigmas:
        check_blur(kernel, sigma, model.image_size)
    for c in conditions:
        model.check_condition(c)
    return sigmas


def hybrid_sigmas(model: DiffusionModel, n_conditions: int, sigmas: Sequence[float] | None) -> list[float]:
    """The given sigmas, or the default: :func:`hybrid_sigma` (and half of it for a three-way hybrid)."""
    if sigmas:
        sigmas = list(sigmas)
        return [sigmas[0], sigmas[0] / 2] if n_conditions == 3 and len(sigmas) == 1 else sigmas
    base = hybrid_sigma(model.image_size)
    return [base] if n_conditions < 3 else [base, base / 2]


def lowpass_view(images: torch.Tensor, kernel: int = 33, sigma: float = 2.0) -> torch.Tensor:
    """What a hybrid looks like from far away: its low-pass copy."""
    return gaussian_lowpass(images, kernel, sigma)


def colour_hybrid(model: DiffusionModel, conditions: Sequence[Condition], n: int = 1, *,
                  guidance: float | None = None, seed: int = 0, sampling: Sampling | None = None,
                  progress: bool = False, callback: Callback | None = None) -> torch.Tensor:
    """Colour hybrids (factorized diffusion): eps = g(eps_1) + c(eps_2), g = the greyscale component (channel
    mean), c = identity - g (:mod:`fundiff.core.colour`); the image's greyscale version reads as
    ``conditions[0]``, its colours follow ``conditions[1]``. RGB models only."""
    conditions = check_colour_hybrid(model, conditions)
    s = settings(model, sampling, guidance, hybrid=True)
    fn = colour_hybrid_denoiser(joint_guided(model, conditions, s))
    g = torch.Generator().manual_seed(seed)
    x = _noise(model, n, g)
    return _out(model, sample(model, fn, x, timesteps(model, s), s, g, callback, progress=progress))


def check_colour_hybrid(model: DiffusionModel, conditions: Sequence[Condition]) -> list[Condition]:
    """An RGB model and two conditions (greyscale, colour), each known to the model; returns them checked."""
    if model.channels != 3:
        plural = "" if model.channels == 1 else "s"
        raise UserError(f"colour hybrids need an RGB model; model {model.name} draws {model.channels} "
                        f"channel{plural}")
    given = 1 if conditions is None or isinstance(conditions, str | int) else len(conditions)
    if given != 2:
        raise UserError(f"a colour hybrid takes 2 prompts (greyscale, colour), got {given}")
    return [model.check_condition(c) for c in conditions]
