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
    tmp_path.mkdir(parents=True, exist_ok=True)
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


def crawl_one(farm, tmp_path, routes, **kw):
    site = farm.add(routes) if isinstance(routes, dict) else routes
    register = write_register(tmp_path, [{"firm_id": "F1", "website": site.url}])
    store = tmp_path / "crawl.db"
    summary = crawl(register, store, options(**kw))
    return site, summary, sites(store)["F1"], pages(store, "F1")


HOME_PROSE = page("Home", f"<p>{PROSE}</p><p>Founded in Aberdeen, we serve operators across Europe.</p><a href='/about-us'>About</a> <a href='/services'>Services</a>")


def test_robots_disallow_blocks_site_and_paths(farm, tmp_path):
    site, summary, row, got = crawl_one(farm, tmp_path, {"/robots.txt": Route("User-agent: *\nDisallow: /\n", headers={"Content-Type": "text/plain"}), "/": HOME_PROSE})
    assert row["verdict"] == "blocked" and got == []
    assert [p for _, p, _, _ in farm.requests(site)] == ["/robots.txt"]

    other = farm.add({"/robots.txt": Route("User-agent: rtic-crawler\nDisallow: /services\n", headers={"Content-Type": "text/plain"}),
                      "/": HOME_PROSE, "/about-us": page("About", f"<p>{PROSE}</p>"), "/services": page("S", f"<p>{PROSE}</p>")})
    register = write_register(tmp_path, [{"firm_id": "F2", "website": other.url}])
    crawl(register, tmp_path / "c2.db", options())
    assert sites(tmp_path / "c2.db")["F2"]["verdict"] == "ok"
    assert "/services" not in [p for _, p, _, _ in farm.requests(other)]
    assert "/about-us" in [p for _, p, _, _ in farm.requests(other)]


def test_crawl_delay_honoured_up_to_cap(farm, tmp_path):
    routes = {"/": HOME_PROSE, "/about-us": page("About", f"<p>{PROSE}</p>"), "/services": page("S", f"<p>{PROSE}</p>")}
    slow = farm.add({**routes, "/robots.txt": Route("User-agent: *\nCrawl-delay: 0.2\n", headers={"Content-Type": "text/plain"})})
    capped = farm.add({**routes, "/robots.txt": Route("User-agent: *\nCrawl-delay: 500\n", headers={"Content-Type": "text/plain"})})
    register = write_register(tmp_path, [{"firm_id": "S", "website": slow.url}, {"firm_id": "C", "website": capped.url}])
    crawl(register, tmp_path / "c.db", options(max_crawl_delay=0.3))
    for site, gap in ((slow, 0.2), (capped, 0.3)):
        starts = [t for *_, t in farm.requests(site)]
        assert len(starts) == 4  # robots + home + 2 pages
        # Arrival times at the server jitter under load: each gap clearly there, and the whole span at the full delay.
        assert min(b - a for a, b in zip(starts, starts[1:])) >= gap * 0.5
        assert starts[-1] - starts[0] >= 3 * gap * 0.9
    assert sites(tmp_path / "c.db")["C"]["crawl_delay"] == pytest.approx(0.3)


def test_hanging_and_slow_servers_time_out(farm, tmp_path):
    _, _, row, got = crawl_one(farm, tmp_path, {"/": Route(HOME_PROSE, behaviour="hang")}, read_timeout=0.5, page_timeout=2.0)
    assert row["verdict"] == "dead" and row["error_kind"] == "timeout"
    body = HOME_PROSE * 20  # dripped 100 bytes every 0.2s: never idle long enough for the read timeout, but over the page limit
    _, _, row, _ = crawl_one(farm, tmp_path / "b", {"/": Route(body, behaviour="drip", drip_seconds=0.2)}, read_timeout=1.0, page_timeout=1.5)
    assert row["verdict"] == "dead" and row["error_kind"] == "timeout" and "page took longer" in row["error"]


def test_connection_reset_is_retried_then_dead(farm, tmp_path):
    site, summary, row, _ = crawl_one(farm, tmp_path, {"/": Route(behaviour="reset")}, retries=2)
    assert row["verdict"] == "dead" and row["error_kind"] == "reset"
    assert len(farm.requests(site, "/")) == 3  # first try + 2 retries
    assert summary.errors.get("reset") == 1


def test_429_retry_after_and_503_then_success(farm, tmp_path):
    ok = (200, {"Content-Type": "text/html"}, HOME_PROSE)
    site, _, row, got = crawl_one(farm, tmp_path, {"/": Route(sequence=[(429, {"Retry-After": "1", "Content-Type": "text/html"}, ""), ok])})
    assert row["verdict"] == "ok"
    first, second = farm.requests(site, "/")
    assert second[3] - first[3] >= 0.95  # waited as told
    site, _, row, _ = crawl_one(farm, tmp_path / "b", {"/": Route(sequence=[(503, {"Content-Type": "text/html"}, "busy"), ok])})
    assert row["verdict"] == "ok" and len(farm.requests(site, "/")) == 2
    # other 4xx: no retry
    site, _, row, _ = crawl_one(farm, tmp_path / "c", {"/": Route("gone", status=410)})
    assert row["verdict"] == "dead" and row["error_kind"] == "http_410" and len(farm.requests(site, "/")) == 1


def test_redirect_loop_and_redirect_chain(farm, tmp_path):
    _, _, row, got = crawl_one(farm, tmp_path, {"/": Route(status=302, headers={"Location": "/a"}), "/a": Route(status=302, headers={"Location": "/"})})
    assert row["verdict"] == "dead" and row["error_kind"] == "redirect_loop"
    hops = {"/": Route(status=301, headers={"Location": "/1"})}
    for i in range(1, 7):
        hops[f"/{i}"] = Route(status=301, headers={"Location": f"/{i + 1}"})
    _, _, row, _ = crawl_one(farm, tmp_path / "b", hops)
    assert row["error_kind"] == "too_many_redirects"
    _, _, row, got = crawl_one(farm, tmp_path / "c", {"/": Route(status=301, headers={"Location": "/home"}), "/home": HOME_PROSE})
    assert row["verdict"] == "ok" and got[0]["final_url"].endswith("/home") and json.loads(got[0]["redirects"])[0].endswith("/home")


def test_private_addresses_refused_directly_and_on_redirect(farm, tmp_path, monkeypatch):
    import rtic.crawl.safety as safety

    inner = farm.add({"/": HOME_PROSE})
    _, _, row, _ = crawl_one(farm, tmp_path, inner, allow_private=False)
    assert row["verdict"] == "dead" and row["error_kind"] == "unsafe" and "loopback" in row["error"]
    assert farm.requests(inner) == []
    # Pretend 127.0.0.2 is a public address: its redirect to 127.0.0.1 must still be refused.
    real = safety.address_problem
    monkeypatch.setattr(safety, "address_problem", lambda ip: None if ip == "127.0.0.2" else real(ip))
    outer = farm.add({"/": Route(status=302, headers={"Location": inner.url})}, host="127.0.0.2")
    register = write_register(tmp_path, [{"firm_id": "R", "website": f"http://127.0.0.2:{outer.port}/"}])
    crawl(register, tmp_path / "r.db", options(allow_private=False))
    row = sites(tmp_path / "r.db")["R"]
    assert row["verdict"] == "dead" and row["error_kind"] == "unsafe"
    assert farm.requests(inner) == [] and len(farm.requests(outer, "/")) == 1


def test_size_caps_gzip_bomb_and_content_type(farm, tmp_path):
    _, _, row, _ = crawl_one(farm, tmp_path, {"/": Route("<html><body>" + "x" * 300_000 + "</body></html>")}, max_page_bytes=200_000)
    assert row["error_kind"] == "too_large"
    bomb = Route(gzip_bomb(50_000_000), headers={"Content-Type": "text/html", "Content-Encoding": "gzip"})
    _, _, row, _ = crawl_one(farm, tmp_path / "b", {"/": bomb}, max_page_bytes=200_000)
    assert row["error_kind"] == "too_large" and "decoded" in row["error"]
    _, _, row, _ = crawl_one(farm, tmp_path / "c", {"/": Route(b"%PDF-1.4", headers={"Content-Type": "application/pdf"})})
    assert row["verdict"] == "dead" and row["error_kind"] == "not_html"


def test_broken_encoding_is_decoded_not_fatal(farm, tmp_path):
    body = page("Café", f"<p>{PROSE} Caf\xe9 cr\xe8me – naïve</p>").encode("cp1252", errors="replace") + b"\xff\xfe\x80 trailing"
    _, _, row, got = crawl_one(farm, tmp_path, {"/": Route(body, headers={"Content-Type": "text/html; charset=utf-8"})})
    assert row["verdict"] == "ok"
    assert "precision sensors" in got[0]["text"] and "Caf" in got[0]["text"]


def test_parked_and_non_english_sites(farm, tmp_path):
    parked = page("example.co.uk", "<h1>example.co.uk</h1><p>This domain is for sale! Make an offer today.</p>")
    _, _, row, _ = crawl_one(farm, tmp_path, {"/": parked})
    assert row["verdict"] == "parked" and "for sale" in row["verdict_detail"]
    _, _, row, _ = crawl_one(farm, tmp_path / "b", {"/": page("Welcome to nginx!", "<h1>Welcome to nginx!</h1><p>If you see this page, the nginx web server is successfully installed.</p>")})
    assert row["verdict"] == "parked"
    french = page("Capteurs", "<p>Nous concevons et fabriquons des capteurs de précision pour les éoliennes en mer, afin d'aider les "
                  "exploitants à réduire leurs coûts de maintenance et à maintenir leurs flottes en service dans les conditions "
                  "les plus difficiles de la mer du Nord. Notre équipe travaille avec les plus grands opérateurs.</p>")
    _, _, row, got = crawl_one(farm, tmp_path / "c", {"/": french})
    assert row["verdict"] == "non_english" and "capteurs" in got[0]["text"]


def test_unreachable_host_is_dead(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    register = write_register(tmp_path, [{"firm_id": "D", "website": f"http://127.0.0.1:{port}/"}, {"firm_id": "E", "website": ""},
                                         {"firm_id": "X", "website": "ftp://example.com/"}])
    summary = crawl(register, tmp_path / "c.db", options(retries=1))
    rows = sites(tmp_path / "c.db")
    assert rows["D"]["verdict"] == "dead" and rows["D"]["error_kind"] == "connect"
    assert rows["E"]["verdict"] == "dead" and rows["E"]["error_kind"] == "no_website"
    assert rows["X"]["verdict"] == "dead" and rows["X"]["error_kind"] == "bad_url"
    assert summary.crawled == 3


def test_recrawl_uses_conditional_requests(farm, tmp_path):
    routes = {"/": Route(HOME_PROSE, headers={"Content-Type": "text/html", "ETag": '"v1"', "X-Honour": "If-None-Match"})}
    site = farm.add(routes)
    register = write_register(tmp_path, [{"firm_id": "F1", "website": site.url}])
    store = tmp_path / "c.db"
    crawl(register, store, options())
    again = crawl(register, store, options())
    assert again.skipped == 1 and len(farm.requests(site, "/")) == 1  # fresh: nothing refetched
    crawl(register, store, options(recrawl_after=0.0))
    second = farm.requests(site, "/")[-1]
    assert len(farm.requests(site, "/")) == 2 and second[2].get("if-none-match") == '"v1"'
    row = pages(store, "F1")[0]
    assert row["status"] == 200 and "precision sensors" in row["text"]  # 304 kept the stored copy


def test_address_and_url_rules():
    from rtic.crawl.safety import UnsafeTarget, address_problem, check_url

    for ip in ("127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "224.0.0.1", "0.0.0.0", "::1",
               "fe80::1", "fc00::1", "::ffff:127.0.0.1", "100.64.0.1", "240.0.0.1"):
        assert address_problem(ip), ip
    for ip in ("8.8.8.8", "151.101.1.1", "2a00:1450:4009:81f::200e"):
        assert address_problem(ip) is None, ip
    for url in ("file:///etc/passwd", "ftp://example.com/", "gopher://x/", "http://user:pw@example.com/", "http:///nohost"):
        with pytest.raises(UnsafeTarget):
            check_url(url)
    check_url("https://example.co.uk/about")


def test_parse_duration_and_link_choice():
    from rtic.crawl.crawler import parse_duration
    from rtic.crawl.site import choose_links, website_url
    from rtic.errors import RticError

    assert parse_duration("30d") == 30 * 86400 and parse_duration("90") == 90 and parse_duration("1.5h") == 5400
    with pytest.raises(RticError):
        parse_duration("soon")
    assert website_url("www.Example.co.uk") == "http://www.example.co.uk/" and website_url("  ") == ""
    html = ("<a href='/privacy'>Privacy</a><a href='/cart'>Basket</a><a href='/what-we-do'>What we do</a><a href='/blog/2024/x'>Post</a>"
            "<a href='https://shop.example.co.uk/products'>Shop</a><a href='https://other.com/about'>About</a><a href='/team'>Team</a>"
            "<a href='/files/spec.pdf'>Spec</a><a href='mailto:a@b.c'>Mail</a><a href='/about#history'>Our history</a>")
    links = choose_links(html, "https://www.example.co.uk/", 3)
    assert [u for u, _ in links] == ["https://www.example.co.uk/what-we-do", "https://www.example.co.uk/about", "https://shop.example.co.uk/products"]
    assert [k for _, k in links] == ["what_we_do", "about", "products"]
