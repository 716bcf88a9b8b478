"""What `rtic crawl` tells its user (issue 14 items 7 and 16), against real HTTP servers on 127.0.0.1:
websites attached to a Companies House register by company number, repeated ids reported as rows,
expected 404s kept apart from errors, private addresses explained, and a resumed crawl's verdicts."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

from rtic.contracts import REASONS
from rtic.crawl.crawler import CrawlOptions, crawl
from rtic.crawl.fetch import FetchOptions
from rtic.errors import RticError
from rtic.websites import Websites, company_number
from sitefarm import Farm, page

PROSE = ("We design and manufacture precision sensors for offshore wind turbines, helping operators cut maintenance costs "
         "and keep their fleets running in the harshest conditions of the North Sea. ") * 3


def options(allow_private=True) -> CrawlOptions:
    return CrawlOptions(delay=0.0, backoff=0.05, fetch=FetchOptions(allow_private=allow_private, connect_timeout=1.0, read_timeout=1.0, page_timeout=3.0))


def site(farm):
    # No robots.txt (the farm answers 404) and a nav link to a page that is not there: a healthy site.
    return farm.add({"/": page("Acme Sensors", f"<h1>Acme Sensors</h1><p>{PROSE}</p><a href='/about-us'>About us</a> <a href='/services'>Services</a>"),
                     "/about-us": page("About", f"<h2>About Acme</h2><p>{PROSE}</p>")})


@pytest.fixture
def farm():
    with Farm() as f:
        yield f


def test_company_number_is_the_join_key():
    assert company_number(" 1234567 ") == company_number("01234567") == "01234567"
    assert company_number("sc12345") == "SC012345" and company_number("SC012345") == "SC012345"
    assert company_number("F-17") == "F-17"


def test_companies_house_register_crawled_with_a_websites_file(farm, tmp_path):
    a, b = site(farm), site(farm)
    register = tmp_path / "BasicCompanyData.csv"
    pd.DataFrame({"CompanyName": ["ACME SENSORS LTD", "BETA LTD", "BETA AGAIN LTD", "NO SITE LTD"],
                  "CompanyNumber": ["01234567", "SC012345", "SC012345", "07654321"],
                  "RegAddress.PostCode": ["AB11 5BN", "EH1 1AA", "EH1 1AA", "LS1 1AA"]}).to_csv(register, index=False)
    with pytest.raises(RticError, match="--websites"):
        crawl(register, tmp_path / "refused.db", options())
    websites = tmp_path / "websites.csv"
    pd.DataFrame({"firm_id": ["1234567", "SC012345", "SC012345", "09999999", ""],  # a spreadsheet dropped the leading zero
                  "website": [a.url, b.url, "http://elsewhere.example/", "http://nobody.example/", "http://no-id.example/"]}).to_csv(websites, index=False)
    store = tmp_path / "crawl.db"
    s = crawl(register, store, options(), websites=websites)

    rows = {r[0]: r[1:] for r in sqlite3.connect(store).execute("SELECT firm_id, website, verdict, error_kind FROM sites")}
    assert rows["01234567"][:2] == (a.url, "ok") and rows["SC012345"][:2] == (b.url, "ok")
    assert rows["07654321"][1:] == ("dead", "no_website")
    # The repeated company number is a reported row, as `rtic classify` reports it, not a refused file.
    assert s.sites == 3 and s.register_problems == {"duplicate_id": 1}
    problems = pd.read_csv(s.problems_path, dtype=str)
    assert problems[["firm_id", "line", "reason"]].values.tolist() == [["SC012345", "4", "duplicate_id"]]
    # The websites rows that were not used, each with its reason.
    report = pd.read_csv(s.websites_report, dtype=str, keep_default_na=False)
    assert report[["firm_id", "line", "reason"]].values.tolist() == [
        ["SC012345", "4", "duplicate_id"], ["09999999", "5", "no_such_firm"], ["", "6", "empty_id"]]
    lines = s.lines()
    assert any(line.startswith(f"websites from {websites}: 2 of 3 attached") and str(s.websites_report) in line for line in lines)
    assert any(line.startswith("register rows not crawled: duplicate_id 1") for line in lines)


def test_expected_404s_are_not_errors_and_a_resumed_crawl_still_has_verdicts(farm, tmp_path):
    a = site(farm)
    register = tmp_path / "register.csv"
    pd.DataFrame({"firm_id": ["A", "N"], "website": [a.url, ""]}).to_csv(register, index=False)
    s = crawl(register, tmp_path / "crawl.db", options())
    assert s.errors == {} and s.missing == {"robots.txt": 1, "link": 1}
    lines = s.lines()
    assert "errors: none" in lines and "expected 404s, not errors: link 1, robots.txt 1" in lines
    assert "verdicts (this run): dead 1 (no_website 1), ok 1" in lines

    again = crawl(register, tmp_path / "crawl.db", options())
    assert again.crawled == 0 and again.skipped == 2
    assert "verdicts (all sites in the store): dead 1 (no_website 1), ok 1" in again.lines()


def test_private_addresses_say_why_and_how(farm, tmp_path):
    a = site(farm)
    register = tmp_path / "register.csv"
    pd.DataFrame({"firm_id": ["A"], "website": [a.url]}).to_csv(register, index=False)
    s = crawl(register, tmp_path / "crawl.db", options(allow_private=False))
    assert s.dead_causes == {"unsafe": 1}
    note = [line for line in s.lines() if line.startswith("note:")]
    assert len(note) == 1 and "loopback" in note[0] and "--allow-private" in note[0]
    assert not [line for line in crawl(register, tmp_path / "ok.db", options()).lines() if line.startswith("note:")]


def test_websites_file_problems_are_one_line(tmp_path):
    bad = tmp_path / "w.csv"
    bad.write_text("id,url\n1,x\n")
    with pytest.raises(RticError, match="needs columns firm_id"):
        Websites(bad)
    assert {"no_website", "duplicate_id", "empty_id"} <= set(REASONS)
