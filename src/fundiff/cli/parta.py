"""Part A commands of the ``fundiff`` CLI (spec.md 1.1-1.9); the work is in fundiff.cli.parta_run.

Options that take several values accept them space-separated (``--t 250 500 750``,
``--i-start 1 3 5``, ``--views flip rotate_90``) or repeated (``--t 250 --t 500``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fundiff.errors import UserError

Opt = typer.Option
Model = Annotated[str, Opt(help="digits (shipped), deepfloyd[:IF-I-M-v1.0|:IF-I-XL-v1.0] or a local IF dir, a "
                                 "fundiff run dir or weights file, or a diffusers model dir")]
Prompt = Annotated[str | None, Opt(help="text prompt; for the digit model a digit 0-9")]
Class = Annotated[int | None, Opt("--class", help="class to condition on (the digit model: 0-9)")]
Guidance = Annotated[float | None, Opt(help="CFG scale gamma (default: the model's, 5 for digits)")]
Seed = Annotated[int, Opt()]
Stride = Annotated[int | None, Opt(help="timestep stride (default ~3% of T: 30 for T=1000, 9 for T=300)")]
Steps = Annotated[int | None, Opt(help="evenly spaced steps instead of --stride")]
Sampler = Annotated[str, Opt(help="ddpm (strided, with variance) | ddim")]
Clip = Annotated[bool, Opt("--clip/--no-clip", help="clamp x0_hat to the model's data range")]
Out = Annotated[Path | None, Opt(help="output directory (default outputs/COMMAND-...)")]
Force = Annotated[bool, Opt("--force", help="write into a non-empty --out")]
Device = Annotated[str, Opt(help="auto | cpu | cuda")]
Image = Annotated[Path, typer.Argument(help="any image file (PNG, JPEG, WebP, ...)")]
Upsample = Annotated[bool, Opt("--upsample", help="DeepFloyd: also every result through stage II at 256 px")]
Stage2 = Annotated[str | None, Opt("--stage-2", help="DeepFloyd stage II: deepfloyd:IF-II-L-v1.0 (default), "
                                   "deepfloyd:IF-II-M-v1.0, or a local directory")]
Cache = Annotated[Path | None, Opt(help="DeepFloyd prompt-embedding cache (.pth or .safetensors; default "
                                   "$FUNDIFF_PROMPT_CACHE or ~/.cache/fundiff/prompt_embeds.pth)")]
DType = Annotated[str, Opt(help="DeepFloyd weights: auto (fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16")]
Offload = Annotated[bool, Opt("--offload", help="DeepFloyd: model CPU offload (less GPU memory, CUDA only)")]
Steps2 = Annotated[int | None, Opt("--steps-2", help="DeepFloyd stage II steps (default 50; implies --upsample)")]

MULTI_INT = ("--t", "--i-start", "--box", "--steps-1")
MULTI_ANY = ("--views", "--sigma", "--own", "--drawing")


def _common(model, prompt, class_, guidance, seed, stride, steps, sampler, clip, out, force, device, **deepfloyd):
    """Common options; ``deepfloyd``: upsample, stage_2, steps_2, cache, dtype, offload."""
    from fundiff.cli.parta_run import Common
    from fundiff.parta import Sampling

    return Common(model, prompt, class_, guidance, seed, Sampling(stride, steps, sampler, clip), out, force, device,
                  **deepfloyd)


def _df(upsample, stage_2, cache, dtype, offload, steps_2=None) -> dict:
    return dict(upsample=upsample or steps_2 is not None, stage_2=stage_2, steps_2=steps_2, cache=cache,
                dtype=dtype, offload=offload)


def noise(image: Image, t: Annotated[list[int] | None, Opt(help="timesteps, e.g. 250 500 750")] = None,
          model: Model = "digits", seed: Seed = 0, out: Out = None, force: Force = False,
          device: Device = "auto", upsample: Upsample = False, stage_2: Stage2 = None, cache: Cache = None,
          dtype: DType = "auto", offload: Offload = False, steps_2: Steps2 = None) -> None:
    """1.1 The forward process: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps at each --t."""
    from fundiff.cli.parta_run import run_noise

    c = _common(model, None, None, None, seed, None, None, "ddpm", True, out, force, device,
                **_df(upsample, stage_2, cache, dtype, offload, steps_2))
    run_noise(image, t or _default_ts(model), c)


def denoise(image: Image, t: Annotated[list[int] | None, Opt(help="timesteps to noise to")] = None,
            method: Annotated[str, Opt(help="blur | one-step | iterative | all")] = "all",
            blur_kernel: Annotated[int, Opt(help="Gaussian blur kernel (1.2)")] = 5,
            blur_sigma: Annotated[float, Opt(help="Gaussian blur sigma (1.2)")] = 2.0,
            model: Model = "digits", prompt: Prompt = None, class_: Class = None, guidance: Guidance = None,
            seed: Seed = 0, stride: Stride = None, steps: Steps = None, sampler: Sampler = "ddpm",
            clip: Clip = True, out: Out = None, force: Force = False, device: Device = "auto",
            upsample: Upsample = False, stage_2: Stage2 = None, cache: Cache = None, dtype: DType = "auto",
            offload: Offload = False, steps_2: Steps2 = None) -> None:
    """1.2-1.4 Denoise a noised image by Gaussian blur, in one step, and iteratively; side by side."""
    from fundiff.cli.parta_run import run_denoise

    c = _common(model, prompt, class_, guidance, seed, stride, steps, sampler, clip, out, force, device,
                **_df(upsample, stage_2, cache, dtype, offload, steps_2))
    run_denoise(image, t or _default_ts(model), method, (blur_kernel, blur_sigma), c)


def generate(n: Annotated[int, Opt(help="number of samples")] = 5,
             gif: Annotated[bool, Opt("--gif", help="also a GIF of the trajectory")] = False,
             model: Model = "digits", prompt: Prompt = None, class_: Class = None, guidance: Guidance = None,
             seed: Seed = 0, stride: Stride = None, steps: Steps = None, sampler: Sampler = "ddpm",
             clip: Clip = True, out: Out = None, force: Force = False, device: Device = "auto",
             steps_1: Annotated[int | None, Opt("--steps-1", help="Part 0: stage I steps (the same as --steps)")]
             = None,
             steps_2: Steps2 = None,
             upsample: Upsample = False, stage_2: Stage2 = None, cache: Cache = None, dtype: DType = "auto",
             offload: Offload = False) -> None:
    """0, 1.5-1.6 Sample from pure noise (with classifier-free guidance when conditioned); DeepFloyd text to
    image with --steps-1 N --steps-2 M."""
    from fundiff.cli.parta_run import run_generate

    if steps_1 is not None and steps is not None and steps_1 != steps:
        raise UserError("give --steps or --steps-1, not both")
    steps = steps_1 if steps_1 is not None else steps
    run_generate(n, gif, _common(model, prompt, class_, guidance, seed, stride, steps, sampler, clip, out, force,
                                 device, **_df(upsample, stage_2, cache, dtype, offload, steps_2)))


def edit(image: Image,
         i_start: Annotated[list[int] | None, Opt(help="indices into the timesteps, e.g. 1 3 5 7 10 20")] = None,
         fit: Annotated[bool | None, Opt("--fit/--no-fit", help="MNIST framing of the ink (default: digit models)")]
         = None,
         invert: Annotated[str, Opt(help="auto | yes | no: make strokes light on dark for digit models")] = "auto",
         model: Model = "digits", prompt: Prompt = None, class_: Class = None, guidance: Guidance = None,
         seed: Seed = 0, stride: Stride = None, steps: Steps = None, sampler: Sampler = "ddpm",
         clip: Clip = True, out: Out = None, force: Force = False, device: Device = "auto",
         upsample: Upsample = False, stage_2: Stage2 = None, cache: Cache = None, dtype: DType = "auto",
         offload: Offload = False, steps_2: Steps2 = None) -> None:
    """1.7 SDEdit: for each --i-start, noise an image to that timestep and denoise it from there with CFG."""
    from fundiff.cli.parta_run import run_edit

    c = _common(model, prompt, class_, guidance, seed, stride, steps, sampler, clip, out, force, device,
                **_df(upsample, stage_2, cache, dtype, offload, steps_2))
    run_edit(image, i_start or [1, 3, 5, 7, 10, 20], fit, invert, c)


def inpaint(image: Image, mask: Annotated[Path | None, Opt(help="binary mask image, white = new content")] = None,
            box: Annotated[list[int] | None, Opt(help="x0 y0 x1 y1 in model-size pixels")] = None,
            model: Model = "digits", prompt: Prompt = None, class_: Class = None, guidance: Guidance = None,
            seed: Seed = 0, stride: Stride = None, steps: Steps = None, sampler: Sampler = "ddpm",
            clip: Clip = True, out: Out = None, force: Force = False, device: Device = "auto",
            upsample: Upsample = False, stage_2: Stage2 = None, cache: Cache = None, dtype: DType = "auto",
            offload: Offload = False, steps_2: Steps2 = None) -> None:
    """1.7.2 Inpainting (RePaint): new content inside the mask, the original everywhere else."""
    from fundiff.cli.parta_run import run_inpaint

    c = _common(model, prompt, class_, guidance, seed, stride, steps, sampler, clip, out, force, device,
                **_df(upsample, stage_2, cache, dtype, offload, steps_2))
    run_inpaint(image, mask, box, c)


def anagram(prompt: Annotated[list[str], Opt(help="one per view: --prompt P1 --prompt P2")],
            views: Annotated[list[str] | None, Opt(help="views after the upright one, e.g. flip (default)")]
            = None, n: Annotated[int, Opt()] = 4,
            model: Model = "digits", guidance: Guidance = None, seed: Seed = 0, stride: Stride = None,
            steps: Steps = None, sampler: Sampler = "ddpm", clip: Clip = True, out: Out = None,
            force: Force = False, device: Device = "auto", upsample: Upsample = False, stage_2: Stage2 = None,
            cache: Cache = None, dtype: DType = "auto", offload: Offload = False, steps_2: Steps2 = None) -> None:
    """1.8 Visual anagrams: one image that reads as P1 upright and P2 under each view."""
    from fundiff.cli.parta_run import run_anagram

    c = _common(model, None, None, guidance, seed, stride, steps, sampler, clip, out, force, device,
                **_df(upsample, stage_2, cache, dtype, offload, steps_2))
    run_anagram(prompt, views or [], n, c)


def hybrid(low: Annotated[str, Opt(help="prompt seen from far (low frequencies)")],
           high: Annotated[str, Opt(help="prompt seen close up (high frequencies)")],
           mid: Annotated[str | None, Opt(help="a third prompt for the middle band (three-way hybrid)")] = None,
           kernel: Annotated[int, Opt(help="Gaussian kernel size")] = 33,
           sigma: Annotated[list[float] | None, Opt(help="low-pass sigma (two for a three-way hybrid)")] = None,
           n: Annotated[int, Opt()] = 4, model: Model = "digits", guidance: Guidance = None, seed: Seed = 0,
           stride: Stride = None, steps: Steps = None, sampler: Sampler = "ddpm", clip: Clip = True,
           out: Out = None, force: Force = False, device: Device = "auto", upsample: Upsample = False,
           stage_2: Stage2 = None, cache: Cache = None, dtype: DType = "auto", offload: Offload = False,
           steps_2: Steps2 = None) -> None:
    """1.9 Hybrid images: eps = lowpass(eps_low) + highpass(eps_high) (three bands with --mid)."""
    from fundiff.cli.parta_run import run_hybrid

    c = _common(model, None, None, guidance, seed, stride, steps, sampler, clip, out, force, device,
                **_df(upsample, stage_2, cache, dtype, offload, steps_2))
    run_hybrid(low, high, mid, n, kernel, sigma or [2.0], c)


def _default_ts(model: str) -> list[int]:
    """250, 500, 750 for T = 1000 (the spec's); T/4, T/2, 3T/4 in general."""
    from fundiff.models import load_diffusion_model
    from fundiff.models.deepfloyd.stage1 import is_deepfloyd_spec

    if is_deepfloyd_spec(model):
        return [250, 500, 750]  # T = 1000; no need to load the pipeline for it

    T = load_diffusion_model(model).schedule.T
    return [T // 4, T // 2, 3 * T // 4]


def register(app: typer.Typer) -> None:
    for fn in (noise, denoise, generate, edit, inpaint, anagram, hybrid):
        app.command()(fn)


def expand_multi_values(argv: list[str]) -> list[str]:
    """``--t 250 500`` -> ``--t 250 --t 500`` for the options that take several values (ints only
    for MULTI_INT, so a positional image after them stays positional)."""
    out: list[str] = []
    current: str | None = None
    for tok in argv:
        if current is not None and not tok.startswith("--") and (current in MULTI_ANY or _is_int(tok)):
            if out[-1] != current:
                out.append(current)
            out.append(tok)
            continue
        current = tok if tok in MULTI_INT + MULTI_ANY else None
        out.append(tok)
    return out


def _is_int(tok: str) -> bool:
    return tok.lstrip("-").isdigit()
