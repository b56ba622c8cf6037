"""The one output-folder guard every command uses: checked before any work starts."""

from __future__ import annotations

import json
from pathlib import Path

from fundiff.errors import UserError
from fundiff.io.files import check_writable


def prepare_output(folder: Path, force: bool = False) -> Path:
    """Make sure ``folder`` can take a new run's files, before the work: not a file, not a non-empty folder
    (unless ``force``), and writable (created if missing). Every OS error becomes one line; with ``force``, the
    earlier run's files are removed only once the folder is known to be writable."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out {folder} is a file; give a folder")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise UserError(f"{folder} already exists and is not empty; pass --force or another --out")
    check_writable(folder)
    if force and folder.is_dir():
        remove_earlier_run(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot write into {folder}: {e.strerror or e}; choose another --out") from None
    return folder


def prepare_file(path: Path, force: bool = False) -> Path:
    """The same guard for a command whose output is one file: not a folder, not there already (unless ``force``),
    and its folder writable, all before the work (the folder is made when the file is written)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"--out {path} is a folder; give a file name")
    if path.exists() and not force:
        raise UserError(f"{path} exists; pass --force to replace it")
    check_writable(path.parent)
    return path


RECORDS = ("args.json", "sample.json", "figures.json", "eval.json")
"""The record a command writes beside its outputs, listing them under "files"."""


def remove_earlier_run(folder: Path) -> list[str]:
    """With --force: delete the files an earlier run's record lists (and the record), so none of them stays next to
    the new run's files as if it belonged to it; files no record lists are left alone. Returns what was removed."""
    removed = []
    for name in RECORDS:
        record = folder / name
        try:
            listed = json.loads(record.read_text()).get("files", []) if record.is_file() else []
        except (OSError, ValueError, AttributeError):
            continue
        for f in [*listed, name]:
            path = (folder / str(f)).resolve()
            if path.parent == folder.resolve() and path.is_file():
                path.unlink()
                removed.append(path.name)
    return removed
