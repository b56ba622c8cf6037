"""docs/quickstart.ipynb runs from top to bottom in a fresh kernel and writes its pictures.

The notebook is executed with nbclient in a temporary folder (the PNGs it writes land there), on one
OpenMP thread like every other test on this shared machine (about a minute, most of it the 300-step
generate cell).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "quickstart.ipynb"
PICTURES = ("sevens.png", "three.png", "edit.png", "anagram.png")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def python3_kernel() -> str:
    """The name of a kernel for this Python: ipykernel's python3 spec, installed into sys.prefix if missing."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        from ipykernel.kernelspec import install

        install(user=False, prefix=sys.prefix)
    return "python3"


def test_notebook_is_stored_clean():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_quickstart_runs(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel inherits it
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name=python3_kernel(),
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell

    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    assert any("DiffusionModel('digits'" in o.get("text", "") for o in code[0].outputs)
    shown = sum("image/png" in o.get("data", {}) for c in code for o in c.outputs)
    assert shown == len(PICTURES)

    for name in PICTURES:
        path = tmp_path / name
        assert path.read_bytes()[:8] == PNG_SIGNATURE, name
        with Image.open(path) as im:
            im.verify()
            assert im.format == "PNG" and min(im.size) >= 28, name
