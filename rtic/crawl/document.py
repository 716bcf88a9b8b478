"""From a firm's crawled pages to the one document the classifier reads.

Home page first, then the other pages in crawl order; blocks repeated across a site's pages
(templates: taglines, contact strips, cookie text that slipped through) are dropped; each page's
span in the text is kept as provenance. A firm's sector is what it sells, so generic pages (team and
careers, contact) are left out when the site has pages that say what it does, and no page may fill
more than PAGE_CHAR_CAP characters: one long page never outweighs the rest of the site.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd

from rtic.contracts import NO_TEXT, NO_WEBSITE, NOT_CRAWLED, REASONS, ROBOTS_BLOCKED, SITE_DEAD, SITE_PARKED
from rtic.crawl.store import Store

UNUSABLE = {"dead": SITE_DEAD, "parked": SITE_PARKED, "blocked": ROBOTS_BLOCKED}  # site verdict -> exception reason
GENERIC_KINDS = frozenset({"team", "contact"})  # crawl.site.LINK_KEYWORDS kinds that say nothing of the offer
PAGE_CHAR_CAP = 6000  # about three of the encoder's windows


def _capped(blocks: list[str], cap: int = PAGE_CHAR_CAP) -> list[str]:
    """The page's first blocks up to `cap` characters (a first block longer than that is cut)."""
    kept, used = [], 0
    for b in blocks:
        if used + len(b) > cap:
            if not kept:
                kept.append(b[:cap])
            break
        kept.append(b)
        used += len(b) + 1
    return kept


def site_document(pages: list[dict]) -> tuple[str, list[dict]]:
    """Join a site's page texts (home first) without template blocks; returns text and per-page provenance."""
    pages = sorted(pages, key=lambda p: (p.get("seq") or 0))
    if any(p.get("kind") not in GENERIC_KINDS and (p.get("text") or "").strip() for p in pages):
        pages = [p for p in pages if p.get("kind") not in GENERIC_KINDS]
    per_page = [[b.strip() for b in (p.get("text") or "").split("\n") if b.strip()] for p in pages]
    seen_on = Counter(b for blocks in per_page for b in set(blocks))
    repeated = {b for b, n in seen_on.items() if n >= 2} if len(pages) >= 3 else set()
    parts, provenance, offset, emitted = [], [], 0, set()
    for page, blocks in zip(pages, per_page):
        kept = []
        for i, b in enumerate(blocks):
            # The home page keeps its title line even when every page repeats it; other repeats go.
            if (b in repeated and not (page.get("seq") == 0 and i == 0)) or b in emitted:
                continue
            kept.append(b)
        kept = _capped(list(dict.fromkeys(kept)))
        emitted.update(kept)
        if not kept:
            continue
        chunk = "\n".join(kept)
        start = offset + (2 if parts else 0)
        provenance.append({"url": page.get("final_url") or page.get("url"), "kind": page.get("kind"), "start": start, "end": start + len(chunk)})
        parts.append(chunk)
        offset = start + len(chunk)
    return "\n\n".join(parts), provenance


def firm_documents(store_path: str | Path, firm_ids) -> pd.DataFrame:
    """One row per firm id: firm_id, text ('' when unusable), reason (a contracts.REASONS code saying why there is no
    text, else ''), detail (what the crawl found, else ''), pages (JSON provenance)."""
    store = Store(store_path, create=False)
    rows = []
    try:
        for firm_id in map(str, firm_ids):
            site = store.site(firm_id)
            if site is None or site["state"] != "done":
                rows.append((firm_id, "", NOT_CRAWLED, REASONS[NOT_CRAWLED], "[]"))
                continue
            if site["verdict"] in UNUSABLE:
                reason = NO_WEBSITE if site["error_kind"] == "no_website" else UNUSABLE[site["verdict"]]
                rows.append((firm_id, "", reason, site["verdict_detail"] or site["error_kind"] or REASONS[reason], "[]"))
                continue
            pages = [dict(p) for p in store.pages(firm_id) if p["status"] == 200 and p["text"]]
            text, provenance = site_document(pages)
            empty = not text.strip()
            rows.append((firm_id, text, NO_TEXT if empty else "", "no page of the site has usable text" if empty else "", json.dumps(provenance)))
    finally:
        store.close()
    return pd.DataFrame(rows, columns=["firm_id", "text", "reason", "detail", "pages"])

