"""Collaboration communities: funded-project participation → co-participation network → Louvain communities.

Input rows follow the Innovate UK funded-projects layout (one row per participant per project: `Project Number`,
`Participant Name`, `CRN`, `Postcode`, …). A participant is identified by its Companies House number (CRN) when it
has one, so it can be matched to labelled firms; otherwise by its normalised name (universities, public bodies,
firms without a CRN), so that they still connect the firms they work with.

Two participants are linked with weight = the number of projects they share. Projects with more than
`max_participants` participants (large consortia where every pair would be linked) are left out of the network and
reported. Communities are found with networkx's Louvain method, seeded so that a run is repeatable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rtic.errors import RticError
from rtic.tables import read_table
from rtic import config

# Column names in the Innovate UK file (and plainer ones a user may have).
_PROJECT = ["project number", "project_number", "project_id", "project"]
_NAME = ["participant name", "participant_name", "participant", "name"]
_CRN = ["crn", "company number", "company_number", "companynumber", "firm_id"]
_POSTCODE = ["postcode", "participant postcode"]
PARTICIPATION_COLUMNS = ["project_id", "participant_id", "participant_name", "crn", "postcode"]
MEMBER_COLUMNS = ["community_id", "participant_id", "participant_name", "firm_id", "degree", "projects"]


@dataclass(frozen=True)
class CommunityParams:
    max_participants: int = config.MAX_PARTICIPANTS
    min_members: int = 3
    resolution: float = config.RESOLUTION
    seed: int = config.SEED


@dataclass
class Participation:
    rows: pd.DataFrame  # PARTICIPATION_COLUMNS, one row per (project, participant)
    problems: pd.DataFrame  # line, reason


@dataclass
class CommunityResult:
    members: pd.DataFrame  # MEMBER_COLUMNS; community_id None for participants in communities below min_members
    edges: pd.DataFrame  # a, b, weight (participant ids)
    summary: pd.DataFrame  # community_id, participants, firms, internal_projects (projects with 2+ of its members)
    notes: list[str]


def _find(columns: list[str], names: list[str]) -> str | None:
    lower = {c.strip().lower(): c for c in columns}
    return next((lower[n] for n in names if n in lower), None)


def normalise_crn(value) -> str:
    """Companies House numbers: upper-case, no spaces, numeric ones zero-padded to 8 ('1234' → '00001234')."""
    text = re.sub(r"\s+", "", str(value or "")).upper()
    if text in {"", "NAN", "NONE", "N/A", "NA", "-"}:
        return ""
    return text.zfill(8) if text.isdigit() and len(text) < 8 else text


def _normalise_name(value) -> str:
    text = re.sub(r"[^a-z0-9 ]", " ", str(value or "").lower())
    text = re.sub(r"\b(limited|ltd|plc|llp)\b", " ", text)
    return " ".join(text.split())


def read_participation(path: str | Path) -> Participation:
    """Read project-participation rows; rows without a project or any participant identity are reported."""
    raw = read_table(path, "participation file")
    cols = list(raw.columns)
    project, name, crn, postcode = (_find(cols, n) for n in (_PROJECT, _NAME, _CRN, _POSTCODE))
    if project is None or (name is None and crn is None):
        raise RticError(f"participation file {path} needs a 'Project Number' column and 'Participant Name' or 'CRN' (columns: {', '.join(cols[:12])})")
    empty = pd.Series("", index=raw.index)
    proj = raw[project].astype(str).str.strip()
    names = raw[name].astype(str).str.strip() if name else empty
    crns = (raw[crn] if crn else empty).map(normalise_crn)
    keys = names.map(_normalise_name)
    participant = np.where(crns != "", crns, np.where(keys != "", "name:" + keys, ""))
    rows = pd.DataFrame({"project_id": proj, "participant_id": participant, "participant_name": names, "crn": crns,
                         "postcode": raw[postcode].astype(str).str.strip() if postcode else empty})
    rows["line"] = np.arange(len(rows)) + 2
    no_project = rows["project_id"].isin(["", "nan", "None"])
    no_one = rows["participant_id"] == ""
    problems = pd.concat([
        rows.loc[no_project, ["line"]].assign(reason="no project number"),
        rows.loc[~no_project & no_one, ["line"]].assign(reason="no participant name or CRN"),
    ], ignore_index=True)
    good = rows[~no_project & ~no_one].drop_duplicates(["project_id", "participant_id"])
    return Participation(good[PARTICIPATION_COLUMNS].reset_index(drop=True), problems)


def co_participation_edges(rows: pd.DataFrame, max_participants: int) -> tuple[pd.DataFrame, list[str]]:
    """Pairs of participants sharing projects: a < b, weight = shared projects."""
    sizes = rows.groupby("project_id")["participant_id"].transform("size")
    big = rows.loc[sizes > max_participants, "project_id"].unique()
    notes = [f"{len(big)} project(s) with more than {max_participants} participants left out of the network: {', '.join(map(str, big[:5]))}"] if len(big) else []
    small = rows.loc[(sizes >= 2) & (sizes <= max_participants), ["project_id", "participant_id"]]
    pairs = small.merge(small, on="project_id", suffixes=("_a", "_b"))
    pairs = pairs[pairs["participant_id_a"] < pairs["participant_id_b"]]
    edges = pairs.groupby(["participant_id_a", "participant_id_b"]).size().rename("weight").reset_index()
    return edges.rename(columns={"participant_id_a": "a", "participant_id_b": "b"}), notes


def find_communities(participation: Participation, firm_ids: pd.Series | list, params: CommunityParams = CommunityParams()) -> CommunityResult:
    """Louvain communities of the co-participation network; members matched to labelled firms by CRN."""
    import networkx as nx

    rows = participation.rows
    if rows.empty:
        raise RticError("the participation file has no usable rows")
    edges, notes = co_participation_edges(rows, params.max_participants)
    graph = nx.Graph()
    graph.add_nodes_from(rows["participant_id"].unique())
    graph.add_weighted_edges_from(edges[["a", "b", "weight"]].itertuples(index=False, name=None))
    parts = nx.community.louvain_communities(graph, weight="weight", resolution=params.resolution, seed=params.seed)
    # Stable ids: largest community first, ties broken by its smallest member id.
    parts = sorted((sorted(p) for p in parts), key=lambda p: (-len(p), p[0]))
    community = {}
    kept = 0
    for part in parts:
        if len(part) < params.min_members:
            continue
        kept += 1
        for node in part:
            community[node] = f"C{kept}"
    if kept == 0:
        notes.append(f"no community has {params.min_members} or more participants")
    firms = {normalise_crn(f): f for f in pd.Series(firm_ids).astype(str)}
    firms.update({f: f for f in pd.Series(firm_ids).astype(str)})  # ids that are not CRNs match as they are
    first = rows.drop_duplicates("participant_id").set_index("participant_id")
    nodes = list(graph.nodes)
    members = pd.DataFrame({
        "community_id": [community.get(n) for n in nodes],
        "participant_id": nodes,
        "participant_name": first["participant_name"].reindex(nodes).to_numpy(),
        "firm_id": [firms.get(n) for n in nodes],
        "degree": [graph.degree(n) for n in nodes],
        "projects": rows.groupby("participant_id").size().reindex(nodes).to_numpy(),
    })
    members = members.sort_values(["community_id", "participant_id"], na_position="last", kind="stable").reset_index(drop=True)
    return CommunityResult(members[MEMBER_COLUMNS], edges, summarise(members, rows), notes)


def summarise(members: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Per community: participants, matched firms, and projects with at least two of its members."""
    kept = members.dropna(subset=["community_id"])
    joined = rows.merge(kept[["participant_id", "community_id"]], on="participant_id")
    per_project = joined.groupby(["community_id", "project_id"]).size()
    internal = (per_project >= 2).groupby(level="community_id").sum()
    groups = kept.groupby("community_id")
    out = pd.DataFrame({"participants": groups.size(), "firms": groups["firm_id"].count()})
    out["internal_projects"] = internal.reindex(out.index, fill_value=0).astype(int)
    out = out.rename_axis("community_id").reset_index()
    return out.sort_values("community_id", key=lambda c: c.str[1:].astype(int)).reset_index(drop=True)
