"""``fundiff sample``: a grid of samples through the one generation path, samples.npz, a GIF, sample.json."""

from __future__ import annotations

from pathlib import Path

import typer

from fundiff import parta
from fundiff.cli.options import OutputOptions, SamplingOptions
from fundiff.io.files import versions, write_json
from fundiff.io.guard import prepare_output
from fundiff.io.pictures import save_gif, save_grid
from fundiff.models import load
from fundiff.partb.samples import check_grid, sample_grid, save_npz, settings_name
from fundiff.progress import elapsed


def run_sample(spec: str, classes: list[int] | None, per_class: int, epoch: int | None, precision: str | None,
               gif: bool, s: SamplingOptions, o: OutputOptions, device: str) -> Path:
    model = load(spec, device, epoch=epoch, precision=precision)
    sampling = parta.settings(model, s.sampling())
    if classes is None and model.conditioning == "class":
        classes = list(range(model.num_classes))
    ep = model.info.get("epoch", 0)
    name = settings_name("sample", ep, model, sampling, s.seed, model.info.get("recipe", {}).get("precision", ""))
    src = Path(spec)
    default = (src if src.is_dir() else src.parent) / name if src.exists() else Path("outputs") / f"{spec}-{name}"
    check_grid(model, classes, per_class, sampling)
    out = prepare_output(o.out if o.out is not None else default, o.force)
    frames: list | None = [] if gif else None
    with elapsed(typer.echo, "sampled"):
        x, labels = sample_grid(model, classes, per_class, s.seed, sampling, frames)
    nrow = len(classes) if classes is not None else 10
    save_grid(x, out / "samples.png", nrow=nrow)
    save_npz(out / "samples.npz", x, labels)
    if gif:
        save_gif(frames, out / "samples.gif", nrow=nrow)
    write_json(out / "sample.json", {
        "model": model.describe() | {"card": None}, "epoch": ep, "classes": classes, "per_class": per_class,
        "seed": s.seed, "sampling": sampling.to_dict(),
        "files": ["samples.png", "samples.npz", *(["samples.gif"] if gif else [])], "versions": versions()})
    typer.echo(f"wrote {out}/samples.png, samples.npz{', samples.gif' if gif else ''}")
    return out
