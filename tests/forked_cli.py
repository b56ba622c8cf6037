"""A clean parent for the fault tests' forked ``fundiff`` runs.

The fault tests start many short runs of the console script. Forking them from pytest's own worker copies whatever
that worker holds at the moment: threads and thread pools other tests left behind, and locks those threads held. On
a CI machine two such children hung for over 300 s. So the runs are forked from a multiprocessing *forkserver*: a
fresh, single-threaded process that imports this module once (fundiff, torch and matplotlib warmed) and forks every
run from that state; each run sets torch to one thread and turns tqdm's monitor thread off.
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
import traceback
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot  # noqa: E402, F401
import torch  # noqa: E402
import torch._dynamo  # noqa: E402, F401 - Adam imports it on first use
from tqdm import tqdm  # noqa: E402

import fundiff.partb.all_figures  # noqa: E402, F401
import fundiff.report.build  # noqa: E402, F401
import fundiff.report.html  # noqa: E402, F401
import fundiff.report.sections  # noqa: E402, F401
import fundiff.train.preview  # noqa: E402, F401
import fundiff.train.session  # noqa: E402, F401
from fundiff.cli.app import main  # noqa: E402

LOADED_IN = os.getpid()
"""The process that imported this module: the forkserver, for a run forked from it."""


def context() -> multiprocessing.context.BaseContext:
    """The forkserver context, its server started with this module preloaded (``tests/`` put on its path)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    here, old = str(Path(__file__).parent), os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([here, old] if old else [here])
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old
    return ctx


def run(args: list[str], cwd: str, env: dict[str, str], log: str) -> None:
    """``fundiff ARGS`` in ``cwd`` with ``env`` added, stdout and stderr to ``log``; exits with its code (99 for an
    escaped exception or a run not forked from the preloaded server). SIGUSR1 dumps every thread's stack to the log."""
    code = 1
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.stdout = sys.stderr = open(fd, "w", buffering=1, closefd=False)  # noqa: SIM115
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
        if LOADED_IN != os.getppid():
            raise RuntimeError("forked_cli was not preloaded by the forkserver: each run would import torch again")
        torch.set_num_threads(1)
        tqdm.monitor_interval = 0
        os.chdir(cwd)
        os.environ.update(env)
        sys.argv = ["fundiff", *args]
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - report anything, then exit with a code the test checks
        traceback.print_exc()
        code = 99
    finally:
        try:
            sys.stdout.flush()
        finally:
            os._exit(code)
