"""Store a trained class-conditioned digit run inside the package as the shipped ``--model digits``.

    python tools/ship_digits.py RUN_DIR [EVAL_JSON ...]

Writes src/fundiff/assets/digits.safetensors (the run's last sampling weights, the EMA if it kept one, in fp16:
about 4 MB) and digits.json (the card: recipe, the command that trained it, data, training time,
and the measured numbers of the given eval.json files).
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

from fundiff.io.files import write_json
from fundiff.train.checkpoint import available_epochs, read_run, read_weights, save_weights, weights_path
from fundiff.train.recipes import make_recipe

ASSETS = Path(__file__).resolve().parents[1] / "src" / "fundiff" / "assets"
SAMPLING_ONLY = ("guidance_interval", "clip_x0", "guidance")
"""Recipe fields that change how the net is sampled, never its weights: updated to the current default."""
KEEP = ("sampler", "steps", "guidance", "guidance_interval", "per_class", "precision", "accuracy", "frechet",
        "frechet_real_vs_real", "ratio", "sampling_seconds")


def main(run_dir: Path, evals: list[Path]) -> None:
    info = read_run(run_dir)
    epoch = available_epochs(run_dir)[-1]
    state, trained, _ = read_weights(weights_path(run_dir, epoch))
    recipe = replace(trained, **{k: getattr(make_recipe("class"), k) for k in SAMPLING_ONLY})
    save_weights(ASSETS / "digits.safetensors", state, recipe, epoch, dtype=torch.float16)
    card = {
        "name": "digits", "what": "class-conditioned DDPM UNet (spec Part B) on MNIST digits, "
                                  f"{'EMA' if recipe.ema_decay > 0 else 'final'} weights in fp16",
        "command": "fundiff train class", "recipe": recipe.to_dict(), "epoch": epoch,
        "sampling_settings_since_training": {k: getattr(trained, k) for k in SAMPLING_ONLY
                                             if getattr(trained, k) != getattr(recipe, k)}, "data": info["data"],
        "training_seconds": round(sum(h["seconds"] for h in info["history"]), 1),
        "last_epoch_mean_loss": round(info["history"][-1]["mean_loss"], 4), "versions": info["versions"],
        "evaluations": [{k: json.loads(p.read_text())[k] for k in KEEP} for p in evals],
    }
    write_json(ASSETS / "digits.json", card)
    print(f"wrote {ASSETS / 'digits.safetensors'} ({(ASSETS / 'digits.safetensors').stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
