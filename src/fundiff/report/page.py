"""The write-up as data: a :class:`Page` of :class:`Section` s, each with text, formulas, figures and tables.

The report's stages fill these from what runs wrote to disk; :mod:`fundiff.report.html` renders them.
Text is plain (HTML-escaped when rendered) with inline maths between ``\\(`` and ``\\)``; a formula is
display LaTeX without delimiters. Figure paths are files inside the report directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Figure:
    """One picture (PNG or GIF) with its caption (what was done, with which settings)."""

    path: Path
    caption: str
    alt: str = ""


@dataclass
class Table:
    """A table of measured numbers; cells are plain text."""

    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Section:
    """A heading (level 2 = part, 3 = section, 4 = subsection) and its content, in order of the fields."""

    id: str
    title: str
    level: int = 3
    text: list[str] = field(default_factory=list)
    formulas: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Notice boxes, e.g. "not run: ... how to enable it"."""


@dataclass
class Page:
    title: str
    subtitle: str = ""
    sections: list[Section] = field(default_factory=list)
    footer: list[str] = field(default_factory=list)
