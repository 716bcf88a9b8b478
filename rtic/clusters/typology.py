"""The four criteria and four types of the UK Innovation Clusters Map, as precise rules on a group of labelled firms.

A *group* is a spatial cluster (one sector's firms close together) or a collaboration community (participants
linked by shared funded projects). For a group with member firms M (labelled firms only):

- **R&D-active**: at least `rd_share` of M took part in a funded project (any row of the participation file),
  or carry a true `rd_active` column in the register.
- **Co-located**: spatial clusters are, by construction. A community is when at least `colocated_share` of its
  located members lie within `colocated_km` of the members' median point (coordinate-wise median in BNG metres).
- **Specialised**: a spatial cluster is when its footprint LQ (see spatial.py) ≥ `lq_threshold`. A community is
  when its dominant sector s (most assigned members) has at least `min_sector_firms` members and
  LQ = (members in s / |M|) / (national share of s) ≥ `lq_threshold`.
- **Collaborating**: at least `collab_share` of M share a funded project with another member of the same group.

Types, for R&D-active groups (others get "not R&D-active"):

| co-located | specialised | collaborating | type |
| --- | --- | --- | --- |
| yes | yes | any | Specialised |
| yes | no | yes | R&D Collaborating |
| yes | no | no | Diverse |
| no | yes | yes | Dispersed |
| no | otherwise | | none |
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rtic.clusters.inputs import ClusterInputs, parse_assigned
from rtic import config

SPECIALISED, RD_COLLABORATING, DIVERSE, DISPERSED = "Specialised", "R&D Collaborating", "Diverse", "Dispersed"
NOT_RD_ACTIVE, NO_TYPE = "not R&D-active", "none"
CRITERIA_COLUMNS = [
    "group_id", "member_firms", "rd_active_firms", "rd_active_share", "rd_active", "located_firms", "colocated_share",
    "colocated", "dominant_sector", "dominant_firms", "dominant_lq", "specialised", "collaborating_firms",
    "collaborating_share", "collaborating", "cluster_type",
]


@dataclass(frozen=True)
class TypologyParams:
    rd_share: float = config.RD_SHARE
    colocated_km: float = config.COLOCATED_KM
    colocated_share: float = 0.5
    lq_threshold: float = config.LQ_THRESHOLD
    min_sector_firms: int = config.MIN_GROUP_FIRMS
    collab_share: float = config.COLLAB_SHARE


def cluster_type(rd_active: bool, colocated: bool, specialised: bool, collaborating: bool) -> str:
    """The decision table in the module docstring."""
    if not rd_active:
        return NOT_RD_ACTIVE
    if colocated:
        if specialised:
            return SPECIALISED
        return RD_COLLABORATING if collaborating else DIVERSE
    return DISPERSED if specialised and collaborating else NO_TYPE


def rd_active_firms(inputs: ClusterInputs, participant_firms: set[str]) -> set[str]:
    """Firms in a funded project, plus those the register marks rd_active."""
    active = set(participant_firms)
    if "rd_active" in inputs.firms.columns:
        flags = inputs.firms["rd_active"].fillna("false")
        active |= set(inputs.firms.loc[parse_assigned(flags, "register rd_active column"), "firm_id"])
    return active


def collaborating_firms(membership: pd.DataFrame, edges: pd.DataFrame) -> pd.Series:
    """Per group, how many member firms share a project with another member of the same group."""
    if edges.empty or membership.empty:
        return pd.Series(dtype=int)
    pairs = edges.merge(membership, left_on="a", right_on="firm_id").merge(
        membership, left_on="b", right_on="firm_id", suffixes=("_a", "_b"))
    pairs = pairs[pairs["group_id_a"] == pairs["group_id_b"]]
    ends = pd.concat([pairs[["group_id_a", "firm_id_a"]].set_axis(["group_id", "firm_id"], axis=1),
                      pairs[["group_id_a", "firm_id_b"]].set_axis(["group_id", "firm_id"], axis=1)])
    return ends.drop_duplicates().groupby("group_id").size()


def group_criteria(membership: pd.DataFrame, inputs: ClusterInputs, rd_firms: set[str], edges: pd.DataFrame,
                   params: TypologyParams = TypologyParams(), specialised: pd.Series | None = None,
                   colocated: pd.Series | None = None) -> pd.DataFrame:
    """One row per group of `membership` (group_id, firm_id) with each criterion and the type.

    `specialised` / `colocated` (indexed by group_id) replace the community rules for groups judged otherwise
    (spatial clusters: co-located by construction, specialised by footprint LQ). `edges` link firm ids (a, b).
    """
    membership = membership[["group_id", "firm_id"]].drop_duplicates()
    firm_edges = edges[["a", "b"]] if len(edges) else pd.DataFrame(columns=["a", "b"])
    groups = membership.groupby("group_id")
    out = pd.DataFrame({"member_firms": groups.size()})
    out["rd_active_firms"] = membership[membership["firm_id"].isin(rd_firms)].groupby("group_id").size().reindex(out.index, fill_value=0)
    out["rd_active_share"] = out["rd_active_firms"] / out["member_firms"]
    out["rd_active"] = out["rd_active_share"] >= params.rd_share

    located = membership.merge(inputs.located[["firm_id", "easting", "northing"]], on="firm_id")
    med = located.groupby("group_id")[["easting", "northing"]].transform("median")
    near = np.hypot(located["easting"] - med["easting"], located["northing"] - med["northing"]) <= params.colocated_km * 1000
    out["located_firms"] = located.groupby("group_id").size().reindex(out.index, fill_value=0)
    out["colocated_share"] = (near.groupby(located["group_id"]).sum().reindex(out.index, fill_value=0) / out["located_firms"]).fillna(0.0)
    out["colocated"] = (out["colocated_share"] >= params.colocated_share) & (out["located_firms"] > 0)

    labelled = membership.merge(inputs.assignments, on="firm_id")
    by_sector = labelled.groupby(["group_id", "sector_id"]).size().rename("n").reset_index()
    by_sector = by_sector.sort_values(["group_id", "n", "sector_id"], ascending=[True, False, True]).drop_duplicates("group_id").set_index("group_id")
    n_firms = inputs.firms["firm_id"].nunique()
    national = inputs.assignments.groupby("sector_id").size() / n_firms
    out["dominant_sector"] = by_sector["sector_id"].reindex(out.index)
    out["dominant_firms"] = by_sector["n"].reindex(out.index).fillna(0).astype(int)
    out["dominant_lq"] = (out["dominant_firms"] / out["member_firms"]) / out["dominant_sector"].map(national)
    out["specialised"] = (out["dominant_lq"] >= params.lq_threshold) & (out["dominant_firms"] >= params.min_sector_firms)

    out["collaborating_firms"] = collaborating_firms(membership, firm_edges).reindex(out.index, fill_value=0)
    out["collaborating_share"] = out["collaborating_firms"] / out["member_firms"]
    out["collaborating"] = out["collaborating_share"] >= params.collab_share

    if specialised is not None:
        out["specialised"] = specialised.reindex(out.index).fillna(False).astype(bool)
    if colocated is not None:
        out["colocated"] = colocated.reindex(out.index).fillna(False).astype(bool)
    out["cluster_type"] = [cluster_type(*row) for row in out[["rd_active", "colocated", "specialised", "collaborating"]].itertuples(index=False)]
    return out.rename_axis("group_id").reset_index()[CRITERIA_COLUMNS]
