"""Where a firm's text comes from: the register's `text` column or the crawl store's pages.

The crawl store is built by `rtic crawl` (SQLite, one row per fetched URL). Reading it is kept
behind `read_crawl_pages` so that it can follow that schema as it settles: it looks for a `pages`
table and uses whichever of the usual column names are there.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from rtic.errors import RticError

# Candidate column names in the crawl store's pages table, first match wins.
PAGE_COLUMNS = {
    "firm_id": ("firm_id",),
    "url": ("final_url", "url"),
    "fetched_at": ("fetched_at", "fetch_time", "crawled_at"),
    "text": ("text", "extracted_text", "content_text"),
    "kind": ("page_kind", "kind"),
    "status": ("status", "http_status", "status_code"),
}
KIND_ORDER = {"home": 0, "about": 1, "products": 2, "services": 3}


@dataclass
class Page:
    url: str
    fetched_at: str
    kind: str
    text: str


@dataclass
class FirmText:
    firm_id: str
    text: str
    source: str  # "register FILE", "crawl store FILE" or "" when none was found
    name: str = ""
    pages: list[Page] = field(default_factory=list)


def read_crawl_pages(store: str | Path, firm_id: str) -> list[Page]:
    """The firm's successfully fetched pages with text, home page first. [] when the store has none."""
    store = Path(store)
    if not store.is_file():
        raise RticError(f"crawl store not found: {store}")
    try:
        conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
        try:
            have = {row[1] for row in conn.execute("PRAGMA table_info(pages)")}
            if not have:
                raise RticError(f"crawl store {store} has no pages table")
            cols = {key: next((c for c in names if c in have), None) for key, names in PAGE_COLUMNS.items()}
            if not cols["firm_id"] or not cols["text"]:
                raise RticError(f"crawl store {store}: pages table has no firm_id/text columns (has {', '.join(sorted(have))})")
            select = ", ".join(f'"{cols[k]}"' if cols[k] else "''" for k in ("url", "fetched_at", "kind", "text"))
            where = f'"{cols["firm_id"]}" = ? AND coalesce("{cols["text"]}", "") != ""'
            if cols["status"]:
                where += f' AND coalesce("{cols["status"]}", 200) BETWEEN 200 AND 299'
            rows = conn.execute(f"SELECT {select} FROM pages WHERE {where}", (firm_id,)).fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise RticError(f"cannot read crawl store {store}: {exc}") from None
    pages = [Page(str(u or ""), str(t or ""), str(k or ""), str(x)) for u, t, k, x in rows]
    return sorted(pages, key=lambda p: (KIND_ORDER.get(p.kind, 9), p.url))


def register_rows(register: str | Path) -> dict[str, tuple[str, str]]:
    """firm_id -> (name, text) for a whole register (small registers: explain, export)."""
    from rtic.register import read_register

    df = read_register(register)
    names = df["name"].fillna("").astype(str) if "name" in df.columns else [""] * len(df)
    texts = df["text"].fillna("").astype(str) if "text" in df.columns else [""] * len(df)
    return {fid: (n, t) for fid, n, t in zip(df["firm_id"], names, texts)}


def firm_text(firm_id: str, register: str | Path | None = None, store: str | Path | None = None,
              rows: dict[str, tuple[str, str]] | None = None) -> FirmText:
    """The firm's text from the register (preferred when it has text) or else the crawl store."""
    name = ""
    if rows is None and register is not None:
        rows = register_rows(register)
    if rows is not None:
        name, text = rows.get(firm_id, ("", ""))
        if text.strip():
            return FirmText(firm_id, text, f"register {register}" if register else "register", name)
    if store is not None:
        pages = read_crawl_pages(store, firm_id)
        if pages:
            return FirmText(firm_id, "\n\n".join(p.text for p in pages), f"crawl store {store}", name, pages)
    return FirmText(firm_id, "", "", name)
