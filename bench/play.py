"""The playground at interactive speed, measured as a user meets it: ``fundiff play`` started as a command, each named
endpoint called through ``gradio_client`` with its defaults (the page's first Run), side by side in one run.

Prints, per operation: the seconds from the call to the answer (median and worst of ``--repeats``, after one warm-up
call) and the seconds of work the page reports; then two users calling at the same moment; then the two measures
behind the design (``fundiff.play.worker``, ``fundiff.parta.joint_guided``), each as a ratio in one run:
an edit on a second thread (torch on two threads) against the main thread, and an anagram's joint estimates against
one net call per estimate.

    python bench/play.py [--model digits] [--repeats 5]
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ENDPOINTS = ("/generate", "/denoise", "/edit", "/inpaint", "/anagram", "/hybrid")
TARGET_S = 3.0


def start(model: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "fundiff", "play", "--model", model, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        found = re.search(r"(http://127\.0\.0\.1:\d+/?)", line)
        if found:
            return proc, found.group(1)
    raise SystemExit(f"fundiff play did not start (exit {proc.wait()})")


def took(out: tuple) -> float:
    text = next(o for o in out if isinstance(o, str) and o.startswith("took"))
    return float(re.search(r"([\d.]+) s", text).group(1))


def endpoints(url: str, repeats: int) -> None:
    from gradio_client import Client

    client = Client(url, verbose=False)
    print(f"{'operation':<11} {'answer median':>14} {'worst':>7} {'work median':>12}   (s; target <= {TARGET_S:g})")
    for name in ENDPOINTS:
        client.predict(api_name=name)  # warm-up
        answers, work = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = client.predict(api_name=name)
            answers.append(time.perf_counter() - t0)
            work.append(took(out))
        ok = "ok" if max(answers) <= TARGET_S else "SLOW"
        print(f"{name[1:]:<11} {statistics.median(answers):>14.2f} {max(answers):>7.2f} "
              f"{statistics.median(work):>12.2f}   {ok}")


def two_users(url: str) -> None:
    from gradio_client import Client

    clients, seconds = [Client(url, verbose=False) for _ in range(2)], {}

    def call(i: int) -> None:
        t0 = time.perf_counter()
        clients[i].predict(api_name="/anagram")
        seconds[i] = time.perf_counter() - t0

    threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"two users at once (anagram): answered in {seconds[0]:.2f} s and {seconds[1]:.2f} s (the queue serves "
          "one, then the other)")


def threads_ratio(model: str) -> None:
    """An edit on the main thread, then on a second thread, then on the main thread again (a fresh process)."""
    code = f"""
import time, torch, fundiff
from concurrent.futures import ThreadPoolExecutor
from fundiff import parta as ops
m = fundiff.load({model!r}, "cpu")
x = torch.zeros(1, m.channels, m.image_size, m.image_size); x[..., 6:22, 12:16] = 1
def run():
    t = time.perf_counter(); ops.edit(m, x, 3); return time.perf_counter() - t
run()
main = min(run() for _ in range(3))
other = min(ThreadPoolExecutor(1).submit(run).result() for _ in range(3))
again = min(run() for _ in range(3))
print(f"{{main:.2f}} {{other:.2f}} {{again:.2f}}")
"""
    main, other, again = map(float, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                                   check=True).stdout.split())
    print(f"torch on one thread: an edit takes {main:.2f} s on the main thread, {other:.2f} s on a second thread "
          f"({other / main:.2f}x), {again:.2f} s on the main thread after that ({again / main:.2f}x)")


def joint_ratio(model: str) -> None:
    """An anagram (the page's defaults) with its estimates in two net calls per step, then one call per estimate."""
    from fundiff import parta as ops
    from fundiff.core.contract import one_by_one
    from fundiff.models import load

    m = load(model, "cpu")

    def timed() -> float:
        return min(_seconds(lambda: ops.anagram(m, [9, 2], ["identity", "flip"], 2, seed=0)) for _ in range(3))

    with ThreadPoolExecutor(1) as pool:  # all torch work on one thread, as the playground does
        joint = pool.submit(timed).result()
        original = ops.joint_guided
        ops.joint_guided = lambda mm, conds, s: one_by_one([ops.guided(mm, c, s) for c in conds])
        try:
            separate = pool.submit(timed).result()
        finally:
            ops.joint_guided = original
    print(f"illusion estimates: an anagram (2 images, 50 steps) takes {joint:.2f} s with joint net calls, "
          f"{separate:.2f} s with one call per estimate ({joint / separate:.2f}x)")


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="digits")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    proc, url = start(args.model)
    try:
        print(f"fundiff play --model {args.model} at {url}")
        endpoints(url, args.repeats)
        two_users(url)
    finally:
        proc.terminate()
        proc.wait()
    threads_ratio(args.model)
    joint_ratio(args.model)


if __name__ == "__main__":
    main()
