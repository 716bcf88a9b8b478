"""Reading and writing the plain tables that pass between stages (CSV or Parquet), with clear errors."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import pandas as pd

from rtic.errors import RticError

PARQUET_SUFFIXES = {".parquet", ".pq"}


def check_input_file(path: str | Path, what: str = "file") -> Path:
    """The whole-file checks every input gets: it exists, is a file, and is not empty."""
    path = Path(path)
    if not path.exists():
        raise RticError(f"{what} not found: {path}")
    if path.is_dir():
        raise RticError(f"{what} is a folder, expected a CSV or Parquet file: {path}")
    if path.stat().st_size == 0:
        raise RticError(f"{what} is empty: {path}")
    return path


def check_writable(path: str | Path, what: str = "--out") -> Path:
    """Fail before any long work when `path` cannot be written: its folder is created if need be, and a
    probe file is created and removed beside it (the way outputs are written: a temporary file, renamed)."""
    path = Path(path)
    if path.is_dir():
        raise RticError(f"{what} {path} is a folder: give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise RticError(f"cannot write {what} {path}: {exc.strerror or exc}: choose a folder you can write to") from None
    return path


def read_table(path: str | Path, what: str = "file") -> pd.DataFrame:
    """Read a CSV (UTF-8) or Parquet file as strings where CSV, raising RticError for user mistakes."""
    path = check_input_file(path, what)
    try:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8", encoding_errors="strict")
    except UnicodeDecodeError as exc:
        raise RticError(f"{what} {path} is not valid UTF-8 (byte {exc.start}): re-save it as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise RticError(f"{what} is empty: {path}") from None
    except pd.errors.ParserError as exc:
        raise RticError(f"{what} {path} is not a well-formed CSV: {str(exc).strip().splitlines()[-1]}") from None
    except (OSError, ValueError) as exc:
        raise RticError(f"cannot read {what} {path}: {str(exc).strip().splitlines()[0]}") from None
    df.columns = [str(c) for c in df.columns]
    return df


def require_columns(table: pd.DataFrame | Sequence[str], columns: Sequence[str], path: str | Path, what: str) -> None:
    """One clear line naming the missing columns; `table` is a frame or its column names (e.g. a file's header)."""
    present = [str(c) for c in (table.columns if isinstance(table, pd.DataFrame) else table)]
    missing = [c for c in columns if c not in present]
    if missing:
        raise RticError(f"{what} {path} has no column {', '.join(repr(c) for c in missing)} (columns: {', '.join(present[:12])})")


def check_unique_ids(df: pd.DataFrame, path: str | Path, what: str, column: str = "firm_id") -> None:
    ids = df[column].astype(str).str.strip()
    if (ids == "").any():
        rows = (ids == "").to_numpy().nonzero()[0][:5] + 2
        raise RticError(f"{what} {path} has empty {column} on line(s) {', '.join(map(str, rows))}")
    dupes = ids[ids.duplicated()].unique()
    if len(dupes):
        shown = ", ".join(dupes[:5]) + (" …" if len(dupes) > 5 else "")
        raise RticError(f"{what} {path} has {len(dupes)} duplicate {column} value(s): {shown}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; it replaces `path` only when the block succeeds, so a
    failure or a kill never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_atomically(df: pd.DataFrame, path: str | Path) -> Path:
    """Write Parquet or CSV (by suffix) via a temporary file, so a failure never leaves half a file."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)
    return path


def select_in(db, query: str, keys: list, batch: int = 500, leading: Sequence = ()) -> list[tuple]:
    """Rows of `query` (ending in `IN ({})`) for all `keys`, in batches under SQLite's bound-parameter limit;
    `leading` binds the query's placeholders before the IN list."""
    rows: list[tuple] = []
    for i in range(0, len(keys), batch):
        part = keys[i : i + batch]
        rows.extend(db.execute(query.format(",".join("?" * len(part))), [*leading, *part]))
    return rows
