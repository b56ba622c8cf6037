"""Option groups shared by commands, defined once: each a dataclass whose fields are typer options.

A command declares a parameter typed with a group (``s: SamplingOptions``); :func:`command` replaces it by the
group's options in the command's signature and hands the command the group object, built and checked once.
"""

from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer

from fundiff.core.sampling import SAMPLERS, VARIANCES, Sampling
from fundiff.errors import UserError
from fundiff.results.settings import ModelSpec, StageTwo

Opt = typer.Option
ANNOTATION, OPTION = "annotation", "option"
DEVICE_HELP = "auto | cpu | cuda (auto: CUDA when there is one)"
SEED_HELP = "random seed: the same seed gives the same bytes"
Device = Annotated[str, Opt(help=DEVICE_HELP)]
"""--device, for the commands that take no --model group."""


def opt(default: Any, help: str, *decls: str, annotation: Any = None) -> Any:  # noqa: A002 - typer's name
    """A dataclass field that is a typer option."""
    return field(default=default, metadata={"option": Opt(*decls, help=help), "annotation": annotation})


ModelOptions = ModelSpec
"""The model group: :class:`fundiff.results.settings.ModelSpec`, its options described in :data:`LIBRARY_OPTIONS`."""
StageTwoOptions = StageTwo
LIBRARY_OPTIONS: dict[type, dict[str, tuple[str, ...]]] = {
    ModelSpec: {
        "model": ("digits or fashion (shipped), a fundiff run dir or weights file, deepfloyd[:IF-I-M-v1.0] or a "
                  "local IF dir, or a diffusers UNet2DModel dir or Hub id",),
        "device": (DEVICE_HELP,),
        "prompt_cache": ("DeepFloyd prompt-embedding cache (.pth or .safetensors; default $FUNDIFF_PROMPT_CACHE or "
                         "~/.cache/fundiff/prompt_embeds.pth)", "--prompt-cache", "--cache"),
        "dtype": ("DeepFloyd weights: auto (fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16",),
        "offload": ("DeepFloyd: model CPU offload (less GPU memory, CUDA only)", "--offload"),
    },
    StageTwo: {
        "upsample": ("DeepFloyd: also every result through stage II at 256 px", "--upsample"),
        "stage_2": ("DeepFloyd stage II: deepfloyd:IF-II-L-v1.0 (default), deepfloyd:IF-II-M-v1.0, or a local "
                    "directory", "--stage-2"),
        "steps_2": ("DeepFloyd stage II steps (default 50; implies --upsample)", "--steps-2"),
    },
}
"""(help, option names...) of each field of the library's option dataclasses."""


@dataclass
class SamplingOptions:
    """How the sampler runs; every option left out comes from the model's card."""

    guidance: float | None = opt(None, "CFG scale gamma (default: the model's: 5 for digits, 7 for DeepFloyd)",
                                 annotation=float | None)
    guidance_interval: str | None = opt(None, "noise levels t/T where CFG applies, e.g. 0.5,0.9 (default: the "
                                        "model's)", annotation=str | None)
    classifier_scale: float | None = opt(None, "classifier guidance s by the model's noise-aware classifier, 0 = off "
                                         "(default: the model's: 100 for the digits' illusions)",
                                         annotation=float | None)
    sampler: str | None = opt(None, f"{' | '.join(SAMPLERS)} (default: the model's)", annotation=str | None)
    steps: int | None = opt(None, "evenly spaced steps (default: the model's)", annotation=int | None)
    stride: int | None = opt(None, "every STRIDE-th timestep, the spec's Part A grid (30 for T = 1000)",
                             annotation=int | None)
    variance: str | None = opt(None, f"DDPM step variance: {' | '.join(VARIANCES)} (default: the model's)",
                               annotation=str | None)
    clip: bool | None = opt(None, "clamp x0_hat to the data range (default: the model's)", "--clip/--no-clip",
                            annotation=bool | None)
    seed: int = opt(0, SEED_HELP, annotation=int)

    def sampling(self) -> Sampling:
        return Sampling(sampler=self.sampler, steps=self.steps, stride=self.stride, variance=self.variance,
                        clip=self.clip, guidance=self.guidance, guidance_interval=interval(self.guidance_interval),
                        classifier_scale=self.classifier_scale)


@dataclass
class OutputOptions:
    """Where results go."""

    out: Path | None = opt(None, "output directory (default: a new folder named after the settings)",
                           annotation=Path | None)
    force: bool = opt(False, "write into a folder that is not empty; the files an earlier run's args.json lists are "
                      "removed first", "--force", annotation=bool)


GROUPS = (ModelOptions, SamplingOptions, OutputOptions, StageTwoOptions)


def interval(text: str | None) -> tuple[float, float] | None:
    """'0.5,1' -> (0.5, 1.0); None stays None."""
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"--guidance-interval {text!r} is not two numbers like 0.5,1") from None
    if not 0 <= lo < hi <= 1:
        raise UserError(f"--guidance-interval {text!r} must satisfy 0 <= low < high <= 1")
    return lo, hi


def int_list(text: str, flag: str) -> list[int]:
    """'0-9' or '1,5,20' or '3' -> ints."""
    try:
        out: list[int] = []
        for part in text.split(","):
            a, _, b = part.strip().partition("-")
            out += list(range(int(a), int(b) + 1)) if b else [int(a)]
        return out
    except ValueError:
        raise UserError(f"{flag} {text!r} is not a list of integers like 0-9 or 1,5,20") from None


MAX_SEED = 2**32 - 1
"""Seeds are 0 .. 2^32 - 1 (as numpy's): every generator fundiff derives from one stays in torch's 64-bit range."""


def check_numbers(values: dict[str, Any]) -> None:
    """Refuse NaN and infinity in any number option, and a seed outside 0 .. 2^32 - 1."""
    for name, v in values.items():
        flag = f"--{name.replace('_', '-')}"
        items = v if isinstance(v, list | tuple) else [v]
        for x in items:
            if isinstance(x, float) and not math.isfinite(x):
                raise UserError(f"{flag} must be a finite number, got {x}")
        if name == "seed" and v is not None and not 0 <= v <= MAX_SEED:
            raise UserError(f"{flag} must be a whole number from 0 to {MAX_SEED}, got {v}")


def _group_params(group: type) -> list[inspect.Parameter]:
    params, hints = [], get_type_hints(group)
    for f in fields(group):
        if group in LIBRARY_OPTIONS:
            help_text, *decls = LIBRARY_OPTIONS[group][f.name]
            typed, option = hints[f.name], Opt(*decls, help=help_text)
        else:
            typed, option = f.metadata[ANNOTATION], f.metadata[OPTION]
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                        annotation=Annotated[typed, option]))
    return params


def command(app: typer.Typer, name: str | None = None):
    """Register ``fn`` on ``app`` with each parameter typed by a group expanded into the group's options."""

    def register(fn):
        hints = get_type_hints(fn, include_extras=True)
        sig = inspect.signature(fn)
        grouped = {p: hints[p] for p in sig.parameters if hints.get(p) in GROUPS}
        own = [p.replace(annotation=hints[p.name]) for p in sig.parameters.values() if p.name not in grouped]
        params = own + [q for g in grouped.values() for q in _group_params(g)]

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            check_numbers(kwargs)
            for pname, group in grouped.items():
                kwargs[pname] = group(**{f.name: kwargs.pop(f.name) for f in fields(group)})
            return fn(**kwargs)

        wrapper.__signature__ = sig.replace(parameters=sorted(params, key=lambda p: p.kind))
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        del wrapper.__wrapped__
        app.command(name)(wrapper)
        return fn

    return register
