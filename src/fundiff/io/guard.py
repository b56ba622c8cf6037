"""The one output-folder guard every command uses: checked before any work starts."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from fundiff.errors import UserError


def prepare_output(folder: Path, force: bool = False) -> Path:
    """Make sure ``folder`` can take a new run's files, before the work: not a file, not a non-empty folder
    (unless ``force``), and writable (created if missing). Every OS error becomes one line."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out {folder} is a file; give a folder")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise UserError(f"{folder} already exists and is not empty; pass --force or another --out")
    if force and folder.is_dir():
        remove_earlier_run(folder)
    for parent in folder.parents:
        if parent.exists() and not parent.is_dir():
            raise UserError(f"cannot write into {folder}: {parent} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot write into {folder}: {e.strerror or e}") from None
    _probe(folder)
    return folder


def prepare_file(path: Path, force: bool = False) -> Path:
    """The same guard for a command whose output is one file: not a folder, not there already (unless ``force``),
    and its folder writable, all before the work."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"--out {path} is a folder; give a file name")
    if path.exists() and not force:
        raise UserError(f"{path} exists; pass --force to replace it")
    parent = path.parent
    for folder in [parent, *parent.parents]:
        if folder.exists() and not folder.is_dir():
            raise UserError(f"cannot write {path}: {folder} is a file, not a folder")
    prepare_output(parent, force=True) if not parent.exists() else _probe(parent)
    return path


def _probe(folder: Path) -> None:
    try:
        fd, probe = tempfile.mkstemp(prefix=".fundiff-write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"cannot write into {folder}: {e.strerror or e}") from None


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
