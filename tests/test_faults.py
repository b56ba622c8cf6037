"""Kills at any moment. ``fundiff train`` and ``fundiff report`` are SIGKILLed at seeded random moments and stopped
inside their own file writes (FUNDIFF_FAULT_AT: a temporary just made, half written, written but not renamed,
renamed), then continued the way a person would (``--resume``, or the same command again), and their final files
must equal an uninterrupted run's byte for byte: weights, checkpoints, loss.csv, every picture (run.json and the
report's records up to their timing fields, index.html up to its times). No temporary may be left behind.

To afford many kill points on a slow machine, the runs are forked from a forkserver that has already imported
fundiff, torch and matplotlib (``forked_cli``): each child runs the console script's code (``fundiff.cli.app.main``)
with its own argv, environment, working directory and log. The uninterrupted reference run of ``fundiff train`` is a
real ``python -m fundiff.cli`` process, so the forked runs are also checked against the real command line, and one
kill inside the first checkpoint write goes through real processes too.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import forked_cli
import pytest
from helpers import write_idx

KILL_POINTS: dict[str, int] = {}
"""Kill points tried per test, printed at the end of each test (run pytest with -s to see them)."""

TRAIN = ["train", "denoiser", "--width", "8", "--epochs", "3", "--sample-epochs", "1,3", "--batch-size", "32",
         "--ema-decay", "0.9", "--device", "cpu", "--out", "run"]
REPORT = ["report", "--profile", "tiny", "--device", "cpu", "--out", "rep"]
TIMING = {"seconds", "images_per_s", "finished", "train_seconds", "seconds_this_run", "reused", "sampling_seconds"}


# ---- data, forked runs, comparisons ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def idx(tmp_path_factory, digits) -> Path:
    """600 real digits (60 per class) as IDX files: 100 training images after the 50-per-class held-out split."""
    return write_idx(tmp_path_factory.mktemp("idx"), digits)


@pytest.fixture(scope="module", autouse=True)
def forkserver() -> None:
    """Start the clean parent every run of this module is forked from (see ``forked_cli``) before any run is timed."""
    forked_cli.context()


@dataclass
class Launch:
    """One ``fundiff ARGS`` run in ``cwd``; SIGKILLed ``kill_after`` seconds after it starts (if still running)."""

    args: list
    cwd: Path
    env: dict = field(default_factory=dict)
    kill_after: float | None = None


@dataclass
class Ended:
    code: int
    killed: bool
    log: str
    seconds: float


def drive(chains: list[Generator], parallel: int = 2, timeout: float = 300) -> None:
    """Run the chains' launches, ``parallel`` children at a time: each chain yields a :class:`Launch` and is sent
    back how it :class:`Ended`, until it returns."""
    waiting = [(c, next(c)) for c in chains]
    running: dict = {}
    try:
        _drive(waiting, running, parallel, timeout)
    finally:  # a failed check leaves no child running on
        for proc in running:
            proc.kill()
            proc.join()


def _start(launch: Launch, log: Path):
    args = [str(a) for a in launch.args]
    env = {k: str(v) for k, v in launch.env.items()}
    proc = forked_cli.context().Process(target=forked_cli.run, args=(args, str(launch.cwd), env, str(log)))
    proc.start()
    return proc


def _timed_out(proc, launch: Launch, log: Path, timeout: float) -> AssertionError:
    """Every thread's stack dumped into the log (SIGUSR1, faulthandler), then the run killed."""
    os.kill(proc.pid, signal.SIGUSR1)
    proc.join(5)
    proc.kill()
    proc.join()
    tail = log.read_text(errors="replace")[-4000:]
    return AssertionError(f"fundiff {launch.args} ran over {timeout} s; its log ends:\n{tail}")


def _drive(waiting: list, running: dict, parallel: int, timeout: float) -> None:
    logs = Path(tempfile.gettempdir())
    n = 0
    while waiting or running:
        while waiting and len(running) < parallel:
            chain, launch = waiting.pop(0)
            n += 1
            log = logs / f"fundiff-fault-{os.getpid()}-{n}.log"
            running[_start(launch, log)] = (chain, launch, log, time.monotonic())
        time.sleep(0.005)
        for proc, (chain, launch, log, t0) in list(running.items()):
            elapsed = time.monotonic() - t0
            killed = False
            if proc.exitcode is None and launch.kill_after is not None and elapsed >= launch.kill_after:
                proc.kill()
                proc.join()
                killed = proc.exitcode == -signal.SIGKILL
            elif proc.exitcode is None and elapsed > timeout:
                del running[proc]
                raise _timed_out(proc, launch, log, timeout)
            if proc.exitcode is None:
                continue
            del running[proc]
            code = proc.exitcode
            proc.close()
            text = log.read_text(errors="replace")
            log.unlink()
            try:
                waiting.append((chain, chain.send(Ended(code, killed, text, elapsed))))
            except StopIteration:
                pass


def _drop_timing(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: _drop_timing(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [_drop_timing(v) for v in obj]
    return obj


def _page(text: str) -> str:
    """index.html without what differs between an uninterrupted and a resumed build: times, ran/reused, the date."""
    text = re.sub(r"\b\d+(\.\d+)? (s|min)\b", "T", text)
    text = re.sub(r"<td>(ran|reused)</td>", "<td>R</td>", text)
    text = re.sub(r"\(\d+ of (\d+) reused", r"(K of \1 reused", text)
    return re.sub(r"\b\d{4}-\d{2}-\d{2}\b", "DATE", text)


def snapshot(d: Path) -> dict[str, object]:
    """Every file under ``d``: its bytes, or for records with timing fields their JSON without them."""
    out = {}
    for p in sorted(d.rglob("*")):
        if not p.is_file() or p.name == "report.log":
            continue
        rel = p.relative_to(d).as_posix()
        if p.suffix == ".json" and (p.name in ("run.json", "report.json") or ".report/" in rel):
            out[rel] = _drop_timing(json.loads(p.read_text()))
        elif p.name == "index.html":
            out[rel] = _page(p.read_text())
        else:
            out[rel] = p.read_bytes()
    return out


def assert_same(reference: dict, d: Path, what: str) -> None:
    got = snapshot(d)
    assert sorted(got) == sorted(reference), f"{what}: other files than the uninterrupted run's"
    differ = [k for k in reference if got[k] != reference[k]]
    assert not differ, f"{what}: differs from the uninterrupted run in {differ}"


def _continue(args: list, cwd: Path, out: str, resume_flag: bool, rng: random.Random | None = None,
              window=None, kills: int = 0) -> Generator:
    """Run ``args`` in ``cwd`` until it finishes, SIGKILLing it up to ``kills`` times at random moments in
    [0, window()] (about the time the run has left); then check it finished. Returns how many kills landed, and
    the last log."""
    landed = 0
    while True:
        argv = list(args)
        run_dir = cwd / out
        if resume_flag and (run_dir / "run.json").is_file():
            argv.append("--resume")
        elif resume_flag and run_dir.is_dir() and rng is not None and rng.random() < 0.5:
            argv.append("--resume")  # an interrupted start: --resume starts it over too
        kill_after = rng.uniform(0, window()) if rng is not None and landed < kills else None
        ended = yield Launch(argv, cwd, kill_after=kill_after)
        if ended.killed:
            landed += 1
            continue
        assert ended.code == 0, f"fundiff {argv} failed after {landed} kills:\n{ended.log[-3000:]}"
        assert "Traceback" not in ended.log
        return landed, ended.log


# ---- fundiff train --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def train_reference(tmp_path_factory, idx) -> tuple[dict, float]:
    """The uninterrupted run, by a real ``python -m fundiff.cli`` process; and how long a forked run takes."""
    work = tmp_path_factory.mktemp("train-ref")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "fundiff.cli", *TRAIN, "--data-dir", str(idx)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference = snapshot(work / "run")
    forked = tmp_path_factory.mktemp("train-fork")
    timing = []

    def one() -> Generator:
        ended = yield Launch([*TRAIN, "--data-dir", idx], forked)
        assert ended.code == 0, ended.log[-3000:]
        timing.append(ended.seconds)

    drive([one()])
    assert_same(reference, forked / "run", "a forked uninterrupted run")  # also: two processes, the same bytes
    return reference, timing[0]


def test_train_survives_random_kills(tmp_path, idx, train_reference):
    """Three chains, each SIGKILLed at four random moments (kill times drawn over about the time the run has left;
    a run that finishes before its kill is checked and a new one started, at most four rounds)."""
    reference, seconds = train_reference
    results = []

    def chain(i: int) -> Generator:
        rng = random.Random(20240611 + i)
        landed = 0
        for round_ in range(4):
            cwd = tmp_path / f"chain{i}-{round_}"
            cwd.mkdir()

            def left(cwd=cwd) -> float:  # the run's time less its recorded epochs (a third each), at least a quarter
                info = cwd / "run" / "run.json"
                done = json.loads(info.read_text())["epoch"] if info.is_file() else 0
                return seconds * max(0.25, 1 - done / 3)

            n, _ = yield from _continue([*TRAIN, "--data-dir", idx], cwd, "run", True, rng, left, kills=4 - landed)
            assert_same(reference, cwd / "run", f"chain {i}, round {round_} ({n} kills)")
            landed += n
            if landed >= 4:
                break
        results.append(landed)

    drive([chain(i) for i in range(3)])
    KILL_POINTS["train, random moments"] = sum(results)
    print(f"\nfundiff train: {sum(results)} random SIGKILLs in {len(results)} chains, all resumed to the same bytes")
    assert sum(results) >= 9, results


TRAIN_WRITES = [
    "open:checkpoint_000.safetensors",      # the very first file: only its empty temporary exists
    "replaced:checkpoint_000.safetensors",  # the first checkpoint written, no run.json yet
    "partial:run.json:1",                   # half of the first run.json
    "replaced:run.json:2",                  # epoch 1 recorded, its pictures not drawn yet
    "partial:epoch_001.png",                # inside the epoch-1 preview
    "replaced:epoch_001.png",               # preview drawn, loss curve not
    "written:checkpoint_002.safetensors",   # the epoch-2 checkpoint written, not renamed
    "partial:loss.csv:3",                   # half of epoch 2's loss log
    "replaced:epoch_003.safetensors",       # the last weights written, their checkpoint not
    "replaced:run.json:4",                  # the last epoch recorded as done, its pictures not drawn
    "partial:loss.png:2",                   # inside the last loss curve
    "written:run.json:5",                   # the closing save
]


def test_train_survives_kills_inside_its_writes(tmp_path, idx, train_reference):
    reference, _ = train_reference
    seen = []

    def chain(i: int, point: str) -> Generator:
        cwd = tmp_path / f"w{i}"
        cwd.mkdir()
        ended = yield Launch([*TRAIN, "--data-dir", idx], cwd, env={"FUNDIFF_FAULT_AT": point})
        assert ended.code == 137, f"{point} was never reached:\n{ended.log[-2000:]}"
        _, log = yield from _continue([*TRAIN, "--data-dir", idx], cwd, "run", True)
        assert_same(reference, cwd / "run", f"killed at {point}")
        seen.append((point, log))

    drive([chain(i, p) for i, p in enumerate(TRAIN_WRITES)])
    KILL_POINTS["train, inside writes"] = len(seen)
    starts = [p for p, log in seen if "found an interrupted start" in log or "nothing to resume" in log]
    assert set(starts) >= {"open:checkpoint_000.safetensors", "replaced:checkpoint_000.safetensors",
                           "partial:run.json:1"}, starts
    print(f"\nfundiff train: {len(seen)} kills inside its own writes, all resumed to the same bytes")


def test_train_killed_in_its_first_checkpoint_starts_over_through_the_real_cli(tmp_path, idx, train_reference):
    """The case that used to strand a folder: killed after checkpoint_000 was written, before run.json. A plain
    rerun says it found an interrupted start and starts over; the result equals the uninterrupted run."""
    reference, _ = train_reference
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", FUNDIFF_FAULT_AT="replaced:loss.csv")
    cmd = [sys.executable, "-m", "fundiff.cli", *TRAIN, "--data-dir", str(idx)]
    killed = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == 137, killed.stderr[-2000:]
    assert (tmp_path / "run" / "checkpoint_000.safetensors").is_file() and not (tmp_path / "run" / "run.json").exists()
    env.pop("FUNDIFF_FAULT_AT")
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "found an interrupted start" in again.stdout and "starting over" in again.stdout
    assert_same(reference, tmp_path / "run", "rerun after a kill in the first save")


def test_an_interrupted_start_is_only_cleared_when_it_is_all_fundiffs(tmp_path, idx):
    """A folder without run.json that holds a file train does not write is never cleared."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint_000.safetensors").write_bytes(b"x")
    (run / "notes.txt").write_text("mine")
    ends = []

    def chain() -> Generator:
        for extra in ([], ["--resume"]):
            ended = yield Launch([*TRAIN, "--data-dir", idx, *extra], tmp_path)
            ends.append(ended)

    drive([chain()])
    for e in ends:
        assert e.code == 2 and e.log.strip().splitlines()[-1].startswith("fundiff: error:"), e.log
    assert (run / "notes.txt").read_text() == "mine" and (run / "checkpoint_000.safetensors").is_file()


def test_a_full_disk_while_training_is_one_line_and_resumable(tmp_path, idx, train_reference):
    """ENOSPC in the middle of the run (at the epoch-2 checkpoint): one line that says what and what to do, exit 2;
    then --resume finishes it with the same bytes as an uninterrupted run."""
    reference, _ = train_reference
    ended = []

    def chain() -> Generator:
        full = {"FUNDIFF_FAULT_AT": "written:checkpoint_002.safetensors", "FUNDIFF_FAULT_ACTION": "enospc"}
        e = yield Launch([*TRAIN, "--data-dir", idx], tmp_path, env=full)
        ended.append(e)
        yield from _continue([*TRAIN, "--data-dir", idx], tmp_path, "run", True)

    drive([chain()])
    e = ended[0]
    last = e.log.strip().splitlines()[-1]
    assert e.code == 2 and "Traceback" not in e.log, e.log[-2000:]
    assert last.startswith("fundiff: error: training in run stopped: No space left on device"), last
    assert "checkpoint_002.safetensors" in last and "free some space" in last and "--resume" in last, last
    assert_same(reference, tmp_path / "run", "resumed after a full disk")


# ---- fundiff report -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def report_reference(tmp_path_factory, idx) -> tuple[dict, float]:
    work = tmp_path_factory.mktemp("report-ref")
    timing = []

    def one() -> Generator:
        ended = yield Launch([*REPORT, "--data-dir", idx], work)
        assert ended.code == 0, ended.log[-3000:]
        timing.append(ended.seconds)

    drive([one()])
    return snapshot(work / "rep"), timing[0]


REPORT_WRITES = [
    "partial:samples.gif",               # inside the Part A stage
    "replaced:parta__1.5.json",          # that stage's marker written
    "written:run.json:3",                # inside the training stage
    "replaced:run.json:3",               # the training recorded as done, its last pictures not drawn
    "written:katex.min.js",              # copying the page's assets
    "replaced:figures.json",             # the figures written, their marker not
    "partial:report.json",               # the record, after every stage
    "partial:index.html",                # the page itself
]


def test_report_survives_random_kills_and_kills_inside_its_writes(tmp_path, idx, report_reference):
    reference, seconds = report_reference
    random_kills, targeted = [], []

    def random_chain(i: int) -> Generator:
        rng = random.Random(1789 + i)
        landed = 0
        for round_ in range(4):
            cwd = tmp_path / f"r{i}-{round_}"
            cwd.mkdir()

            def left(cwd=cwd) -> float:  # the report's time less its finished stages (a third each), at least a quarter
                done = len(list((cwd / "rep" / ".report" / "stages").glob("*.json")))
                return seconds * max(0.25, 1 - done / 3)

            n, _ = yield from _continue([*REPORT, "--data-dir", idx], cwd, "rep", False, rng, left, kills=3 - landed)
            assert_same(reference, cwd / "rep", f"report chain {i}, round {round_} ({n} kills)")
            landed += n
            if landed >= 3:
                break
        random_kills.append(landed)

    def write_chain(i: int, point: str) -> Generator:
        cwd = tmp_path / f"w{i}"
        cwd.mkdir()
        ended = yield Launch([*REPORT, "--data-dir", idx], cwd, env={"FUNDIFF_FAULT_AT": point})
        assert ended.code == 137, f"{point} was never reached:\n{ended.log[-2000:]}"
        yield from _continue([*REPORT, "--data-dir", idx], cwd, "rep", False)
        assert_same(reference, cwd / "rep", f"report killed at {point}")
        targeted.append(point)

    drive([random_chain(i) for i in range(2)] + [write_chain(i, p) for i, p in enumerate(REPORT_WRITES)])
    KILL_POINTS["report, random moments"] = sum(random_kills)
    KILL_POINTS["report, inside writes"] = len(targeted)
    print(f"\nfundiff report: {sum(random_kills)} random SIGKILLs and {len(targeted)} kills inside its writes, all "
          "finished by a rerun with the same files")
    assert sum(random_kills) >= 4 and len(targeted) == len(REPORT_WRITES)


def test_report_full_disk_is_one_line_and_a_rerun_finishes(tmp_path, idx, report_reference):
    """ENOSPC while writing the page, and inside the training stage: one line each, that says to run the report again
    (not train's --resume), and the same command then finishes with the same files."""
    reference, _ = report_reference
    ended = {}

    def chain(point: str) -> Generator:
        cwd = tmp_path / point.split(":")[1]
        cwd.mkdir()
        e = yield Launch([*REPORT, "--data-dir", idx], cwd, env={"FUNDIFF_FAULT_AT": point,
                                                                  "FUNDIFF_FAULT_ACTION": "enospc"})
        ended[point] = e
        yield from _continue([*REPORT, "--data-dir", idx], cwd, "rep", False)
        assert_same(reference, cwd / "rep", f"report rerun after a full disk at {point}")

    drive([chain("written:index.html"), chain("written:checkpoint_001.safetensors")])
    for point, e in ended.items():
        lines = [x for x in e.log.splitlines() if "fundiff: error:" in x]
        assert e.code == 2 and "Traceback" not in e.log, e.log[-2000:]
        assert len(lines) == 1 and lines[0].startswith("fundiff: error: the report in rep stopped: No space left"), \
            lines
        assert point.split(":")[1] in lines[0] and "run the same command again" in lines[0], lines[0]
        assert "--resume" not in lines[0], lines[0]


def test_only_what_a_kill_leaves_is_taken_for_an_interrupted_start(tmp_path):
    """A folder holding nothing but a write test or a cut-off temporary is a start to go on with; anything else is
    someone's folder, left alone."""
    from fundiff.errors import UserError
    from fundiff.io.files import remove_temporaries, temporary_target
    from fundiff.report.runner import guard_report_dir
    from fundiff.train.session import _check_run_dir

    assert temporary_target(".run.json.ab_d12x9.tmp.json") == "run.json"
    assert temporary_target(".fundiff-write-test-k2j4h5g6") == ""
    assert temporary_target(".hidden.tmp") is None and temporary_target(".x.abcdefgh.tmp.png") is None
    d = tmp_path / "d"
    d.mkdir()
    (d / ".fundiff-write-test-k2j4h5g6").write_bytes(b"")
    (d / ".index.html.q1w2e3r4.tmp.html").write_text("<ht")
    guard_report_dir(d, [], force=False)  # no error: a report killed as it began
    run = tmp_path / "run"
    run.mkdir()
    (run / ".fundiff-write-test-k2j4h5g6").write_bytes(b"")
    (run / ".loss.csv.abcdefgh.tmp.csv").write_text("step,")
    assert _check_run_dir(run, resume=False) == "restart"
    (run / ".index.html.q1w2e3r4.tmp.html").write_text("<ht")  # not a file fundiff train writes
    with pytest.raises(UserError, match="holds no training run"):
        _check_run_dir(run, resume=False)
    (d / "mine.txt").write_text("keep")
    with pytest.raises(UserError, match="holds no fundiff report"):
        guard_report_dir(d, [], force=False)
    assert sorted(p.name for p in remove_temporaries(d)) == [".fundiff-write-test-k2j4h5g6",
                                                              ".index.html.q1w2e3r4.tmp.html"]
    assert [p.name for p in d.iterdir()] == ["mine.txt"]


def test_zz_kill_points_tried():
    """The number of kill points the tests above tried (shown with -s or -rA)."""
    print("\nkill points tried: " + ", ".join(f"{k}: {v}" for k, v in KILL_POINTS.items()))
    assert not KILL_POINTS or all(v > 0 for v in KILL_POINTS.values()), KILL_POINTS
