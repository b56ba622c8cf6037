"""Store a trained class-conditioned digit run inside the package as the shipped ``--model digits``.

    python tools/ship_digits.py RUN_DIR [EVAL_JSON ...]

The same as ``python tools/ship_model.py digits RUN_DIR [EVAL_JSON ...]`` (see tools/ship_model.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ship_model import ship_cli  # noqa: E402 - beside this file

if __name__ == "__main__":
    ship_cli(["digits", *sys.argv[1:]])
