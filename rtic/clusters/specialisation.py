"""Sector specialisation by area: firm counts, shares and location quotients with confidence intervals.

For area a and sector s, with n_as firms of sector s in a, n_a labelled firms in a (any sector or none), N_s firms of
s in all areas and N labelled firms in all areas:

    LQ = (n_as / n_a) / (N_s / N)

The confidence interval is the delta-method interval on log LQ (Moineddin, Beyene & Boyle 2003):
Var(ln LQ) ≈ 1/n_as − 1/n_a − 1/N_s + 1/N, interval exp(ln LQ ± z·√Var). With n_as = 0 the LQ is 0, the lower bound
0 and the upper bound uses n_as = 0.5 (the usual continuity correction) so that it stays informative.

An area is *specialised* in a sector when LQ ≥ lq_threshold and n_as ≥ min_count; *significant* when, in addition,
the lower bound of the interval is above 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from rtic.clusters.inputs import ClusterInputs, area_column
from rtic.errors import RticError
from rtic import config

SPECIALISATION_COLUMNS = [
    "area_level", "area_code", "area_name", "sector_id", "firms", "area_firms", "sector_firms", "total_firms",
    "share", "national_share", "lq", "lq_low", "lq_high", "specialised", "significant",
]


@dataclass(frozen=True)
class SpecialisationParams:
    lq_threshold: float = config.LQ_THRESHOLD
    min_count: int = config.MIN_COUNT
    confidence: float = config.CONFIDENCE

    def __post_init__(self):
        if not 0 < self.confidence < 1:
            raise RticError(f"confidence must be between 0 and 1, got {self.confidence}")
        if self.lq_threshold <= 0 or self.min_count < 0:
            raise RticError("the LQ threshold must be positive and the minimum count not negative")


def location_quotients(firms: np.ndarray, area_firms: np.ndarray, sector_firms: np.ndarray, total: float,
                       confidence: float = config.CONFIDENCE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LQ and its (low, high) interval for arrays of counts; see the module docstring."""
    firms, area_firms, sector_firms = (np.asarray(v, dtype=float) for v in (firms, area_firms, sector_firms))
    z = norm.ppf(0.5 + confidence / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        lq = (firms / area_firms) / (sector_firms / total)
        n = np.where(firms > 0, firms, 0.5)
        lq_for_ci = (n / area_firms) / (sector_firms / total)
        var = np.clip(1 / n - 1 / area_firms - 1 / sector_firms + 1 / total, 0, None)
        half = z * np.sqrt(var)
        low = np.where(firms > 0, lq_for_ci * np.exp(-half), 0.0)
        high = lq_for_ci * np.exp(half)
    undefined = (area_firms <= 0) | (sector_firms <= 0)
    for arr in (lq, low, high):
        arr[undefined] = np.nan
    return lq, low, high


def specialisation(inputs: ClusterInputs, area: str, params: SpecialisationParams = SpecialisationParams(),
                   names: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per (area, sector), every sector in the labels and every area with a labelled firm (zeros included)."""
    column = area_column(inputs, area)
    base = inputs.firms[["firm_id", column]].dropna()
    base = base[base[column].astype(str).str.strip() != ""]
    if base.empty:
        raise RticError(f"no labelled firm has a {area!r} area: check the postcode lookup covers the register")
    area_of = base.set_index("firm_id")[column]
    area_counts = area_of.value_counts().sort_index()
    assigned = inputs.assignments.assign(area=inputs.assignments["firm_id"].map(area_of)).dropna(subset=["area"])
    counts = assigned.groupby(["area", "sector_id"]).size()
    grid = pd.MultiIndex.from_product([area_counts.index, inputs.sector_ids], names=["area", "sector_id"])
    table = counts.reindex(grid, fill_value=0).rename("firms").reset_index()
    total = float(area_counts.sum())
    sector_totals = assigned.groupby("sector_id").size().reindex(inputs.sector_ids, fill_value=0)
    table["area_firms"] = table["area"].map(area_counts).to_numpy()
    table["sector_firms"] = table["sector_id"].map(sector_totals).to_numpy()
    table["total_firms"] = int(total)
    table["share"] = table["firms"] / table["area_firms"]
    table["national_share"] = table["sector_firms"] / total
    table["lq"], table["lq_low"], table["lq_high"] = location_quotients(
        table["firms"], table["area_firms"], table["sector_firms"], total, params.confidence)
    table["specialised"] = (table["lq"] >= params.lq_threshold) & (table["firms"] >= params.min_count)
    table["significant"] = table["specialised"] & (table["lq_low"] > 1)
    table["area_level"] = area
    table["area_code"] = table["area"].astype(str)
    table["area_name"] = table["area_code"].map(lambda code: (names or {}).get(code, code))
    return table[SPECIALISATION_COLUMNS].sort_values(["sector_id", "lq"], ascending=[True, False], kind="stable").reset_index(drop=True)
