"""File-level review workflows: published labels and retraining exports."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from rtic.contracts import LABEL_COLUMNS, parse_bool_column, sibling_path
from rtic.errors import RticError
from rtic.review.store import ReviewStore, publish, reviewed_firms
from rtic.tables import write_atomically


@dataclass
class PublishResult:
    out: Path
    n_rows: int
    n_decisions: int
    n_changed: int  # (firm, sector) pairs whose published verdict differs from the model's
    n_extra: int  # decisions on pairs the labels file does not have


def read_labels_file(path: str | Path) -> pd.DataFrame:
    from rtic.tables import read_table, require_columns

    df = read_table(path, "labels file")
    require_columns(df, LABEL_COLUMNS, path, "labels file")
    df["firm_id"] = df["firm_id"].astype(str)
    df["assigned"] = parse_bool_column(df["assigned"], f"labels file {path}")  # a CSV labels file reads as strings
    return df


def published_labels(labels: str | Path, reviews: str | Path) -> tuple[pd.DataFrame, dict]:
    """The labels file with the decisions in force applied, and those decisions."""
    store = ReviewStore(reviews)
    try:
        decisions = store.latest()
    finally:
        store.close()
    return publish(read_labels_file(labels), decisions), decisions


def publish_file(labels: str | Path, reviews: str | Path, out: str | Path) -> PublishResult:
    out = Path(out)
    if out.suffix.lower() not in {".parquet", ".pq", ".csv"}:
        raise RticError(f"--out must be a .parquet or .csv file, got {out}")
    published, decisions = published_labels(labels, reviews)
    write_atomically(published, out)
    has_model = published["probability"].notna()
    changed = int((published["assigned"].astype(bool) != published["model_assigned"].astype(bool)).sum())
    return PublishResult(out, len(published), len(decisions), changed, int((~has_model).sum()))


@dataclass
class ExportResult:
    out: Path
    exceptions: Path
    n_firms: int
    n_missing: int


def export_file(labels: str | Path, reviews: str | Path, out: str | Path, register: str | Path | None = None, store: str | Path | None = None) -> ExportResult:
    """Reviewed firms as labelled firms (firm_id,text,sectors) for `rtic train --labels`."""
    from rtic.text import firm_text, register_rows

    out = Path(out)
    if register is None and store is None:
        raise RticError("the firms' texts are needed: give --register FILE (with a text column) or --store crawl.db")
    published, decisions = published_labels(labels, reviews)
    if not decisions:
        raise RticError(f"no review decisions in {reviews}: nothing to export")
    rows = register_rows(register) if register is not None else None
    firms = {d.firm_id for d in decisions.values()}
    texts = {f: firm_text(f, register=register, store=store, rows=rows).text for f in firms}
    labelled, missing = reviewed_firms(published, texts)
    write_atomically(labelled, out)
    exceptions = sibling_path(out, ".exceptions.csv")
    write_atomically(missing, exceptions)
    return ExportResult(out, exceptions, len(labelled), len(missing))
