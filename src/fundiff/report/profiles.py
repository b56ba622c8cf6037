"""What ``fundiff report`` runs: the Part B training runs and the evaluation sizes of each profile.

``spec`` trains every model with the spec's recipe exactly (spec.md Part B, and report 004's
constant-lr recovery: lr 3e-3, 15 epochs). ``quick`` trains with fundiff's default recipe for fewer epochs (class
DDPM 6, ``fundiff train class --epochs 6``; time models 2, class flow 3, its learning-rate variants 2) and the
single-step denoisers narrower (D = 32), so that the whole report takes under ten minutes on a 2-core CPU.
``smoke`` is for tests of the page itself:
tiny nets, one epoch, small evaluations; its numbers mean nothing. ``tiny`` is for fault tests of the
report's resumption: one cheap Part A section and one tiny training run with its figures, seconds in all.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    parta_sections: tuple[str, ...] | None = None
    """The Part A sections to run on the digit model (None: every one)."""
    parta_evaluate: bool = True
    """Measure Part A with the judge."""
    parta_models: tuple[str, ...] | None = None
    """The shipped models the Part A evaluation measures (None: every one installed). The smoke profile keeps to
    digits: a first clothing evaluation trains a Fashion-MNIST judge on 60,000 images (minutes here)."""

    def eval_steps(self, objective: str) -> int | None:
        """The steps when scoring a run of ``objective`` (None: its card's)."""
        return self.flow_eval_steps if objective == "flow" else None

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
        if "sample_epochs" in base and "epochs" in base:  # a shorter profile draws the epochs it reaches
            base["sample_epochs"] = tuple(e for e in base["sample_epochs"] if e <= base["epochs"])
        return tuple(sorted(base.items()))

    return (
        RunSpec("denoiser", "denoiser", "ddpm", recipe, o("denoiser")),
        RunSpec("denoiser-pure-noise", "denoiser", "ddpm", recipe, o("denoiser-pure-noise", pure_noise=True)),
        RunSpec("time-ddpm", "time", "ddpm", recipe, o("time-ddpm")),
        RunSpec("class-ddpm", "class", "ddpm", recipe, o("class-ddpm", **({} if spec else {"sample_epochs": _thirds(
            epochs["class-ddpm"])})), evaluate=True),
        RunSpec("time-flow", "time", "flow", recipe, o("time-flow")),
        RunSpec("class-flow", "class", "flow", recipe, o("class-flow", **({} if spec else EXPONENTIAL)),
                evaluate=True),
        RunSpec("class-flow-constant-lr", "class", "flow", recipe,
                o("class-flow", lr_schedule="constant", **_epochs(epochs, "lr-ablation")), evaluate=True, draw=spec),
        RunSpec("class-flow-constant-lr-3e-3", "class", "flow", recipe,
                o("class-flow", lr_schedule="constant", lr=3e-3, epochs=recovered_epochs), evaluate=True, draw=spec),
    )


EXPONENTIAL = {"lr_schedule": "exponential"}
"""The class flow run of a short profile keeps the spec's exponential lr decay (the default recipe's is cosine): the
learning-rate section compares it with a constant lr, as report 004 did."""


def _thirds(epochs: int) -> tuple[int, ...]:
    """The epochs whose samples a short class run draws: the first, the middle and the last."""
    return tuple(sorted({1, max(1, epochs // 2), epochs}))


def _epochs(epochs: dict, key: str) -> dict:
    return {"epochs": epochs[key]} if key in epochs else {}


QUICK_SECONDS = {
    "parta/0": 5, "parta/1.1": 3, "parta/1.2-1.3": 10, "parta/1.4": 1, "parta/1.5": 0, "parta/1.6": 6, "parta/1.7": 4,
    "parta/1.7.1": 4, "parta/1.7.2": 2, "parta/1.7.3": 6, "parta/1.8": 3, "parta/1.9": 3, "parta/evaluate": 54,
    "judge": 1, "train/denoiser": 32, "figures/denoiser": 2, "train/denoiser-pure-noise": 32,
    "figures/denoiser-pure-noise": 2, "train/time-ddpm": 39, "figures/time-ddpm": 3, "train/class-ddpm": 116,
    "figures/class-ddpm": 5, "evaluate/class-ddpm": 4, "train/time-flow": 39, "figures/time-flow": 3,
    "train/class-flow": 57, "figures/class-flow": 3, "evaluate/class-flow": 3, "train/class-flow-constant-lr": 40,
    "evaluate/class-flow-constant-lr": 3, "train/class-flow-constant-lr-3e-3": 40,
    "evaluate/class-flow-constant-lr-3e-3": 3, "figures/learning-rate": 0,
}
"""Seconds per stage of ``fundiff report`` measured on the 2-core development machine on a quiet day (8m53s in all, a
first run with an empty cache: the judges ship with fundiff); other profiles scale them by their work
(:mod:`fundiff.report.estimate`)."""
QUICK = Profile(
    "quick",
    _runs(width={"denoiser": 32, "denoiser-pure-noise": 32},
          epochs={"time-ddpm": 2, "class-ddpm": 6, "time-flow": 2, "class-flow": 3, "lr-ablation": 2},
          recovered_epochs=2, spec=False),
    eval_per_class=10, parta_pairs=6, parta_per_pair=2, parta_per_target=10,
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
    parta_models=("digits",),
)
TINY = Profile(
    "tiny",
    (RunSpec("denoiser", "denoiser", "ddpm", "default",
             (("batch_size", 32), ("epochs", 2), ("sample_epochs", (1, 2)), ("width", 8))),),
    eval_per_class=2, flow_eval_steps=10, parta_pairs=1, parta_per_pair=1, parta_per_target=1,
    parta_sections=("1.5",), parta_evaluate=False,
)
PROFILES = {p.name: p for p in (QUICK, SPEC, SMOKE)}
"""The profiles that build the whole report (every run the reports show)."""
TEST_PROFILES = {TINY.name: TINY}
"""Profiles for tests of the report machinery only: a part of the report."""


def get_profile(name: str) -> Profile:
    if name in TEST_PROFILES:
        return TEST_PROFILES[name]
    if name not in PROFILES:
        raise UserError(f"unknown profile {name!r}; choose one of: quick, spec (smoke: for testing the page)")
    return PROFILES[name]
