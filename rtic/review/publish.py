"""File-level review workflows: published labels and retraining exports."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from rtic.contracts import LABEL_COLUMNS, parse_bool_column, sibling_path
from rtic.errors import RticError
from rtic.review.store import ReviewStore, publish, reviewed_firms, unknown_sector_decisions
from rtic.tables import write_atomically


@dataclass
class PublishResult:
    out: Path
    n_rows: int
    n_decisions: int
    n_changed: int  # (firm, sector) pairs whose published verdict differs from the model's
    n_extra: int  # decisions on pairs the labels file does not have
    n_unknown: int = 0  # decisions on sectors the labels' taxonomy does not have: left out


def read_labels_file(path: str | Path) -> pd.DataFrame:
    from rtic.tables import read_table, require_columns

    df = read_table(path, "labels file")
    require_columns(df, LABEL_COLUMNS, path, "labels file")
    df["firm_id"] = df["firm_id"].astype(str)
    df["assigned"] = parse_bool_column(df["assigned"], f"labels file {path}")  # a CSV labels file reads as strings
    return df


def published_labels(labels: str | Path, reviews: str | Path) -> tuple[pd.DataFrame, dict, list]:
    """The labels file with the decisions in force applied; those decisions; and the ones left out because
    they name a sector the labels' taxonomy does not have."""
    store = ReviewStore(reviews)
    try:
        decisions = store.latest()
    finally:
        store.close()
    frame = read_labels_file(labels)
    sector_ids = set(frame["sector_id"].astype(str))
    unknown = unknown_sector_decisions(decisions, sector_ids)
    return publish(frame, decisions, sector_ids), decisions, unknown


def publish_file(labels: str | Path, reviews: str | Path, out: str | Path) -> PublishResult:
    out = Path(out)
    if out.suffix.lower() not in {".parquet", ".pq", ".csv"}:
        raise RticError(f"--out must be a .parquet or .csv file, got {out}")
    published, decisions, unknown = published_labels(labels, reviews)
    write_atomically(published, out)
    has_model = published["probability"].notna()
    changed = int((published["assigned"].astype(bool) != published["model_assigned"].astype(bool)).sum())
    return PublishResult(out, len(published), len(decisions) - len(unknown), changed, int((~has_model).sum()), len(unknown))


@dataclass
class ExportResult:
    out: Path
    exceptions: Path
    n_firms: int
    n_missing: int
    n_unknown: int = 0  # decisions on sectors the labels' taxonomy does not have: left out


def export_file(labels: str | Path, reviews: str | Path, out: str | Path, register: str | Path | None = None, store: str | Path | None = None) -> ExportResult:
    """Reviewed firms as labelled firms (firm_id,text,sectors) for `rtic train --labels`."""
    from rtic.text import firm_text, register_rows

    out = Path(out)
    if register is None and store is None:
        raise RticError("the firms' texts are needed: give --register FILE (with a text column) or --store crawl.db")
    published, decisions, unknown = published_labels(labels, reviews)
    if len(decisions) == len(unknown):
        raise RticError(f"no review decisions on the labels' sectors in {reviews}: nothing to export")
    rows = register_rows(register) if register is not None else None
    firms = {d.firm_id for d in decisions.values() if d not in unknown}
    texts = {f: firm_text(f, register=register, store=store, rows=rows).text for f in firms}
    labelled, missing = reviewed_firms(published, texts)
    write_atomically(labelled, out)
    exceptions = sibling_path(out, ".exceptions.csv")
    write_atomically(missing, exceptions)
    return ExportResult(out, exceptions, len(labelled), len(missing), len(unknown))


# -- checking a decision before it is stored ----------------------------------------------------
@dataclass
class DecisionTarget:
    """What the labels say about the (firm, sector) a decision is about."""

    model_version: str
    model_assigned: bool | None  # None: the model has no label for it (the firm was not classified)


def decision_target(labels: str | Path, firm_id: str, sector_id: str) -> DecisionTarget:
    """Check that a decision is about a firm and a sector the labels know; RticError (nothing to store) otherwise.

    The firm must be in the labels or in the exceptions file beside them (not classified, with its
    reason: a reviewer may still add a sector); the sector must be one of the labels' sectors, so a
    decision can never put a firm into a sector the taxonomy does not have.
    """
    from rtic.firm_labels import exceptions_path, find_exception, labels_sector_ids, read_firm_labels

    rows = read_firm_labels(labels, firm_id)
    if rows.empty and find_exception(labels, firm_id) is None:
        raise RticError(f"unknown firm {firm_id}: not in labels file {labels} nor in {exceptions_path(labels)}")
    sectors = [str(s) for s in rows["sector_id"]] if not rows.empty else labels_sector_ids(labels)
    if sector_id not in sectors:
        known = ", ".join(sorted(sectors)) or "none (no firm was classified)"
        raise RticError(f"unknown sector {sector_id!r}: the sectors of {labels} are {known}")
    row = rows[rows["sector_id"] == sector_id]
    if row.empty:
        return DecisionTarget("", None)
    return DecisionTarget(str(row.iloc[0]["model_version"]), bool(row.iloc[0]["assigned"]))
