"""Crawler against real HTTP servers on 127.0.0.1 (tests/sitefarm.py): politeness, robots, failures, safety, resume."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pytest

from rtic.crawl.crawler import CrawlOptions, crawl
from rtic.crawl.fetch import FetchOptions
from sitefarm import Farm, Route, gzip_bomb, page

PROSE = ("We design and manufacture precision sensors for offshore wind turbines, helping operators cut maintenance costs "
         "and keep their fleets running in the harshest conditions of the North Sea. ")


def options(**kw) -> CrawlOptions:
    fetch = FetchOptions(allow_private=kw.pop("allow_private", True), connect_timeout=1.0, read_timeout=kw.pop("read_timeout", 1.0),
                         page_timeout=kw.pop("page_timeout", 3.0), max_page_bytes=kw.pop("max_page_bytes", 200_000))
    return CrawlOptions(delay=kw.pop("delay", 0.01), backoff=0.05, fetch=fetch, **kw)


def write_register(tmp_path, rows) -> str:
    path = tmp_path / "register.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def sites(store) -> dict:
    conn = sqlite3.connect(store)
    conn.row_factory = sqlite3.Row
    return {r["firm_id"]: dict(r) for r in conn.execute("SELECT * FROM sites")}


def pages(store, firm_id) -> list[dict]:
    conn = sqlite3.connect(store)
    conn.row_factory = sqlite3.Row
    return [dict(r) for r in conn.execute("SELECT * FROM pages WHERE firm_id=? ORDER BY seq", (firm_id,))]


@pytest.fixture
def farm():
    with Farm() as f:
        yield f


def normal_site(farm):
    home = page("Acme Sensors", f"<h1>Acme Sensors</h1><p>{PROSE}</p>"
                "<a href='/about-us'>About us</a> <a href='/products/wind'>Our products</a> <a href='/services'>Services</a> "
                "<a href='/privacy-policy'>Privacy</a> <a href='/login'>Log in</a> <a href='/brochure.pdf'>Brochure</a> "
                "<a href='/news/2024/05/launch'>Launch news</a> <a href='http://example.org/about'>Elsewhere</a>")
    return farm.add({
        "/": home,
        "/robots.txt": Route("User-agent: *\nAllow: /\n", headers={"Content-Type": "text/plain"}),
        "/about-us": page("About", f"<h2>About Acme</h2><p>{PROSE} Registered in England and Wales No. 01234567. Registered office: 1 Quay Street, Aberdeen AB11 5BN.</p>"),
        "/products/wind": page("Products", f"<h2>Wind sensors</h2><p>{PROSE}</p>"),
        "/services": page("Services", f"<h2>Services</h2><p>Installation and calibration. {PROSE}</p>"),
    })


def test_normal_site_pages_links_and_company_number(farm, tmp_path):
    site = normal_site(farm)
    register = write_register(tmp_path, [{"firm_id": "F1", "website": site.url, "name": "Acme Sensors Ltd", "postcode": "AB11 5BN", "company_number": "1234567"}])
    store = tmp_path / "crawl.db"
    summary = crawl(register, store, options())
    assert summary.verdicts == {"ok": 1}
    got = pages(store, "F1")
    urls = {p["url"].split(str(site.port))[1] for p in got}
    assert urls == {"/", "/about-us", "/products/wind", "/services"}  # privacy, login, pdf, news, other site skipped
    assert got[0]["kind"] == "home" and {p["kind"] for p in got[1:]} == {"about", "products", "services"}
    assert "precision sensors" in got[0]["text"] and "Privacy" not in got[0]["text"].split("\n")
    row = sites(store)["F1"]
    assert row["verdict"] == "ok" and row["robots"] == "allowed"
    numbers = json.loads(row["company_numbers"])
    assert numbers[0]["number"] == "01234567" and "Registered in England and Wales" in numbers[0]["context"]
    assert "AB11 5BN" in json.loads(row["postcodes"])
    assert row["match_score"] >= 0.85 and any("company number" in r for r in json.loads(row["match_reasons"]))
    # every request names rtic and a contact URL
    assert all("rtic" in h["user-agent"] and "+http" in h["user-agent"] for _, _, h, _ in farm.requests(site))
    # robots.txt fetched once; no page twice
    paths = [p for _, p, _, _ in farm.requests(site)]
    assert len(paths) == len(set(paths))
