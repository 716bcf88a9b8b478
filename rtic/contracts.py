"""The data contracts shared by the stages: column lists, reason strings, sibling output paths."""

from __future__ import annotations

from pathlib import Path


def sibling_path(out: str | Path, suffix: str) -> Path:
    """A file beside `out` named by replacing only its last suffix: labels.2026.11.parquet + '.exceptions.csv'
    -> labels.2026.11.exceptions.csv (so two dotted output names never share side files)."""
    out = Path(out)
    return out.with_name(out.stem + suffix)
