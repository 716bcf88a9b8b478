"""The `rtic clusters` stages end to end: read inputs, compute, write tables beside each other (what the CLI calls)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from rtic.clusters.communities import CommunityParams, CommunityResult, find_communities, read_participation
from rtic.clusters.geography import load_area_names
from rtic.clusters.gis import write_gis
from rtic.clusters.inputs import ClusterInputs
from rtic.clusters.spatial import SpatialParams, SpatialResult, spatial_clusters
from rtic.clusters.specialisation import SpecialisationParams, choose_area, left_out, specialisation
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
class SpecialisationRun:
    table: pd.DataFrame  # SPECIALISATION_COLUMNS
    area: str  # the area level used (`auto` resolved)
    note: str  # why `auto` chose it ('' when named)
    left_out: pd.DataFrame  # PROBLEM_COLUMNS: labelled firms not counted in any area, and why
    left_out_path: Path

    @property
    def notes(self) -> list[str]:
        """What a user should read: the area chosen, and how many firms it counts and leaves out (and why)."""
        counted = int(self.table.groupby("area_code")["area_firms"].first().sum())
        reasons = ", ".join(f"{r}: {n}" for r, n in self.left_out["reason"].value_counts().items())
        lines = [self.note] if self.note else []
        lines.append(f"specialisation by {self.area}: {counted} labelled firm(s) counted in {self.table['area_code'].nunique()} area(s), "
                     f"{len(self.left_out)} not counted" + (f" ({reasons}; listed in {self.left_out_path.name})" if len(self.left_out) else ""))
        return lines


def run_specialisation(inputs: ClusterInputs, out, area: str, params: SpecialisationParams = SpecialisationParams(),
                       names_path=None) -> SpecialisationRun:
    """Location quotients by area (names from `names_path`: JSON object or code,name CSV, when given); write OUT and
    OUT.unplaced.csv (every labelled firm not counted, with its reason)."""
    out = check_out(out)
    names = load_area_names(names_path) if names_path else None
    column, note = choose_area(inputs, area)
    table = specialisation(inputs, column, params, names)
    gone = left_out(inputs, column)
    write_atomically(table, out)
    path = write_atomically(gone, sibling(out, "unplaced", ".csv"))
    return SpecialisationRun(table, column, note, gone, path)


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
    """Cluster, type, and write OUT (clusters), OUT.members, the GeoJSON files (gis_paths) and OUT.unplaced.csv."""
    out = check_out(out)
    collab = load_collaboration(participation, inputs, community_params) if participation else None
    spatial = spatial_clusters(inputs, params, sectors)
    table = spatial.clusters
    types = type_spatial(inputs, spatial, collab, typology)
    if len(types):
        table = table.merge(types.drop(columns=["member_firms"]).rename(columns={"group_id": "cluster_id"}), on="cluster_id", how="left")
    write_atomically(table, out)
    write_atomically(spatial.members, sibling(out, "members"))
    write_gis(spatial, table, *gis_paths(out))
    write_unplaced(inputs, out)
    return spatial, table, collab


def gis_paths(out) -> tuple[Path, Path, Path]:
    """OUT.hulls.geojson, OUT.centroids.geojson, OUT.members.geojson (see clusters.gis)."""
    return tuple(sibling(out, tag, ".geojson") for tag in ("hulls", "centroids", "members"))


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


def run_report(inputs: ClusterInputs, out_dir, area: str, spec_params: SpecialisationParams, names_path, spatial_params: SpatialParams,
               typology: TypologyParams, participation=None, community_params: CommunityParams = CommunityParams()) -> tuple[Path, list[str]]:
    """Specialisation, spatial clusters and (with participation) communities as CSV under out_dir, plus the HTML report and maps."""
    from rtic.clusters.report import write_report

    out_dir = Path(out_dir)
    run = run_specialisation(inputs, out_dir / "specialisation.csv", area, spec_params, names_path)
    spatial, clusters, collab = run_spatial(inputs, out_dir / "clusters.csv", spatial_params, typology, participation, community_params)
    communities = None
    if participation:
        collab, communities = run_communities(inputs, participation, out_dir / "communities.csv", community_params, typology)
    notes = run.notes + spatial.notes + (collab.notes if collab else [])
    return write_report(out_dir, inputs, run.table, spatial, clusters, communities, notes), notes
