"""Atomic file writes and the provenance every run records (versions, machine)."""

from __future__ import annotations

import errno
import fnmatch
import json
import os
import platform
import re
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through ``write(tmp_path)`` into a temporary file beside ``path``, then rename it over
    ``path``: readers see the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        _fault("open", path, tmp)
        write(Path(tmp))
        _fault("partial", path, tmp)
        _fault("written", path, tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a written file gets the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _fault("replaced", path, tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FAULT_ENV = "FUNDIFF_FAULT_AT"
"""For fault tests: ``POINT:GLOB[:N]`` stops the N-th (default: first) :func:`atomic_write` of a file whose name
matches GLOB at POINT, the way a kill would: ``open`` (its temporary made, nothing written yet), ``partial`` (half of
it written), ``written`` (all written, not yet renamed) or ``replaced`` (renamed into place). The process exits at
once with code 137 (``os._exit``: no clean-up runs), or, with ``FUNDIFF_FAULT_ACTION=enospc``, the write fails with
"No space left on device" instead."""
_fault_count: dict[str, int] = {}


def _fault(point: str, path: Path, tmp: str) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    where, _, rest = spec.partition(":")
    pattern, _, nth = rest.partition(":")
    if where != point or not fnmatch.fnmatchcase(path.name, pattern):
        return
    _fault_count[spec] = _fault_count.get(spec, 0) + 1
    if _fault_count[spec] != int(nth or 1):
        return
    if os.environ.get("FUNDIFF_FAULT_ACTION") == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    if point == "partial" and os.path.exists(tmp):
        os.truncate(tmp, os.path.getsize(tmp) // 2)
    os._exit(137)


PROBE_PREFIX = ".fundiff-write-test-"
"""Name prefix of the empty file a writability test creates and removes at once."""
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp(?P<suffix>\.[^.]*)?$")


def temporary_target(name: str) -> str | None:
    """When ``name`` is a temporary an interrupted :func:`atomic_write` left (``.NAME.<random>.tmp.SUFFIX``), the
    NAME it was writing; a left-over writability probe gives ""; any other name None."""
    if name.startswith(PROBE_PREFIX):
        return ""
    m = _TEMPORARY.match(name)
    if m and (m.group("suffix") or "") == Path(m.group("name")).suffix:
        return m.group("name")
    return None


def remove_temporaries(folder: Path, recursive: bool = False) -> list[Path]:
    """Delete what interrupted atomic writes (a kill, a power cut) left in ``folder`` (and below it when
    ``recursive``): their temporaries and writability probes, nothing else. Returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in sorted(folder.rglob(".*") if recursive else folder.glob(".*")):
        if p.is_file() and not p.is_symlink() and temporary_target(p.name) is not None:
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def check_writable(folder: Path, option: str = "--out") -> None:
    """Make sure files can be made in ``folder`` before any work starts: a path under a file or under /proc, a
    folder without permission, a read-only file system, a too-long name... is one :class:`UserError` that says what
    and what to do. Folders it had to create for the test are removed again, so a refused command leaves nothing."""
    from fundiff.errors import UserError

    folder = Path(folder)
    created: list[Path] = []
    try:
        for parent in reversed([folder, *folder.parents]):
            if parent.exists() and not parent.is_dir():
                raise UserError(f"cannot write into {folder}: {parent} is a file, not a folder; choose another "
                                f"{option}")
        for d in [p for p in reversed([folder, *folder.parents]) if not p.exists()]:
            try:
                d.mkdir()
            except OSError as e:
                raise UserError(f"cannot create the folder {d}: {e.strerror or e}; choose another {option}") from None
            created.append(d)
        fd, probe = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"cannot write into {folder}: {e.strerror or e}; choose another {option}") from None
    finally:
        for d in reversed(created):
            try:
                d.rmdir()
            except OSError:
                pass


def safetensors_bytes(tensors: dict, metadata: dict[str, str] | None = None) -> bytes:
    """``safetensors.torch.save`` with a canonical header: its JSON re-dumped with sorted keys, compact, and padded
    with spaces to the original length (so no data offset moves). The library writes its metadata map in an order
    that changes from process to process; this makes equal tensors and metadata equal bytes, everywhere."""
    from safetensors.torch import save

    raw = save(tensors, metadata=metadata)
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    canon = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(canon) > n:
        raise AssertionError(f"canonical safetensors header is {len(canon)} bytes, longer than the library's {n}")
    return raw[:8] + canon + b" " * (n - len(canon)) + raw[8 + n:]


def save_safetensors(path: Path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` (and string ``metadata``) as a safetensors file, atomically and byte-reproducibly."""
    data = safetensors_bytes(tensors, metadata)
    atomic_write(Path(path), lambda p: p.write_bytes(data))


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text))


def write_json(path: Path, obj: object) -> None:
    """Strict JSON (RFC 8259): a NaN or infinity is refused (ValueError), never written as ``NaN``."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def versions() -> dict[str, str]:
    """fundiff, Python, torch and the machine, for the record next to every output."""
    from fundiff import __version__

    return {
        "fundiff": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "threads": str(torch.get_num_threads()),
    }


def pick_device(name: str = "auto") -> torch.device:
    """"auto" is CUDA when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    from fundiff.errors import UserError

    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown --device {name!r}; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: this machine has no CUDA GPU that torch can use; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {name}: this machine has no Apple GPU that torch can use; use --device cpu")
    if device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device {name}: fundiff runs on cpu or cuda")
    return device
