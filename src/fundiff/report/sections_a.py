"""Part A of the page (report order 0, 1.1-1.9): the digit model's figures, DeepFloyd IF's when it ran."""

from __future__ import annotations

import json
from pathlib import Path

from fundiff.report.content import num, pick, table
from fundiff.report.page import Figure, Section
from fundiff.report.runner import StageResult

Results = dict[str, StageResult]

FORWARD = r"x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon,\quad \epsilon \sim \mathcal{N}(0, I)"
ONE_STEP = r"\hat x_0 = \frac{x_t - \sqrt{1 - \bar\alpha_t}\,\hat\epsilon}{\sqrt{\bar\alpha_t}}"
STRIDED = r"x_{t'} = \frac{\sqrt{\bar\alpha_{t'}}\,\beta_t}{1 - \bar\alpha_t}\,\hat x_0 + \frac{\sqrt{\alpha_t}\," \
          r"(1 - \bar\alpha_{t'})}{1 - \bar\alpha_t}\,x_t + v_\sigma,\quad \alpha_t = \frac{\bar\alpha_t}" \
          r"{\bar\alpha_{t'}},\ \beta_t = 1 - \alpha_t"
CFG = r"\epsilon = \epsilon_u + \gamma\,(\epsilon_c - \epsilon_u)"
REPAINT = r"x_t \leftarrow m \odot x_t + (1 - m) \odot \mathrm{forward}(x_{\mathrm{orig}}, t)"
ANAGRAM = r"\epsilon = \tfrac12\left(\epsilon_\theta(x_t, t, p_1) + \mathrm{flip}\big(\epsilon_\theta(" \
          r"\mathrm{flip}(x_t), t, p_2)\big)\right)"
HYBRID = r"\epsilon = \mathrm{lowpass}\big(\epsilon_\theta(x_t, t, p_1)\big) + " \
         r"\mathrm{highpass}\big(\epsilon_\theta(x_t, t, p_2)\big),\quad \mathrm{highpass} = I - \mathrm{lowpass}"

SECTIONS = (
    # id, stage section, title, formula, DeepFloyd folders (glob under deepfloyd/)
    ("a-0", "0", "0. Setup: text (class) to image", None, ["0_text_to_image/*"]),
    ("a-1-1", "1.1", "1.1 Implementing the forward process", FORWARD, ["1.1_forward"]),
    ("a-1-2", "1.2-1.3", "1.2 Classical denoising", None, []),
    ("a-1-3", "1.2-1.3", "1.3 One-step denoising", ONE_STEP, ["1.2-1.3_denoise"]),
    ("a-1-4", "1.4", "1.4 Iterative denoising", STRIDED, ["1.4_iterative"]),
    ("a-1-5", "1.5", "1.5 Diffusion model sampling", None, ["1.5_sampling"]),
    ("a-1-6", "1.6", "1.6 Classifier-free guidance (CFG)", CFG, ["1.6_cfg"]),
    ("a-1-7", "1.7", "1.7 Image-to-image translation (SDEdit)", None, ["1.7_sdedit/*"]),
    ("a-1-7-1", "1.7.1", "1.7.1 Editing hand-drawn and web images", None, ["1.7.1_web_and_drawn/*"]),
    ("a-1-7-2", "1.7.2", "1.7.2 Inpainting", REPAINT, ["1.7.2_inpaint/*"]),
    ("a-1-7-3", "1.7.3", "1.7.3 Text-conditional (class-conditional) image-to-image translation", None,
     ["1.7.3_text/*"]),
    ("a-1-8", "1.8", "1.8 Visual anagrams", ANAGRAM, ["1.8_anagram/*"]),
    ("a-1-9", "1.9", "1.9 Hybrid images", HYBRID, ["1.9_hybrid/*"]),
)
SHOWN = ("samples.png", "noise.png", "comparison.png", "edits.png", "anagram.png", "hybrid.png")
"""The 64 px pictures of each DeepFloyd folder; their 256 px stage-II versions are *_256*.png."""


def part_a(res: Results, out: Path) -> list[Section]:
    df = res.get("deepfloyd")
    ran = df is not None and df.result.get("status") == "done"
    sections = []
    for sid, stage, title, formula, folders in SECTIONS:
        digit_figs = _digit_figures(res, out, sid, stage)
        level = 4 if title.startswith("1.7.") else 3
        s = Section(sid, title, level, formulas=[formula] if formula else [], figures=digit_figs)
        if ran:
            s.figures += deepfloyd_figures(Path(out) / "deepfloyd", folders)
        elif folders:
            s.notes.append("DeepFloyd IF: not run in this report (see 'DeepFloyd IF' below for how to enable it).")
        sections.append(s)
    return sections


def _digit_figures(res: Results, out: Path, sid: str, stage: str) -> list[Figure]:
    r, folder = res.get(f"parta/{stage}"), Path(out) / "parta" / stage
    if sid == "a-1-2":
        return pick(r, folder, "blur")
    if sid == "a-1-3":
        return pick(r, folder, "one_step")
    return pick(r, folder, "")


def deepfloyd_figures(root: Path, patterns: list[str]) -> list[Figure]:
    """The 64 px result of each DeepFloyd folder, then its stage-II grid, captioned from its args.json."""
    figs = []
    for pattern in patterns:
        for folder in sorted(p for p in root.glob(pattern) if (p / "args.json").is_file()):
            args = json.loads((folder / "args.json").read_text())
            for name in [*SHOWN, "strip_t690.png", *sorted(f.name for f in folder.glob("*_256_grid.png")),
                         "sample_256.png"]:
                if (folder / name).is_file():
                    figs.append(Figure(folder / name, _df_caption(folder, name, args)))
    return figs


def _df_caption(folder: Path, name: str, args: dict) -> str:
    a, s = args.get("args", {}), args.get("sampling", {})
    what = {k: a[k] for k in ("t", "i_start", "condition", "prompts", "low", "high", "box", "columns") if a.get(k)}
    size = "256 px, stage II" if "_256" in name else "64 px, stage I"
    if "_256" in name and a.get("columns_256"):  # stage II grids with columns of their own (inpainting)
        what["columns"] = a["columns_256"]
    steps = f"{s['steps']} steps" if s.get("steps") else f"stride {s.get('stride') or 30}"
    detail = "; ".join(f"{k} {v}" for k, v in what.items())
    return (f"DeepFloyd IF, {folder.parent.name}/{folder.name} ({size}): {detail}. Seed {args.get('seed')}, CFG "
            f"gamma = {args.get('guidance') if args.get('guidance') is not None else 'default'}, {steps}.")


EVAL_PICTURES = (
    ("edit.png", "Class edits: per target class, two held-out digits of other classes (left) and their edits."),
    ("anagram_flip.png", "Anagram examples, flip: each image upright and upside down."),
    ("anagram_rotate_90.png", "Anagram examples, rotate 90: each image upright and turned."),
    ("hybrid.png", "Hybrid examples: each image and its blurred (far) copy."),
    ("drawn.png", "Pen drawings (top row), then after SDEdit from each i_start (rows)."),
    ("sklearn_8x8.png", "sklearn's 8x8 digits (top row), then after SDEdit from each i_start (rows)."),
)


def measured(res: Results, out: Path) -> Section:
    r = res.get("parta/evaluate")
    rows = []
    if r is not None:
        x = r.result["results"]
        e = x["edit"]
        rows.append([f"class edit (SDEdit toward a class from i_start {e['i_start']}, t = {e['t_start']})",
                     e["edits"], "target read", num(e["rate"])])
        for v in ("flip", "rotate_90"):
            a = x[f"anagram_{v}"]
            rows.append([f"anagram, {v.replace('_', ' ')}", a["images"], "both readings", num(a["both"])])
            rows.append([f"anagram, {v.replace('_', ' ')}", a["images"], "upright / viewed",
                         f"{num(a['upright'])} / {num(a['viewed'])}"])
        h = x["hybrid"]
        rows.append([f"hybrid (kernel {h['kernel']}, sigma {h['sigma']:g})", h["images"], "both readings",
                     num(h["both"])])
        rows.append(["hybrid", h["images"], "low on blurred / high on image",
                     f"{num(h['low_on_blurred'])} / {num(h['high_on_image'])}"])
        for k, label in (("drawn", "pen drawings"), ("sklearn_8x8", "sklearn 8x8 digits")):
            d = x[k]
            after = ", ".join(f"{num(v['accuracy'])} (t = {v['t_start']})" for v in d["edited"].values())
            rows.append([f"{label}: raw, then after unconditional SDEdit", d["images"], "judge accuracy",
                         f"{num(d['raw_accuracy'])}; {after}"])
    folder = Path(out) / "parta" / "evaluate"
    figs = [Figure(folder / f, cap) for f, cap in EVAL_PICTURES if r is not None and (folder / f).is_file()]
    return Section("a-measured", "Part A measured with the judge", 3, text=[
        "How often the digit judge reads what an operation was asked for, on the digit model: a number a "
        "picture cannot give."], tables=[table(["operation", "images", "rate of", "value"], rows)], figures=figs)
