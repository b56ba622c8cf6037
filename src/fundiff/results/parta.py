"""Result folders of the Part A operations (``fundiff noise | denoise | generate | edit | inpaint | anagram | hybrid |
colour-hybrid``, ``fundiff parta`` and the report's DeepFloyd section): load, call :mod:`fundiff.parta`, write.

Each command writes PNGs (single images at the model's size, grids enlarged) and ``args.json`` (arguments, seed,
the resolved sampling settings, model, versions) into its output folder. With a DeepFloyd model,
``--upsample`` also writes every result through stage II at 256 px (:mod:`fundiff.results.stage2`), and a
prompt model given no prompt uses 'a high quality photo'.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import torch
import typer

from fundiff import parta as ops
from fundiff.core.bands import check_blur
from fundiff.core.colour import greyscale_component
from fundiff.core.edits import check_i_start
from fundiff.core.model import Condition, DiffusionModel
from fundiff.core.sampling import Sampling
from fundiff.core.views import make_view
from fundiff.errors import UserError
from fundiff.io.files import versions, write_json
from fundiff.io.guard import prepare_output
from fundiff.io.images import box_mask, image_size_of, load_image, load_mask, save_image
from fundiff.io.pictures import save_gif, save_grid
from fundiff.models import load
from fundiff.models.deepfloyd.prompts import DEFAULT_PROMPT
from fundiff.models.deepfloyd.stage1 import DeepFloydModel
from fundiff.results import stage2
from fundiff.results.settings import ModelSpec, StageTwo


def slug(text: str, limit: int = 40) -> str:
    """A safe file-name part: lower-case letters, digits and underscores only."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit] or "empty"


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


ILLUSIONS = ("anagram", "hybrid", "colour-hybrid")
"""Commands that sample with the model's illusion defaults (:meth:`DiffusionModel.illusions`)."""


class Run:
    """One command's run: the model, the resolved sampling settings, the output folder, and args.json."""

    def __init__(self, command: str, m: ModelSpec, asked: Sampling, seed: int, out: Path | None, force: bool,
                 up: StageTwo | None, stem: str, n: int = 1) -> None:
        self.command, self.seed, self.up = command, seed, up or StageTwo()
        self.t0 = time.perf_counter()
        self.model = load(m.model, m.device, prompt_cache=m.prompt_cache, dtype=m.dtype, offload=m.offload)
        self.sampling = ops.settings(self.model, asked, illusion=command in ILLUSIONS)
        if self.up.steps_2 is not None:
            self.up.upsample = True
        if self.up.upsample and not isinstance(self.model, DeepFloydModel):
            raise UserError(f"--upsample runs DeepFloyd's stage II; model {self.model.name} has none")
        ops.check_count(self.model, n, "--n")
        default = Path("outputs") / f"{command}-{slug(stem, 60)}-{_settings_tag(asked)}s{seed}"
        self.out, self.force, self._dir = out if out is not None else default, force, None
        self.files: list[str] = []
        self.stage_2 = None
        if self.up.upsample:  # load (and check) stage II now, so its errors come before minutes of stage I
            from fundiff.results.stage2 import stage_2

            stage_2(self)

    @property
    def dir(self) -> Path:
        """The output folder, checked (:func:`~fundiff.io.guard.prepare_output`) the first time it is asked for."""
        if self._dir is None:
            self._dir = prepare_output(self.out, self.force)
        return self._dir

    def begin(self) -> None:
        """Every input is checked: make sure the output folder can take the files, before any work."""
        _ = self.dir

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

    def finish(self, **args: object) -> Path:
        stage_2 = {"stage_2": self.stage_2.describe(), "steps_2": self.up.steps_2} if self.stage_2 is not None else {}
        seconds = round(time.perf_counter() - self.t0, 1)
        write_json(self.dir / "args.json", {
            "command": self.command, "args": args, "seed": self.seed, "guidance": self.sampling.guidance,
            "sampling": self.sampling.to_dict(), "model": self.model.describe(), **stage_2, "files": self.files,
            "seconds": seconds, "versions": versions()})
        typer.echo(f"wrote {len(self.files)} images and args.json to {self.dir} in {seconds:.1f} s")
        return self.dir


def _settings_tag(asked: Sampling) -> str:
    """'g3-steps50-' for the sampling options given (empty when none), so other settings get another folder."""
    given = {k: v for k, v in asked.to_dict().items() if v is not None}
    short = {"guidance": "g", "guidance_interval": "gi", "sampler": "", "steps": "steps", "stride": "stride",
             "variance": "var-", "clip": "clip", "classifier_scale": "cs"}
    parts = []
    for k, v in given.items():
        v = "-".join(f"{x:g}" for x in v) if isinstance(v, list) else (("" if v else "no") if k == "clip" else v)
        parts.append(f"{short[k]}{v:g}" if isinstance(v, float) else f"{short[k]}{v}")
    return "".join(f"{slug(p, 20)}-" for p in parts)


def _input(run: Run, image: Path, fit: bool = False, invert: str = "auto") -> torch.Tensor:
    m = run.model
    return load_image(Path(image), m.image_size, m.channels, m.light_on_dark, invert, fit)


def run_noise(image: Path, ts: list[int] | None, run: Run) -> Path:
    T = run.model.schedule.T
    ts = [ops.check_timestep(run.model, k) for k in ts or [T // 4, T // 2, 3 * T // 4]]
    x0 = _input(run, image)
    run.begin()
    noisy = ops.noise(run.model, x0, ts, run.seed)
    run.image(x0, "input.png")
    for k, x in zip(ts, noisy):
        run.image(x, f"noisy_t{k}.png")
    run.grid(torch.cat([x0, *noisy]), "noise.png", nrow=len(ts) + 1)
    if run.up.upsample:
        stage2.noise_256(run, image, ts)
    return run.finish(image=str(image), t=ts)


def run_denoise(image: Path, ts: list[int] | None, method: str, blur: tuple[int, float], cond_args: tuple,
                run: Run) -> Path:
    methods = ("blur", "one_step", "iterative") if method == "all" else (method.replace("-", "_"),)
    if any(m not in ("blur", "one_step", "iterative") for m in methods):
        raise UserError(f"unknown method {method!r}; choose one of: blur, one-step, iterative, all")
    T = run.model.schedule.T
    ts = [ops.check_timestep(run.model, k) for k in ts or [T // 4, T // 2, 3 * T // 4]]
    check_blur(*blur, run.model.image_size)
    x0 = _input(run, image)
    cond = condition_of(run.model, *cond_args)
    run.begin()
    rows = []
    for k in ts:
        res = ops.denoise(run.model, x0, k, cond, seed=run.seed, sampling=run.sampling, blur=blur, progress=True)
        run.image(res["noisy"], f"noisy_t{k}.png")
        for m in methods:
            run.image(res[m], f"{m}_t{k}.png")
            if m != "blur" and run.up.upsample:
                stage2.upsample_images(run, f"{m}_t{k}", res[m], cond)
        if "iterative" in methods:
            run.grid(res["strip"][:, 0], f"strip_t{k}.png", nrow=len(res["strip"]))
        rows.append(torch.cat([x0, res["noisy"], *(res[m] for m in methods)]))
    run.grid(torch.cat(rows), "comparison.png", nrow=len(methods) + 2)
    return run.finish(image=str(image), t=ts, method=method, blur_kernel=blur[0], blur_sigma=blur[1],
                      columns=["original", "noisy", *methods], condition=cond)


def run_generate(n: int, gif: bool, cond_args: tuple, run: Run) -> Path:
    cond = condition_of(run.model, *cond_args)
    run.begin()
    frames: list[torch.Tensor] = []
    ks = run.sampling.timesteps(run.model.schedule.T)
    strip = ops.Strip(len(ks), max(5, len(ks) // 6))

    def callback(d: dict) -> None:
        strip(d)
        if gif:
            frames.append(run.model.to_unit_range(d["x"].float().cpu()).clamp(0, 1))

    part0 = _part0(run)
    if part0:  # Part 0 as IFPipeline makes it (timesteps, thresholding, draws); stage II as IFSuperResolutionPipeline
        from fundiff.models.deepfloyd.pipeline import text_to_image

        x = text_to_image(run.model, cond, n, run.sampling.steps, run.sampling.guidance, run.seed, callback)
    else:
        x = ops.generate(run.model, cond, n, seed=run.seed, sampling=run.sampling, callback=callback, progress=True)
    for i in range(n):
        run.image(x[i:i + 1], f"sample_{i:02d}.png")
    run.grid(x, "samples.png", nrow=min(n, 10))
    if run.up.upsample:
        (stage2.upsample_part0 if part0 else stage2.upsample_images)(run, "sample", x, cond)
    strip_frames = [run.model.to_unit_range(f.float().cpu()).clamp(0, 1) for f in strip.frames]
    run.grid(torch.stack([*strip_frames, x], 1).flatten(0, 1), "strip.png", nrow=len(strip_frames) + 1)
    if gif:
        run.gif(frames, "samples.gif", nrow=min(n, 10))
    return run.finish(n=n, condition=cond, **({"path": "IFPipeline"} if part0 else {}))


def _part0(run: Run) -> bool:
    """Part 0: DeepFloyd given --steps-1 / --steps and no sampling option the pipelines lack (--sampler ddim,
    --variance, --guidance-interval); then the pipelines' timesteps and thresholding replace the Part A loop's."""
    s = run.sampling
    return (isinstance(run.model, DeepFloydModel) and s.steps is not None and s.sampler == "ddpm"
            and s.variance == "learned" and tuple(s.guidance_interval or (0.0, 1.0)) == (0.0, 1.0))


def run_edit(image: Path, i_starts: list[int] | None, fit: bool | None, invert: str, cond_args: tuple,
             run: Run) -> Path:
    fit = run.model.mnist_framing if fit is None else fit  # digit models: drawings framed like MNIST digits
    x0 = _input(run, image, fit, invert)
    cond = condition_of(run.model, *cond_args)
    i_starts = i_starts or ops.default_i_starts(run.model, run.sampling)
    for i in i_starts:
        check_i_start(ops.timesteps(run.model, run.sampling), i)
    run.begin()
    results = ops.edit(run.model, x0, cond, i_starts, seed=run.seed, sampling=run.sampling, progress=True)
    run.image(x0, "input.png")
    for i, x in results.items():
        run.image(x, f"edit_i{i:02d}.png")
        if run.up.upsample:
            stage2.upsample_images(run, f"edit_i{i:02d}", x, cond)
    run.grid(torch.cat([*results.values(), x0]), "edits.png", nrow=len(results) + 1)
    ts = run.sampling.timesteps(run.model.schedule.T)
    return run.finish(image=str(image), i_start=i_starts, t_start=[ts[i] for i in i_starts], fit=fit,
                      invert=invert, condition=cond, columns=[*(f"i_start={i}" for i in i_starts), "input"])


def run_inpaint(image: Path, mask: Path | None, box: list[int] | None, cond_args: tuple, run: Run) -> Path:
    x0 = _input(run, image)
    size = run.model.image_size
    m = box_mask(box, size) if box is not None else load_mask(Path(mask), size, image_size_of(Path(image)))
    cond = condition_of(run.model, *cond_args)
    ops.check_mask(m)
    run.begin()
    x = ops.inpaint(run.model, x0, m, cond, seed=run.seed, sampling=run.sampling, progress=True)
    run.image(x0, "input.png")
    run.image(m.expand_as(x0), "mask.png")
    run.image(x, "inpainted.png")
    run.grid(torch.cat([x0, m.expand_as(x0), x0 * (1 - m), x]), "comparison.png", nrow=4)
    if run.up.upsample:
        stage2.upsample_inpainted(run, "inpainted", x, cond, image, m)
    return run.finish(image=str(image), mask=str(mask) if mask else None, box=box, condition=cond,
                      columns=["input", "mask", "kept", "inpainted"],
                      **({"columns_256": list(stage2.INPAINT_256)} if run.up.upsample else {}))


def run_anagram(prompts: list[str], views: list[str], n: int, run: Run) -> Path:
    views = views or ["flip"]
    if views[0] != "identity":
        views = ["identity", *views]
    conds = [run.model.check_condition(p) for p in prompts]
    ops.check_anagram(run.model, conds, views)
    run.begin()
    x = ops.anagram(run.model, conds, views, n, seed=run.seed, sampling=run.sampling, progress=True)
    shown = [make_view(v, run.model.image_size).view(x) for v in views]
    for v, img in zip(views, shown):
        for i in range(n):
            run.image(img[i:i + 1], f"anagram_{i:02d}_{v}.png")
    run.grid(torch.stack(shown, 1).flatten(0, 1), "anagram.png", nrow=len(views))
    if run.up.upsample:
        stage2.upsample_anagram_images(run, "anagram", x, conds, views)
    return run.finish(prompts=prompts, conditions=conds, views=views, n=n, columns=views)


def run_hybrid(prompts: list[str], n: int, kernel: int, sigmas: list[float] | None, run: Run) -> Path:
    conds = [run.model.check_condition(p) for p in prompts]
    sigmas = ops.check_hybrid(run.model, conds, kernel, sigmas)
    run.begin()
    x = ops.hybrid(run.model, conds, n, kernel, sigmas, seed=run.seed, sampling=run.sampling, progress=True)
    far = ops.lowpass_view(x, kernel, max(sigmas))
    for i in range(n):
        run.image(x[i:i + 1], f"hybrid_{i:02d}.png")
    run.grid(torch.stack([x, far], 1).flatten(0, 1), "hybrid.png", nrow=2)
    if run.up.upsample:
        stage2.upsample_hybrid_images(run, "hybrid", x, conds, kernel, sigmas)
    low, *mid, high = prompts
    return run.finish(low=low, mid=mid[0] if mid else None, high=high, conditions=conds, n=n, kernel=kernel,
                      sigmas=sigmas, columns=["hybrid", f"low-pass (sigma {max(sigmas):g}, as seen from far)"])


def run_colour_hybrid(prompts: list[str], n: int, run: Run) -> Path:
    """A colour hybrid (:func:`fundiff.parta.colour_hybrid`): each image, and a grid of image and greyscale version
    (what the grey prompt should read as); with --upsample the same at 256 px."""
    conds = ops.check_colour_hybrid(run.model, prompts)
    run.begin()
    x = ops.colour_hybrid(run.model, conds, n, seed=run.seed, sampling=run.sampling, progress=True)
    for i in range(n):
        run.image(x[i:i + 1], f"colour_hybrid_{i:02d}.png")
    run.grid(torch.stack([x, greyscale_component(x)], 1).flatten(0, 1), "colour_hybrid.png", nrow=2)
    if run.up.upsample:
        stage2.upsample_colour_hybrid_images(run, "colour_hybrid", x, conds)
    grey, colour = prompts
    return run.finish(grey=grey, colour=colour, conditions=conds, n=n,
                      columns=["colour hybrid", "greyscale (as the grey prompt should read)"])
