"""The `rtic clusters` stages end to end: read inputs, compute, write tables beside each other (what the CLI calls)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from rtic.clusters.communities import CommunityParams, CommunityResult, find_communities, read_participation
from rtic.clusters.geography import load_area_names
from rtic.clusters.inputs import ClusterInputs
from rtic.clusters.spatial import SpatialParams, SpatialResult, spatial_clusters
from rtic.clusters.specialisation import SpecialisationParams, specialisation
from rtic.clusters.typology import TypologyParams, group_criteria, rd_active_firms
from rtic.contracts import sibling_path
from rtic.errors import RticError
from rtic.tables import PARQUET_SUFFIXES, write_atomically


def sibling(out: str | Path, tag: str, suffix: str | None = None) -> Path:
    """clusters.parquet + 'members' → clusters.members.parquet (same folder, same format unless told)."""
    out = Path(out)
    return sibling_path(out, f".{tag}{suffix or out.suffix}")


def check_out(out: str | Path) -> Path:
    out = Path(out)
    if out.suffix.lower() not in PARQUET_SUFFIXES | {".csv"}:
        raise RticError(f"--out must end in .parquet or .csv, got {out}")
    return out


def write_unplaced(inputs: ClusterInputs, out: Path) -> Path:
    """Every labelled firm without coordinates, with its reason, beside the main output (always written)."""
    return write_atomically(inputs.problems, sibling(out, "unplaced", ".csv"))


@dataclass
class CollaborationData:
    """Funded-project participation matched to firms: who is R&D-active and which firms share projects."""

    communities: CommunityResult
    firm_edges: pd.DataFrame  # a, b: firm ids sharing at least one project
    rd_firms: set[str]
    problems: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def load_collaboration(path, inputs: ClusterInputs, params: CommunityParams = CommunityParams()) -> CollaborationData:
    participation = read_participation(path)
    result = find_communities(participation, inputs.firms["firm_id"], params)
    to_firm = result.members.set_index("participant_id")["firm_id"]
    edges = result.edges.assign(a=result.edges["a"].map(to_firm), b=result.edges["b"].map(to_firm)).dropna(subset=["a", "b"])
    participants = set(result.members["firm_id"].dropna())
    matched = len(participants)
    notes = list(result.notes) + [f"{matched} participant(s) matched to labelled firms by CRN, of {len(result.members)} in the network"]
    return CollaborationData(result, edges[["a", "b", "weight"]], rd_active_firms(inputs, participants), participation.problems, notes)


def type_spatial(inputs: ClusterInputs, spatial: SpatialResult, collab: CollaborationData | None,
                 params: TypologyParams) -> pd.DataFrame:
    """Criteria and type for each spatial cluster: co-located by construction, specialised by footprint LQ."""
    membership = spatial.members.dropna(subset=["cluster_id"]).rename(columns={"cluster_id": "group_id"})
    if membership.empty:
        return pd.DataFrame()
    rd = collab.rd_firms if collab else rd_active_firms(inputs, set())
    edges = collab.firm_edges if collab else pd.DataFrame(columns=["a", "b"])
    lq = spatial.clusters.set_index("cluster_id")["lq"]
    colocated = pd.Series(True, index=lq.index)
    return group_criteria(membership, inputs, rd, edges, params, specialised=lq >= params.lq_threshold, colocated=colocated)


def type_communities(inputs: ClusterInputs, collab: CollaborationData, params: TypologyParams) -> pd.DataFrame:
    members = collab.communities.members.dropna(subset=["community_id", "firm_id"])
    membership = members.rename(columns={"community_id": "group_id"})[["group_id", "firm_id"]]
    if membership.empty:
        return pd.DataFrame()
    return group_criteria(membership, inputs, collab.rd_firms, collab.firm_edges, params)


def run_spatial(inputs: ClusterInputs, out, params: SpatialParams, typology: TypologyParams,
                participation=None, community_params: CommunityParams = CommunityParams(), sectors=None):
    """Cluster, type, and write OUT (clusters), OUT.members, OUT.unplaced.csv."""
    out = check_out(out)
    collab = load_collaboration(participation, inputs, community_params) if participation else None
    spatial = spatial_clusters(inputs, params, sectors)
    table = spatial.clusters
    types = type_spatial(inputs, spatial, collab, typology)
    if len(types):
        table = table.merge(types.drop(columns=["member_firms"]).rename(columns={"group_id": "cluster_id"}), on="cluster_id", how="left")
    write_atomically(table, out)
    write_atomically(spatial.members, sibling(out, "members"))
    write_unplaced(inputs, out)
    return spatial, table, collab


def run_communities(inputs: ClusterInputs, participation, out, params: CommunityParams, typology: TypologyParams):
    """Find and type communities; write OUT (one row per community), OUT.members, OUT.unplaced.csv, OUT.participation_problems.csv."""
    out = check_out(out)
    collab = load_collaboration(participation, inputs, params)
    types = type_communities(inputs, collab, typology)
    members = collab.communities.members
    table = collab.communities.summary
    if len(types):
        table = table.merge(types.rename(columns={"group_id": "community_id"}), on="community_id", how="left")
    if "cluster_type" in table.columns:
        table["cluster_type"] = table["cluster_type"].fillna("no labelled firms")
    write_atomically(table, out)
    write_atomically(members, sibling(out, "members"))
    write_atomically(collab.problems, sibling(out, "participation_problems", ".csv"))
    write_unplaced(inputs, out)
    return collab, table


def area_specialisation(inputs: ClusterInputs, area: str, params: SpecialisationParams, names_path=None) -> pd.DataFrame:
    """Specialisation by `area`, with area names from `names_path` (JSON object or code,name CSV) when given."""
    names = load_area_names(names_path) if names_path else None
    return specialisation(inputs, area, params, names)


def run_specialisation(inputs: ClusterInputs, out, area: str, params: SpecialisationParams, names_path=None) -> tuple[pd.DataFrame, Path]:
    """Specialisation by area; write OUT and OUT.unplaced.csv; return the table and the unplaced file."""
    out = check_out(out)
    table = area_specialisation(inputs, area, params, names_path)
    write_atomically(table, out)
    return table, write_unplaced(inputs, out)


def run_report(inputs: ClusterInputs, out_dir, area: str, spec_params: SpecialisationParams, names_path, spatial_params: SpatialParams,
               typology: TypologyParams, participation=None, community_params: CommunityParams = CommunityParams()) -> Path:
    """Specialisation, spatial clusters and (with participation) communities as CSV under out_dir, plus the HTML report and maps."""
    from rtic.clusters.report import write_report

    out_dir = Path(out_dir)
    spec = area_specialisation(inputs, area, spec_params, names_path)
    write_atomically(spec, out_dir / "specialisation.csv")
    spatial, clusters, collab = run_spatial(inputs, out_dir / "clusters.csv", spatial_params, typology, participation, community_params)
    communities = None
    if participation:
        collab, communities = run_communities(inputs, participation, out_dir / "communities.csv", community_params, typology)
    notes = spatial.notes + (collab.notes if collab else [])
    return write_report(out_dir, inputs, spec, spatial, clusters, communities, notes)
