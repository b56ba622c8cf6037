"""Helpers the section builders share: figures from stage records, settings text, number formats."""

from __future__ import annotations

from pathlib import Path

from fundiff.report.page import Figure, Table
from fundiff.report.runner import StageResult

SKIP_SETTINGS = {"runs"}


def settings_text(settings: dict) -> str:
    """{"seed": 0, "t": [75, 150]} -> "seed 0; t 75, 150" (None and bulky values left out)."""
    parts = []
    for k, v in settings.items():
        if v is None or k in SKIP_SETTINGS or isinstance(v, dict):
            continue
        if isinstance(v, list):
            v = ", ".join(str(x) if not isinstance(x, list) else "/".join(map(str, x)) for x in v)
        parts.append(f"{k.replace('_', ' ')} {v}")
    return "; ".join(parts)


def figure(folder: Path, record: dict) -> Figure:
    """A figure from a {"file", "caption", "settings"} record written into ``folder``."""
    extra = settings_text(record.get("settings", {}))
    caption = record["caption"] + (f" Settings: {extra}." if extra else "")
    return Figure(Path(folder) / record["file"], caption, alt=record["caption"])


def records(res: StageResult | None) -> list[dict]:
    if res is None:
        return []
    return res.result.get("figures", [])


def pick(res: StageResult | None, folder: Path, match: str) -> list[Figure]:
    """The stage's figures whose file name contains ``match``."""
    return [figure(folder, r) for r in records(res) if match in r["file"]]


def num(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def seconds(s: float | None) -> str:
    if s is None:
        return "n/a"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def table(header: list[str], rows: list[list[object]], caption: str = "") -> Table:
    return Table(header, [[str(c) for c in r] for r in rows], caption)
