"""``fundiff noise | denoise | generate | edit | inpaint | anagram | hybrid``: Part A from the command line.

Each command loads ``--model``, runs one function of :mod:`fundiff.parta`, and writes PNGs (single
images at the model's size, grids enlarged) and ``args.json`` (arguments, seed, sampling, model,
versions) into a new output directory; an existing non-empty one is refused unless ``--force``.
With a DeepFloyd model, ``--upsample`` also writes every result through stage II at 256 px
(:mod:`fundiff.cli.deepfloyd`), and a prompt model given no prompt uses 'a high quality photo'.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import typer

from fundiff import parta as ops
from fundiff.core.model import Condition, DiffusionModel
from fundiff.errors import UserError
from fundiff.io.files import pick_device, versions, write_json
from fundiff.io.images import box_mask, image_size_of, load_image, load_mask, save_image
from fundiff.io.pictures import save_gif, save_grid
from fundiff.models import load_diffusion_model
from fundiff.models.deepfloyd.prompts import DEFAULT_PROMPT
from fundiff.models.deepfloyd.stage1 import DeepFloydModel


@dataclass
class Common:
    """Options every Part A command shares."""

    model: str = "digits"
    prompt: str | None = None
    class_: int | None = None
    guidance: float | None = None
    seed: int = 0
    sampling: ops.Sampling = field(default_factory=ops.Sampling)
    out: Path | None = None
    force: bool = False
    device: str = "auto"
    upsample: bool = False
    stage_2: str | None = None
    steps_2: int | None = None
    cache: Path | None = None
    dtype: str = "auto"
    offload: bool = False


def condition_of(model: DiffusionModel, prompt: str | None, class_: int | None) -> Condition:
    """--prompt or --class (not both), checked against what the model takes; a prompt model given
    neither gets the spec's 'a high quality photo' (1.3-1.7)."""
    if prompt is not None and class_ is not None:
        raise UserError("give --prompt or --class, not both")
    if class_ is not None and model.conditioning == "prompt":
        raise UserError(f"model {model.name} takes a text --prompt, not --class")
    if prompt is None and class_ is None and model.conditioning == "prompt":
        prompt = DEFAULT_PROMPT
    return model.check_condition(class_ if class_ is not None else prompt)


class Run:
    """One command's output directory: refuses to overwrite, records everything in args.json."""

    def __init__(self, command: str, c: Common, stem: str) -> None:
        self.command, self.common = command, c
        self.dir = Path(c.out) if c.out is not None else Path("outputs") / f"{command}-{stem}-s{c.seed}"
        if self.dir.exists() and not self.dir.is_dir():
            raise UserError(f"--out {self.dir} is a file")
        if self.dir.is_dir() and any(self.dir.iterdir()) and not c.force:
            raise UserError(f"{self.dir} already exists and is not empty; pass --force or another --out")
        self.model = load_diffusion_model(c.model, pick_device(c.device), prompt_cache=c.cache, dtype=c.dtype,
                                          offload=c.offload)
        if c.upsample and not isinstance(self.model, DeepFloydModel):
            raise UserError(f"--upsample runs DeepFloyd's stage II; model {self.model.name} has none")
        self.files: list[str] = []
        self.stage_2 = None

    def scale(self) -> int:
        return max(1, 128 // self.model.image_size)

    def image(self, x: torch.Tensor, name: str) -> None:
        save_image(x, self.dir / name)
        self.files.append(name)

    def grid(self, x: torch.Tensor, name: str, nrow: int) -> None:
        save_grid(x, self.dir / name, nrow=nrow, scale=self.scale())
        self.files.append(name)

    def gif(self, frames: list[torch.Tensor], name: str, nrow: int) -> None:
        save_gif(frames, self.dir / name, nrow=nrow, scale=self.scale(), duration_ms=120)
        self.files.append(name)

    def upsampled(self, stem: str, x: torch.Tensor, condition: Condition = None, **how: object) -> None:
        """With --upsample: stage II of ``x`` at 256 px as ``{stem}_256*.png`` (see fundiff.cli.deepfloyd)."""
        if self.common.upsample:
            from fundiff.cli.stage2_outputs import save_upsampled

            save_upsampled(self, stem, x, condition, **how)

    def finish(self, **args: object) -> Path:
        c = self.common
        stage_2 = {"stage_2": self.stage_2.describe(), "steps_2": c.steps_2} if self.stage_2 is not None else {}
        write_json(self.dir / "args.json", {
            "command": self.command, "args": args, "seed": c.seed, "guidance": c.guidance,
            "sampling": c.sampling.to_dict(), "model": self.model.describe(), **stage_2, "files": self.files,
            "versions": versions()})
        typer.echo(f"wrote {len(self.files)} images and args.json to {self.dir}")
        return self.dir


def _input(run: Run, image: Path, fit: bool = False, invert: str = "auto") -> torch.Tensor:
    m = run.model
    return load_image(Path(image), m.image_size, m.channels, m.light_on_dark, invert, fit)


def run_noise(image: Path, ts: list[int], c: Common) -> Path:
    run = Run("noise", c, Path(image).stem)
    x0 = _input(run, image)
    noisy = ops.noise(run.model, x0, ts, c.seed)
    run.image(x0, "input.png")
    for k, x in zip(ts, noisy):
        run.image(x, f"noisy_t{k}.png")
    run.grid(torch.cat([x0, *noisy]), "noise.png", nrow=len(ts) + 1)
    run.upsampled("noisy", x0, image=image, ts=ts)
    return run.finish(image=str(image), t=ts)


def run_denoise(image: Path, ts: list[int], method: str, blur: tuple[int, float], c: Common) -> Path:
    methods = ("blur", "one_step", "iterative") if method == "all" else (method.replace("-", "_"),)
    if any(m not in ("blur", "one_step", "iterative") for m in methods):
        raise UserError(f"unknown method {method!r}; choose one of: blur, one-step, iterative, all")
    run = Run("denoise", c, Path(image).stem)
    x0 = _input(run, image)
    cond = condition_of(run.model, c.prompt, c.class_)
    rows = []
    for k in ts:
        res = ops.denoise(run.model, x0, k, cond, c.guidance, c.seed, c.sampling, blur)
        run.image(res["noisy"], f"noisy_t{k}.png")
        for m in methods:
            run.image(res[m], f"{m}_t{k}.png")
            if m != "blur":
                run.upsampled(f"{m}_t{k}", res[m], cond)
        if "iterative" in methods:
            run.grid(res["strip"][:, 0], f"strip_t{k}.png", nrow=len(res["strip"]))
        rows.append(torch.cat([x0, res["noisy"], *(res[m] for m in methods)]))
    run.grid(torch.cat(rows), "comparison.png", nrow=len(methods) + 2)
    return run.finish(image=str(image), t=ts, method=method, blur_kernel=blur[0], blur_sigma=blur[1],
                      columns=["original", "noisy", *methods], condition=cond)


def run_generate(n: int, gif: bool, c: Common) -> Path:
    run = Run("generate", c, _cond_stem(c))
    cond = condition_of(run.model, c.prompt, c.class_)
    frames: list[torch.Tensor] = []
    strip = ops.Strip(5)

    def callback(d: dict) -> None:
        strip(d)
        if gif:
            frames.append(run.model.to_unit_range(d["x"].float().cpu()).clamp(0, 1))

    x = ops.generate(run.model, n, cond, c.guidance, c.seed, c.sampling, callback)
    for i in range(n):
        run.image(x[i:i + 1], f"sample_{i:02d}.png")
    run.grid(x, "samples.png", nrow=min(n, 10))
    run.upsampled("sample", x, cond)
    strip_frames = [run.model.to_unit_range(f.float().cpu()).clamp(0, 1) for f in strip.frames]
    run.grid(torch.stack([*strip_frames, x], 1).flatten(0, 1), "strip.png", nrow=len(strip_frames) + 1)
    if gif:
        run.gif(frames, "samples.gif", nrow=min(n, 10))
    return run.finish(n=n, condition=cond)


def run_edit(image: Path, i_starts: list[int], fit: bool | None, invert: str, c: Common) -> Path:
    run = Run("edit", c, Path(image).stem)
    fit = run.model.light_on_dark if fit is None else fit
    x0 = _input(run, image, fit, invert)
    cond = condition_of(run.model, c.prompt, c.class_)
    results = ops.edit(run.model, x0, i_starts, cond, c.guidance, c.seed, c.sampling)
    run.image(x0, "input.png")
    for i, x in results.items():
        run.image(x, f"edit_i{i:02d}.png")
        run.upsampled(f"edit_i{i:02d}", x, cond)
    run.grid(torch.cat([*results.values(), x0]), "edits.png", nrow=len(results) + 1)
    ts = c.sampling.timesteps(run.model.schedule.T)
    return run.finish(image=str(image), i_start=i_starts, t_start=[ts[i] for i in i_starts], fit=fit,
                      invert=invert, condition=cond, columns=[*(f"i_start={i}" for i in i_starts), "input"])


def run_inpaint(image: Path, mask: Path | None, box: list[int] | None, c: Common) -> Path:
    if (mask is None) == (box is None):
        raise UserError("give --mask MASK or --box x0 y0 x1 y1 (one of them)")
    run = Run("inpaint", c, Path(image).stem)
    x0 = _input(run, image)
    size = run.model.image_size
    m = box_mask(box, size) if box is not None else load_mask(Path(mask), size, image_size_of(Path(image)))
    cond = condition_of(run.model, c.prompt, c.class_)
    x = ops.inpaint(run.model, x0, m, cond, c.guidance, c.seed, c.sampling)
    run.image(x0, "input.png")
    run.image(m.expand_as(x0), "mask.png")
    run.image(x, "inpainted.png")
    run.grid(torch.cat([x0, m.expand_as(x0), x0 * (1 - m), x]), "comparison.png", nrow=4)
    run.upsampled("inpainted", x, cond, image=image, mask=m)
    return run.finish(image=str(image), mask=str(mask) if mask else None, box=box, condition=cond,
                      columns=["input", "mask", "kept", "inpainted"])


def run_anagram(prompts: list[str], views: list[str], n: int, c: Common) -> Path:
    from fundiff.core.views import make_view

    views = views or ["identity", "flip"]
    if views[0] != "identity":
        views = ["identity", *views]
    run = Run("anagram", c, "-".join(prompts).replace(" ", "_")[:60])
    conds = [run.model.check_condition(p) for p in prompts]
    x = ops.anagram(run.model, conds, views, n, c.guidance, c.seed, c.sampling)
    shown = [make_view(v, run.model.image_size).view(x) for v in views]
    for v, img in zip(views, shown):
        for i in range(n):
            run.image(img[i:i + 1], f"anagram_{i:02d}_{v}.png")
    run.grid(torch.stack(shown, 1).flatten(0, 1), "anagram.png", nrow=len(views))
    run.upsampled("anagram", x, conditions=conds, views=views)
    return run.finish(prompts=prompts, conditions=conds, views=views, n=n, columns=views)


def run_hybrid(low: str, high: str, mid: str | None, n: int, kernel: int, sigmas: list[float], c: Common) -> Path:
    prompts = [low, high] if mid is None else [low, mid, high]
    if mid is not None and len(sigmas) == 1:
        sigmas = [sigmas[0], sigmas[0] / 2]
    run = Run("hybrid", c, "-".join(prompts).replace(" ", "_")[:60])
    conds = [run.model.check_condition(p) for p in prompts]
    x = ops.hybrid(run.model, conds, n, kernel, sigmas, c.guidance, c.seed, c.sampling)
    far = ops.lowpass_view(x, kernel, max(sigmas))
    for i in range(n):
        run.image(x[i:i + 1], f"hybrid_{i:02d}.png")
    run.grid(torch.stack([x, far], 1).flatten(0, 1), "hybrid.png", nrow=2)
    run.upsampled("hybrid", x, conditions=conds, kernel=kernel, sigmas=sigmas)
    return run.finish(low=low, mid=mid, high=high, conditions=conds, n=n, kernel=kernel, sigmas=sigmas,
                      columns=["hybrid", f"low-pass (sigma {max(sigmas):g}, as seen from far)"])


def _cond_stem(c: Common) -> str:
    if c.class_ is not None:
        return f"class{c.class_}"
    return (c.prompt or "unconditional").replace(" ", "_")[:40]
