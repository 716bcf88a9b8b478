"""Hostile input to the crawler (issue 13, items 1-6), against real HTTP servers on 127.0.0.1:
a bad URL in the register, a redirect or a link is that site's or that link's problem, recorded with a reason."""

from __future__ import annotations

import gzip
import json
import sqlite3

import pytest

from rtic.crawl.crawler import ROBOTS_MAX_BYTES, crawl
from sitefarm import Farm, Route, page
from test_crawl_site import HOME_PROSE, PROSE, options, pages, sites, write_register

TEXT = {"Content-Type": "text/plain"}
BAD_REGISTER_URLS = {
    "octal": "http://0177.0.0.1/", "zero_padded": "127.000.000.001", "octal_private": "010.0.0.1",
    "port_range": "http://127.0.0.1:99999/", "port_text": "http://h:abc/", "open_bracket": "http://[::1",
    "port_zero": "http://example.com:0/", "huge": "http://example.com/" + "a" * 5000,
}


@pytest.fixture
def farm():
    with Farm() as f:
        yield f


def good_site(farm):
    return farm.add({"/": HOME_PROSE, "/about-us": page("About", f"<p>{PROSE}</p>"), "/services": page("S", f"<p>{PROSE}</p>")})


def test_bad_register_urls_are_dead_with_a_reason_and_the_crawl_finishes(farm, tmp_path):
    good = good_site(farm)
    rows = [{"firm_id": k, "website": v} for k, v in BAD_REGISTER_URLS.items()] + [{"firm_id": "GOOD", "website": good.url}]
    register = write_register(tmp_path, rows)
    store = tmp_path / "crawl.db"
    summary = crawl(register, store, options())
    got = sites(store)
    assert summary.crawled == len(rows) and got["GOOD"]["verdict"] == "ok"
    for firm in BAD_REGISTER_URLS:
        assert got[firm]["verdict"] == "dead" and got[firm]["error_kind"] == "bad_url", (firm, got[firm])
        assert got[firm]["state"] == "done" and got[firm]["verdict_detail"]
    assert "Invalid IPv4" in got["octal"]["error"] and "out of range" in got["port_range"]["error"]
    assert "IPv6" in got["open_bracket"]["error"] and "integer" in got["port_text"]["error"]
    again = crawl(register, store, options())  # the re-run finishes too: everything is done
    assert again.skipped == len(rows) and again.crawled == 0


def test_redirect_to_a_bad_url_is_that_sites_problem(farm, tmp_path):
    good = good_site(farm)
    port = farm.add({"/": Route(status=302, headers={"Location": "http://127.0.0.1:99999/"})})
    bracket = farm.add({"/": Route(status=301, headers={"Location": "http://[::1/home"})})
    octal = farm.add({"/": Route(status=302, headers={"Location": "http://0177.0.0.1/"})})
    register = write_register(tmp_path, [{"firm_id": "PORT", "website": port.url}, {"firm_id": "BRACKET", "website": bracket.url},
                                         {"firm_id": "OCTAL", "website": octal.url}, {"firm_id": "GOOD", "website": good.url}])
    summary = crawl(register, tmp_path / "c.db", options(concurrency=4))
    got = sites(tmp_path / "c.db")
    assert summary.crawled == 4 and got["GOOD"]["verdict"] == "ok"
    for firm, words in (("PORT", "out of range"), ("BRACKET", "malformed"), ("OCTAL", "Invalid IPv4")):
        assert got[firm]["verdict"] == "dead" and got[firm]["error_kind"] == "bad_url", got[firm]
        assert "redirect to" in got[firm]["error"] and words in got[firm]["error"]


def test_bad_links_are_skipped_or_recorded_never_fatal(farm, tmp_path):
    # Served as http://localhost:PORT/, so a link to localhost on another (impossible) port is the same site and gets chosen.
    home = page("Acme", f"<p>{PROSE}</p>"
                "<a href='http://127.0.0.1:99999/about'>About us</a> <a href='http://[::1/about'>About</a> "
                "<a href='http://localhost:99999/about-company'>About the company</a> <a href='http://localhost:abc/products'>Products</a> "
                "<a href='/services'>Services</a>")
    site = farm.add({"/": home, "/services": page("S", f"<p>{PROSE}</p>")})
    other = good_site(farm)
    register = write_register(tmp_path, [{"firm_id": "L", "website": f"http://localhost:{site.port}/"}, {"firm_id": "GOOD", "website": other.url}])
    store = tmp_path / "c.db"
    crawl(register, store, options())
    got = sites(store)
    assert got["L"]["verdict"] == "ok" and got["GOOD"]["verdict"] == "ok"
    by_url = {p["url"]: p for p in pages(store, "L")}
    assert by_url[f"http://localhost:{site.port}/services"]["status"] == 200
    bad = {u: p for u, p in by_url.items() if p["error_kind"]}
    assert set(bad) == {"http://localhost:99999/about-company", "http://localhost:abc/products"}
    assert all(p["error_kind"] == "bad_url" and p["error"] for p in bad.values())
    assert "out of range" in bad["http://localhost:99999/about-company"]["error"]


def test_malformed_base_href_is_ignored():
    from rtic.crawl.site import choose_links

    html = "<html><head><base href='http://[::1/'></head><body><a href='/about'>About us</a></body></html>"
    assert choose_links(html, "https://www.example.co.uk/", 3) == [("https://www.example.co.uk/about", "about")]


def big_robots(rules_first: str, filler_bytes: int) -> bytes:
    filler = "".join(f"# {i:09d} padding padding padding padding padding padding\n" for i in range(filler_bytes // 60 + 1))
    return (rules_first + filler).encode()


@pytest.mark.parametrize("how", ["content-length", "no-length", "gzip"])
def test_robots_over_500_kb_is_parsed_and_obeyed(farm, tmp_path, how):
    body = big_robots("User-agent: *\nDisallow: /\n", 700_000)
    assert len(body) > 600_000
    if how == "gzip":
        route = Route(gzip.compress(body), headers={**TEXT, "Content-Encoding": "gzip"})
    else:
        route = Route(body, headers=TEXT, no_length=how == "no-length")
    site = farm.add({"/robots.txt": route, "/": HOME_PROSE})
    register = write_register(tmp_path, [{"firm_id": "R", "website": site.url}])
    store = tmp_path / "c.db"
    crawl(register, store, options())
    row = sites(store)["R"]
    assert row["verdict"] == "blocked" and row["robots"] == "disallowed"
    assert [p for _, p, _, _ in farm.requests(site)] == ["/robots.txt"]
    stored = sqlite3.connect(store).execute("SELECT status, length(body), error FROM robots").fetchone()
    assert stored[0] == 200 and 500 * 1024 <= stored[1] <= ROBOTS_MAX_BYTES and stored[2] is None


def test_robots_rules_past_the_cut_do_not_apply_and_no_partial_rule(farm, tmp_path):
    from rtic.crawl.crawler import robots_text

    # The file is cut at 512 KiB: a rule beyond that is not read, and a line cut in half is dropped, not half-read.
    body = big_robots("User-agent: *\nDisallow: /private/\n", ROBOTS_MAX_BYTES) + b"Disallow: /\n"
    site = farm.add({"/robots.txt": Route(body, headers=TEXT), "/": HOME_PROSE, "/about-us": page("About", f"<p>{PROSE}</p>")})
    register = write_register(tmp_path, [{"firm_id": "R", "website": site.url}])
    crawl(register, tmp_path / "c.db", options())
    assert sites(tmp_path / "c.db")["R"]["verdict"] == "ok"
    assert robots_text(b"Disallow: /a\nAllow: /ab", truncated=True) == "Disallow: /a\n"
    assert robots_text(b"Disallow: /a\nAllow: /ab", truncated=False).endswith("Allow: /ab")


def test_embedded_ipv4_in_ipv6_is_checked():
    from rtic.crawl.safety import address_problem

    for ip in ("2002:7f00:1::", "2002:a9fe:a9fe::", "2002:0a00:0001::1", "2002:c0a8:0101::",  # 6to4 of loopback, link-local, private
               "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::7f00:1",  # NAT64 (well-known and local-use prefixes)
               "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo whose client is 127.0.0.1
               "2001:0:7f00:1::1",  # Teredo whose server is 127.0.0.1
               "::127.0.0.1", "::ffff:169.254.169.254"):
        assert address_problem(ip), ip
    assert "6to4" in address_problem("2002:7f00:1::") and "loopback" in address_problem("2002:7f00:1::")
    assert "link-local" in address_problem("2002:a9fe:a9fe::") or "private" in address_problem("2002:a9fe:a9fe::")
    for ip in ("2002:808:808::1", "::ffff:8.8.8.8", "2a00:1450:4009:81f::200e"):  # 6to4 of a public address is public
        assert address_problem(ip) is None, ip


def test_host_resolving_to_6to4_loopback_is_refused(farm, tmp_path, monkeypatch):
    from rtic.crawl.safety import SafeBackend

    inner = good_site(farm)
    calls = []

    async def resolve(self, host, port):
        calls.append(host)
        return ["2002:7f00:1::"] if host == "sixtofour.test" else ["127.0.0.1"]

    monkeypatch.setattr(SafeBackend, "resolve", resolve)
    register = write_register(tmp_path, [{"firm_id": "S", "website": f"http://sixtofour.test:{inner.port}/"}])
    crawl(register, tmp_path / "c.db", options(allow_private=False))
    row = sites(tmp_path / "c.db")["S"]
    assert calls and row["verdict"] == "dead" and row["error_kind"] == "unsafe" and "6to4" in row["error"], row
    assert farm.requests(inner) == []


def test_url_rules_for_malformed_urls():
    from rtic.crawl.fetch import origin, same_site
    from rtic.crawl.safety import url_problem
    from rtic.crawl.site import normalise_url, website_url

    for url in BAD_REGISTER_URLS.values():
        assert url_problem(website_url(url)), url
    assert normalise_url(" http://[::1 ") == "http://[::1"
    assert origin("http://[::1") .startswith("malformed:") and origin("http://h:abc/") == "http://h:abc"
    assert not same_site("http://[::1", "http://example.com/") and same_site("http://a.example.com:99999/", "http://example.com/")
    assert url_problem("http://example.com/about") is None and url_problem("https://[2a00:1450::1]:8443/x") is None
    assert json.dumps(url_problem("ftp://example.com/"))  # a reason, not an exception


def test_an_unexpected_error_on_one_site_is_recorded_and_the_crawl_goes_on(farm, tmp_path, monkeypatch):
    from rtic.crawl.crawler import Crawler

    real = Crawler.judge

    def judge(self, firm, *args):
        if firm["firm_id"] == "BOOM":
            raise KeyError("surprise")
        return real(self, firm, *args)

    monkeypatch.setattr(Crawler, "judge", judge)
    a, b = good_site(farm), good_site(farm)
    register = write_register(tmp_path, [{"firm_id": "BOOM", "website": a.url}, {"firm_id": "GOOD", "website": b.url}])
    summary = crawl(register, tmp_path / "c.db", options())
    got = sites(tmp_path / "c.db")
    assert got["GOOD"]["verdict"] == "ok" and summary.errors.get("crawler_error") == 1
    assert got["BOOM"]["verdict"] == "dead" and got["BOOM"]["error_kind"] == "crawler_error" and "KeyError" in got["BOOM"]["error"]


# -- found by our own hostile pass ------------------------------------------------------------------
def test_robots_with_a_byte_order_mark_is_obeyed(farm, tmp_path):
    site = farm.add({"/robots.txt": Route(b"\xef\xbb\xbfUser-agent: *\nDisallow: /\n", headers=TEXT), "/": HOME_PROSE})
    register = write_register(tmp_path, [{"firm_id": "B", "website": site.url}])
    crawl(register, tmp_path / "c.db", options())
    assert sites(tmp_path / "c.db")["B"]["verdict"] == "blocked"
    assert [p for _, p, _, _ in farm.requests(site)] == ["/robots.txt"]


def test_non_ascii_validators_do_not_break_a_recrawl(farm, tmp_path):
    # sitefarm writes headers as Latin-1: the client reads these as non-ASCII text, which cannot be sent back as-is.
    site = farm.add({"/": Route(HOME_PROSE, headers={"Content-Type": "text/html", "ETag": '"caf\xe9"', "Last-Modified": "l\xfandi"})})
    register = write_register(tmp_path, [{"firm_id": "E", "website": site.url}])
    store = tmp_path / "c.db"
    crawl(register, store, options())
    again = crawl(register, store, options(recrawl_after=0.0))
    assert again.crawled == 1 and sites(store)["E"]["verdict"] == "ok"
    last = farm.requests(site, "/")[-1][2]
    assert len(farm.requests(site, "/")) == 2 and "if-none-match" not in last and "if-modified-since" not in last


def test_pathological_html_is_read_quickly(farm, tmp_path):
    import time

    # One tag with 60,000 attributes (libxml2 compares each with all before it: about a minute, twice, before the fix),
    # JSON-LD nested deeper than Python's stack, and 60,000 links.
    attrs = " ".join(f"a{i}" for i in range(60_000))
    many_attrs = f"<html lang='en'><body><div {attrs}><p>{PROSE}</p></div><a href='/about-us'>About</a></body></html>"
    deep_json = page("Deep", f"<p>{PROSE}</p><a href='/about-us'>About</a>", extra_head="<script type='application/ld+json'>" + "[" * 100_000 + "</script>")
    links = page("Links", f"<p>{PROSE}</p>" + "".join(f"<a href='/about-{i}'>About us {i}</a>" for i in range(60_000)))
    about = page("About", f"<p>{PROSE}</p>")
    for name, body in (("attrs", many_attrs), ("json", deep_json), ("links", links)):
        started = time.monotonic()
        _, _, row, got = crawl_here(farm, tmp_path / name, {"/": body, "/about-us": about, "/about-0": about})
        assert row["verdict"] == "ok", (name, row)
        assert "precision sensors" in got[0]["text"] and len(got) >= 2, name
        assert time.monotonic() - started < 12, name  # the attributes case took about 30 s before the fix


def crawl_here(farm, folder, routes):
    site = farm.add(routes)
    register = write_register(folder, [{"firm_id": "F1", "website": site.url}])
    store = folder / "crawl.db"
    summary = crawl(register, store, options(max_page_bytes=3_000_000, page_timeout=20.0, read_timeout=10.0))
    return site, summary, sites(store)["F1"], pages(store, "F1")


def test_robots_200_with_an_unreadable_body_means_disallow(farm, tmp_path):
    broken = gzip.compress(b"User-agent: *\nAllow: /\n" * 100)[:-40] + b"\x00" * 40  # corrupt gzip stream
    site = farm.add({"/robots.txt": Route(broken, headers={**TEXT, "Content-Encoding": "gzip"}), "/": HOME_PROSE})
    register = write_register(tmp_path, [{"firm_id": "U", "website": site.url}])
    store = tmp_path / "c.db"
    crawl(register, store, options())
    row = sites(store)["U"]
    assert row["verdict"] == "blocked" and row["robots"] == "unavailable"
    assert [p for _, p, _, _ in farm.requests(site)] == ["/robots.txt"]
    # not remembered as a good answer: the next run asks again
    assert sqlite3.connect(store).execute("SELECT status, error FROM robots").fetchone()[0] is None
