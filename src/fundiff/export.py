"""``fundiff export RUN OUT``: a trained run as a diffusers folder with a Hugging Face model card.

:func:`export_run` checks everything first (a fundiff run, a time or class model, the epoch, diffusers installed,
OUT free), then writes the layout of :mod:`fundiff.models.export`, a sample grid drawn from the exported folder with
fundiff's own sampler (seed 0, the recipe's sampling defaults) and ``README.md``: YAML front matter (library,
tags, data set, license), the recipe, the data, the measured numbers (run.json's history, the run's evaluations of
that epoch) and a diffusers snippet that samples with the scheduler's own loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from fundiff import parta
from fundiff.errors import UserError
from fundiff.io.files import pick_device, write_text
from fundiff.io.guard import prepare_output
from fundiff.io.pictures import save_grid
from fundiff.models import export as layout
from fundiff.progress import say
from fundiff.train.checkpoint import available_epochs, build_net, read_run, read_weights, weights_path
from fundiff.train.recipes import Recipe

CARD, SAMPLES = "README.md", "samples.png"
HUB_DATASETS = {"mnist": "ylecun/mnist", "fashion": "zalando-datasets/fashion_mnist", "cifar10": "uoft-cs/cifar10",
                "cifar100": "uoft-cs/cifar100", "svhn": "ufldl-stanford/svhn"}
"""Hub ids of the named data sets a run can train on (a folder of images has none)."""
SAMPLE_SEED, PER_CLASS, MAX_COLUMNS, UNCONDITIONAL = 0, 4, 10, 40
"""The card's grid: seed 0; a class model's first 10 classes (a column each), 4 per class; 40 unconditional."""


@dataclass(frozen=True)
class Exported:
    """What :func:`export_run` wrote: the folder, its files (relative), the epoch and the scheduler named."""

    out: Path
    files: list[str]
    epoch: int
    scheduler: str


def export_run(run: Path, out: Path, epoch: int | None = None, force: bool = False, samples: bool = True,
               device: str = "auto") -> Exported:
    """Export the weights of ``run`` after ``epoch`` (default: its last saved) into ``out`` (see the module doc).
    Every refusal is one UserError before anything is written."""
    run, out = Path(run), Path(out)
    info = read_run(run)
    epochs = available_epochs(run)
    if not epochs:
        raise UserError(f"{run} has no saved weights yet; export it once training has saved an epoch")
    epoch = epochs[-1] if epoch is None else epoch
    if epoch not in epochs:
        raise UserError(f"{run} has weights for epochs {epochs}, not {epoch}; pick one with --epoch")
    state, recipe, ep = read_weights(weights_path(run, epoch))
    if recipe.model == "denoiser":
        raise UserError(f"{run} is a single-step denoiser (no time input): not a diffusion model, so diffusers "
                        "cannot sample it; export a time or class run")
    layout.need_diffusers()
    if out.resolve() == run.resolve() or run.resolve() in out.resolve().parents:
        raise UserError(f"{out} is inside the run {run}; give a folder outside it")
    if out.exists() and not out.is_dir():
        raise UserError(f"OUT {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError(f"{out} already exists and is not empty; pass --force or give another OUT")
    dev = pick_device(device)
    earlier = _earlier_export(out) if force else []
    prepare_output(out, force)
    for f in earlier:
        f.unlink(missing_ok=True)

    files = [*layout.LAYOUT_FILES, *([SAMPLES] if samples else []), CARD]
    net = build_net(recipe, state)
    record = {"run": run.resolve().name, "epoch": ep, "data": info.get("data"), "files": files}
    layout.write_layout(out, net, recipe, record)
    say(f"wrote the diffusers layout ({layout.scheduler_name(recipe)}) of {run} epoch {ep} -> {out}")
    sample_note = None
    if samples:
        sample_note = _sample_grid(out, dev)
    write_text(out / CARD, model_card(out.name, recipe, info, ep, net, run, sample_note))
    return Exported(out, files, ep, layout.scheduler_name(recipe))


def _earlier_export(out: Path) -> list[Path]:
    """With --force: the files an earlier export into ``out`` lists (only those inside ``out``), to remove so none
    stays beside the new export as if it belonged to it."""
    record = out / layout.EXPORT_FILE
    try:
        info = json.loads(record.read_text()) if record.is_file() else {}
    except (OSError, ValueError):
        return []
    if not isinstance(info, dict) or info.get("kind") != layout.EXPORT_KIND:
        return []
    root = out.resolve()
    listed = [(out / str(f)).resolve() for f in info.get("files", []) if isinstance(f, str)]
    return [p for p in listed if root in p.parents and p.is_file()]


def _sample_grid(out: Path, device: torch.device) -> str:
    """samples.png from the exported folder with fundiff's sampler and the recipe's defaults; what it shows."""
    model = layout.load_exported(out, device)
    s = parta.settings(model)
    if model.conditioning == "class":
        classes = list(range(min(model.num_classes, MAX_COLUMNS)))
        labels = [c for _ in range(PER_CLASS) for c in classes]
        x = parta.generate(model, labels, len(labels), seed=SAMPLE_SEED)
        nrow, what = len(classes), f"classes {classes[0]}-{classes[-1]}, one per column"
    else:
        x = parta.generate(model, None, UNCONDITIONAL, seed=SAMPLE_SEED)
        nrow, what = MAX_COLUMNS, f"{UNCONDITIONAL} unconditional samples"
    save_grid(x, out / SAMPLES, nrow=nrow)
    say(f"sampled {len(x)} images ({what}) -> {out / SAMPLES}")
    return f"{what}; fundiff's sampler with the recipe's defaults ({describe_sampling(s, model.is_flow)}), seed " \
           f"{SAMPLE_SEED}"


def describe_sampling(s, flow: bool) -> str:
    steps = f"{s.steps} steps" if s.steps is not None else ("every step" if s.stride in (None, 1) else
                                                              f"stride {s.stride}")
    name = {"ddpm": "DDPM", "euler": "Euler", "dpmpp-2m": "DPM-Solver++(2M)", "ddim": "DDIM"}.get(s.sampler, s.sampler)
    parts = [f"{name}, {steps}"]
    if not flow and s.sampler == "ddpm":
        parts.append(f"{s.variance} variance")
    if s.clip:
        parts.append("x0_hat clamped to [0, 1]")
    if s.guidance not in (None, 1.0):
        lo, hi = s.guidance_interval or (0.0, 1.0)
        parts.append(f"CFG {s.guidance:g} on noise levels {lo:g}-{hi:g}")
    return ", ".join(parts)


# ----------------------------------------------------------------------------------------------------------- card


def model_card(name: str, recipe: Recipe, info: dict, epoch: int, net, run: Path, sample_note: str | None) -> str:
    """README.md: YAML front matter for the Hub, then what the model is, how to use it and what was measured."""
    flow, is_class = recipe.objective == "flow", recipe.model == "class"
    kind = f"{'class-conditioned' if is_class else 'time-conditioned (unconditional)'} " \
           f"{'flow-matching' if flow else 'DDPM'} UNet"
    params = sum(p.numel() for p in net.parameters())
    lines = [*_front_matter(recipe), "", f"# {name}", "",
             f"A {kind} trained with fundiff (\"Fun With Diffusion Models\") on "
             f"{_data_name(recipe, info)}: {recipe.image_size} px, {recipe.channels} channel"
             f"{'s' if recipe.channels > 1 else ''}, width {recipe.width}, {params:,} parameters; the weights after "
             f"epoch {epoch} of {recipe.epochs}.", ""]
    if sample_note:
        lines += [f"![samples]({SAMPLES})", "", f"*{sample_note}.*", ""]
    lines += _usage(name, recipe) + _recipe_table(recipe) + _data_table(info) + _measured(info, run, epoch, recipe)
    unet_name = "diffusers' `UNet2DModel`" if recipe.net == "diffusers" else "fundiff's `UNetModel`"
    lines += ["## Files", "", f"- `{layout.LAYOUT_FILES[0]}`, `unet/`, `scheduler/`: the diffusers layout "
              f"(`DDPMPipeline` with {unet_name} and a `{layout.scheduler_name(recipe)}`)",
              f"- `{layout.EXPORT_FILE}`: the recipe, epoch, data and run the weights come from (what `fundiff sample "
              f"{name}` reads)", ""]
    return "\n".join(lines)


def _yaml(value: str) -> str:
    return json.dumps(value)  # a JSON string is a YAML double-quoted scalar


def _front_matter(recipe: Recipe) -> list[str]:
    tags = ["fundiff", "diffusion", "flow-matching" if recipe.objective == "flow" else "ddpm",
            "class-conditional" if recipe.model == "class" else "unconditional-image-generation", "pytorch"]
    lines = ["---", "library_name: diffusers", "license: mit", "tags:", *[f"- {_yaml(t)}" for t in tags]]
    if recipe.data in HUB_DATASETS:
        lines += ["datasets:", f"- {_yaml(HUB_DATASETS[recipe.data])}"]
    if recipe.model != "class":
        lines.append("pipeline_tag: unconditional-image-generation")
    return [*lines, "---"]


def _data_name(recipe: Recipe, info: dict) -> str:
    source = (info.get("data") or {}).get("source")
    return f"{recipe.data} ({source})" if source else recipe.data


def _usage(name: str, recipe: Recipe) -> list[str]:
    flow, is_class = recipe.objective == "flow", recipe.model == "class"
    sched = layout.scheduler_name(recipe)
    if recipe.net == "diffusers":
        intro = ("The net is a diffusers `UNet2DModel` (trained with `fundiff train --net diffusers`): diffusers "
                 "loads the folder (or its Hub id) with its own `from_pretrained`. "
                 f"Sample with the `{sched}`'s loop; the net is called as fundiff trained it:")
        call = "net(x, t * 1000, class_labels=labels).sample" if is_class else "net(x, t * 1000).sample"
    else:
        intro = ("fundiff's UNet is a diffusers `ModelMixin` (`fundiff.nets.hub.UNetModel`): with fundiff installed, "
                 "import `fundiff.nets.hub` and diffusers loads the folder (or its Hub id) with its own "
                 "`from_pretrained`. "
                 f"Sample with the `{sched}`'s loop; the net is called as fundiff trained it:")
        call = "net(x, t, c)" if is_class else "net(x, t)"
    lines = ["## Use it with diffusers", "", intro, "",
             f"- `{call}`: images in fundiff's data range [0, 1] (noise is "
             "N(0, I) there), `t` the "
             + ("flow time in [0, 1] (0 = noise, 1 = data; the scheduler's sigma is `1 - t`), and the net predicts "
                "the velocity towards the data: the scheduler wants its negative."
                if flow else "normalised time `(k + 1) / T` for diffusers' 0-based timestep `k`, and the net "
                "predicts the noise (epsilon)."),
             ]
    if is_class and recipe.net == "diffusers":
        lines.append(f"- `labels`: class indices 0-{recipe.num_classes - 1}; index {recipe.num_classes} "
                     "(`num_class_embeds - 1`) is no class, for classifier-free guidance.")
    elif is_class:
        lines.append("- `c`: one-hot class rows (zeros: no class, for classifier-free guidance).")
    if not flow:
        lines.append("- The scheduler takes fundiff's full DDPM step (linear betas, the beta variance: "
                     "`variance_type=\"fixed_large\"`). "
                     + ("fundiff's recipe clamps x0_hat to [0, 1], which diffusers' symmetric `clip_sample` cannot "
                        "do: it is off here, so diffusers' samples differ a little from fundiff's."
                        if recipe.clip_x0 else "No clipping, as in the recipe."))
    else:
        lines.append("- `set_timesteps(T)` walks fundiff's Euler grid t = 0, 1/T, ..., (T-1)/T exactly.")
    if recipe.sampler == "dpmpp-2m":
        lines.append(f"- The loop takes all {recipe.T} steps; fundiff's own default for this recipe is "
                     f"DPM-Solver++(2M) in {recipe.solver_steps} steps.")
    if recipe.precision == "bf16":
        lines.append("- fundiff samples this net under bf16 autocast; the snippet runs in float32.")
    lines += ["", "```python", *_snippet(name, recipe), "```", "",
              "`DDPMPipeline.__call__` itself assumes diffusers' own conventions (integer timesteps, data in "
              "[-1, 1]), so use the loop above rather than `pipe()`.", "",
              "## Use it with fundiff", "", "```bash",
              f"fundiff sample {name} --out samples" + (" --classes 0-9" if is_class else ""), "```", "",
              f"`--model {name}` works wherever fundiff takes a model: the same net and the same sampling defaults "
              "as the run it came from.", ""]
    return lines


def _snippet(name: str, recipe: Recipe) -> list[str]:
    """Python that samples the exported folder with diffusers' scheduler loop (the card's; tested)."""
    flow, is_class = recipe.objective == "flow", recipe.model == "class"
    lo, hi = recipe.guidance_interval
    ours = recipe.net == "diffusers"  # a UNet2DModel: float timestep t * 1000, class indices, K = no class
    lines = ["import torch",
             "from diffusers import DDPMPipeline",
             "",
             *([] if ours else ["import fundiff.nets.hub  # noqa: F401 - the UNet class model_index.json names", ""]),
             f"pipe = DDPMPipeline.from_pretrained({name!r})  # this folder, or its Hub id",
             "net, scheduler = pipe.unet, pipe.scheduler",
             "T = scheduler.config.num_train_timesteps",
             f"n, size = 8, net.config.{'sample_size' if ours else 'image_size'}",
             "g = torch.Generator().manual_seed(0)",
             "x = torch.randn(n, net.config.in_channels, size, size, generator=g)"]
    if is_class:
        lines += [f"label, guidance, (lo, hi) = 3, {recipe.guidance:g}, ({lo:g}, {hi:g})  # CFG as the recipe"]
        lines += ["c = torch.full((n,), label)", "null = torch.full((n,), net.config.num_class_embeds - 1)  # none"] \
            if ours else ["c = torch.nn.functional.one_hot(torch.full((n,), label), net.config.num_classes).float()"]

    def call(cond: str | None) -> str:
        if ours:
            return f"net(x, t * 1000, class_labels={cond}).sample" if cond else "net(x, t * 1000).sample"
        return f"net(x, t, {cond})" if cond else "net(x, t)"

    lines += ["scheduler.set_timesteps(T)", "with torch.no_grad():", "    for k in scheduler.timesteps:"]
    if flow:
        lines += ["        level = float(k) / T  # the noise level sigma", "        t = torch.full((n,), 1 - level)"]
    else:
        lines += ["        level = (int(k) + 1) / T  # the noise level t / T", "        t = torch.full((n,), level)"]
    lines += [f"        out = {call('c' if is_class else None)}"]
    if is_class:
        lines += ["        if guidance != 1 and lo <= level <= hi:",
                  f"            out_u = {call('null' if ours else 'torch.zeros_like(c)')}",
                  "            out = out_u + guidance * (out - out_u)"]
    if flow:
        lines += ["        x = scheduler.step(-out, k, x).prev_sample"]
    else:
        lines += ["        x = scheduler.step(out, k, x, generator=g).prev_sample"]
    lines += ["images = x.clamp(0, 1)  # (n, C, H, W) in [0, 1]"]
    return lines


def _recipe_table(recipe: Recipe) -> list[str]:
    d = recipe.to_dict()
    rows = [f"| `{f.name}` | {_cell(d[f.name])} |" for f in fields(Recipe) if f.name in d]
    return ["## Recipe", "", "The `fundiff train` recipe, every field (also in `fundiff.json`):", "",
            "| field | value |", "|---|---|", *rows, ""]


def _cell(v) -> str:
    text = ", ".join(map(str, v)) if isinstance(v, list) else str(v)
    return text.replace("|", "\\|") if text else "-"


def _data_table(info: dict) -> list[str]:
    data = info.get("data") or {}
    rows = [f"| {k.replace('_', ' ')} | {_cell(v)} |" for k, v in data.items() if v is not None]
    return ["## Data", "", "| | |", "|---|---|", *rows, ""] if rows else []


def _measured(info: dict, run: Path, epoch: int, recipe: Recipe) -> list[str]:
    """The training history up to ``epoch`` (loss, seconds) and the run's evaluations of that epoch."""
    history = [h for h in info.get("history") or [] if isinstance(h, dict) and h.get("epoch", 0) <= epoch]
    lines = ["## Measured", ""]
    if history:
        last = history[-1]
        seconds = sum(float(h.get("seconds") or 0) for h in history)
        lines += [f"- training: {len(history)} epoch{'s' if len(history) > 1 else ''} in {seconds:,.1f} s on "
                  f"{info.get('device', '?')} ({_fmt(last.get('images_per_s'))} images/s in the last)",
                  f"- {'flow-matching' if recipe.objective == 'flow' else 'noise-prediction'} loss at epoch "
                  f"{last.get('epoch')}: mean {_fmt(last.get('mean_loss'))}, last batch {_fmt(last.get('last_loss'))}"]
    evals = _evaluations(run, epoch)
    if evals:
        lines += ["", "Judge accuracy and Frechet distance of samples (`fundiff evaluate`, judge features, held-out "
                  "digits; real-vs-real is the baseline):", "",
                  "| sampler | steps | guidance | per class | accuracy | Frechet | real vs real | ratio |",
                  "|---|---|---|---|---|---|---|---|"]
        for e in evals:
            acc = (e.get("accuracy") or {}).get("overall")
            lines.append(f"| {e.get('sampler')} | {e.get('steps')} | {_fmt(e.get('guidance'))} | "
                         f"{e.get('per_class')} | {_fmt(acc)} | {_fmt(e.get('frechet'))} | "
                         f"{_fmt(e.get('frechet_real_vs_real'))} | {_fmt(e.get('ratio'))} |")
    if len(lines) == 2:
        lines.append("Nothing measured: run.json has no history and the run no evaluation of this epoch.")
    return [*lines, ""]


def _evaluations(run: Path, epoch: int) -> list[dict]:
    """The eval.json records of ``fundiff evaluate`` in RUN/eval-*/ (and RUN/evals/) for ``epoch``."""
    found = []
    for path in sorted([*run.glob("eval-*/eval.json"), *run.glob("evals/**/eval.json")]):
        try:
            e = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(e, dict) and e.get("epoch") == epoch:
            found.append(e)
    return found


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "?" if v is None else str(v)
