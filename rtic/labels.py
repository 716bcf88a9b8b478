"""Labelled firms (`firm_id,text,sectors`) for training and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rtic.errors import RticError
from rtic.tables import check_unique_ids, read_table, require_columns
from rtic.taxonomy import Taxonomy

MIN_POSITIVES = 5  # fewer positives than this: too few to tune a threshold on


@dataclass
class LabelledFirms:
    firm_ids: list[str]
    texts: list[str]
    Y: np.ndarray  # (n_firms, n_sectors) 0/1, columns in taxonomy.sector_ids order
    sector_ids: list[str]
    warnings: list[str] = field(default_factory=list)


def split_sectors(value: object) -> list[str]:
    return [s.strip() for s in str(value or "").split("|") if s.strip()]


def read_labels(path: str | Path, taxonomy: Taxonomy, ignore_unknown: bool = False, training: bool = True) -> LabelledFirms:
    """Read labelled firms, checking sector ids against the taxonomy. `training`: the firms will fit a model
    (rare sectors are warned of as getting a fixed threshold); else they score one (rare sectors: few firms behind the figures)."""
    df = read_table(path, "labels file")
    require_columns(df, ["firm_id", "text", "sectors"], path, "labels file")
    df = df.fillna("")
    df["firm_id"] = df["firm_id"].astype(str).str.strip()
    df["text"] = df["text"].astype(str)
    warnings: list[str] = []

    known = set(taxonomy.sector_ids)
    unknown = sorted({s for v in df["sectors"] for s in split_sectors(v)} - known)
    if unknown and not ignore_unknown:
        raise RticError(f"labels file {path} uses sector ids not in taxonomy {taxonomy.version}: {', '.join(unknown)} (use --ignore-unknown to drop them)")
    if unknown:
        warnings.append(f"dropped unknown sector ids: {', '.join(unknown)}")

    empty = df["text"].str.strip() == ""
    if empty.any():
        warnings.append(f"skipped {int(empty.sum())} firm(s) with empty text: {', '.join(df.loc[empty, 'firm_id'][:5])}")
        df = df[~empty]
    # The same firm twice: identical labels are merged, conflicting labels are an error.
    dup = df["firm_id"].duplicated(keep=False)
    if dup.any():
        groups = df[dup].groupby("firm_id")["sectors"].agg(lambda v: {"|".join(sorted(split_sectors(x))) for x in v})
        conflicts = [fid for fid, sets in groups.items() if len(sets) > 1]
        if conflicts:
            raise RticError(f"labels file {path} gives conflicting sectors for {len(conflicts)} firm(s): {', '.join(conflicts[:5])}")
        warnings.append(f"merged {int(dup.sum() - groups.size)} repeated row(s) with identical labels")
        df = df.drop_duplicates("firm_id")
    check_unique_ids(df, path, "labels file")
    if df.empty:
        raise RticError(f"labels file {path} has no firms with text")

    ids = taxonomy.sector_ids
    Y = np.zeros((len(df), len(ids)), dtype=int)
    index = {s: j for j, s in enumerate(ids)}
    for i, value in enumerate(df["sectors"]):
        for s in split_sectors(value):
            if s in index:
                Y[i, index[s]] = 1
    rare = [f"{s} ({int(n)})" for s, n in zip(ids, Y.sum(axis=0)) if n < MIN_POSITIVES]
    if rare and training:
        warnings.append(f"sector(s) with fewer than {MIN_POSITIVES} positive examples get a fixed threshold, no tuning: {', '.join(rare)}")
    elif rare:
        warnings.append(f"sector(s) with fewer than {MIN_POSITIVES} positive examples in this set, so their figures rest on few firms: {', '.join(rare)}")
    return LabelledFirms(firm_ids=df["firm_id"].tolist(), texts=df["text"].tolist(), Y=Y, sector_ids=ids, warnings=warnings)


def labels_frame(firms: LabelledFirms) -> pd.DataFrame:
    sectors = ["|".join(s for s, on in zip(firms.sector_ids, row) if on) for row in firms.Y]
    return pd.DataFrame({"firm_id": firms.firm_ids, "text": firms.texts, "sectors": sectors})
