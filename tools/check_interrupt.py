"""Interrupt ``fundiff report --out DIR`` the way a user would, then run it again, and say what happened.

    python tools/check_interrupt.py DIR SIGINT|SIGKILL SECONDS

Starts the report, sends the signal after SECONDS (SIGINT is Ctrl-C, SIGKILL is ``kill -9``), prints the
exit code, the epoch the training run in progress had saved, any temporary files left behind; then reruns the
same command and prints its exit code, its time and the stages it had to run (the rest were reused).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path


def main(out: Path, sig: signal.Signals, seconds: float) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a background shell ignores SIGINT; the child must not
    cmd = ["fundiff", "report", "--out", str(out)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(seconds)
    p.send_signal(sig)
    _, err = p.communicate()
    print("interrupted: exit", p.returncode, "| said:", "fundiff: interrupted" in err)
    for run in sorted(out.glob("runs/*/run.json")):
        info = json.loads(run.read_text())
        if info["status"] != "done":
            print(f"{run.parent.name}: saved epoch {info['epoch']} of {info['recipe']['epochs']}")
    print("temporary files left:", [str(x) for x in out.rglob("*.tmp*")])
    t0 = time.time()
    again = subprocess.run(cmd, capture_output=True, text=True)
    stages = json.loads((out / "report.json").read_text())["stages"]
    print(f"rerun: exit {again.returncode} in {time.time() - t0:.0f} s; ran:",
          [n for n, s in stages.items() if not s["reused"]])


if __name__ == "__main__":
    main(Path(sys.argv[1]), signal.Signals[sys.argv[2]], float(sys.argv[3]))
