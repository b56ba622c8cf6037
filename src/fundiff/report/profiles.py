"""What ``fundiff report`` runs: the Part B training runs and the evaluation sizes of each profile.

``spec`` trains every model with the spec's recipe exactly (spec.md Part B, and report 004's
constant-lr recovery: lr 3e-3, 15 epochs). ``quick`` keeps the spec's nets and maths but trains
for fewer epochs (and the single-step denoisers at D = 64), in bf16, so that the whole report
fits in about a quarter of an hour on a 2-core CPU. ``smoke`` is for tests of the page itself:
tiny nets, one epoch, small evaluations; its numbers mean nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fundiff.errors import UserError


@dataclass(frozen=True)
class RunSpec:
    """One training run: ``fundiff train MODEL --objective OBJECTIVE --recipe RECIPE`` plus overrides."""

    name: str
    model: str
    objective: str = "ddpm"
    recipe: str = "default"
    overrides: tuple[tuple[str, object], ...] = ()
    evaluate: bool = False
    """Score samples with the judge (accuracy, Frechet distance); class-conditioned runs only."""
    draw: bool = True
    """Draw the figures of every saved epoch (sample grids and GIFs); else only the loss curve shows it."""

    def config(self) -> dict:
        return {"model": self.model, "objective": self.objective, "recipe": self.recipe,
                "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in self.overrides}}


@dataclass(frozen=True)
class Profile:
    name: str
    runs: tuple[RunSpec, ...]
    eval_per_class: int = 20
    flow_eval_steps: int | None = None
    """Euler steps when scoring flow runs (None: the spec's T = 300)."""
    parta_pairs: int = 30
    parta_per_pair: int = 4
    parta_per_target: int = 20
    estimates: dict[str, float] = field(default_factory=dict)
    """Seconds each stage took here (2 cores), for the progress estimate; unknown stages count 30 s."""

    def run(self, name: str) -> RunSpec | None:
        return next((r for r in self.runs if r.name == name), None)


def _runs(width: dict, epochs: dict, recovered_epochs: int, spec: bool) -> tuple[RunSpec, ...]:
    """The eight runs the reports show, with per-run epochs (and denoiser width) for a profile; outside the
    spec profile the two learning-rate ablations show their evaluation samples instead of per-epoch figures."""
    recipe = "spec" if spec else "default"

    def o(name: str, **kw: object) -> tuple[tuple[str, object], ...]:
        base = {"epochs": epochs[name]} if name in epochs else {}
        base.update({"width": width[name]} if name in width else {})
        base.update(kw)
        return tuple(sorted(base.items()))

    return (
        RunSpec("denoiser", "denoiser", "ddpm", recipe, o("denoiser")),
        RunSpec("denoiser-pure-noise", "denoiser", "ddpm", recipe, o("denoiser-pure-noise", pure_noise=True)),
        RunSpec("time-ddpm", "time", "ddpm", recipe, o("time-ddpm")),
        RunSpec("class-ddpm", "class", "ddpm", recipe, o("class-ddpm", **({} if spec else {"sample_epochs": (1, 5,
                                                                                                            10)})),
                evaluate=True),
        RunSpec("time-flow", "time", "flow", recipe, o("time-flow")),
        RunSpec("class-flow", "class", "flow", recipe, o("class-flow"), evaluate=True),
        RunSpec("class-flow-constant-lr", "class", "flow", recipe, o("class-flow", lr_schedule="constant"),
                evaluate=True, draw=spec),
        RunSpec("class-flow-constant-lr-3e-3", "class", "flow", recipe,
                o("class-flow", lr_schedule="constant", lr=3e-3, epochs=recovered_epochs), evaluate=True, draw=spec),
    )


QUICK = Profile(
    "quick",
    _runs(width={"denoiser": 64, "denoiser-pure-noise": 64},
          epochs={"time-ddpm": 10, "class-ddpm": 10, "time-flow": 5, "class-flow": 5}, recovered_epochs=5, spec=False),
    eval_per_class=10, flow_eval_steps=50, parta_pairs=10, parta_per_pair=2, parta_per_target=10,
)
SPEC = Profile("spec", _runs({}, {}, 15, spec=True), eval_per_class=40, parta_pairs=30, parta_per_pair=4,
               parta_per_target=20)
SMOKE = Profile(
    "smoke",
    _runs(width={k: 8 for k in ("denoiser", "denoiser-pure-noise", "time-ddpm", "class-ddpm", "time-flow",
                                "class-flow")},
          epochs={k: 1 for k in ("denoiser", "denoiser-pure-noise", "time-ddpm", "class-ddpm", "time-flow",
                                 "class-flow")}, recovered_epochs=1, spec=False),
    eval_per_class=2, flow_eval_steps=10, parta_pairs=1, parta_per_pair=1, parta_per_target=1,
)
PROFILES = {p.name: p for p in (QUICK, SPEC, SMOKE)}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise UserError(f"unknown profile {name!r}; choose one of: quick, spec (smoke: for testing the page)")
    return PROFILES[name]
