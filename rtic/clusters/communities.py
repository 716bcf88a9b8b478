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
from rtic import config
from rtic.tables import check_input_file, read_table

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


SPREADSHEET_SUFFIXES = {".xlsx", ".xlsm"}
HEADER_SEARCH_ROWS = 20  # a title or notes may sit above the header row of a published spreadsheet


def _cell_text(value) -> str:
    """A spreadsheet cell as the text a CSV export would hold: 1234 (a number-typed CRN) → '1234', dates ISO."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _is_header(row: tuple) -> bool:
    names = {_cell_text(v).strip().lower() for v in row}
    return bool(names & set(_PROJECT)) and bool(names & set(_NAME + _CRN))


def _unique(names: list[str]) -> list[str]:
    """Repeated column names made distinct as pandas' CSV reader does: 'Postcode', 'Postcode.1'."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append(f"{name}.{count}" if count else name)
    return out


def read_spreadsheet(path: Path, what: str = "participation file") -> tuple[pd.DataFrame, np.ndarray]:
    """The first sheet of an .xlsx workbook with a participation header row (searched in its first rows), as strings,
    and the sheet row number of each row (blank rows are left out)."""
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile, XML, KeyError and its own errors for a damaged or foreign file
        raise RticError(f"cannot read {what} {path} as an .xlsx workbook ({type(exc).__name__}): save it as .xlsx or CSV") from None
    names = ", ".join(s.title for s in book.worksheets)
    try:
        for sheet in book.worksheets:
            sheet.reset_dimensions()  # rows as stored: a file's claimed dimensions could pad every row to 16,384 cells
            rows = sheet.iter_rows(values_only=True)
            for number in range(1, HEADER_SEARCH_ROWS + 1):
                header = next(rows, None)
                if header is None:
                    break
                if _is_header(header):
                    width = len(header)
                    columns = _unique([_cell_text(c).strip() or f"column {i + 1}" for i, c in enumerate(header)])
                    body, lines = [], []
                    for line, row in enumerate(rows, start=number + 1):
                        cells = [_cell_text(v) for v in row[:width]]
                        if any(c.strip() for c in cells):  # empty rows are formatting, not data
                            body.append(cells + [""] * (width - len(cells)))
                            lines.append(line)
                    return pd.DataFrame(body, columns=columns, dtype=str), np.array(lines, dtype=int)
    except Exception as exc:
        raise RticError(f"cannot read {what} {path}: the workbook is damaged ({type(exc).__name__})") from None
    finally:
        book.close()
    raise RticError(f"{what} {path}: no sheet ({names}) has a header row with 'Project Number' and 'Participant Name' or "
                    f"'CRN' in its first {HEADER_SEARCH_ROWS} rows")


def read_participation(path: str | Path) -> Participation:
    """Read project-participation rows (CSV, Parquet or .xlsx); rows without a project or any participant identity
    are reported."""
    path = Path(path)
    if path.suffix.lower() in SPREADSHEET_SUFFIXES:
        raw, lines = read_spreadsheet(check_input_file(path, "participation file"))
    elif path.suffix.lower() == ".xls":
        raise RticError(f"participation file {path} is an old binary .xls workbook: save it as .xlsx or CSV")
    else:
        raw = read_table(path, "participation file")
        lines = np.arange(len(raw)) + 2  # line 1 is the header
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
    rows["line"] = lines
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
