"""Running the report's stages: skip what is done with the same config, one progress display, a log file.

A stage is done when ``DIR/.report/stages/NAME.json`` exists with the stage's config; that marker is
written (atomically) only after the stage's outputs are, so an interrupted stage runs again, and a
training stage continues from its last finished epoch (its run directory is resumable).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from fundiff.errors import UserError
from fundiff.io.files import temporary_target, write_json

STATE = ".report"


@dataclass
class Stage:
    """One unit of work: ``run(out_dir) -> result`` (JSON), reused while ``config`` is unchanged."""

    name: str
    title: str
    config: dict
    run: Callable[[Path], dict]
    out: Path
    keep_partial: bool = False
    """A training run resumes from its partial directory; other stages start clean."""


@dataclass
class StageResult:
    name: str
    config: dict
    result: dict
    seconds: float
    reused: bool = False


def marker(report_dir: Path, name: str) -> Path:
    return Path(report_dir) / STATE / "stages" / f"{name.replace('/', '__')}.json"


def read_marker(report_dir: Path, name: str) -> dict | None:
    path = marker(report_dir, name)
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def _canon(obj: object) -> object:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def stale_stages(report_dir: Path, stages: list[Stage]) -> list[str]:
    """Stages done before with another config (a different profile, data set, seed...)."""
    stale = []
    for s in stages:
        m = read_marker(report_dir, s.name)
        if m is not None and m.get("config") != _canon(s.config):
            stale.append(s.name)
    return stale


PRIOR_SECONDS = 120.0
"""How many seconds of measured stages it takes to move the time estimate halfway from the profile's."""


@dataclass
class Progress:
    """``[k/n] 0:02:14 elapsed, about 0:09:40 left: TITLE`` before each stage, to the terminal and the log;
    the estimate scales the profile's per-stage seconds by how fast this machine has been so far."""

    estimates: list[float]
    log: Path
    t0: float = field(default_factory=time.perf_counter)
    done_estimate: float = 0.0
    done_seconds: float = 0.0

    def line(self, text: str) -> None:
        tqdm.write(text, file=sys.stderr)
        with open(self.log, "a") as f:
            f.write(text + "\n")

    def speed(self) -> float:
        """How much slower than the profile this machine has been: (done + W) / (estimated + W), W = PRIOR_SECONDS
        of the profile's own evidence, clamped to [1/3, 3], so the first short stages (a model load) cannot swing
        the estimate of a long run."""
        ratio = (self.done_seconds + PRIOR_SECONDS) / (self.done_estimate + PRIOR_SECONDS)
        return min(3.0, max(1 / 3, ratio))

    def left(self, k: int) -> float:
        """Seconds left before stage k starts: the profile's estimates of stages k.. scaled by :meth:`speed`."""
        return sum(self.estimates[k:]) * self.speed()

    def start(self, k: int, stage: Stage) -> None:
        elapsed = time.perf_counter() - self.t0
        self.line(f"[{k + 1}/{len(self.estimates)}] {_hms(elapsed)} elapsed, about {_hms(self.left(k))} left: "
                  f"{stage.title}")

    def finish(self, k: int, seconds: float, reused: bool) -> None:
        if not reused:
            self.done_estimate += self.estimates[k]
            self.done_seconds += seconds


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def run_stages(report_dir: Path, stages: list[Stage], estimates: dict[str, float]) -> list[StageResult]:
    """Run (or reuse) every stage in order; the stages' own prints go to the log file only."""
    log = Path(report_dir) / "report.log"
    progress = Progress([estimates.get(s.name, 30.0) for s in stages], log)
    results = []
    for k, stage in enumerate(stages):
        res = _reused(report_dir, stage)
        if res is None:
            progress.start(k, stage)
            res = _run_one(report_dir, stage, log)
            progress.line(f"      done in {res.seconds:.0f} s: {stage.name}")
        else:
            progress.line(f"[{k + 1}/{len(stages)}] reused (same settings): {stage.title}")
        progress.finish(k, res.seconds, res.reused)
        results.append(res)
    progress.line(f"all {len(stages)} stages finished in {_hms(time.perf_counter() - progress.t0)}")
    return results


def _reused(report_dir: Path, stage: Stage) -> StageResult | None:
    m, config = read_marker(report_dir, stage.name), _canon(stage.config)
    if m is not None and m.get("config") == config:
        return StageResult(stage.name, config, m["result"], m["seconds"], reused=True)
    return None


def _run_one(report_dir: Path, stage: Stage, log: Path) -> StageResult:
    config = _canon(stage.config)
    if not stage.keep_partial and stage.out.exists():
        shutil.rmtree(stage.out) if stage.out.is_dir() else stage.out.unlink()
    t0 = time.perf_counter()
    with open(log, "a") as f, contextlib.redirect_stdout(f):
        result = stage.run(stage.out)
    seconds = round(time.perf_counter() - t0, 1)
    if result.get("status") == "failed":  # e.g. DeepFloyd weights that did not load: try again next time
        return StageResult(stage.name, config, _canon(result), seconds)
    write_json(marker(report_dir, stage.name), {"config": config, "result": _canon(result), "seconds": seconds,
                                                "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    return StageResult(stage.name, config, _canon(result), seconds)


def guard_report_dir(report_dir: Path, stages: list[Stage], force: bool) -> None:
    """Refuse a non-empty directory that is not a report, or a report made with other settings, unless
    ``force`` (which then removes what fundiff made there and starts over)."""
    d = Path(report_dir)
    if d.exists() and not d.is_dir():
        raise UserError(f"--out {d} is a file")
    if not d.is_dir() or all(temporary_target(p.name) is not None for p in d.iterdir()):
        return  # nothing there but what a kill may leave of a start (a write test, a cut-off write)
    is_report = (d / STATE).is_dir()
    stale = stale_stages(d, stages) if is_report else []
    if force:
        if is_report:
            for name in ("runs", "partb", "parta", "deepfloyd", STATE, "assets"):
                shutil.rmtree(d / name, ignore_errors=True)
        return
    if not is_report:
        raise UserError(f"{d} is not empty and holds no fundiff report; choose another --out or pass --force")
    if stale:
        listed = ", ".join(stale[:3]) + ("..." if len(stale) > 3 else "")
        raise UserError(f"{d} holds a report made with other settings ({listed} differ); pass --force to rebuild "
                        "it or choose another --out")
