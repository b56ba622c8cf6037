"""How a sampler runs: one settings record, from a model's card, overridden by what a user asks."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from fundiff.core.schedule import evenly_spaced_timesteps, solver_timesteps, strided_timesteps
from fundiff.errors import UserError

SAMPLERS = ("ddpm", "ddim", "euler", "dpmpp-2m")
VARIANCES = ("beta", "posterior", "learned")


@dataclass(frozen=True)
class Sampling:
    """Sampling settings; None means "the model's default" (see :meth:`over`).

    ``sampler``: ddpm (strided, with noise), ddim (deterministic), euler (flow models) or dpmpp-2m
    (DPM-Solver++(2M), deterministic and second order, for both kinds; its ``steps`` use diffusers' "linspace"
    grid, which ends one step above the clean image instead of at timestep 0). ``steps``
    evenly spaced steps or a timestep ``stride`` (the spec's Part A grid); ``variance`` of a DDPM step
    (beta, posterior or the model's learned one); ``clip`` clamps x0_hat to the data range;
    ``guidance`` is CFG's gamma, applied where the noise level t/T lies in ``guidance_interval``;
    ``classifier_scale`` the scale s of classifier guidance by the model's noise-aware classifier (0: none).
    """

    sampler: str | None = None
    steps: int | None = None
    stride: int | None = None
    variance: str | None = None
    clip: bool | None = None
    guidance: float | None = None
    guidance_interval: tuple[float, float] | None = None
    classifier_scale: float | None = None

    def __post_init__(self) -> None:
        check_sampling(self)

    def over(self, defaults: Sampling) -> Sampling:
        """These settings where given, ``defaults`` elsewhere; a given --steps or --stride replaces both."""
        mine = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        if "steps" in mine or "stride" in mine:
            mine.setdefault("steps", None)
            mine.setdefault("stride", None)
        return replace(defaults, **mine)

    def timesteps(self, T: int) -> list[int]:
        """Descending timestep indices: ``steps`` evenly spaced, else every ``stride``-th (default about 3%
        of T: 30 for T = 1000 gives 990, 960, ..., 0, the spec's 34 entries)."""
        if self.steps is not None:
            if self.steps > T:
                raise UserError(f"--steps {self.steps} is more than the model's T = {T} timesteps; use 1..{T}")
            return (solver_timesteps if self.sampler == "dpmpp-2m" else evenly_spaced_timesteps)(T, self.steps)
        if self.stride is not None and self.stride > T:
            raise UserError(f"--stride {self.stride} is more than the model's T = {T} timesteps; use 1..{T}")
        return strided_timesteps(T, max(1, round(T * 3 / 100)) if self.stride is None else self.stride)

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["guidance_interval"] is not None:
            d["guidance_interval"] = list(d["guidance_interval"])
        return d


def check_sampling(s: Sampling) -> None:
    """One clear line for each setting out of range."""
    if s.sampler is not None and s.sampler not in SAMPLERS:
        raise UserError(f"unknown sampler {s.sampler!r}; choose one of: {', '.join(SAMPLERS)}")
    if s.variance is not None and s.variance not in VARIANCES:
        raise UserError(f"unknown variance {s.variance!r}; choose one of: {', '.join(VARIANCES)}")
    if s.steps is not None and s.stride is not None:
        raise UserError("give --stride or --steps, not both")
    if s.steps is not None and s.steps < 1:
        raise UserError(f"--steps must be at least 1, got {s.steps}")
    if s.stride is not None and s.stride < 1:
        raise UserError(f"--stride must be at least 1, got {s.stride}")
    if s.guidance is not None and not (s.guidance >= 0 and s.guidance < float("inf")):
        raise UserError(f"--guidance must be a finite number >= 0, got {s.guidance}")
    if s.classifier_scale is not None and not (0 <= s.classifier_scale < float("inf")):
        raise UserError(f"--classifier-scale must be a finite number >= 0, got {s.classifier_scale}")
    if s.guidance_interval is not None:
        lo, hi = s.guidance_interval
        if not 0 <= lo < hi <= 1:
            raise UserError(f"the guidance interval {lo:g},{hi:g} must satisfy 0 <= low < high <= 1")
