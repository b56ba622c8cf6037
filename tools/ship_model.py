"""Store a finished class-conditioned training run inside the package as a shipped model (``--model NAME``).

    python tools/ship_model.py NAME RUN_DIR [EVAL_JSON ...] [--sampling KEY=VALUE,...]

NAME is ``digits`` (a run on MNIST) or ``fashion`` (a run on Fashion-MNIST). Writes src/fundiff/assets/NAME.safetensors
(the run's last sampling weights, the EMA if it kept one, in fp16: about 4 MB) and NAME.json (the card: recipe, the
command that trained it, data, training time, epoch, versions, and the measured numbers of the given eval.json files
of ``fundiff evaluate``). Sampling-only recipe fields are set to the current defaults (the card keeps the trained ones).
``--sampling`` sets the model's own sampling defaults over its recipe's (DDPM-300), e.g. ``sampler=dpmpp-2m,steps=20``
where the measurements show that sampler holds for this model.
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields, replace
from pathlib import Path

import torch

from fundiff.core.sampling import Sampling
from fundiff.errors import UserError
from fundiff.io.files import write_json
from fundiff.models import SHIPPED
from fundiff.train.checkpoint import available_epochs, read_run, read_weights, save_weights, weights_path
from fundiff.train.data import CLASS_NAMES
from fundiff.train.recipes import Recipe, make_recipe

ASSETS = Path(__file__).resolve().parents[1] / "src" / "fundiff" / "assets"
DATA = {"digits": "mnist", "fashion": "fashion"}
"""The training data of each shipped model."""
WHAT = {"mnist": "MNIST digits", "fashion": "Fashion-MNIST clothes"}
SAMPLING_ONLY = ("guidance_interval", "clip_x0", "guidance")
"""Recipe fields that change how the net is sampled, never its weights: updated to the current default."""
NOT_IN_COMMAND = ("model", *SAMPLING_ONLY, "sample_epochs")
"""Recipe fields the training command leaves out: the positional model, and what never changes the weights."""
CLI_DEFAULTS = {"recipe": "default", "objective": "ddpm"}
"""What ``fundiff train`` takes without --recipe and --objective (the rest of the defaults depend on these two)."""
FIRST = ("recipe", "objective", "data")
"""Options the command names first (they pick the base recipe and the data), the rest follow in recipe order."""
NO_OPTION = ("T", "beta_start", "beta_end", "channels_last", "holdout_per_class")
"""Recipe fields ``fundiff train`` has no option for."""
KEEP = ("sampler", "steps", "guidance", "guidance_interval", "per_class", "precision", "accuracy", "frechet",
        "frechet_real_vs_real", "ratio", "sampling_seconds")


def training_command(recipe: Recipe) -> str:
    """The ``fundiff train`` command that makes ``recipe``'s weights: the options that differ from the defaults."""
    base = replace(make_recipe(recipe.model, recipe.objective, recipe.recipe), **CLI_DEFAULTS)
    names = [f.name for f in fields(Recipe) if f.name not in NOT_IN_COMMAND]
    changed = [n for n in (*FIRST, *(n for n in names if n not in FIRST)) if getattr(recipe, n) != getattr(base, n)]
    stuck = [n for n in changed if n in NO_OPTION or (n == "pure_noise" and not recipe.pure_noise)]
    if stuck:
        raise UserError(f"the run's {', '.join(stuck)} differ from the {recipe.recipe} recipe and fundiff train has "
                        "no option for them: no command reproduces it")
    words = ["fundiff", "train", recipe.model]
    for n in changed:
        value = getattr(recipe, n)
        words += [f"--{n.replace('_', '-')}"] + ([] if isinstance(value, bool) else [str(value)])
    return " ".join(words)


def parse_sampling(text: str) -> dict:
    """KEY=VALUE,... as :class:`Sampling` fields (checked), e.g. ``sampler=dpmpp-2m,steps=20``."""
    known = [f.name for f in fields(Sampling) if f.name != "guidance_interval"]
    convert = {"steps": int, "stride": int, "guidance": float, "clip": lambda v: v == "true"}
    given = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key not in known or not value:
            raise UserError(f"--sampling {item!r}: give KEY=VALUE with KEY one of {', '.join(known)}")
        try:
            given[key] = convert.get(key, str)(value)
        except ValueError:
            raise UserError(f"--sampling {item!r}: {value!r} is not a number") from None
    Sampling(**given)
    return given


def main(name: str, run_dir: Path, evals: list[Path], assets: Path = ASSETS, sampling: dict | None = None) -> dict:
    """Write ``assets``/NAME.safetensors and NAME.json from the finished run in ``run_dir``; returns the card."""
    if name not in SHIPPED or name not in DATA:
        raise UserError(f"unknown shipped model {name!r}; choose one of: {', '.join(DATA)}")
    info = read_run(run_dir)
    epochs = available_epochs(run_dir)
    if info.get("status") != "done" or not epochs:
        raise UserError(f"{run_dir} has not finished training (epoch {info.get('epoch')} of "
                        f"{info['recipe'].get('epochs')}): wait for it, or resume it with fundiff train --resume")
    epoch = epochs[-1]
    state, trained, _ = read_weights(weights_path(run_dir, epoch))
    if trained.model != "class" or trained.data != DATA[name]:
        raise UserError(f"{run_dir} is a {trained.model} model on {trained.data}; {name} is a class model on "
                        f"{DATA[name]}")
    recipe = replace(trained, **{k: getattr(make_recipe("class"), k) for k in SAMPLING_ONLY})
    weights = Path(assets) / SHIPPED[name]
    save_weights(weights, state, recipe, epoch, dtype=torch.float16)
    kind = "flow-matching" if recipe.objective == "flow" else "DDPM"
    card = {
        "name": name, "what": f"class-conditioned {kind} UNet (spec Part B) on {WHAT[recipe.data]}, "
                              f"{'EMA' if recipe.ema_decay > 0 else 'final'} weights in fp16",
        "command": training_command(trained), "recipe": recipe.to_dict(), "epoch": epoch,
        "class_names": list(CLASS_NAMES.get(recipe.data, [str(c) for c in range(10)])),
        "sampling_settings_since_training": {k: getattr(trained, k) for k in SAMPLING_ONLY
                                             if getattr(trained, k) != getattr(recipe, k)}, "data": info["data"],
        "device": info.get("device"), "training_seconds": round(sum(h["seconds"] for h in info["history"]), 1),
        "last_epoch_mean_loss": round(info["history"][-1]["mean_loss"], 4), "versions": info["versions"],
        "evaluations": [_evaluation(Path(p)) for p in evals], "sampling": sampling or {},
    }
    write_json(weights.with_suffix(".json"), card)
    print(f"wrote {weights} ({weights.stat().st_size / 1e6:.1f} MB) and its card {weights.with_suffix('.json').name}: "
          f"{card['command']}, epoch {epoch}")
    return card


def _evaluation(path: Path) -> dict:
    try:
        numbers = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read the evaluation {path} ({e})") from None
    return {k: numbers[k] for k in KEEP if k in numbers}


def ship_cli(args: list[str]) -> None:
    """NAME RUN_DIR [EVAL_JSON ...] from the command line; a mistake is one line on stderr and exit status 1."""
    asked = "-h" in args or "--help" in args
    if len(args) < 2 or asked:
        print(__doc__, file=sys.stdout if asked else sys.stderr)
        sys.exit(0 if asked else 2)
    try:
        sampling = {}
        if "--sampling" in args:
            at = args.index("--sampling")
            if at + 1 == len(args):
                raise UserError("--sampling needs KEY=VALUE,..., e.g. sampler=dpmpp-2m,steps=20")
            sampling, args = parse_sampling(args[at + 1]), args[:at] + args[at + 2:]
        if len(args) < 2:
            raise UserError("give NAME RUN_DIR [EVAL_JSON ...]")
        main(args[0], Path(args[1]), [Path(p) for p in args[2:]], sampling=sampling)
    except UserError as e:
        sys.exit(f"ship_model: error: {e}")


if __name__ == "__main__":
    ship_cli(sys.argv[1:])
