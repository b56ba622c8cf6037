"""Part A commands of the ``fundiff`` CLI (spec.md 1.1-1.9, and colour hybrids): parse, call
:mod:`fundiff.results.parta`, write.

Options that take several values accept them space-separated (``--t 250 500 750``,
``--i-start 1 3 5``, ``--views flip rotate_90``) or repeated (``--t 250 --t 500``). The option groups
(model, sampling, output, stage II) are defined once in :mod:`fundiff.cli.options`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fundiff.cli.options import ModelOptions, OutputOptions, SamplingOptions, StageTwoOptions, command
from fundiff.core.views import VIEW_NAMES
from fundiff.errors import UserError

Opt = typer.Option
Prompt = Annotated[str | None, Opt(help="text prompt; for a class model a class (the digit model: 0-9)")]
Class = Annotated[int | None, Opt("--class", help="class to condition on (the digit model: 0-9)")]
Image = Annotated[Path, typer.Argument(help="any image file (PNG, JPEG, WebP, ...)")]
N = Annotated[int, Opt(help="number of images")]

MULTI_INT = ("--t", "--i-start", "--box", "--steps-1")
MULTI_ANY = ("--views", "--sigma", "--own", "--drawing")


def _run(name: str, m: ModelOptions, s: SamplingOptions, o: OutputOptions, up: StageTwoOptions | None, stem: str,
         n: int = 1):
    from fundiff.results.parta import Run

    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    return Run(name, m, s.sampling(), s.seed, o.out, o.force, up, stem, n)


def register(app: typer.Typer) -> None:
    """Add the Part A commands to ``app``."""

    @command(app)
    def noise(image: Image, m: ModelOptions, s: SamplingOptions, o: OutputOptions, up: StageTwoOptions,
              t: Annotated[list[int] | None, Opt(help="timesteps (default T/4, T/2, 3T/4: 250 500 750 for "
                                                       "T = 1000)")] = None) -> None:
        """1.1 The forward process: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps at each --t."""
        from fundiff.results.parta import run_noise

        run_noise(image, t, _run("noise", m, s, o, up, Path(image).stem))

    @command(app)
    def denoise(image: Image, m: ModelOptions, s: SamplingOptions, o: OutputOptions, up: StageTwoOptions,
                t: Annotated[list[int] | None, Opt(help="timesteps to noise to")] = None,
                method: Annotated[str, Opt(help="blur | one-step | iterative | all")] = "all",
                blur_kernel: Annotated[int, Opt(help="Gaussian blur kernel (1.2)")] = 5,
                blur_sigma: Annotated[float, Opt(help="Gaussian blur sigma (1.2)")] = 2.0,
                prompt: Prompt = None, class_: Class = None) -> None:
        """1.2-1.4 Denoise a noised image by Gaussian blur, in one step, and iteratively; side by side."""
        from fundiff.results.parta import run_denoise

        run_denoise(image, t, method, (blur_kernel, blur_sigma), (prompt, class_),
                    _run("denoise", m, s, o, up, Path(image).stem))

    @command(app)
    def generate(m: ModelOptions, s: SamplingOptions, o: OutputOptions, up: StageTwoOptions, n: N = 5,
                 gif: Annotated[bool, Opt("--gif", help="also a GIF of the trajectory")] = False,
                 prompt: Prompt = None, class_: Class = None,
                 steps_1: Annotated[int | None, Opt("--steps-1", help="Part 0: stage I steps (as --steps)")] = None
                 ) -> None:
        """0, 1.5-1.6 Sample from pure noise (with classifier-free guidance when conditioned); DeepFloyd text to
        image with --steps-1 N --steps-2 M."""
        from fundiff.results.parta import run_generate

        if steps_1 is not None:
            if s.steps is not None and s.steps != steps_1:
                raise UserError("give --steps or --steps-1, not both")
            s.steps = steps_1
        stem = f"class{class_}" if class_ is not None else (prompt or "unconditional")
        run_generate(n, gif, (prompt, class_), _run("generate", m, s, o, up, stem, n))

    @command(app)
    def edit(image: Image, m: ModelOptions, s: SamplingOptions, o: OutputOptions, up: StageTwoOptions,
             i_start: Annotated[list[int] | None, Opt(help="indices into the timesteps (default: the spec's 1 3 5 7 "
                                                           "10 20 of 34 steps, scaled to the model's grid)")] = None,
             fit: Annotated[bool | None, Opt("--fit/--no-fit", help="MNIST framing of the ink (default: digit "
                                                                      "models)")] = None,
             invert: Annotated[str, Opt(help="auto | yes | no: make strokes light on dark for digit models")]
             = "auto", prompt: Prompt = None, class_: Class = None) -> None:
        """1.7 SDEdit: for each --i-start, noise an image to that timestep and denoise it from there with CFG."""
        from fundiff.results.parta import run_edit

        run_edit(image, i_start, fit, invert, (prompt, class_), _run("edit", m, s, o, up, Path(image).stem))

    @command(app)
    def inpaint(image: Image, m: ModelOptions, s: SamplingOptions, o: OutputOptions, up: StageTwoOptions,
                mask: Annotated[Path | None, Opt(help="binary mask image, white = new content")] = None,
                box: Annotated[list[int] | None, Opt(help="x0 y0 x1 y1 in model-size pixels")] = None,
                prompt: Prompt = None, class_: Class = None) -> None:
        """1.7.2 Inpainting (RePaint): new content inside the mask, the original everywhere else."""
        from fundiff.results.parta import run_inpaint

        if (mask is None) == (box is None):
            raise UserError("give --mask MASK or --box x0 y0 x1 y1 (one of them)")
        run_inpaint(image, mask, box, (prompt, class_), _run("inpaint", m, s, o, up, Path(image).stem))

    @command(app)
    def anagram(m: ModelOptions, s: SamplingOptions, o: OutputOptions, up: StageTwoOptions,
                prompt: Annotated[list[str], Opt(help="one per view: --prompt P1 --prompt P2")],
                views: Annotated[list[str] | None, Opt(help=f"views after the upright one (default flip): "
                                                            f"{', '.join(VIEW_NAMES)}")] = None,
                n: N = 4) -> None:
        """1.8 Visual anagrams: one image that reads as P1 upright and P2 under each view."""
        from fundiff.results.parta import run_anagram

        run_anagram(prompt, views or [], n, _run("anagram", m, s, o, up, "-".join(prompt), n))

    @command(app)
    def hybrid(m: ModelOptions, s: SamplingOptions, o: OutputOptions, up: StageTwoOptions,
               low: Annotated[str, Opt(help="prompt seen from far (low frequencies)")],
               high: Annotated[str, Opt(help="prompt seen close up (high frequencies)")],
               mid: Annotated[str | None, Opt(help="a third prompt for the middle band (three-way hybrid)")] = None,
               kernel: Annotated[int, Opt(help="Gaussian kernel size")] = 33,
               sigma: Annotated[list[float] | None, Opt(help="low-pass sigma (default per image size: 1.75 at 28 "
                                                             "px, 2 at 64 px; two for a three-way hybrid)")] = None,
               n: N = 4) -> None:
        """1.9 Hybrid images: eps = lowpass(eps_low) + highpass(eps_high) (three bands with --mid)."""
        from fundiff.results.parta import run_hybrid

        prompts = [low, high] if mid is None else [low, mid, high]
        run_hybrid(prompts, n, kernel, sigma, _run("hybrid", m, s, o, up, "-".join(prompts), n))

    @command(app, "colour-hybrid")
    def colour_hybrid(m: ModelOptions, s: SamplingOptions, o: OutputOptions, up: StageTwoOptions,
                      grey: Annotated[str, Opt(help="prompt the greyscale version reads as")],
                      colour: Annotated[str, Opt(help="prompt the colours paint")], n: N = 4) -> None:
        """Colour hybrids (factorized diffusion): eps = g(eps_grey) + c(eps_colour), g = the channel mean (greyscale),
        c = identity - g; RGB models (DeepFloyd), with --upsample at 256 px too."""
        from fundiff.results.parta import run_colour_hybrid

        run_colour_hybrid([grey, colour], n, _run("colour-hybrid", m, s, o, up, f"{grey}-{colour}", n))


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
