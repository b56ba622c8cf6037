"""Part B of the page (report order 1.1-2.5), flow matching and the learning-rate ablation."""

from __future__ import annotations

from pathlib import Path

from fundiff.report.content import num, pick, seconds, table
from fundiff.report.page import Figure, Section
from fundiff.report.runner import StageResult

Results = dict[str, StageResult]

NOISE = r"z = x + \sigma\,\epsilon,\quad \epsilon \sim \mathcal{N}(0, I),\qquad " \
        r"L = \mathbb{E}_{x, \epsilon}\,\lVert D_\theta(z) - x \rVert^2"
FORWARD = r"x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon,\quad " \
          r"\bar\alpha_t = \prod_{s \le t} (1 - \beta_s),\quad \beta = \mathrm{linspace}(10^{-4}, 0.02, 300)"
EPS_LOSS = r"L = \mathbb{E}_{x_0, t, \epsilon}\,\lVert \epsilon - \epsilon_\theta(x_t, t) \rVert^2,\quad " \
           r"t \sim \mathcal{U}\{1, \dots, T\},\ T = 300"
X0_HAT = r"\hat x_0 = \frac{x_t - \sqrt{1 - \bar\alpha_t}\,\epsilon_\theta(x_t, t)}{\sqrt{\bar\alpha_t}}"
DDPM_STEP = r"x_{t-1} = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1 - \bar\alpha_t}\,\hat x_0 + " \
            r"\frac{\sqrt{\alpha_t}\,(1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t}\,x_t + \sqrt{\beta_t}\,z,\quad " \
            r"z \sim \mathcal{N}(0, I)\ (t > 1)"
CLASS_COND = r"h_{7\times7} \leftarrow c_1 \odot h_{7\times7} + t_1,\qquad h_{\mathrm{up}_1} \leftarrow c_2 \odot " \
             r"h_{\mathrm{up}_1} + t_2,\qquad c = 0 \text{ with probability } p_{\mathrm{uncond}} = 0.1"
CFG = r"\epsilon = \epsilon_u + \gamma\,(\epsilon_c - \epsilon_u),\quad \gamma = 5"
FLOW = r"x_t = (1 - t)\,x_0 + t\,x_1,\ x_0 \sim \mathcal{N}(0, I),\qquad " \
       r"L = \lVert (x_1 - x_0) - u_\theta(x_t, t) \rVert^2"
EULER = r"x \leftarrow x + \tfrac{1}{T}\,u_\theta\!\left(x, \tfrac{i}{T}\right),\quad i = 0, \dots, T - 1"


def _folder(out: Path, run: str) -> Path:
    return Path(out) / "partb" / run


def _run_text(res: Results, run: str) -> list[str]:
    r = res.get(f"train/{run}")
    if r is None:
        return []
    s, rec = r.result, r.result["recipe"]
    last = s["epoch_losses"][-1] if s["epoch_losses"] else None
    what = _what(rec)
    return [f"Run `{run}`: {what}, {rec['recipe']} recipe, D = {rec['width']}, "
            f"batch {rec['batch_size']}, Adam lr {rec['lr']:g} ({rec['lr_schedule']}), {s['epoch']} epochs "
            f"({s['steps']} steps), {rec['precision']}; trained in {seconds(s['train_seconds'])}. Loss "
            f"{num(s['first_loss'], 4)} at the first step, {num(last, 4)} mean over the last epoch."]


def _what(rec: dict) -> str:
    if rec["model"] == "denoiser":
        noise = "pure noise" if rec["pure_noise"] else f"sigma = {rec['sigma']:g}"
        return f"single-step denoiser of {noise}"
    return f"{rec['model']}-conditioned {rec['objective']}"


def _samples(res: Results, out: Path, run: str) -> list:
    """Sample grids and sampling GIFs of every saved epoch, in epoch order."""
    figs = pick(res.get(f"figures/{run}"), _folder(out, run), f"{run}_epoch_")
    return sorted(figs, key=lambda f: (f.path.stem, f.path.suffix != ".png"))  # each epoch: grid, then its GIF


def unet(res: Results, out: Path) -> Section:
    rows = []
    for name in ("denoiser", "time-ddpm", "class-ddpm"):
        r = res.get(f"train/{name}")
        if r is not None:
            rows.append([name, r.result["recipe"]["width"], _param_count(r.result["recipe"])])
    return Section("b-1-1", "1.1 Implementing the UNet", 4, text=[
        "The spec's UNet: ConvBlocks of Conv(3x3) + BatchNorm + GELU, two DownBlocks (28 -> 14 -> 7), a Flatten "
        "(AvgPool 7) to 1x1 and an Unflatten back to 7x7, two UpBlocks with skip connections, and a final 3x3 "
        "convolution; D is the hidden width."], tables=[table(["run", "D", "parameters"], rows,
                                                             "Parameter counts of the nets trained here.")])


def _param_count(recipe: dict) -> str:
    from fundiff.train.checkpoint import build_net
    from fundiff.train.recipes import Recipe

    return f"{sum(p.numel() for p in build_net(Recipe.from_dict(recipe)).parameters()):,}"


def denoiser(res: Results, out: Path) -> list[Section]:
    f, fp = res.get("figures/denoiser"), res.get("figures/denoiser-pure-noise")
    d, dp = _folder(out, "denoiser"), _folder(out, "denoiser-pure-noise")
    return [
        Section("b-1-2", "1.2 Using the UNet to train a denoiser", 4, formulas=[NOISE],
                text=["Held-out digits (rows) noised at sigma = 0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0 (columns)."],
                figures=pick(f, d, "noising")),
        Section("b-1-2-1", "1.2.1 Training", 4, text=_run_text(res, "denoiser"),
                figures=pick(f, d, "loss_") + pick(f, d, "denoiser_epoch_")),
        Section("b-1-2-2", "1.2.2 Out-of-distribution testing", 4, figures=pick(f, d, "ood")),
        Section("b-1-2-3", "1.2.3 Denoising pure noise", 4, text=[
            "A denoiser trained on z = eps (pure noise) can only learn the mean of the training digits: the "
            "loss-minimising output for an input that carries no information. One step cannot generate.",
            *_run_text(res, "denoiser-pure-noise")],
                figures=pick(fp, dp, "loss_") + pick(fp, dp, "_epoch_") + pick(fp, dp, "pure_noise")
                + pick(f, d, "pure_noise")),
    ]


def time_model(res: Results, out: Path) -> list[Section]:
    f, d = res.get("figures/time-ddpm"), _folder(out, "time-ddpm")
    return [
        Section("b-2-1", "2.1 Adding time conditioning to the UNet", 4, formulas=[FORWARD], text=[
            "t / T enters through two FCBlocks (Linear, GELU, Linear) whose outputs are added to the Unflatten "
            "output and to the first UpBlock's output."]),
        Section("b-2-2", "2.2 Training the UNet", 4, formulas=[EPS_LOSS], text=_run_text(res, "time-ddpm"),
                figures=pick(f, d, "loss_")),
        Section("b-2-3", "2.3 Sampling from the UNet", 4, formulas=[X0_HAT, DDPM_STEP],
                text=["40 samples after each saved epoch, T = 300 DDPM steps; each GIF runs t = T .. 0."],
                figures=_samples(res, out, "time-ddpm")),
    ]


def class_model(res: Results, out: Path) -> list[Section]:
    f, d = res.get("figures/class-ddpm"), _folder(out, "class-ddpm")
    return [
        Section("b-2-4", "2.4 Adding class-conditioning to the UNet", 4, formulas=[CLASS_COND],
                text=_run_text(res, "class-ddpm"), figures=pick(f, d, "loss_")),
        Section("b-2-5", "2.5 Sampling from the class-conditioned UNet", 4, formulas=[CFG],
                text=["Four samples of each digit (columns 0-9) after each saved epoch, with classifier-free "
                      "guidance; each GIF runs the sampling from noise to digits."],
                figures=_samples(res, out, "class-ddpm"), tables=[eval_table(res, ["class-ddpm"])]),
    ]


def eval_table(res: Results, runs: list[str]) -> object:
    rows = []
    for run in runs:
        e = res.get(f"evaluate/{run}")
        if e is None:
            continue
        r = e.result
        rows.append([run, r["epoch"], r["sampler"], r["steps"], f"{r['guidance']:g}", r["n_samples"],
                     num(r["accuracy"]["overall"]), num(r["frechet"], 1), num(r["frechet_real_vs_real"], 1),
                     num(r["ratio"], 2), seconds(r["sampling_seconds"])])
    return table(["run", "epoch", "sampler", "steps", "CFG", "samples", "judge accuracy", "Frechet distance",
                  "real vs real", "ratio", "sampling time"], rows,
                 "The judge (a small classifier, see Measurements) reads each sample; the Frechet distance is "
                 "measured in the judge's feature space against held-out real digits, beside the distance between "
                 "two sets of real digits of the same size (the floor).")


def flow(res: Results, out: Path) -> list[Section]:
    ft, fc = res.get("figures/time-flow"), res.get("figures/class-flow")
    return [
        Section("x-flow", "Flow matching (the later version of the assignment)", 3, formulas=[FLOW, EULER], text=[
            "The same UNets trained to predict the velocity x_1 - x_0 instead of the noise; the time-conditioned "
            "net multiplies its time embedding in (h <- h * t_1), the class-conditioned one keeps c * h + t. "
            "Sampling is Euler integration from noise (t = 0) to data (t = 1)."]),
        Section("x-flow-time", "Time-conditioned flow matching", 4, text=_run_text(res, "time-flow"),
                figures=pick(ft, _folder(out, "time-flow"), "loss_") + _samples(res, out, "time-flow")),
        Section("x-flow-class", "Class-conditioned flow matching", 4, text=_run_text(res, "class-flow"),
                figures=pick(fc, _folder(out, "class-flow"), "loss_") + _samples(res, out, "class-flow"),
                tables=[eval_table(res, ["class-flow"])]),
    ]


def _eval_samples(res: Results, out: Path, run: str) -> list[Figure]:
    """The grid of samples the judge scored (the eval folder inside the run, found from the report folder)."""
    e = res.get(f"evaluate/{run}")
    if e is None or "dir" not in e.result:
        return []
    r = e.result
    path = Path(out) / "runs" / run / Path(r["dir"]).name / "samples.png"
    return [Figure(path, f"{run}: the {r['per_class']} samples per digit (columns 0-9) the judge scored, epoch "
                         f"{r['epoch']}, {r['sampler']} {r['steps']} steps, CFG gamma = {r['guidance']:g}, seed "
                         f"{r['seed']}.")]


def learning_rate(res: Results, out: Path) -> Section:
    runs = ["class-flow", "class-flow-constant-lr", "class-flow-constant-lr-3e-3"]
    figs = pick(res.get("figures/learning-rate"), _folder(out, "learning-rate"), "loss_comparison")
    for run in runs[1:]:
        figs += _samples(res, out, run)[-2:] or _eval_samples(res, out, run)
    return Section("x-lr", "Removing the learning-rate scheduler", 3, text=[
        "The class-conditioned flow model trained three ways: with the spec's ExponentialLR (gamma = 0.1^(1/epochs)),"
        " with the same lr held constant, and with a constant lr of 3e-3 (report 004's fix)."]
        + _batch_note(res, runs[-1]) + [t for run in runs for t in _run_text(res, run)], figures=figs,
        tables=[eval_table(res, runs)])


SPEC_FLOW_BATCH = 64
"""The batch of the spec's flow recipe, at which report 004 found its constant lr of 3e-3."""


def _batch_note(res: Results, run: str) -> list[str]:
    """A word when the 3e-3 run trains at another batch than the one report 004's lr was found for."""
    r = res.get(f"train/{run}")
    batch = r.result["recipe"]["batch_size"] if r is not None else SPEC_FLOW_BATCH
    if batch >= SPEC_FLOW_BATCH:
        return []
    return [f"Report 004 found 3e-3 at the spec's batch of {SPEC_FLOW_BATCH}; this run trains at batch {batch}, with "
            f"{SPEC_FLOW_BATCH // batch}x the optimizer steps per epoch and noisier gradients, so the same lr moves "
            "the weights further and more noisily (the README measures it)."]
