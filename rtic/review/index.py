"""A SQLite index over a firm-labels file (and optionally its register), for lookups in milliseconds.

The labels Parquet of a monthly run has one row per firm and sector (9M rows for 1M firms), far too
many to scan per request. The index keeps them keyed by firm and by sector, full-text indexes over
firm names and over the register's texts, and the (firm, sector) pairs whose probability lies within `margin` of the sector's
threshold ("near"). It is derived data: rebuilt when the labels or register file changes, written
to a temporary file and moved into place, so a reader never sees half an index.

Thresholds come from the model when known (its meta artifact); otherwise they are inferred from the
labels themselves: any cut between the highest unassigned and the lowest assigned probability gives
the same labels, so the midpoint is used.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from rtic.contracts import sibling_path
from rtic.errors import RticError
from rtic.tables import atomic_path
from rtic import config

log = logging.getLogger(__name__)

INDEX_VERSION = "2"
DEFAULT_MARGIN = config.REVIEW_MARGIN
LABEL_FIELDS = ["firm_id", "sector_id", "probability", "assigned", "model_name", "model_version", "taxonomy_version", "text_sha256", "classified_at"]

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE firms (rid INTEGER PRIMARY KEY, firm_id TEXT NOT NULL UNIQUE, name TEXT NOT NULL DEFAULT '', website TEXT NOT NULL DEFAULT '',
    model_name TEXT, model_version TEXT, taxonomy_version TEXT, text_sha256 TEXT, classified_at TEXT, not_classified TEXT);
CREATE TABLE labels (firm_id TEXT NOT NULL, sector_id TEXT NOT NULL, probability REAL NOT NULL, assigned INTEGER NOT NULL,
    PRIMARY KEY (firm_id, sector_id)) WITHOUT ROWID;
CREATE TABLE texts (firm_id TEXT PRIMARY KEY, text TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE thresholds (model_version TEXT NOT NULL, sector_id TEXT NOT NULL, threshold REAL NOT NULL, source TEXT NOT NULL,
    PRIMARY KEY (model_version, sector_id));
"""
INDEXES = """
CREATE INDEX labels_sector ON labels (sector_id, assigned, firm_id);
CREATE TABLE near (firm_id TEXT NOT NULL, sector_id TEXT NOT NULL, gap REAL NOT NULL, PRIMARY KEY (firm_id, sector_id)) WITHOUT ROWID;
CREATE VIRTUAL TABLE names_fts USING fts5 (name, content='firms', content_rowid='rid', tokenize='unicode61');
INSERT INTO names_fts (names_fts) VALUES ('rebuild');
-- Words of the texts, keyed by the firm's rid. Contentless and without positions (the texts table
-- keeps the text itself; a search is words with prefixes, never a phrase), so it stays small.
CREATE VIRTUAL TABLE texts_fts USING fts5 (text, content='', detail=none, tokenize='unicode61');
INSERT INTO texts_fts (rowid, text) SELECT f.rid, t.text FROM texts t JOIN firms f USING (firm_id);
"""


def default_index_path(labels: Path) -> Path:
    return sibling_path(labels, ".review-index.sqlite")


def _signature(path: Path | None) -> str:
    if path is None:
        return ""
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


@dataclass
class IndexSources:
    labels: Path
    register: Path | None = None
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)  # model_version -> sector -> threshold
    margin: float = DEFAULT_MARGIN

    def signature(self) -> str:
        return json.dumps([INDEX_VERSION, _signature(self.labels), _signature(self.register), self.thresholds, self.margin], sort_keys=True)


def _insert_labels(conn: sqlite3.Connection, labels: Path) -> int:
    from rtic.firm_labels import open_labels_parquet

    pf = open_labels_parquet(labels, LABEL_FIELDS)
    total, done, last_firm = pf.metadata.num_rows, 0, None
    for batch in pf.iter_batches(batch_size=200_000, columns=LABEL_FIELDS):
        cols = batch.to_pydict()
        conn.executemany("INSERT OR REPLACE INTO labels VALUES (?,?,?,?)",
                         zip(cols["firm_id"], cols["sector_id"], cols["probability"], (int(bool(a)) for a in cols["assigned"])))
        # Labels are long form: the firm's columns repeat on each of its sector rows; keep one.
        firm_rows = [(f, mn, mv, tv, th, ca) for f, mn, mv, tv, th, ca in zip(
            cols["firm_id"], cols["model_name"], cols["model_version"], cols["taxonomy_version"], cols["text_sha256"], cols["classified_at"])]
        firm_rows = [r for i, r in enumerate(firm_rows) if r[0] != (firm_rows[i - 1][0] if i else last_firm)]
        conn.executemany("INSERT INTO firms (firm_id, model_name, model_version, taxonomy_version, text_sha256, classified_at) VALUES (?,?,?,?,?,?)"
                         " ON CONFLICT (firm_id) DO NOTHING", firm_rows)
        last_firm = cols["firm_id"][-1] if cols["firm_id"] else last_firm
        done += batch.num_rows
        log.info(f"  indexed {done:,}/{total:,} label rows")
    return total


def _insert_register(conn: sqlite3.Connection, register: Path) -> None:
    from rtic.register import read_register

    df = read_register(register)
    names = df["name"].fillna("").astype(str) if "name" in df.columns else [""] * len(df)
    websites = df["website"].fillna("").astype(str).str.strip() if "website" in df.columns else [""] * len(df)
    conn.executemany("INSERT INTO firms (firm_id, name, website) VALUES (?, ?, ?)"
                     " ON CONFLICT (firm_id) DO UPDATE SET name = excluded.name, website = excluded.website",
                     zip(df["firm_id"], names, websites))
    if "text" in df.columns:
        conn.executemany("INSERT OR REPLACE INTO texts VALUES (?, ?)",
                         ((f, t) for f, t in zip(df["firm_id"], df["text"].fillna("").astype(str)) if t.strip()))
    log.info(f"  indexed {len(df):,} register rows (names, websites, texts)")


def _insert_exceptions(conn: sqlite3.Connection, labels: Path) -> None:
    """Firms `rtic classify` could not classify, with its reason, so a search still finds them."""
    path = sibling_path(labels, ".exceptions.csv")
    if not path.is_file() or path.stat().st_size == 0:
        return
    import pandas as pd

    ex = pd.read_csv(path, dtype=str, keep_default_na=False)
    if {"firm_id", "reason"} <= set(ex.columns):
        conn.executemany("INSERT INTO firms (firm_id, not_classified) VALUES (?, ?) ON CONFLICT (firm_id) DO UPDATE SET not_classified = excluded.not_classified",
                         zip(ex["firm_id"], ex["reason"]))


def _fill_thresholds(conn: sqlite3.Connection, given: dict[str, dict[str, float]], margin: float) -> list[str]:
    """Fill thresholds and the near table; returns the sector ids seen."""
    rows = conn.execute(
        "SELECT f.model_version, l.sector_id, max(CASE WHEN l.assigned = 0 THEN l.probability END),"
        " min(CASE WHEN l.assigned = 1 THEN l.probability END) FROM labels l JOIN firms f USING (firm_id)"
        " GROUP BY f.model_version, l.sector_id").fetchall()
    for version, sector, top_out, low_in in rows:
        if sector in given.get(str(version), {}):
            conn.execute("INSERT INTO thresholds VALUES (?,?,?,?)", (version, sector, float(given[str(version)][sector]), "model"))
            continue
        # Inferred: any cut between the two gives the same labels. With one side empty the cut is
        # unknown, so the sector's labels are never "near" (give the model's thresholds instead).
        if top_out is not None and low_in is not None:
            conn.execute("INSERT INTO thresholds VALUES (?,?,?,?)", (version, sector, (top_out + low_in) / 2, "inferred"))
    conn.execute(
        "INSERT INTO near SELECT l.firm_id, l.sector_id, l.probability - t.threshold FROM labels l JOIN firms f USING (firm_id)"
        " JOIN thresholds t ON t.model_version = f.model_version AND t.sector_id = l.sector_id"
        " WHERE abs(l.probability - t.threshold) <= ?", (margin,))
    conn.execute("CREATE INDEX near_sector ON near (sector_id, firm_id)")
    return sorted({sector for _, sector, _, _ in rows})


def build_index(sources: IndexSources, path: Path) -> Path:
    """Build the index at `path` from scratch (atomically)."""
    with atomic_path(path) as tmp:
        conn = sqlite3.connect(tmp)
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.executescript(SCHEMA)
        log.info(f"building review index {path} from {sources.labels} …")
        with conn:
            _insert_labels(conn, sources.labels)
            if sources.register is not None:
                _insert_register(conn, sources.register)
            _insert_exceptions(conn, sources.labels)
        log.info("  indexing sectors, names, text words and near-threshold labels …")
        with conn:
            conn.executescript(INDEXES)
            sectors = _fill_thresholds(conn, sources.thresholds, sources.margin)
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("signature", sources.signature()), ("margin", str(sources.margin)), ("labels", str(sources.labels)),
                ("register", str(sources.register or "")),
                ("sectors", json.dumps(sectors)),
            ])
        conn.execute("ANALYZE")
        conn.close()
    return path


def ensure_index(sources: IndexSources, path: Path | None = None) -> Path:
    """The index for these sources, rebuilt only when a source file changed."""
    if not sources.labels.is_file():
        raise RticError(f"labels file not found: {sources.labels}")
    if sources.register is not None and not sources.register.is_file():
        raise RticError(f"register not found: {sources.register}")
    path = Path(path) if path else default_index_path(sources.labels)
    if path.is_file():
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            row = conn.execute("SELECT value FROM meta WHERE key = 'signature'").fetchone()
            conn.close()
            if row and row[0] == sources.signature():
                return path
        except sqlite3.DatabaseError:
            pass  # not an index we can read: rebuild it
    return build_index(sources, path)


# -- reading ------------------------------------------------------------------------------------
REVIEW_FILTERS = ("near", "disagree", "any")
# The decision in force on a (firm, sector): the latest one (an index lookup on decisions_firm).
LATEST = "(SELECT decision FROM r.decisions dl WHERE dl.firm_id = {firm} AND dl.sector_id = {sector} ORDER BY dl.id DESC LIMIT 1)"
# A latest decision that says the opposite of the model's label.
DISAGREE = ("EXISTS (SELECT 1 FROM r.decisions d JOIN labels l ON l.firm_id = d.firm_id AND l.sector_id = d.sector_id"
            " WHERE d.firm_id = x.firm_id{sector} AND d.id = (SELECT max(e.id) FROM r.decisions e WHERE e.firm_id = d.firm_id AND e.sector_id = d.sector_id)"
            " AND (d.decision = 'reject') = (l.assigned = 1))")
# Near the threshold and nobody has decided on it yet.
NEAR = ("EXISTS (SELECT 1 FROM near n WHERE n.firm_id = x.firm_id{sector} AND NOT EXISTS"
        " (SELECT 1 FROM r.decisions d WHERE d.firm_id = n.firm_id AND d.sector_id = n.sector_id))")
_LATEST_X = LATEST.format(firm="x.firm_id", sector=":sector")
IN_SECTOR = (f"((EXISTS (SELECT 1 FROM labels l WHERE l.firm_id = x.firm_id AND l.sector_id = :sector AND l.assigned = 1)"
             f" AND coalesce({_LATEST_X}, '') != 'reject') OR coalesce({_LATEST_X}, '') IN ('confirm', 'add'))")
MAX_NAME_MATCHES = 5000


@dataclass
class LabelRow:
    sector_id: str
    probability: float | None
    model_assigned: bool
    threshold: float | None
    near: bool
    decision: str | None  # the decision in force, if any
    assigned: bool  # published: model label with the decision applied


@dataclass
class FirmRecord:
    firm_id: str
    name: str
    website: str
    model_name: str | None
    model_version: str | None
    taxonomy_version: str | None
    text_sha256: str | None
    classified_at: str | None
    not_classified: str | None
    text: str
    labels: list[LabelRow]

    @property
    def published(self) -> list[str]:
        return [l.sector_id for l in self.labels if l.assigned]

    @property
    def classified(self) -> bool:
        """The model labelled this firm (it may be in no sector); False when it was not classified or is not in the labels."""
        return self.model_version is not None


@dataclass
class SearchRow:
    firm_id: str
    name: str
    sectors: list[str]  # published
    reasons: list[str]  # why it needs review, if it does
    classified: bool  # False: no labels from the model (see not_classified), as opposed to classified into no sector
    not_classified: str | None  # rtic classify's reason, when it could not classify the firm


def fts_query(q: str) -> str:
    """Words of a search box as an FTS5 prefix query: every word must match the start of a word (of the name, or of the text)."""
    import re

    words = re.findall(r"\w+", q.lower())
    return " ".join(f'"{w}"*' for w in words)


class LabelsIndex:
    """Read side: the labels index with the reviews database attached (decisions override labels)."""

    def __init__(self, index_path: Path, reviews_path: Path):
        from rtic.review.store import ReviewStore

        ReviewStore(reviews_path).close()  # creates the schema when the database is new
        self.conn = sqlite3.connect(f"file:{index_path}?mode=ro", uri=True, check_same_thread=False)
        self.conn.execute("PRAGMA mmap_size = 4294967296")  # read the index through the page cache, no copies
        self.conn.execute("ATTACH DATABASE ? AS r", (str(reviews_path),))
        self.margin = float(self.conn.execute("SELECT value FROM meta WHERE key = 'margin'").fetchone()[0])

    def close(self) -> None:
        self.conn.close()

    def sector_ids(self) -> list[str]:
        return json.loads(self.conn.execute("SELECT value FROM meta WHERE key = 'sectors'").fetchone()[0])

    def firm(self, firm_id: str, with_text: bool = True) -> FirmRecord | None:
        row = self.conn.execute("SELECT firm_id, name, website, model_name, model_version, taxonomy_version, text_sha256, classified_at, not_classified"
                                " FROM firms WHERE firm_id = ?", (firm_id,)).fetchone()
        if row is None:
            return None
        text = self.conn.execute("SELECT text FROM texts WHERE firm_id = ?", (firm_id,)).fetchone() if with_text else None
        labels = []
        for sector, p, assigned, thr, near, decision in self.conn.execute(
            "SELECT l.sector_id, l.probability, l.assigned, t.threshold, n.firm_id IS NOT NULL,"
            f" {LATEST.format(firm='l.firm_id', sector='l.sector_id')} FROM labels l"
            " LEFT JOIN thresholds t ON t.model_version = ? AND t.sector_id = l.sector_id"
            " LEFT JOIN near n ON n.firm_id = l.firm_id AND n.sector_id = l.sector_id"
            " WHERE l.firm_id = ? ORDER BY l.probability DESC", (row[4], firm_id)):
            published = bool(assigned) if decision is None else decision != "reject"
            labels.append(LabelRow(sector, p, bool(assigned), thr, bool(near), decision, published))
        known = {l.sector_id for l in labels}
        for sector, decision in self.conn.execute("SELECT d.sector_id, d.decision FROM r.decisions d WHERE d.firm_id = ? AND d.id ="
                                                  " (SELECT max(id) FROM r.decisions e WHERE e.firm_id = d.firm_id AND e.sector_id = d.sector_id)", (firm_id,)):
            if sector not in known:  # a decision on a sector the labels file lacks for this firm
                labels.append(LabelRow(sector, None, False, None, False, decision, decision != "reject"))
        return FirmRecord(*row, text=text[0] if text else "", labels=labels)

    def _filters(self, sector: str | None, review: str | None) -> tuple[list[str], dict]:
        conds, params = [], {}
        if sector:
            conds.append(IN_SECTOR)
            params["sector"] = sector
        s_near = " AND n.sector_id = :sector" if sector else ""
        s_dis = " AND d.sector_id = :sector" if sector else ""
        if review == "near":
            conds.append(NEAR.format(sector=s_near))
        elif review == "disagree":
            conds.append(DISAGREE.format(sector=s_dis))
        elif review == "any":
            conds.append(f"({NEAR.format(sector=s_near)} OR {DISAGREE.format(sector=s_dis)})")
        elif review:
            raise RticError(f"review filter must be one of {', '.join(REVIEW_FILTERS)}")
        return conds, params

    def search(self, q: str = "", sector: str | None = None, review: str | None = None, after: str = "", limit: int = 50) -> list[SearchRow]:
        """Firms matching every given condition, ordered by firm_id, `limit` of them after firm id `after`.

        Each query is driven by the narrowest source for its conditions (id prefix, name and text indexes
        for a search, the near-threshold table for review, the sector index for a sector) and
        streamed in firm-id order, so a page costs about `limit` index lookups, not a scan.
        """
        limit = int(limit)
        if limit < 1:  # SQLite reads LIMIT -1 as "no limit": a page is never the whole table
            raise RticError(f"search limit must be at least 1, got {limit}")
        q = (q or "").strip()
        conds, params = self._filters(sector or None, review or None)
        params.update(after=after or "", n=limit)
        # Each source is (table with alias x, its own condition); DISTINCT over an index in firm-id
        # order streams, so LIMIT stops the scan early.
        sources: list[tuple[str, str]] = []
        if q:
            params["fts"] = fts_query(q)
            # Id prefix as typed, upper- and lower-cased: ranges on the primary key, not a scan.
            # One lower bound (the prefix or the page start, whichever is later), so that SQLite
            # cannot pick the wrong one and range over the whole table.
            for i, variant in enumerate(dict.fromkeys([q, q.upper(), q.lower()])):
                params.update({f"lo{i}": max(variant, after + "\0") if after else variant, f"hi{i}": variant + "\uffff"})
                sources.append(("firms x", f"x.firm_id >= :lo{i} AND x.firm_id < :hi{i}"))
            if params["fts"]:
                sources.append(("firms x", f"x.rid IN (SELECT rowid FROM names_fts WHERE names_fts MATCH :fts LIMIT {MAX_NAME_MATCHES})"))
                sources.append(("firms x", f"x.rid IN (SELECT rowid FROM texts_fts WHERE texts_fts MATCH :fts LIMIT {MAX_NAME_MATCHES})"))
        elif review:
            if review in ("near", "any"):
                sources.append(("near x", "x.sector_id = :sector" if sector else "1"))
            if review in ("disagree", "any"):
                sources.append(("r.decisions x", "x.sector_id = :sector" if sector else "1"))
        elif sector:
            sources.append(("labels x", "x.sector_id = :sector AND x.assigned = 1"))
            sources.append(("r.decisions x", "x.sector_id = :sector"))
        else:
            sources.append(("firms x", "1"))
        found: set[str] = set()
        for table, own in sources:
            where = " AND ".join([own if ":lo" in own else f"x.firm_id > :after AND {own}", *conds])
            sql = f"SELECT DISTINCT x.firm_id FROM {table} WHERE {where} ORDER BY x.firm_id LIMIT :n"
            found.update(r[0] for r in self.conn.execute(sql, params))
        ids = sorted(found)[:limit]
        return [self._row(fid) for fid in ids]

    def _row(self, firm_id: str) -> SearchRow:
        record = self.firm(firm_id, with_text=False)
        reasons = []
        for l in record.labels:
            if l.near and l.decision is None:
                reasons.append(f"{l.sector_id} near threshold")
            if l.decision is not None and l.assigned != l.model_assigned:
                reasons.append(f"{l.sector_id}: reviewer and model disagree")
        return SearchRow(record.firm_id, record.name, record.published, reasons, record.classified, record.not_classified)
