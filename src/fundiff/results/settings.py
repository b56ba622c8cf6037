"""What a result folder is made with, besides the sampling settings: the model to load and DeepFloyd's stage II."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class ModelSpec:
    """Which model to load and how (``prompt_cache``, ``dtype`` and ``offload`` concern DeepFloyd only)."""

    model: str = "digits"
    device: str = "auto"
    prompt_cache: Path | None = None
    dtype: str = "auto"
    offload: bool = False


@dataclass
class StageTwo:
    """DeepFloyd stage II: every result also at 256 px (``steps_2`` given implies ``upsample``)."""

    upsample: bool = False
    stage_2: str | None = None
    steps_2: int | None = None
