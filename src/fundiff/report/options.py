"""The options of ``fundiff report``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ReportOptions:
    out: Path = Path("report")
    profile: str = "quick"
    data: str = "mnist"
    data_dir: Path | None = None
    deepfloyd: str | None = None
    stage_2: str | None = None
    prompt_cache: Path | None = None
    seed: int = 0
    force: bool = False
    device: str = "auto"

    def command(self) -> str:
        """The command line that rebuilds this report."""
        parts = ["fundiff report", f"--out {self.out}", f"--profile {self.profile}"]
        parts += [f"--data {self.data}"] if self.data != "mnist" else []
        parts += [f"--data-dir {self.data_dir}"] if self.data_dir else []
        parts += [f"--deepfloyd {self.deepfloyd}"] if self.deepfloyd else []
        parts += [f"--stage-2 {self.stage_2}"] if self.stage_2 else []
        parts += [f"--prompt-cache {self.prompt_cache}"] if self.prompt_cache else []
        parts += [f"--seed {self.seed}"] if self.seed else []
        return " ".join(parts)
