"""One thread for all of the playground's torch work (loading the model and every operation).

A web server answers each request on whichever of its threads is free. If torch ran there, every such thread that
ever computed would keep its own OpenMP team, and the idle teams' spinning threads slow the busy one down: on this
2-core machine an edit of the digit model took 0.98 s on the main thread and 1.85 s on a second thread
(``python bench/play.py``). So the page's handlers hand their work to this single thread and wait for it; Gradio's
queue already serves one operation at a time.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class TorchWorker:
    """``worker.run(fn, *args)``: ``fn(*args)`` on the one torch thread, its result (or exception) here."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fundiff-torch")

    def run(self, fn: Callable[..., T], *args: object) -> T:
        """In the caller's context (Gradio finds the request's progress bar through context variables)."""
        return self._pool.submit(contextvars.copy_context().run, fn, *args).result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
