"""Review decisions in SQLite, append-only; published labels and retraining exports derived from them.

A decision says whether a firm is in a sector: `confirm` (the model assigned it and the reviewer
agrees), `reject` (not in the sector, whatever the model said) or `add` (in the sector though the
model did not assign it). A firm's history is never overwritten: a later decision on the same
(firm, sector) supersedes an earlier one, and both stay in the table. Triggers refuse UPDATE and
DELETE, and any INSERT that names an id not after the last one (REPLACE INTO, INSERT OR REPLACE
and upserts delete or rewrite the row they collide with without firing a DELETE trigger, and a
back-dated id would reorder the history), so the history cannot be rewritten through SQL either.
Opening the store puts back any trigger that was dropped.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from rtic.contracts import NO_TEXT
from rtic.errors import RticError

DECISIONS = ("confirm", "reject", "add")
IN_SECTOR = {"confirm": True, "add": True, "reject": False}
DECISION_COLUMNS = ["id", "firm_id", "sector_id", "decision", "reviewer", "note", "model_version", "decided_at"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    firm_id TEXT NOT NULL,
    sector_id TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('confirm', 'reject', 'add')),
    reviewer TEXT NOT NULL CHECK (length(trim(reviewer)) > 0),
    note TEXT NOT NULL DEFAULT '',
    model_version TEXT NOT NULL DEFAULT '',
    decided_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_firm ON decisions (firm_id, sector_id, id);
CREATE INDEX IF NOT EXISTS decisions_sector ON decisions (sector_id, firm_id);
CREATE TRIGGER IF NOT EXISTS decisions_no_update BEFORE UPDATE ON decisions
BEGIN SELECT RAISE(ABORT, 'review decisions are append-only'); END;
CREATE TRIGGER IF NOT EXISTS decisions_no_delete BEFORE DELETE ON decisions
BEGIN SELECT RAISE(ABORT, 'review decisions are append-only'); END;
-- NEW.id is -1 in a BEFORE INSERT trigger when the id is left to SQLite; an id given by the caller
-- must come after every stored one, so REPLACE INTO / INSERT OR REPLACE / an upsert cannot collide
-- with (and silently delete or rewrite) a stored decision, nor slip one into the past.
CREATE TRIGGER IF NOT EXISTS decisions_no_replace BEFORE INSERT ON decisions
WHEN NEW.id IS NOT NULL AND NEW.id <> -1 AND NEW.id <= (SELECT coalesce(max(id), 0) FROM decisions)
BEGIN SELECT RAISE(ABORT, 'review decisions are append-only: an id may not be reused or back-dated'); END;
-- Ids are positive, so -1 above can only mean "not given".
CREATE TRIGGER IF NOT EXISTS decisions_positive_id AFTER INSERT ON decisions WHEN NEW.id < 1
BEGIN SELECT RAISE(ABORT, 'review decision ids are positive'); END;
-- The decision in force for each (firm, sector): the latest one.
CREATE VIEW IF NOT EXISTS latest_decisions AS
SELECT d.* FROM decisions d
WHERE d.id = (SELECT max(id) FROM decisions e WHERE e.firm_id = d.firm_id AND e.sector_id = d.sector_id);
"""


TRIGGER = re.compile(r"CREATE TRIGGER IF NOT EXISTS (\w+) .*?END;", re.S)


def _squash(sql: str | None) -> str:
    return " ".join((sql or "").split())


@dataclass(frozen=True)
class Decision:
    id: int
    firm_id: str
    sector_id: str
    decision: str
    reviewer: str
    note: str
    model_version: str
    decided_at: str

    @property
    def in_sector(self) -> bool:
        return IN_SECTOR[self.decision]


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ReviewStore:
    """The reviews database. One connection per store object; safe for one thread at a time."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir():
            raise RticError(f"reviews database is a folder: {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.executescript(SCHEMA)
            self._check_triggers()
        except sqlite3.DatabaseError as exc:
            raise RticError(f"cannot open reviews database {self.path}: {exc}") from None

    def _check_triggers(self) -> None:
        """Put back any append-only trigger that was dropped or replaced by another of the same name."""
        wanted = {m.group(1): m.group(0).strip() for m in TRIGGER.finditer(SCHEMA)}
        have = dict(self.conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'decisions'").fetchall())
        stale = [name for name, sql in wanted.items() if _squash(have.get(name)) != _squash(sql.replace(" IF NOT EXISTS", "").rstrip(";"))]
        if stale:
            with self.conn:
                for name in stale:
                    self.conn.execute(f"DROP TRIGGER IF EXISTS {name}")
                    self.conn.execute(wanted[name])

    def close(self) -> None:
        self.conn.close()

    def record(self, firm_id: str, sector_id: str, decision: str, reviewer: str, note: str = "",
               model_version: str = "", decided_at: str | None = None) -> Decision:
        firm_id, sector_id, reviewer = str(firm_id).strip(), str(sector_id).strip(), str(reviewer or "").strip()
        if decision not in DECISIONS:
            raise RticError(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
        if not reviewer:
            raise RticError("a reviewer name is required for every decision")
        if not firm_id or not sector_id:
            raise RticError("a decision needs a firm id and a sector id")
        when = decided_at or now_utc()
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO decisions (firm_id, sector_id, decision, reviewer, note, model_version, decided_at) VALUES (?,?,?,?,?,?,?)",
                (firm_id, sector_id, decision, reviewer, note or "", str(model_version or ""), when),
            )
        return Decision(cur.lastrowid, firm_id, sector_id, decision, reviewer, note or "", str(model_version or ""), when)

    def history(self, firm_id: str) -> list[Decision]:
        """Every decision on a firm, oldest first."""
        rows = self.conn.execute(f"SELECT {', '.join(DECISION_COLUMNS)} FROM decisions WHERE firm_id = ? ORDER BY id", (str(firm_id),))
        return [Decision(*row) for row in rows]

    def latest(self, firm_id: str | None = None) -> dict[tuple[str, str], Decision]:
        """The decision in force per (firm, sector), for one firm or all."""
        sql = f"SELECT {', '.join(DECISION_COLUMNS)} FROM latest_decisions"
        rows = self.conn.execute(sql + " WHERE firm_id = ?", (str(firm_id),)) if firm_id is not None else self.conn.execute(sql)
        return {(r[1], r[2]): Decision(*r) for r in rows}

    def frame(self) -> pd.DataFrame:
        return pd.read_sql_query(f"SELECT {', '.join(DECISION_COLUMNS)} FROM decisions ORDER BY id", self.conn)


def check_decision(decision: str, model_assigned: bool | None) -> None:
    """`confirm` agrees with an assigned label and `add` supplies a missing one; say which to use otherwise."""
    if model_assigned is None:
        return
    if decision == "confirm" and not model_assigned:
        raise RticError("the model did not assign this sector: use 'add' to put the firm in it")
    if decision == "add" and model_assigned:
        raise RticError("the model already assigned this sector: use 'confirm' to agree with it")


def record_decision(reviews: str | Path, firm_id: str, sector_id: str, decision: str, reviewer: str, labels, note: str = "") -> Decision:
    """Record a decision in the reviews database `reviews`: the firm and sector must be in `labels` (a labels
    Parquet from rtic classify, or its exceptions), the decision is checked against the model's label and
    carries its model version. An unknown firm or sector is refused and nothing is stored."""
    from rtic.review.publish import decision_target

    target = decision_target(labels, firm_id, sector_id)
    check_decision(decision, target.model_assigned)
    store = ReviewStore(reviews)
    try:
        return store.record(firm_id, sector_id, decision, reviewer, note=note, model_version=target.model_version)
    finally:
        store.close()


def unknown_sector_decisions(decisions: dict[tuple[str, str], Decision], sector_ids) -> list[Decision]:
    """Decisions in force on sectors outside `sector_ids` (stored before decisions were checked, or by hand)."""
    known = set(sector_ids)
    return [d for (_, sector), d in decisions.items() if sector not in known]


def publish(labels: pd.DataFrame, decisions: dict[tuple[str, str], Decision], sector_ids=None) -> pd.DataFrame:
    """Model labels with the decisions in force applied.

    Adds `model_assigned` (what the model said), `decision`, `reviewer`, `decided_at` and `source`
    ('model' or 'review'); `assigned` becomes the published verdict. A decision on a (firm, sector)
    the labels do not have (e.g. a firm classified since by another model run) becomes its own row
    with no probability, so no decision is lost. Only sectors in `sector_ids` (default: the sectors of
    the labels, i.e. the model's taxonomy) are ever published: a decision on any other sector is left
    out (`unknown_sector_decisions` lists them, for the caller to report).
    """
    known = set(labels["sector_id"].astype(str)) if sector_ids is None else set(sector_ids)
    decisions = {k: d for k, d in decisions.items() if k[1] in known}
    out = labels.copy()
    out["model_assigned"] = out["assigned"].astype(bool)
    keys = list(zip(out["firm_id"].astype(str), out["sector_id"].astype(str)))
    found = [decisions.get(k) for k in keys]
    out["decision"] = [d.decision if d else None for d in found]
    out["reviewer"] = [d.reviewer if d else None for d in found]
    out["decided_at"] = [d.decided_at if d else None for d in found]
    out["assigned"] = [d.in_sector if d else m for d, m in zip(found, out["model_assigned"])]
    out["source"] = ["review" if d else "model" for d in found]
    extra = [d for k, d in decisions.items() if k not in set(keys)]
    if extra:
        rows = pd.DataFrame({
            "firm_id": [d.firm_id for d in extra], "sector_id": [d.sector_id for d in extra],
            "probability": float("nan"), "assigned": [d.in_sector for d in extra], "model_assigned": False,
            "model_version": [d.model_version for d in extra], "decision": [d.decision for d in extra],
            "reviewer": [d.reviewer for d in extra], "decided_at": [d.decided_at for d in extra], "source": "review",
        })
        out = pd.concat([out, rows], ignore_index=True)
    return out.sort_values(["firm_id", "sector_id"], kind="stable").reset_index(drop=True)


def reviewed_firms(published: pd.DataFrame, texts: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Firms with at least one decision as labelled firms (firm_id, text, sectors) for retraining.

    `sectors` is the firm's published sector set: reviewed sectors as decided, the others as the
    model assigned them; `reviewed_sectors` says which were decided. Firms whose text is unknown go
    to the second frame with their reason instead of being dropped.
    """
    reviewed = published[published["source"] == "review"]["firm_id"].unique()
    rows, missing = [], []
    for firm_id, group in published[published["firm_id"].isin(reviewed)].groupby("firm_id", sort=True):
        text = texts.get(firm_id, "")
        if not str(text).strip():
            missing.append({"firm_id": firm_id, "reason": NO_TEXT, "detail": "firm not in the register/crawl store, or its text is empty"})
            continue
        sectors = sorted(group.loc[group["assigned"].astype(bool), "sector_id"])
        decided = sorted(group.loc[group["source"] == "review", "sector_id"])
        rows.append({"firm_id": firm_id, "text": text, "sectors": "|".join(sectors), "reviewed_sectors": "|".join(decided)})
    return (pd.DataFrame(rows, columns=["firm_id", "text", "sectors", "reviewed_sectors"]),
            pd.DataFrame(missing, columns=["firm_id", "reason", "detail"]))
