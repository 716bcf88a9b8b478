"""The review web app, served by the tests on 127.0.0.1: HTTP API tests, then a real chromium via Playwright."""

import json
import os
import re
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import pandas as pd
import pytest

from review_fixtures import HOSTILE_ID, review_explainer, review_labels, review_register  # noqa: F401 (fixtures)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def request(url, data=None, headers=None):
    """(status, headers, body) without following redirects or raising on 4xx."""
    req = urllib.request.Request(url, data=None if data is None else urlencode(data).encode(), headers=headers or {})
    try:
        with OPENER.open(req, timeout=60) as resp:
            return resp.status, resp.headers, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read().decode()


@pytest.fixture(scope="module")
def server(settings, review_labels, review_register, review_explainer, tmp_path_factory):
    from rtic.review.app import build_app, make_server

    reviews = tmp_path_factory.mktemp("app_reviews") / "reviews.sqlite"
    app = build_app(settings, review_labels, reviews, register=review_register, reviewer="alice", port=0,
                    explainer=review_explainer, progress=lambda *_: None)
    httpd = make_server(app)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", app
    httpd.shutdown()
    httpd.server_close()


def csrf(base):
    _, _, body = request(base + "/firm/EX001")
    return re.search(r"name='csrf' value='([0-9a-f]+)'", body).group(1)


def test_pages_send_a_strict_content_security_policy(server):
    base, _ = server
    status, headers, body = request(base + "/")
    assert status == 200 and "<form class='search'" in body
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_api_search_and_firm(server, review_labels):
    base, _ = server
    _, _, body = request(base + "/api/search?q=ex00")
    assert [f["firm_id"] for f in json.loads(body)["firms"]] == [f"EX00{i}" for i in range(1, 10)]
    _, _, body = request(base + "/api/search?q=heat+pumps")
    assert [f["firm_id"] for f in json.loads(body)["firms"]] == ["EX003"]
    labels = pd.read_parquet(review_labels)
    sector = labels[labels["assigned"]]["sector_id"].value_counts().index[0]
    _, _, body = request(base + "/api/search?" + urlencode({"sector": sector, "limit": 500}))
    assert {f["firm_id"] for f in json.loads(body)["firms"]} == set(labels[labels["assigned"] & (labels["sector_id"] == sector)]["firm_id"])
    status, _, body = request(base + "/api/firm/EX003")
    firm = json.loads(body)
    assert status == 200 and len(firm["labels"]) == 9 and firm["model_version"] == labels["model_version"].iloc[0]
    assert firm["evidence"] and all(s["text"] in firm["text"] for ev in firm["evidence"] for s in ev["sentences"])
    assert request(base + "/api/firm/NOPE")[0] == 404
    _, _, body = request(base + "/api/firm/EX018")  # no text in the register: listed with rtic classify's reason
    assert json.loads(body)["not_classified"] == "no_text" and json.loads(body)["labels"] == []
    assert request(base + "/firm/NOPE")[0] == 404


def decide_form(token, sector, decision="reject", note=""):
    return {"csrf": token, "action": f"{decision}:{sector}", "note": note}


def test_post_needs_csrf_token_same_origin_and_our_host(server):
    base, app = server
    token = csrf(base)
    firm = app.index.firm("EX002")
    sector = next(l.sector_id for l in firm.labels if not l.model_assigned)
    before = len(app.store.history("EX002"))
    assert request(base + "/firm/EX002/decide", decide_form("0" * 64, sector))[0] == 403
    assert request(base + "/firm/EX002/decide", {k: v for k, v in decide_form(token, sector).items() if k != "csrf"})[0] == 403
    assert request(base + "/firm/EX002/decide", decide_form(token, sector), {"Origin": "http://evil.example"})[0] == 403
    assert request(base + "/firm/EX002/decide", decide_form(token, sector), {"Host": "evil.example:80"})[0] == 421
    assert request(base + "/", headers={"Host": "rebound.example"})[0] == 421
    assert len(app.store.history("EX002")) == before
    status, headers, _ = request(base + "/firm/EX002/decide", decide_form(token, sector), {"Origin": base})
    assert status == 303 and headers["Location"] == "/firm/EX002"
    assert [d.decision for d in app.store.history("EX002")][-1] == "reject"


def test_bad_decisions_are_explained_not_stored(server):
    base, app = server
    token = csrf(base)
    firm = app.index.firm("EX005")
    unassigned = next(l.sector_id for l in firm.labels if not l.model_assigned)
    status, headers, _ = request(base + "/firm/EX005/decide", decide_form(token, unassigned, "confirm"))
    assert status == 303 and "error=" in headers["Location"]
    _, _, page = request(base + headers["Location"])
    assert "use &#x27;add&#x27;" in page
    assert "error=" in request(base + "/firm/EX005/decide", decide_form(token, "not_a_sector", "add"))[1]["Location"]
    assert "error=" in request(base + "/firm/EX005/decide", decide_form(token, unassigned, "maybe"))[1]["Location"]
    status, headers, _ = request(base + "/firm/EX005/decide", decide_form(token, unassigned, "add", note="sells <b>telecare</b>"))
    assert status == 303 and headers["Location"] == "/firm/EX005"
    assert [(d.decision, d.reviewer, d.note) for d in app.store.history("EX005")] == [("add", "alice", "sells <b>telecare</b>")]
    assert "sells &lt;b&gt;telecare&lt;/b&gt;" in request(base + "/firm/EX005")[2]


def test_crawled_markup_is_escaped(server):
    base, _ = server
    _, _, page = request(base + f"/firm/{HOSTILE_ID}")
    assert "<script>" not in page and "onerror=" not in page.replace("onerror=&quot;", "")
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;" in page
    _, _, results = request(base + "/?q=solar")
    assert "<script>" not in results and "&lt;script&gt;alert(&#x27;name&#x27;)" in results


# -- a real browser ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (scripts/install_system_deps.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    pg = context.new_page()
    yield pg
    context.close()


def test_browser_search_open_decide_reload(server, page, tmp_path):
    base, app = server
    page.goto(base + "/")
    page.fill("input[name=q]", "ChargeLoop")
    page.click("button[type=submit]")
    page.click("#results a:text('EX004')")
    assert page.locator("#firm-title").inner_text().startswith("EX004")
    assert page.locator("#text mark").count() >= 1  # evidence highlighted in the text
    firm = app.index.firm("EX004")
    sector = next(l.sector_id for l in firm.labels if l.model_assigned)
    page.fill("#note", "charge-point operator")
    page.click(f"#confirm-{sector}")
    page.wait_for_url(re.compile(r"/firm/EX004$"))
    page.reload()
    row = page.locator(f"#label-{sector}")
    assert row.locator(".decision").inner_text() == "confirm"
    assert "alice" in page.locator("#history").inner_text() and "charge-point operator" in page.locator("#history").inner_text()
    shot = tmp_path / "firm_page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("RTIC_SCREENSHOT_DIR"):  # keep a copy to look at
        shutil.copy(shot, Path(os.environ["RTIC_SCREENSHOT_DIR"]) / "review_firm_page.png")
    assert [d.decision for d in app.store.history("EX004")] == ["confirm"]


def test_browser_does_not_run_a_websites_script(server, page):
    base, _ = server
    dialogs, violations = [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(base + f"/firm/{HOSTILE_ID}")
    page.wait_for_load_state("load")
    assert page.title() != "pwned" and not dialogs
    assert page.evaluate("() => window.pwned === undefined")
    assert "<script>document.title='pwned'" in page.locator("#text").inner_text()  # shown as text
    assert page.locator("script").count() == 0 and page.locator("#text img").count() == 0
    page.goto(base + "/?q=solar")
    assert "<script>alert('name')</script> Solar Ltd" in page.locator("#results").inner_text() and not dialogs
