"""The crawl store: one SQLite file in WAL mode, committed page by page so a killed crawl loses nothing it finished.

Tables: `sites` (one row per firm: state, verdict, robots outcome, company numbers, match),
`pages` (one row per fetched URL of a firm: status, type, hashes, validators, extracted text,
compressed HTML, errors) and `robots` (robots.txt per origin, so a resumed crawl does not refetch it).
"""

from __future__ import annotations

import json
import sqlite3
import time
import zlib
from pathlib import Path

from rtic.errors import RticError

SCHEMA_VERSION = "1"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS sites (
    firm_id TEXT PRIMARY KEY,
    website TEXT,              -- as in the register
    url TEXT,                  -- normalised start URL
    final_url TEXT,            -- home page after redirects
    cross_site_redirect TEXT,  -- where the home page redirected when that is another site
    state TEXT NOT NULL DEFAULT 'pending',   -- pending | running | done
    round_started REAL,        -- start of the current crawl of this site (pages fetched since count as done)
    finished_at REAL,
    verdict TEXT,              -- ok | dead | parked | non_english | blocked
    verdict_detail TEXT,
    robots TEXT,               -- allowed | disallowed | unavailable | error
    crawl_delay REAL,
    lang TEXT,
    pages INTEGER,
    bytes INTEGER,
    company_numbers TEXT,      -- JSON [{number, context}]
    postcodes TEXT,            -- JSON [postcode]
    match_score REAL,
    match_reasons TEXT,        -- JSON [reason]
    error_kind TEXT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS pages (
    firm_id TEXT NOT NULL,
    url TEXT NOT NULL,
    final_url TEXT,
    kind TEXT,                 -- home | about | products | services | ...
    seq INTEGER,               -- order within the site (home = 0)
    status INTEGER,
    content_type TEXT,
    fetched_at REAL,
    content_sha256 TEXT,
    etag TEXT,
    last_modified TEXT,
    bytes INTEGER,
    html BLOB,                 -- zlib-compressed body
    title TEXT,
    lang TEXT,
    text TEXT,                 -- extracted: title, description, JSON-LD, main blocks; one block per line
    findings TEXT,             -- JSON {company_numbers: [{number, context}], postcodes: [..]} from all visible text
    redirects TEXT,            -- JSON [url]
    error_kind TEXT,
    error TEXT,
    PRIMARY KEY (firm_id, url)
);
CREATE TABLE IF NOT EXISTS robots (origin TEXT PRIMARY KEY, fetched_at REAL, status INTEGER, body TEXT, error TEXT);
CREATE INDEX IF NOT EXISTS sites_state ON sites(state);
"""


def connect(path: str | Path, create: bool = True) -> sqlite3.Connection:
    path = Path(path)
    if not create and not path.exists():
        raise RticError(f"crawl store not found: {path}")
    if path.is_dir():
        raise RticError(f"crawl store is a folder, expected a SQLite file: {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(path, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable against a killed process
        conn.executescript(SCHEMA)
        version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if version is None:
            conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            conn.commit()
        elif version[0] != SCHEMA_VERSION:
            raise RticError(f"crawl store {path} has schema version {version[0]}, this rtic writes {SCHEMA_VERSION}")
    except sqlite3.DatabaseError as exc:
        raise RticError(f"{path} is not a usable crawl store: {exc}") from None
    return conn


class Store:
    def __init__(self, path: str | Path, create: bool = True):
        self.path = Path(path)
        self.conn = connect(path, create)

    def close(self) -> None:
        self.conn.close()

    # -- sites ---------------------------------------------------------------------------------
    def add_sites(self, rows: list[tuple[str, str, str]]) -> None:
        """Register (firm_id, website, url) rows not yet in the store; existing rows keep their state."""
        self.conn.executemany("INSERT OR IGNORE INTO sites (firm_id, website, url) VALUES (?, ?, ?)", rows)
        self.conn.commit()

    def site(self, firm_id: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM sites WHERE firm_id = ?", (firm_id,)).fetchone()

    def start_site(self, firm_id: str, website: str, url: str, recrawl_after: float | None) -> float | None:
        """Begin (or resume) a site. Returns the round start, or None when the site is finished and fresh."""
        row = self.site(firm_id)
        now = time.time()
        if row is not None and row["state"] == "running" and row["url"] == url:
            return row["round_started"]  # resume: pages fetched since then are kept
        if row is not None and row["state"] == "done" and row["url"] == url:
            if recrawl_after is None or (row["finished_at"] or 0) > now - recrawl_after:
                return None
        # New round (first crawl, recrawl, or the register now gives another website).
        self.conn.execute("UPDATE sites SET state='running', round_started=?, website=?, url=? WHERE firm_id=?", (now, website, url, firm_id))
        self.conn.commit()
        return now

    def finish_site(self, firm_id: str, **fields) -> None:
        fields = {k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in fields.items()}
        fields.update(state="done", finished_at=time.time())
        cols = ", ".join(f"{k} = ?" for k in fields)
        self.conn.execute(f"UPDATE sites SET {cols} WHERE firm_id = ?", (*fields.values(), firm_id))
        self.conn.commit()

    def counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.conn.execute("SELECT state, COUNT(*) FROM sites GROUP BY state")}

    # -- pages ---------------------------------------------------------------------------------
    def pages(self, firm_id: str) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM pages WHERE firm_id = ? ORDER BY seq, fetched_at", (firm_id,)).fetchall()

    def save_page(self, firm_id: str, url: str, **fields) -> None:
        html = fields.pop("html", None)
        if html is not None:
            fields["html"] = zlib.compress(html, 6)
        if isinstance(fields.get("redirects"), list):
            fields["redirects"] = json.dumps(fields["redirects"])
        fields.setdefault("fetched_at", time.time())
        cols = ["firm_id", "url", *fields]
        self.conn.execute(
            f"INSERT OR REPLACE INTO pages ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            (firm_id, url, *fields.values()),
        )
        self.conn.commit()

    def touch_page(self, firm_id: str, url: str) -> None:
        """A 304 Not Modified: the stored copy is current."""
        self.conn.execute("UPDATE pages SET fetched_at = ?, status = 200 WHERE firm_id = ? AND url = ?", (time.time(), firm_id, url))
        self.conn.commit()

    # -- robots --------------------------------------------------------------------------------
    def robots(self, origin: str, max_age: float) -> sqlite3.Row | None:
        row = self.conn.execute("SELECT * FROM robots WHERE origin = ?", (origin,)).fetchone()
        return row if row is not None and row["fetched_at"] > time.time() - max_age else None

    def save_robots(self, origin: str, status: int | None, body: str, error: str | None) -> None:
        self.conn.execute("INSERT OR REPLACE INTO robots VALUES (?, ?, ?, ?, ?)", (origin, time.time(), status, body, error))
        self.conn.commit()


def page_html(row) -> bytes:
    return zlib.decompress(row["html"]) if row["html"] else b""
