"""Training recipes as named configurations (spec.md Part B, "The three models and their recipes").

``spec`` reproduces the spec's recipes exactly; ``default`` is fundiff's improved recipe for a
small data set on a CPU (the README gives the measurements that justify each change).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from fundiff.errors import UserError
from fundiff.nets.unet import MAX_SIZE, MIN_SIZE, unet_depth

MODELS = ("denoiser", "time", "class")
OBJECTIVES = ("ddpm", "flow")
RECIPES = ("default", "spec")
LR_SCHEDULES = ("exponential", "constant", "cosine")
PRECISIONS = ("fp32", "bf16")
LOSS_WEIGHTINGS = ("uniform", "min-snr")
TIME_SAMPLINGS = ("uniform", "logit-normal")
SAMPLERS = ("full", "dpmpp-2m")
"""The card's sampler: "full", every one of T steps (the spec's DDPM loop with the beta variance, or Euler for flow),
or DPM-Solver++(2M) on ``solver_steps`` steps."""
NETS = ("fundiff", "diffusers")
"""The net a recipe trains: "fundiff", the spec's UNet, or "diffusers", a diffusers UNet2DModel for larger images
(:mod:`fundiff.nets.diffusers_net`)."""
MAX_EPOCHS, MAX_BATCH, MAX_WIDTH = 10_000, 8_192, 512
"""Bounds that keep a run finite and in memory (the spec: 20 epochs, batch 128, width 64)."""
DIGIT_SHAPE = {"image_size": 28, "channels": 1, "num_classes": 10, "class_names": []}
"""The data shape of MNIST and Fashion-MNIST, which records leave out."""
LEFT_OUT = {**DIGIT_SHAPE, "net": "fundiff"}
"""The fields records leave out at these values (the digits' shape, the spec's net), so older records read the
same."""
RANGES = {"epochs": f"1 to {MAX_EPOCHS:,}", "batch_size": f"2 to {MAX_BATCH:,}", "lr": "above 0, at most 1",
          "width": f"1 to {MAX_WIDTH}", "sigma": "0 to 100", "p_uncond": "0 to below 1", "ema_decay": "0 to below 1",
          "augment": "0 to 1", "solver_steps": "2 to T", "guidance_interval": "0 <= low < high <= 1",
          "channels": "1 or 3", "num_classes": "1 to 10,000",
          "image_size": f"{MIN_SIZE} to {MAX_SIZE} px, halving cleanly to 4-8 px: 16, 28, 32, 48, 64, 96, 128, ..."}


@dataclass(frozen=True)
class Recipe:
    """Every hyper-parameter of one training run."""

    model: str = "class"
    objective: str = "ddpm"
    recipe: str = "default"
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "exponential"
    width: int = 64
    T: int = 300
    beta_start: float = 1e-4
    beta_end: float = 0.02
    sigma: float = 0.5
    pure_noise: bool = False
    p_uncond: float = 0.1
    guidance: float = 5.0
    guidance_interval: tuple[float, float] = (0.0, 1.0)
    ema_decay: float = 0.0
    augment: float = 0.0
    loss_weighting: str = "uniform"
    time_sampling: str = "uniform"
    clip_x0: bool = False
    sampler: str = "full"
    solver_steps: int = 20
    sample_epochs: tuple[int, ...] = field(default_factory=tuple)
    precision: str = "fp32"
    channels_last: bool = True
    seed: int = 0
    data: str = "mnist"
    holdout_per_class: int = 50
    image_size: int = 28
    channels: int = 1
    num_classes: int = 10
    class_names: tuple[str, ...] = ()
    net: str = "fundiff"

    def __post_init__(self) -> None:
        self._check_choice("model", MODELS)
        self._check_choice("objective", OBJECTIVES)
        self._check_choice("recipe", RECIPES)
        self._check_choice("lr_schedule", LR_SCHEDULES)
        self._check_choice("precision", PRECISIONS)
        self._check_choice("loss_weighting", LOSS_WEIGHTINGS)
        self._check_choice("time_sampling", TIME_SAMPLINGS)
        self._check_choice("sampler", SAMPLERS)
        self._check_choice("net", NETS)
        checks = {
            "epochs": 1 <= self.epochs <= MAX_EPOCHS, "batch_size": 2 <= self.batch_size <= MAX_BATCH,
            "lr": 0 < self.lr <= 1, "width": 1 <= self.width <= MAX_WIDTH, "T": 2 <= self.T <= 100_000,
            "sigma": 0 <= self.sigma <= 100,
            "p_uncond": 0 <= self.p_uncond < 1, "ema_decay": 0 <= self.ema_decay < 1,
            "augment": 0 <= self.augment <= 1, "solver_steps": 2 <= self.solver_steps <= self.T,
            "beta_start": 0 < self.beta_start < self.beta_end < 1, "holdout_per_class": self.holdout_per_class >= 1,
            "channels": self.channels in (1, 3), "num_classes": 1 <= self.num_classes <= 10_000,
            "image_size": unet_depth(self.image_size) > 0,
            "guidance_interval": len(self.guidance_interval) == 2
            and 0 <= self.guidance_interval[0] < self.guidance_interval[1] <= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise UserError(f"--{name.replace('_', '-')} {getattr(self, name)} is out of range "
                                f"({RANGES.get(name, 'see fundiff train --help')})")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise UserError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        if self.loss_weighting != "uniform" and self.objective != "ddpm":
            raise UserError(f"--loss-weighting {self.loss_weighting} weights the DDPM noise loss; flow models take "
                            "--time-sampling instead")
        if self.time_sampling != "uniform" and self.objective != "flow":
            raise UserError(f"--time-sampling {self.time_sampling} draws flow-matching times; DDPM models take "
                            "--loss-weighting instead")
        late = [e for e in self.sample_epochs if not 1 <= e <= self.epochs]
        if late:
            raise UserError(f"--sample-epochs {','.join(map(str, late))} is not among epochs 1..{self.epochs}; "
                            "give epochs the run will reach")

    def _check_choice(self, name: str, choices: tuple[str, ...]) -> None:
        if getattr(self, name) not in choices:
            value = getattr(self, name)
            raise UserError(f"unknown {name.replace('_', '-')} {value!r}; choose one of: {', '.join(choices)}")

    @property
    def lr_gamma(self) -> float:
        """ExponentialLR gamma = 0.1 ** (1 / epochs) (spec), stepped once per epoch."""
        return 0.1 ** (1.0 / self.epochs)

    def to_dict(self) -> dict:
        """Every field; the data's shape (image size, channels, classes) only where it is not the digits' 28 px grey
        0-9, and the net only when it is not fundiff's, so the records and weights of runs on the digit sets read as
        before."""
        d = asdict(self)
        d["sample_epochs"] = list(self.sample_epochs)
        d["guidance_interval"] = list(self.guidance_interval)
        d["class_names"] = list(self.class_names)
        for k, v in LEFT_OUT.items():
            if d[k] == v:
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Recipe:
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["sample_epochs"] = tuple(d.get("sample_epochs", ()))
        d["guidance_interval"] = tuple(d.get("guidance_interval", (0.0, 1.0)))
        d["class_names"] = tuple(d.get("class_names", ()))
        return cls(**d)


def _spec(model: str, objective: str) -> Recipe:
    if model == "denoiser":
        return Recipe(model, "ddpm", "spec", epochs=5, batch_size=256, lr=1e-4, lr_schedule="constant",
                      width=128, sample_epochs=(1, 5))
    if objective == "flow":
        return Recipe(model, "flow", "spec", epochs=10, batch_size=64, lr=1e-2, width=64, sample_epochs=(1, 5, 10))
    return Recipe(model, "ddpm", "spec", epochs=20, batch_size=128, lr=1e-3, width=64, sample_epochs=(5, 20))


FLOW_GUIDANCE_INTERVAL = (0.52, 0.77)
"""The default flow recipe's CFG interval, in noise levels 1 - t: where the DDPM default's interval t/T in [0.5, 0.9]
lies on the flow path by signal-to-noise ratio (SNR = abar / (1 - abar) = t^2 / (1 - t)^2: 0.88 at t/T = 0.5,
0.094 at 0.9)."""


def _default(model: str, objective: str) -> Recipe:
    """fundiff's recipe for a small data set on a CPU (measurements in the README, "Time to quality").

    Every model trains under bf16 autocast (twice the fp32 images/s of the spec's width-64 net on this 2-core CPU;
    sampling in bf16 scores the same as fp32). The time and class nets (DDPM and flow) take batch 16 for 9 epochs:
    on a CPU a small batch costs about the same per image, so the same images buy 8x the optimizer steps of the
    spec's batch 128; the lr follows a cosine from 1e-3 to 1e-5 over the epochs (in a short run it spends more steps
    near the full lr than the spec's exponential decay, and ends lower); they keep an EMA of the weights (decay
    0.998, warmed up: min(0.998, (1 + n) / (10 + n)) after n steps, below 0.998 for 4,490 steps, so in 9 epochs of
    282 steps the warm-up sets it, 0.996 at the end) and sample with it. DDPM nets weight the noise loss by min-SNR-5,
    flow nets draw logit-normal times. Sampling clamps x0_hat to the data range [0, 1], applies CFG only at noise
    levels t/T in [0.5, 0.9] (guidance interval; the conditional estimate elsewhere; for flow the same
    signal-to-noise ratios, :data:`FLOW_GUIDANCE_INTERVAL`), which brings the over-bold strokes of gamma = 5 back to
    real digits', and uses DPM-Solver++(2M) in 20 steps. The nets and the training objectives' targets stay the
    spec's.
    """
    base = replace(_spec(model, objective), recipe="default", precision="bf16")
    if model == "denoiser":
        return base
    common = dict(batch_size=16, epochs=9, lr=1e-3, lr_schedule="cosine", ema_decay=0.998, clip_x0=True,
                  guidance_interval=(0.5, 0.9), sampler="dpmpp-2m", solver_steps=20, sample_epochs=(1, 5, 9))
    if objective == "flow":  # CFG where the DDPM interval's signal-to-noise ratios are on the flow path (README)
        return replace(base, time_sampling="logit-normal", **{**common, "guidance_interval": FLOW_GUIDANCE_INTERVAL})
    return replace(base, loss_weighting="min-snr", **common)


def make_recipe(model: str, objective: str = "ddpm", recipe: str = "default", **overrides: object) -> Recipe:
    """The named recipe for a model and objective, with command-line overrides (None = keep)."""
    if recipe not in RECIPES:
        raise UserError(f"unknown recipe {recipe!r}; choose one of: {', '.join(RECIPES)}")
    if model not in MODELS:
        raise UserError(f"unknown model {model!r}; choose one of: {', '.join(MODELS)}")
    if objective not in OBJECTIVES:
        raise UserError(f"unknown objective {objective!r}; choose one of: {', '.join(OBJECTIVES)}")
    base = (_spec if recipe == "spec" else _default)(model, objective)
    changes = {k: v for k, v in overrides.items() if v is not None}
    if "epochs" in changes and "sample_epochs" not in changes:
        e = int(changes["epochs"])  # keep the asked-for epochs that still exist, and always the last
        changes["sample_epochs"] = tuple(sorted({s for s in base.sample_epochs if s < e} | {e}))
    return replace(base, **changes)
