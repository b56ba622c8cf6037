"""``fundiff figures``: every Part B figure the given runs allow, with a figures.json of captions."""

from __future__ import annotations

from pathlib import Path

from fundiff.errors import UserError
from fundiff.evaluate.runs import _data_dir
from fundiff.io.files import versions, write_json
from fundiff.io.guard import prepare_output
from fundiff.partb.figures import (
    denoiser_results,
    held_out_digits,
    loss_comparison,
    loss_figure,
    noising_figure,
    ood_figure,
    pure_noise_figure,
    samples_figure,
)
from fundiff.progress import say
from fundiff.train.checkpoint import available_epochs, load_model, read_run


def run_figures(runs: list[Path], out: Path | None, sampler: str | None, steps: int | None, seed: int,
                device: str, force: bool = False) -> Path:
    """Every figure the runs allow into ``out`` (default RUN/figures), checked before any work: a folder holding
    files is refused unless ``force``, which removes the files its earlier figures.json lists."""
    if not runs:
        raise UserError("give at least one run directory")
    infos = [read_run(r) for r in runs]
    out = prepare_output(Path(out) if out is not None else Path(runs[0]) / "figures", force)
    records: list[dict] = []
    first = load_model(runs[0])[1]
    digits = held_out_digits(first, _data_dir(infos[0]))
    records.append(noising_figure(digits[:5], out, seed))
    for run, info in zip(runs, infos):
        records += _figures_for(Path(run), info, digits, out, sampler, steps, seed)
    if len(runs) > 1:
        records.append(loss_comparison([Path(r) for r in runs], out))
    write_json(out / "figures.json", {"runs": [str(r) for r in runs], "figures": records,
                                      "files": sorted({r["file"] for r in records}), "versions": versions()})
    say(f"wrote {len(records)} figures to {out}")
    return out


def _figures_for(run: Path, info: dict, digits, out: Path, sampler: str | None, steps: int | None,
                 seed: int) -> list[dict]:
    r = load_model(run)[1]
    recs = [loss_figure(run, out, f"loss_{run.name}.png")]
    epochs = available_epochs(run)
    if r.model == "denoiser":
        recs += [denoiser_results(run, e, digits[:8], out, seed) for e in epochs]
        if not r.pure_noise:
            recs.append(ood_figure(run, digits[7], out, seed))
        recs.append(pure_noise_figure(run, out, seed=seed))
        return recs
    for e in epochs:
        recs += samples_figure(run, e, out, sampler, steps, seed)
        say(f"  {run.name}: samples after epoch {e}")
    return recs
