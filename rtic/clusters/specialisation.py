"""Sector specialisation by area: firm counts, shares and location quotients with confidence intervals.

For area a and sector s, with n_as firms of sector s in a, n_a labelled firms in a (any sector or none), N_s firms of
s in all areas and N labelled firms in all areas:

    LQ = (n_as / n_a) / (N_s / N)

The confidence interval is exact for small counts: the Clopper–Pearson interval for the area's share n_as / n_a
(binomial, n_a firms), divided by the national share N_s / N, which is taken as known. It is the binomial form of the
exact Poisson (Garwood) interval on n_as, and approaches it when the sector is a small part of the area; unlike a
normal approximation it never collapses to zero width (one firm of one: LQ = N/N_s, interval from 0.025·N/N_s to
N/N_s at 95%) and never passes the largest possible LQ, N/N_s. With n_as = 0 the LQ and the lower bound are 0 and
the upper bound is 1 − (α/2)^(1/n_a) over the national share.

An area is *specialised* in a sector when LQ ≥ lq_threshold and n_as ≥ min_count; *significant* when, in addition,
the lower bound of the interval is above 1.

Areas: a level of the postcode lookup (lad, ttwa, …), `district` (postcode district), any register column, or
`auto` (the default): LADs when the lookups give one to at least AUTO_COVERAGE of the firms that have a postcode
district, else postcode districts, so that firms placed by a district centroid without a LAD are not lost. Every
labelled firm not counted in the chosen areas is listed by `left_out` with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import beta

from rtic.clusters.geography import FROM_POSTCODE, PLACED, member_of
from rtic.clusters.inputs import ClusterInputs, area_column, problem_rows
from rtic.errors import RticError
from rtic import config

AUTO = "auto"
AUTO_COVERAGE = 0.99  # share of the firms with a postcode district that must have a LAD for `auto` to use LADs
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
    alpha = 1 - confidence
    with np.errstate(divide="ignore", invalid="ignore"):
        national = sector_firms / total
        lq = (firms / area_firms) / national
        # Clopper–Pearson bounds of the share; beta.ppf is NaN at a zero shape parameter, where the bound is 0 or 1.
        low_share = np.where(firms > 0, beta.ppf(alpha / 2, np.maximum(firms, 1), area_firms - firms + 1), 0.0)
        high_share = np.where(firms < area_firms, beta.ppf(1 - alpha / 2, firms + 1, np.maximum(area_firms - firms, 1)), 1.0)
        low, high = low_share / national, high_share / national
    undefined = (area_firms <= 0) | (sector_firms <= 0) | (firms > area_firms)
    for arr in (lq, low, high):
        arr[undefined] = np.nan
    return lq, low, high


def choose_area(inputs: ClusterInputs, area: str) -> tuple[str, str]:
    """The area column to use and, for `auto`, a line saying why it was chosen."""
    if area != AUTO:
        return area_column(inputs, area), ""
    firms = inputs.firms
    has_district = firms["district"].notna() if "district" in firms.columns else pd.Series(False, index=firms.index)
    with_district = int(has_district.sum())
    with_lad = int((has_district & firms["lad"].notna()).sum()) if "lad" in firms.columns else 0
    if with_district and with_lad >= AUTO_COVERAGE * with_district:
        return "lad", f"area auto: lad ({with_lad} of the {with_district} firms with a known postcode district have a LAD)"
    if with_district == 0:
        raise RticError("--area auto: no labelled firm has a postcode district the lookup knows; name an area level or register column")
    return "district", (f"area auto: postcode district, as only {with_lad} of the {with_district} firms with a known postcode "
                        f"district have a LAD in the lookups (--area lad counts those and lists the others as left out)")


def left_out(inputs: ClusterInputs, area: str) -> pd.DataFrame:
    """Every labelled firm not counted in `area` (PROBLEM_COLUMNS): unplaced firms with their own reason, and placed
    firms the lookups give no such area (reason 'no <area> area')."""
    firms = inputs.firms
    values = firms[area]
    gone = firms[(values.isna() | (values.astype(str).str.strip() == "")).to_numpy()]
    unplaced = gone[~member_of(gone["geo_source"], list(PLACED))]
    placed = gone[member_of(gone["geo_source"], list(PLACED))]

    def why(firm) -> str:
        if firm.geo_source == FROM_POSTCODE:
            return f"placed by postcode {firm.postcode}, which the lookups give no {area}"
        if firm.outcode:
            return f"placed by {firm.geo_source}; the lookups give postcode district {firm.outcode} no {area}"
        return f"placed by {firm.geo_source}, with no postcode to give it a {area}"

    problems = inputs.problems
    return pd.concat([
        problems[member_of(problems["firm_id"], unplaced["firm_id"])],
        problem_rows(placed, f"no {area} area", [why(f) for f in placed[["geo_source", "postcode", "outcode"]].fillna("").itertuples()]),
    ], ignore_index=True)


def specialisation(inputs: ClusterInputs, area: str, params: SpecialisationParams = SpecialisationParams(),
                   names: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per (area, sector), every sector in the labels and every area with a labelled firm (zeros included).
    `area` may be `auto` (see choose_area); the table's area_level says which was used."""
    column, _ = choose_area(inputs, area)
    area = column
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
