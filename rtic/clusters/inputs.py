"""Firm labels joined with the register and a postcode lookup: the located firms every cluster stage starts from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rtic.contracts import parse_bool_column
from rtic.errors import RticError
from rtic.clusters.geography import (INVALID_POSTCODE, NO_GRID_REFERENCE, NO_POSTCODE, PLACED, UNKNOWN_POSTCODE, PostcodeLookup,
                                     load_lookup, locate_firms, member_of)
from rtic.register import read_register
from rtic.tables import read_table, require_columns

LABEL_REQUIRED = ["firm_id", "sector_id", "assigned"]
# A firm left out of a stage: `postcode` as the register gives it (a bad one kept as it is), `reason` a short code
# to group by, `detail` the particulars.
PROBLEM_COLUMNS = ["firm_id", "postcode", "reason", "detail"]
NOT_IN_REGISTER = "not in register"
GIVEN_POSTCODE = "postcode_given"  # the register's postcode text, beside the normalised `postcode`
DETAILS = {
    NO_POSTCODE: "the register row has no postcode and no lat/lon",
    INVALID_POSTCODE: "not in the form of a UK postcode",
    UNKNOWN_POSTCODE: "neither the postcode nor its district is in the postcode lookup(s)",
    NO_GRID_REFERENCE: "the lookup lists the postcode or its district without a usable grid reference (ONSPD osgrdind 9, "
                       "or off the British National Grid, as the Channel Islands are)",
    NOT_IN_REGISTER: "labelled, but its firm_id is not in the register",
}


@dataclass
class ClusterInputs:
    """`firms`: one row per labelled firm (located or not); `assignments`: (firm_id, sector_id) pairs assigned;
    `problems`: firms without coordinates and why (PROBLEM_COLUMNS). The base population of every statistic is the
    labelled firms."""

    firms: pd.DataFrame
    assignments: pd.DataFrame
    sector_ids: list[str]
    problems: pd.DataFrame
    districts: pd.DataFrame | None = None  # the lookup's district centroids (easting, northing): context on maps

    @property
    def located(self) -> pd.DataFrame:
        return self.firms[self.firms["easting"].notna()]


def parse_assigned(values: pd.Series, path) -> np.ndarray:
    """Booleans, or the strings a CSV or a reviewer tool writes for them (contracts.parse_bool_column)."""
    return parse_bool_column(values.rename("assigned") if values.name is None else values, f"labels {path}")


def read_labels(path: str | Path) -> pd.DataFrame:
    """Firm labels in long form (from `rtic classify`, or published with reviews applied): firm_id, sector_id, assigned."""
    labels = read_table(path, "labels")
    require_columns(labels, LABEL_REQUIRED, path, "labels")
    out = pd.DataFrame({
        "firm_id": labels["firm_id"].astype(str).str.strip(),
        "sector_id": labels["sector_id"].astype(str).str.strip(),
        "assigned": parse_assigned(labels["assigned"], path),
    })
    if out.empty:
        raise RticError(f"labels {path} has a header but no rows")
    return out


def build_inputs(labels: pd.DataFrame, register: pd.DataFrame, lookup: PostcodeLookup | None) -> ClusterInputs:
    """Join labels (long form) with the register and place every labelled firm; nothing dropped silently."""
    labelled_ids = pd.Index(labels["firm_id"].unique())
    reg = register.drop_duplicates("firm_id").set_index("firm_id", drop=False)
    in_register = member_of(labelled_ids, reg.index)
    reg_rows = reg.loc[labelled_ids[in_register]].reset_index(drop=True)
    located = locate_firms(reg_rows, lookup)
    given = reg_rows["postcode"] if "postcode" in reg_rows.columns else pd.Series("", index=reg_rows.index)
    located[GIVEN_POSTCODE] = given.fillna("").astype(str).str.strip().to_numpy()
    # Other register columns (a region the user coded, sic_codes, …) can serve as areas or labels in the report.
    extra = [c for c in reg_rows.columns if c not in located.columns and c not in {"text", "lat", "lon"}]
    located = pd.concat([located, reg_rows[extra].replace({"": None})], axis=1)
    missing = pd.DataFrame({"firm_id": labelled_ids[~in_register], "postcode": "", "outcode": "",
                            "easting": np.nan, "northing": np.nan, "geo_source": NOT_IN_REGISTER, GIVEN_POSTCODE: ""})
    firms = pd.concat([located, missing], ignore_index=True) if len(missing) else located
    sectors = sorted(labels["sector_id"].unique())
    assignments = labels.loc[labels["assigned"], ["firm_id", "sector_id"]].drop_duplicates().reset_index(drop=True)
    unplaced = firms[~member_of(firms["geo_source"], list(PLACED))]
    problems = problem_rows(unplaced, unplaced["geo_source"], unplaced["geo_source"].map(DETAILS).fillna(""))
    districts = lookup.districts[["easting", "northing"]].dropna() if lookup is not None else None
    return ClusterInputs(firms, assignments, sectors, problems, districts)


def problem_rows(firms: pd.DataFrame, reason, detail) -> pd.DataFrame:
    """PROBLEM_COLUMNS for some of `firms` (each firm's postcode as the register gives it)."""
    return pd.DataFrame({"firm_id": firms["firm_id"].to_numpy(), "postcode": firms[GIVEN_POSTCODE].to_numpy(),
                         "reason": np.asarray(reason, dtype=object), "detail": np.asarray(detail, dtype=object)})


def load_inputs(labels_path, register_path, lookup_paths: list | None = None) -> ClusterInputs:
    """Read labels, register and postcode lookups from files (see build_inputs)."""
    labels = read_labels(labels_path)
    register = read_register(register_path)
    if not lookup_paths and not {"lat", "lon"} <= set(register.columns):
        raise RticError("no way to place firms: give a postcode lookup (--postcodes, ONSPD or district centroids) or a register with lat/lon columns")
    lookup = load_lookup(lookup_paths) if lookup_paths else None
    return build_inputs(labels, register, lookup)


def sector_firms(inputs: ClusterInputs, sector_id: str) -> pd.DataFrame:
    """The located firms assigned to one sector."""
    ids = inputs.assignments.loc[inputs.assignments["sector_id"] == sector_id, "firm_id"]
    located = inputs.located
    return located[member_of(located["firm_id"], ids)]


def area_column(inputs: ClusterInputs, area: str) -> str:
    """Check that an area level or column exists on the firms and return its column name."""
    if area not in inputs.firms.columns:
        have = [c for c in inputs.firms.columns if c not in {"firm_id", "easting", "northing", "geo_source"}]
        raise RticError(f"no area column {area!r}: the postcode lookup and register give {', '.join(have)}")
    return area
