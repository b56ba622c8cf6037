"""``fundiff report``: the stages of a profile, run or reused in order, then the page.

Layout of the report directory::

    index.html, assets/       the page and its KaTeX (no network needed)
    report.json, report.log   what ran, with which settings, how long; everything the stages printed
    runs/NAME/                Part B training runs (resumable), their evaluations inside
    partb/NAME/               Part B figures of each run, and the learning-rate comparison
    parta/SECTION/            Part A on the shipped digit model
    parta/evaluate/           judge-measured rates of each installed shipped model (parta_eval.json, MODEL/)
    deepfloyd/                Part A on DeepFloyd IF, when --deepfloyd is given and loads
    .report/stages/*.json     one marker per finished stage (its config and result)
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict
from pathlib import Path

import typer

from fundiff.errors import UserError, os_advice
from fundiff.evaluate.runs import default_judge_path
from fundiff.io.files import check_writable, remove_temporaries, versions, write_json
from fundiff.partb.figures import loss_comparison
from fundiff.report import parta_stages as pa
from fundiff.report import partb
from fundiff.report.estimate import estimates
from fundiff.report.options import ReportOptions
from fundiff.report.profiles import Profile, get_profile
from fundiff.report.runner import STATE, Stage, guard_report_dir, run_stages

DATASETS = ("mnist", "fashion")




def partb_stages(o: ReportOptions, p: Profile) -> list[Stage]:
    """Judge, then per run: train, figures, and (class runs) evaluation; then the learning-rate comparison."""
    out, data = Path(o.out), {"data": o.data, "data_dir": str(o.data_dir) if o.data_dir else None}
    jpath = default_judge_path(o.data, o.data_dir)
    stages = [Stage("judge", "the digit judge (a small classifier) for accuracy and Frechet distance", data,
                    lambda _: partb.judge(o.data, o.data_dir), jpath, keep_partial=True)] \
        if any(r.evaluate for r in p.runs) else []
    for r in p.runs:
        run_dir, cfg = out / "runs" / r.name, {**r.config(), **data}
        stages.append(Stage(f"train/{r.name}", f"train {r.name} ({_describe(r.config())})", cfg,
                            functools.partial(partb.train, r, o.data, o.data_dir, device=o.device), run_dir,
                            keep_partial=True))
        if r.draw:
            stages.append(Stage(f"figures/{r.name}", f"figures of {r.name}", {**cfg, "seed": o.seed},
                                lambda d, rd=run_dir: partb.figures(rd, d, o.seed, o.device), out / "partb" / r.name))
        if r.evaluate:
            steps = p.eval_steps(r.objective)
            ecfg = {**cfg, "per_class": p.eval_per_class, "steps": steps, "seed": o.seed}
            stages.append(Stage(f"evaluate/{r.name}", f"evaluate {r.name}: judge accuracy, Frechet distance", ecfg,
                                lambda _, rd=run_dir, s=steps: partb.evaluate(rd, p.eval_per_class, s, o.seed,
                                                                               o.device),
                                run_dir, keep_partial=True))
    lr_runs = [out / "runs" / n for n in ("class-flow", "class-flow-constant-lr", "class-flow-constant-lr-3e-3")]
    if any(p.run(n.name) is None for n in lr_runs):
        return stages
    stages.append(Stage("figures/learning-rate", "loss curves with and without the learning-rate scheduler",
                        {n.name: p.run(n.name).config() for n in lr_runs},
                        lambda d: {"figures": [loss_comparison(lr_runs, d)]}, out / "partb" / "learning-rate"))
    return stages


def _describe(cfg: dict) -> str:
    over = ", ".join(f"{k} {v}" for k, v in cfg["overrides"].items() if k != "sample_epochs")
    return f"{cfg['model']}/{cfg['objective']}, {cfg['recipe']} recipe" + (f", {over}" if over else "")


def all_stages(o: ReportOptions, p: Profile) -> list[Stage]:
    stages = pa.digit_stages(Path(o.out) / "parta", p, o.seed, o.device)
    stages += partb_stages(o, p)
    if o.deepfloyd:
        stages.append(pa.deepfloyd_stage(Path(o.out) / "deepfloyd", p, o.deepfloyd, o.stage_2, o.prompt_cache,
                                         o.device))
    return stages


def check_options(o: ReportOptions) -> Profile:
    if o.data not in DATASETS:
        raise UserError(f"unknown data set {o.data!r}; choose one of: {', '.join(DATASETS)}")
    if o.data_dir is not None and not Path(o.data_dir).is_dir():
        raise UserError(f"--data-dir {o.data_dir} is not a directory")
    if o.seed < 0:
        raise UserError("--seed must be >= 0")
    return get_profile(o.profile)


def run_report(o: ReportOptions) -> Path:
    """Run or reuse every stage, then write DIR/index.html; returns its path."""
    p = check_options(o)
    check_writable(Path(o.out))
    try:
        return _build(o, p)
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""
        raise UserError(f"the report in {o.out} stopped: {e.strerror or e}{where}; {os_advice(e)}, then run the "
                        "same command again: finished stages are kept") from None


def _build(o: ReportOptions, p: Profile) -> Path:
    from fundiff.report.html import render
    from fundiff.report.sections import build_page

    stages = all_stages(o, p)
    guard_report_dir(Path(o.out), stages, o.force)
    # the state folder first: a report killed at any later moment is recognised as one, and continues on a rerun
    (Path(o.out) / STATE / "stages").mkdir(parents=True, exist_ok=True)
    remove_temporaries(Path(o.out), recursive=True)  # what writes cut off by a kill left behind
    t0 = time.perf_counter()
    results = {r.name: r for r in run_stages(Path(o.out), stages, estimates(p, [s.name for s in stages]))}
    record = {"kind": "fundiff-report", "command": o.command(),
              "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(o).items()},
              "profile": p.name, "seconds_this_run": round(time.perf_counter() - t0, 1),
              "stages": {n: {"seconds": r.seconds, "reused": r.reused} for n, r in results.items()},
              "versions": versions()}
    write_json(Path(o.out) / "report.json", record)
    index = render(build_page(o, p, results, record), Path(o.out))
    typer.echo(f"wrote {index}")
    return index
