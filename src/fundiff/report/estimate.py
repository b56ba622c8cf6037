"""How long each stage of a report profile takes here: the quick profile's measured stage seconds, scaled by the
stage's work.

A training stage's work is its epochs times the cost of one training image: width^2 (the UNet's convolutions)
over the training images/s of its precision and batch, measured by ``python bench/speed.py`` at width 64.
A sampling stage's (the evaluation's, the figures') is its images times the net calls per image: the card's steps
(T for the full loop, ``solver_steps`` for DPM-Solver++), twice where CFG applies (the fraction of levels in the
guidance interval). Part A's evaluation scales with its pairs times images per pair (its first run also trains the
judges, a fixed cost that this scales too: an overestimate for the spec profile); every other stage is the same work
in every profile.
"""

from __future__ import annotations

from fundiff.report.profiles import QUICK, QUICK_SECONDS, Profile, RunSpec
from fundiff.train.recipes import Recipe, make_recipe

UNKNOWN_STAGE_SECONDS = 30.0
MEASURED_IMAGES_PER_S = {("fp32", "large"): 77.1, ("bf16", "large"): 138.3, ("bf16", "small"): 125.2}
"""Training images/s of the width-64 UNet here (2 threads, channels_last, fused Adam; ``python bench/speed.py
--rounds 2``): fp32 77.1 and bf16 138.3 at batch 64, bf16 125.2 at batch 16."""
TRAIN_IMAGES_PER_S = {**MEASURED_IMAGES_PER_S, ("fp32", "small"): MEASURED_IMAGES_PER_S[("fp32", "large")]
                      * MEASURED_IMAGES_PER_S[("bf16", "small")] / MEASURED_IMAGES_PER_S[("bf16", "large")]}
"""The measured rates, and fp32 at a small batch (not measured) assumed to lose what bf16 loses there."""
SMALL_BATCH = 32


def recipe_of(run: RunSpec) -> Recipe:
    return make_recipe(run.model, run.objective, run.recipe, **dict(run.overrides))


def training_work(r: Recipe) -> float:
    """epochs * (width / 64)^2 / images_per_s(precision, batch): seconds per training image, times the epochs."""
    batch = "small" if r.batch_size < SMALL_BATCH else "large"
    return r.epochs * (r.width / 64) ** 2 / TRAIN_IMAGES_PER_S[(r.precision, batch)]


def calls_per_image(r: Recipe, steps: int | None = None) -> float:
    """Net calls to sample one image with the run's card: steps * (1 + guided fraction) for a class model."""
    n = steps or (r.T if r.sampler == "full" else r.solver_steps)
    guided = r.guidance_interval[1] - r.guidance_interval[0] if r.model == "class" else 0.0
    return n * (1 + guided)


def sampling_work(r: Recipe, images: int, steps: int | None = None) -> float:
    """images * net calls per image * (width / 64)^2."""
    return images * calls_per_image(r, steps) * (r.width / 64) ** 2


def stage_work(p: Profile, stage: str) -> float | None:
    """The work of one stage of profile ``p`` in arbitrary units (None: the same in every profile)."""
    kind, _, name = stage.partition("/")
    if stage == "parta/evaluate":
        return p.parta_pairs * p.parta_per_pair + p.parta_per_target
    run = p.run(name)
    if run is None:
        return None
    r = recipe_of(run)
    if kind == "train":
        return training_work(r)
    if kind == "evaluate":
        return sampling_work(r, 10 * p.eval_per_class, p.eval_steps(r.objective))
    if kind == "figures" and r.model != "denoiser":
        return sampling_work(r, len(r.sample_epochs))
    return None


def stage_seconds(p: Profile, stage: str) -> float:
    """The quick profile's measured seconds for this stage (or for the measured stage of the same kind and model that
    it is most like), times this profile's work over that stage's quick work."""
    ref = reference_stage(p, stage)
    if ref is None:
        return UNKNOWN_STAGE_SECONDS
    quick = QUICK_SECONDS[ref]
    if p.name == QUICK.name:
        return quick
    work, quick_work = stage_work(p, stage), stage_work(QUICK, ref)
    if work is None or quick_work is None:
        return quick
    return quick * work / quick_work


def reference_stage(p: Profile, stage: str) -> str | None:
    """The measured quick stage to scale: the same name, else the same kind of stage on a run of the same model and
    objective (the spec profile draws figures of runs whose quick counterparts only show their evaluation)."""
    if stage in QUICK_SECONDS:
        return stage
    kind, _, name = stage.partition("/")
    run = p.run(name)
    if run is None:
        return None
    return next((s for s in QUICK_SECONDS if s.partition("/")[0] == kind and (q := QUICK.run(s.partition("/")[2]))
                 and (q.model, q.objective) == (run.model, run.objective)), None)


def estimates(p: Profile, stages: list[str]) -> dict[str, float]:
    """Seconds per stage name, for the progress line and the profile's stated time."""
    return {s: stage_seconds(p, s) for s in stages}
