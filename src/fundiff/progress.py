"""Progress bars (tqdm) over sampling steps and the elapsed time of a command."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm import tqdm

Callback = Callable[[dict], None]
_QUIET = [False]


def quiet(on: bool = True) -> None:
    """Silence :func:`say` (the other processes of a multi-process run: rank 0 speaks for all)."""
    _QUIET[0] = on


def say(text: str) -> None:
    """One line of progress for a person, printed above any running bar."""
    if not _QUIET[0]:
        tqdm.write(text)


@contextmanager
def step_bar(total: int, show: bool | str, inner: Callback | None = None, desc: str = "sampling"
             ) -> Iterator[Callback | None]:
    """A sampler callback that advances a tqdm bar of ``total`` steps (when ``show``; a string is its label)
    and then calls ``inner``; without ``show`` just ``inner``."""
    if not show:
        yield inner
        return
    bar = tqdm(total=total, desc=show if isinstance(show, str) else desc, unit="step", leave=False)

    def callback(d: dict) -> None:
        bar.update(1)
        if inner is not None:
            inner(d)

    try:
        yield callback
    finally:
        bar.close()


@contextmanager
def elapsed(echo: Callable[[str], None], what: str = "done") -> Iterator[None]:
    """Print "``what`` in 12.3 s" when the block ends."""
    t0 = time.perf_counter()
    yield
    echo(f"{what} in {time.perf_counter() - t0:.1f} s")
