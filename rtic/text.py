"""Where a firm's text comes from: the register's `text` column or the crawl store's pages.

For scoring a whole register, a `TextSource` (`RegisterText`, `CrawlStoreText`) turns a chunk of register
rows into texts and exception rows; for one firm (explain, review), `firm_text` gives its text and pages.

The crawl store is built by `rtic crawl`; the firm's document is assembled by
`rtic.crawl.document.firm_documents`, the same function `rtic classify --store` uses, so the text a
reviewer sees is exactly the text that was scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import pandas as pd

from rtic.contracts import EMPTY_TEXT_DETAIL, NO_TEXT, NO_WEBSITE, REASONS
from rtic.errors import RticError


# -- where firm text comes from ------------------------------------------------------------------
class TextSource(Protocol):
    """Supplies firm text for a chunk of register rows: (firm_id, line, text) rows, and exception rows."""

    required_columns: list[str]

    def describe(self) -> str: ...

    def texts(self, rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]: ...


class RegisterText:
    """Text already collected in the register's `text` column."""

    required_columns = ["text"]

    def describe(self) -> str:
        return "register column 'text'"

    def texts(self, rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        text = rows["text"].fillna("").astype(str)
        empty = text.str.strip() == ""
        if "website" in rows.columns:
            no_site = empty & (rows["website"].fillna("").astype(str).str.strip() == "")
        else:
            no_site = pd.Series(False, index=rows.index)
        reason = no_site.map({True: NO_WEBSITE, False: NO_TEXT})
        detail = no_site.map({True: REASONS[NO_WEBSITE], False: EMPTY_TEXT_DETAIL})
        exceptions = pd.DataFrame({"firm_id": rows["firm_id"], "line": rows["line"], "reason": reason, "detail": detail})[empty]
        good = pd.DataFrame({"firm_id": rows["firm_id"], "line": rows["line"], "text": text})[~empty]
        return good.reset_index(drop=True), exceptions.reset_index(drop=True)


class CrawlStoreText:
    """Each firm's document from a crawl store (`rtic crawl`): home page first, template blocks removed.

    Firms whose site is dead, parked or blocked, or that were never crawled, become exceptions with
    that reason.
    """

    required_columns: list[str] = []

    def __init__(self, store_path: str | Path):
        self.store_path = Path(store_path)
        if not self.store_path.is_file():
            raise RticError(f"crawl store not found: {self.store_path} (run `rtic crawl REGISTER --store {self.store_path}` first)")

    def describe(self) -> str:
        return f"crawl store {self.store_path}"

    def texts(self, rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        from rtic.crawl.document import firm_documents

        docs = firm_documents(self.store_path, rows["firm_id"].astype(str))
        empty = (docs["text"].str.strip() == "").to_numpy()
        frame = pd.DataFrame({"firm_id": rows["firm_id"].to_numpy(), "line": rows["line"].to_numpy(), "text": docs["text"].to_numpy()})
        exceptions = pd.DataFrame({"firm_id": frame["firm_id"], "line": frame["line"], "reason": docs["reason"].replace("", NO_TEXT).to_numpy(),
                                   "detail": (docs["detail"] + f" ({self.describe()})").to_numpy()})[empty]
        return frame[~empty].reset_index(drop=True), exceptions.reset_index(drop=True)


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


def crawl_document(store: str | Path, firm_id: str) -> tuple[str, list[Page]]:
    """The firm's document from the crawl store and the pages it came from (home first); ('', []) when none."""
    import json
    import sqlite3

    from rtic.crawl.document import firm_documents
    from rtic.crawl.store import Store

    store = Path(store)
    if not store.is_file():
        raise RticError(f"crawl store not found: {store}")
    try:
        doc = firm_documents(store, [firm_id]).iloc[0]
        if not doc["text"].strip():
            return "", []
        used = {p["url"] for p in json.loads(doc["pages"])}
        crawl = Store(store, create=False)
        try:
            rows = [r for r in crawl.pages(firm_id) if (r["final_url"] or r["url"]) in used]
        finally:
            crawl.close()
    except sqlite3.DatabaseError as exc:
        raise RticError(f"cannot read crawl store {store}: {exc}") from None
    pages = [Page(url=r["final_url"] or r["url"],
                  fetched_at=datetime.fromtimestamp(r["fetched_at"], timezone.utc).isoformat(timespec="seconds") if r["fetched_at"] else "",
                  kind=r["kind"] or "", text=r["text"] or "")
             for r in sorted(rows, key=lambda r: r["seq"] or 0)]
    return doc["text"], pages


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
        text, pages = crawl_document(store, firm_id)
        if text:
            return FirmText(firm_id, text, f"crawl store {store}", name, pages)
    return FirmText(firm_id, "", "", name)
