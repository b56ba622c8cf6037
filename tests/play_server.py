"""``fundiff play`` as a user starts it, in a subprocess on a free port: for the API and browser tests."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

START_TIMEOUT_S = 180  # importing Gradio and torch on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def play_server(*args: str, log: Path) -> Iterator[str]:
    """Start ``fundiff play ARGS --port FREE``, wait for the URL line it prints, yield the URL; stop it with Ctrl-C
    (SIGINT) and check it exits. Its output goes to ``log``."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-c", "from fundiff.cli.app import main; main()", "play", *args, "--port", str(port)]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=out, env=env, text=True)
    try:
        url = _wait_for_url(proc, log)
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_for_url(proc: subprocess.Popen, log: Path) -> str:
    deadline, seen = time.monotonic() + START_TIMEOUT_S, []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            line = proc.stdout.readline()
            seen.append(line)
            found = re.search(r"(http://127\.0\.0\.1:\d+/?)", line)
            if found:
                return found.group(1)
        if proc.poll() is not None:
            break
    raise AssertionError(f"fundiff play did not start (exit {proc.poll()}): {''.join(seen)}\n{log.read_text()[-2000:]}")
