"""From crawled pages to firm documents, and `rtic classify --store` reading them (real crawl of a local farm)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import run_cli
from rtic.config import DEFAULT_SEED_LABELS
from rtic.contracts import REASONS
from rtic.crawl.crawler import CrawlOptions, crawl
from rtic.crawl.document import PAGE_CHAR_CAP, firm_documents, site_document
from rtic.crawl.fetch import FetchOptions
from sitefarm import Farm, page

ABOUT = ("We develop machine learning software that predicts equipment failures for factories, using sensor data and "
         "computer vision to schedule maintenance before breakdowns happen.")
TAGLINE = "Smart maintenance for modern factories."


def test_site_document_drops_template_blocks_and_keeps_provenance():
    pages = [
        {"url": "u/", "final_url": "u/", "kind": "home", "seq": 0, "text": f"Acme\n{TAGLINE}\nHome intro about predictive maintenance."},
        {"url": "u/about", "kind": "about", "seq": 1, "text": f"About Acme\n{TAGLINE}\n{ABOUT}"},
        {"url": "u/services", "kind": "services", "seq": 2, "text": f"Services\n{TAGLINE}\nVibration analysis and thermal imaging."},
    ]
    text, provenance = site_document(pages)
    assert text.startswith("Acme\nHome intro")  # home first; the tagline is on every page: template, dropped
    assert TAGLINE not in text and ABOUT in text
    assert [p["kind"] for p in provenance] == ["home", "about", "services"]
    for p in provenance:
        assert text[p["start"] : p["end"]].split("\n")[0] in {"Acme", "About Acme", "Services"}


def test_firm_documents_and_classify_from_store(tmp_path, request, rtic_home):
    if not DEFAULT_SEED_LABELS.exists():
        pytest.skip("training/seed_labels.csv not in this checkout: no model to classify with")
    request.getfixturevalue("trained")
    with Farm() as farm:
        good = farm.add({"/": page("Acme Predict", f"<h1>Acme Predict</h1><p>{ABOUT}</p><a href='/about-us'>About</a>"),
                         "/about-us": page("About", f"<p>{ABOUT} Founded in Leeds in 2019 by two engineers.</p>")})
        parked = farm.add({"/": page("for sale", "<p>This domain is for sale. Buy this domain today.</p>")})
        register = tmp_path / "register.csv"
        pd.DataFrame({"firm_id": ["G", "P", "N"], "website": [good.url, parked.url, ""], "name": ["Acme Predict Ltd", "", ""]}).to_csv(register, index=False)
        store = tmp_path / "crawl.db"
        crawl(register, store, CrawlOptions(delay=0.0, fetch=FetchOptions(allow_private=True)))

    docs = firm_documents(store, ["G", "P", "N", "MISSING"]).set_index("firm_id")
    assert ABOUT in docs.loc["G", "text"] and docs.loc["G", "reason"] == ""
    assert [p["kind"] for p in json.loads(docs.loc["G", "pages"])] == ["home", "about"]
    assert docs.loc["P", "text"] == "" and docs.loc["P", "reason"] == "site_parked" and "placeholder phrase" in docs.loc["P", "detail"]
    assert docs.loc["N", "reason"] == "no_website" and docs.loc["MISSING", "reason"] == "not_crawled"

    out = tmp_path / "labels.parquet"
    res = run_cli("classify", str(register), "--out", str(out), "--store", str(store), home=rtic_home)
    assert res.returncode == 0, res.stderr
    assert set(pd.read_parquet(out)["firm_id"]) == {"G"}
    exceptions = pd.read_csv(tmp_path / "labels.exceptions.csv", dtype=str).set_index("firm_id")
    assert exceptions.loc["P", "reason"] == "site_parked" and exceptions.loc["N", "reason"] == "no_website"
    assert "placeholder phrase" in exceptions.loc["P", "detail"] and str(store) in exceptions.loc["P", "detail"]
    assert set(exceptions["reason"]) <= set(REASONS)

    # A reviewer sees exactly the document that was scored, with the pages it came from.
    from rtic.embed.encoder import text_sha256
    from rtic.text import firm_text

    shown = firm_text("G", store=store)
    assert shown.text == docs.loc["G", "text"]
    assert text_sha256(shown.text) == pd.read_parquet(out)["text_sha256"].iloc[0]
    assert [p.kind for p in shown.pages] == ["home", "about"] and all(p.fetched_at for p in shown.pages)
    assert firm_text("P", store=store).text == ""


CAREERS = ("Join our data team! We are hiring a machine learning engineer to build computer vision models, "
           "deep learning pipelines and predictive analytics on our data platform. ") * 3


def test_generic_pages_never_decide_the_document():
    """A plumber's careers page full of AI words stays out of the text; a long page cannot crowd out the rest."""
    pages = [
        {"url": "p/", "kind": "home", "seq": 0, "text": "Dalton Plumbing\nBoiler servicing, leaks and bathroom fitting in Hull."},
        {"url": "p/services", "kind": "services", "seq": 1, "text": "Services\nEmergency call-outs 24/7.\n" + "Radiator flushing. " * 800},
        {"url": "p/careers", "kind": "team", "seq": 2, "text": f"Careers\n{CAREERS}"},
        {"url": "p/contact", "kind": "contact", "seq": 3, "text": "Contact us\nmachine learning data platform"},
    ]
    text, provenance = site_document(pages)
    assert "machine learning" not in text and [p["kind"] for p in provenance] == ["home", "services"]
    services = next(p for p in provenance if p["kind"] == "services")
    assert services["end"] - services["start"] <= PAGE_CHAR_CAP
    # A site whose only readable page is generic still has a document.
    only = site_document([{"url": "q/", "kind": "home", "seq": 0, "text": ""}, {"url": "q/team", "kind": "team", "seq": 1, "text": "Our team of engineers"}])
    assert only[0] == "Our team of engineers"


def test_crawled_multi_page_firm_document(tmp_path):
    """Crawler-shaped: a real crawl of a site with home, services and careers pages."""
    with Farm() as farm:
        site = farm.add({
            "/": page("Dalton Plumbing", "<h1>Dalton Plumbing</h1><p>Boiler servicing, leaks and bathroom fitting across Hull and the East Riding since 1998.</p>"
                      "<a href='/services'>Our services</a> <a href='/careers'>Careers</a>"),
            "/services": page("Services", "<h1>Services</h1><p>Emergency call-outs, radiator flushing, unvented cylinders and landlord gas safety certificates.</p>"),
            "/careers": page("Careers", f"<h1>Careers</h1><p>{CAREERS}</p>"),
        })
        register = tmp_path / "register.csv"
        pd.DataFrame({"firm_id": ["D"], "website": [site.url]}).to_csv(register, index=False)
        store = tmp_path / "crawl.db"
        crawl(register, store, CrawlOptions(delay=0.0, fetch=FetchOptions(allow_private=True)))
    doc = firm_documents(store, ["D"]).iloc[0]
    assert "radiator flushing" in doc["text"] and "machine learning" not in doc["text"]
    assert [p["kind"] for p in json.loads(doc["pages"])] == ["home", "services"]
