"""Active learning: pick the unlabelled firms most worth a reviewer's time, and merge reviewed labels back
into a training set with provenance (who, when, from which model version)."""

from __future__ import annotations

import getpass
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from rtic.mlops import registry
from rtic.config import Settings
from rtic.errors import RticError
from rtic.labels import split_sectors
from rtic.register import read_register
from rtic.tables import check_writable, read_table, require_columns, write_atomically
from rtic.taxonomy import load_taxonomy
from rtic import config

log = logging.getLogger(__name__)

REVIEW_COLUMNS = ["firm_id", "name", "website", "text", "sector_id", "probability", "threshold", "suggested_sectors", "sectors", "reviewed", "reviewer",
                  "note", "model_name", "model_version", "taxonomy_version", "suggested_at"]
PROVENANCE_COLUMNS = ["label_source", "labelled_by", "labelled_at", "model_version"]
YES, NO = {"yes", "y", "1", "true", "x"}, {"no", "n", "0", "false", ""}


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def pick_uncertain_diverse(proba: np.ndarray, threshold: float, embeddings: np.ndarray, n: int, pool_factor: int = 5) -> list[int]:
    """Indices of n rows: among the pool_factor*n closest to the threshold (on the logit scale), a greedy
    farthest-point selection, so that the batch does not spend the reviewer on near-duplicates."""
    if n <= 0 or len(proba) == 0:
        return []
    distance = np.abs(_logit(proba) - _logit(np.array([threshold]))[0])
    pool = np.argsort(distance, kind="stable")[: max(n * pool_factor, n)]
    chosen = [int(pool[0])]
    nearest = 1 - embeddings[pool] @ embeddings[pool[0]]  # cosine distance to the batch so far
    while len(chosen) < min(n, len(pool)):
        # Farthest from the batch; ties (and near-ties) go to the more uncertain firm.
        score = nearest - 1e-3 * distance[pool]
        score[np.isin(pool, chosen)] = -np.inf
        k = int(np.argmax(score))
        chosen.append(int(pool[k]))
        nearest = np.minimum(nearest, 1 - embeddings[pool] @ embeddings[pool[k]])
    return chosen


def suggest(settings: Settings, register_path, sector_id: str, out, n: int = config.SUGGEST_N, model_uri: str | None = None,
            exclude_labels=None) -> pd.DataFrame:
    """Write a review CSV of the n register firms most worth labelling for `sector_id`."""
    from rtic.contracts import assigned_column, probability_column

    if n < 1:
        raise RticError("--n must be at least 1")
    check_writable(out)  # before the model is loaded and the register scored
    loaded = registry.open_model(model_uri, settings)
    ref, model, classifier = loaded.ref, loaded.pyfunc, loaded.classifier
    if sector_id not in classifier.sector_ids:
        raise RticError(f"model {ref.name} version {ref.version} has no sector '{sector_id}' (it has: {', '.join(classifier.sector_ids)})")
    register = read_register(register_path)
    require_columns(register, ["text"], register_path, "register")
    register["text"] = register["text"].fillna("").astype(str)
    firms = register[register["text"].str.strip() != ""]
    skipped = len(register) - len(firms)
    if exclude_labels:
        known = set(read_table(exclude_labels, "labels file").get("firm_id", pd.Series(dtype=str)).astype(str).str.strip())
        before = len(firms)
        firms = firms[~firms["firm_id"].isin(known)]
        log.info(f"skipping {before - len(firms)} firm(s) already labelled in {exclude_labels}")
    if skipped:
        log.info(f"skipping {skipped} firm(s) with no text")
    if firms.empty:
        raise RticError(f"register {register_path} has no unlabelled firms with text to suggest")
    log.info(f"scoring {len(firms)} firms with {ref.name} version {ref.version} …")
    out_frame = model.predict(firms[["firm_id", "text"]].reset_index(drop=True))
    j = classifier.sector_ids.index(sector_id)
    proba = out_frame[probability_column(sector_id)].to_numpy(float)
    threshold = float(classifier.thresholds_[j])
    embeddings = classifier.encoder.encode(firms["text"].tolist())
    picked = pick_uncertain_diverse(proba, threshold, embeddings, n)
    assigned = np.column_stack([out_frame[assigned_column(s)].to_numpy(bool) for s in classifier.sector_ids])
    suggested = ["|".join(s for s, on in zip(classifier.sector_ids, row) if on) for row in assigned]
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    taxonomy_version = loaded.taxonomy_version or ""
    # Name and website (when the register has them) so a reviewer can find the firm, not only read its text.
    names, websites = (firms[c].fillna("").astype(str) if c in firms.columns else pd.Series([""] * len(firms)) for c in ("name", "website"))
    rows = [{"firm_id": firms["firm_id"].iloc[i], "name": names.iloc[i], "website": websites.iloc[i], "text": firms["text"].iloc[i], "sector_id": sector_id, "probability": round(float(proba[i]), 4),
             "threshold": round(threshold, 4), "suggested_sectors": suggested[i], "sectors": suggested[i], "reviewed": "", "reviewer": "",
             "note": "", "model_name": ref.name, "model_version": ref.version, "taxonomy_version": taxonomy_version, "suggested_at": now}
            for i in picked]
    frame = pd.DataFrame(rows, columns=REVIEW_COLUMNS)
    write_atomically(frame, out)
    return frame


@dataclass
class ImportSummary:
    imported: int
    added: int
    relabelled: int
    unchanged: int
    not_reviewed: int
    out: Path
    message: str


def _review_sectors(reviews: pd.DataFrame, reviewed_path, taxonomy_path, settings: Settings | None) -> tuple[str, list[str]]:
    """(taxonomy version, sector ids) the reviewed sectors must belong to: --taxonomy's; else the taxonomy version the
    file records (`rtic label suggest` writes the suggesting model's), whose sectors that model knows; else the bundled one."""
    if taxonomy_path is not None:
        taxonomy = load_taxonomy(taxonomy_path)
        return taxonomy.version, taxonomy.sector_ids
    bundled = load_taxonomy()
    recorded = sorted({str(v).strip() for v in reviews.get("taxonomy_version", [])} - {""})
    if not recorded or recorded == [bundled.version]:
        return bundled.version, bundled.sector_ids
    if len(recorded) > 1:
        raise RticError(f"reviewed labels file {reviewed_path} mixes taxonomy versions {', '.join(recorded)}: import each separately with --taxonomy")
    models = reviews.loc[reviews["taxonomy_version"].astype(str).str.strip() == recorded[0], ["model_name", "model_version"]] \
        if {"model_name", "model_version"} <= set(reviews.columns) else pd.DataFrame()
    if settings is not None and len(models):
        import mlflow.models
        from mlflow.exceptions import MlflowException

        name, version = (str(v).strip() for v in models.iloc[0])
        ref = registry.resolve(f"models:/{name}/{version}", settings)
        try:
            sector_ids = (mlflow.models.get_model_info(ref.uri).metadata or {}).get("sector_ids")
        except (MlflowException, OSError):
            sector_ids = None
        if sector_ids:
            return recorded[0], list(sector_ids)
    raise RticError(f"reviewed labels file {reviewed_path} records taxonomy {recorded[0]}, not the bundled {bundled.version}: "
                    f"pass --taxonomy with that version's file")


def import_reviews(reviewed_path, into, out=None, reviewer: str | None = None, taxonomy_path=None,
                   settings: Settings | None = None) -> ImportSummary:
    """Merge rows marked reviewed into a labels file: new firms appended, existing firms relabelled; each
    imported row records label_source=review, labelled_by, labelled_at and the suggesting model version.
    Sector ids are checked against --taxonomy, else the taxonomy version the file records (see _review_sectors)."""
    reviews = read_table(reviewed_path, "reviewed labels file").fillna("")
    require_columns(reviews, ["firm_id", "text", "sectors", "reviewed"], reviewed_path, "reviewed labels file")
    reviews["firm_id"] = reviews["firm_id"].astype(str).str.strip()
    flag = reviews["reviewed"].astype(str).str.strip().str.lower()
    bad = reviews.loc[~flag.isin(YES | NO), "firm_id"].tolist()
    if bad:
        raise RticError(f"reviewed labels file {reviewed_path}: `reviewed` must be yes or no (or empty), not on firm(s) {', '.join(bad[:5])}")
    done = reviews[flag.isin(YES)].copy()
    not_reviewed = len(reviews) - len(done)
    if done.empty:
        raise RticError(f"no rows in {reviewed_path} are marked reviewed (set the `reviewed` column to yes on the rows you checked)")
    taxonomy_version, sector_ids = _review_sectors(reviews, reviewed_path, taxonomy_path, settings)
    unknown = sorted({s for v in done["sectors"] for s in split_sectors(v)} - set(sector_ids))
    if unknown:
        raise RticError(f"reviewed labels use sector ids not in taxonomy {taxonomy_version}: {', '.join(unknown)}")
    empty = done.loc[done["text"].astype(str).str.strip() == "", "firm_id"].tolist()
    if empty:
        raise RticError(f"reviewed labels file {reviewed_path} has empty text for firm(s) {', '.join(empty[:5])}")
    done["sectors"] = done["sectors"].map(lambda v: "|".join(sorted(set(split_sectors(v)))))
    conflicting = done.groupby("firm_id")["sectors"].nunique()
    conflicting = conflicting[conflicting > 1].index.tolist()
    if conflicting:
        raise RticError(f"reviewed labels file {reviewed_path} gives conflicting sectors for firm(s) {', '.join(conflicting[:5])}")
    done = done.drop_duplicates("firm_id")

    labels = read_table(into, "labels file").fillna("")
    require_columns(labels, ["firm_id", "text", "sectors"], into, "labels file")
    labels["firm_id"] = labels["firm_id"].astype(str).str.strip()
    for col in PROVENANCE_COLUMNS:
        if col not in labels.columns:
            labels[col] = ""
    who_default = reviewer or os.environ.get("RTIC_USER") or getpass.getuser()
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    position = {fid: i for i, fid in enumerate(labels["firm_id"])}
    added = relabelled = unchanged = 0
    new_rows = []
    for row in done.to_dict("records"):
        who = reviewer or str(row.get("reviewer") or "").strip() or who_default
        provenance = {"label_source": "review", "labelled_by": who, "labelled_at": now, "model_version": str(row.get("model_version", ""))}
        if row["firm_id"] in position:
            i = position[row["firm_id"]]
            before = "|".join(sorted(split_sectors(labels.at[i, "sectors"])))
            relabelled += before != row["sectors"]
            unchanged += before == row["sectors"]
            labels.loc[i, ["sectors", *PROVENANCE_COLUMNS]] = [row["sectors"], *provenance.values()]
        else:
            added += 1
            new_rows.append({"firm_id": row["firm_id"], "text": row["text"], "sectors": row["sectors"], **provenance})
    merged = pd.concat([labels, pd.DataFrame(new_rows, columns=labels.columns)], ignore_index=True).fillna("")
    out = Path(out or into)
    write_atomically(merged, out)
    message = (f"imported {len(done)} reviewed firm(s) into {out}: {added} new, {relabelled} relabelled, {unchanged} confirmed unchanged; "
               f"{not_reviewed} row(s) not marked reviewed were left out")
    return ImportSummary(len(done), added, relabelled, unchanged, not_reviewed, out, message)
