"""Part A of the page (report order 0, 1.1-1.9): the digit model's figures, DeepFloyd IF's when it ran, and the
judge-measured rates of every shipped model the evaluation stage measured (also quoted in the captions of the
anagrams and hybrids they measure)."""

from __future__ import annotations

import json
from pathlib import Path

from fundiff.evaluate.parta import ANAGRAM_VIEWS
from fundiff.report.content import figure, num, pick, records, table
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
    ev = res.get("parta/evaluate")
    return [figure(folder, with_rates(rec, ev.result if ev is not None else None)) for rec in records(r)]


def with_rates(record: dict, evaluation: dict | None) -> dict:
    """A figure record whose "measured" names rates of the evaluation stage, with those rates (each with its 95%
    CI and number of images) added to its caption; as it is when there is no evaluation or it lacks them."""
    m = record.get("measured")
    found = (evaluation or {}).get("results", {}).get(m["model"]) if m else None
    if not found or any(k not in found or w not in found[k] for k, w, _ in m["rates"]):
        return record
    rates = "; ".join(f"{label} {rate_text(found[k][w])}" for k, w, label in m["rates"])
    text = (f"Measured on the {m['model']} model by the evaluation below (Part A measured with the judge), "
            f"{pairs_text(evaluation)}, {m['what']}: {rates}.")
    return {**record, "caption": f"{record['caption']} {text}"}


def rate_text(r: dict) -> str:
    """"0.31 (95% CI 0.25-0.38, 180 images)" of a rate record {"rate", "hits", "images", "ci95"}."""
    lo, hi = r["ci95"]
    return f"{r['rate']:.2f} (95% CI {lo:.2f}-{hi:.2f}, {_count(r['images'], 'image')})"


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


ALL_PAIRS = 90
"""Ordered pairs of different classes of a 10-class model."""


def pairs_text(evaluation: dict) -> str:
    n, per = evaluation.get("pairs"), evaluation.get("per_pair")
    each = f", {_count(per, 'image')} each" if per else ""
    if n == ALL_PAIRS:
        return f"over all {ALL_PAIRS} ordered pairs{each}"
    return f"over {n} of the {ALL_PAIRS} ordered pairs (a seeded subset){each}"


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
    ("edit.png", "Class edits: per target class, two held-out images of other classes (left) and their edits."),
    ("anagram_flip.png", "Anagram examples, flip: each image upright and upside down."),
    ("anagram_rotate_90.png", "Anagram examples, rotate 90: each image upright and turned."),
    ("anagram_rotate_180.png", "Anagram examples, rotate 180: each image upright and turned half a turn."),
    ("anagram_transpose.png", "Anagram examples, transpose: each image and its mirror in the diagonal."),
    ("anagram_3view.png", "Three-view anagram examples: each image upright, turned 90 and turned 180 degrees."),
    ("hybrid.png", "Hybrid examples: each image, then from far: shrunk to a third and enlarged back, and its low-pass "
                   "copy."),
    ("drawn.png", "Pen drawings (top row), then after SDEdit from each i_start (rows)."),
    ("sklearn_8x8.png", "sklearn's 8x8 digits (top row), then after SDEdit from each i_start (rows)."),
)
RATE_COLUMNS = ("rate", "95% CI", "images")


def _rate_rows(results: dict[str, dict]) -> list[list[str]]:
    """One row per measure (the three-view and the hybrids as fundiff measures them), one column group per
    model: rate, 95% CI, images ("-" where a model lacks the measure)."""
    first = next(iter(results.values()))
    found = [k[8:] for k in first if k.startswith("anagram_") and k != "anagram_3view"]
    views = [v for v in ANAGRAM_VIEWS if v in found] + sorted(set(found) - set(ANAGRAM_VIEWS))
    h = first.get("hybrid", {})
    measures = [("class edit (SDEdit toward a class), the target read", "edit", None)]
    measures += [(f"anagram, {v.replace('_', ' ')}: both readings at once", f"anagram_{v}", "both") for v in views]
    measures += [("three-view anagram (upright, rotate 90, rotate 180): all three at once", "anagram_3view", "all"),
                 (f"hybrid: near & far, far = shrunk to {h.get('shrink_px', '?')} px and enlarged", "hybrid",
                  "both_shrunk"),
                 ("hybrid: near & far, far = the low-pass copy", "hybrid", "both_lowpass")]
    rows = []
    for label, key, what in measures:
        row = [label]
        for res in results.values():
            r = res.get(key, {})
            r = r.get(what) if what else r
            row += _rate_cells(r)
        rows.append(row)
    return rows


def _rate_cells(r: dict | None) -> list[str]:
    if not r or "ci95" not in r:
        return ["-", "-", "-"]
    lo, hi = r["ci95"]
    return [f"{r['rate']:.2f}", f"{lo:.2f}-{hi:.2f}", str(r["images"])]


def _settings_text(results: dict[str, dict], ev: dict) -> str:
    """Per model: the edit's start, the hybrid's Gaussian, the sampling defaults of the illusions."""
    parts = []
    for name, res in results.items():
        e, h = res.get("edit", {}), res.get("hybrid", {})
        parts.append(f"{name}: edits from i_start {e.get('i_start')} (t = {e.get('t_start')}), hybrid Gaussian "
                     f"kernel {h.get('kernel')}, sigma {h.get('sigma')}")
    return (f"Rates the judge measured, {pairs_text(ev)} (class edits: {ev.get('per_target')} per target class), "
            f"each with its 95% Wilson interval and number of images; anagrams and hybrids sampled as `fundiff "
            f"anagram` / `fundiff hybrid` sample by default. {'; '.join(parts)}.")


def measured(res: Results, out: Path) -> Section:
    r = res.get("parta/evaluate")
    folder = Path(out) / "parta" / "evaluate"
    s = Section("a-measured", "Part A measured with the judge", 3, text=[
        "How often the judge reads what an operation was asked for, on each shipped model that is installed: a "
        "number a picture cannot give. A hybrid is read close up (the image reads its high-pass class) and from "
        "far (its low-pass class), both at once; far is the image shrunk to a third and enlarged back, or its "
        "low-pass copy, read by the far judge (trained also on images shrunk to 7-14 px, it reads real held-out "
        "images from far about as well as sharp ones; the sharp judge reads under half of them)."])
    results = r.result.get("results", {}) if r is not None else {}
    order = r.config.get("models", []) if r is not None else []
    results = {m: results[m] for m in [*order, *sorted(results)] if m in results}
    if not results:
        s.notes.append("Not measured in this report (the profile skips the evaluation).")
        return s
    header = ["measure"] + [f"{m} {c}" for m in results for c in RATE_COLUMNS]
    s.tables.append(table(header, _rate_rows(results), _settings_text(results, r.result)))
    drawn = [[f"{name}: {label}", res[k]["images"], num(res[k]["raw_accuracy"]),
              ", ".join(f"{num(v['accuracy'])} (t = {v['t_start']})" for v in res[k]["edited"].values())]
             for name, res in results.items() for k, label in (("drawn", "pen drawings"),
                                                                ("sklearn_8x8", "sklearn 8x8 digits")) if k in res]
    if drawn:
        s.tables.append(table(["images", "count", "judge accuracy as drawn", "after unconditional SDEdit"], drawn,
                              "Crude digits (not the model's data) read by the judge before and after an SDEdit "
                              "from light noise with the null class."))
    for name in results:
        s.figures += [Figure(folder / name / f, f"{name}: {cap}") for f, cap in EVAL_PICTURES
                      if (folder / name / f).is_file()]
    return s
