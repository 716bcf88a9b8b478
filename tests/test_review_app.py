"""The review web app, served by the tests on 127.0.0.1: HTTP API tests, then a real chromium via Playwright."""

import html
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

from review_fixtures import HOSTILE_ID, HOSTILE_WEBSITE, review_explainer, review_labels, review_register  # noqa: F401 (fixtures)
from rtic.contracts import sibling_path
from rtic.taxonomy import load_taxonomy

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
                    explainer=review_explainer)
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
    assert [f["firm_id"] for f in json.loads(body)["firms"]] == ["EVIL-1", "EX003"]  # EX003 by name, EVIL-1 by its text
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
    reason = pd.read_csv(sibling_path(review_labels, ".exceptions.csv"), dtype=str).set_index("firm_id").loc["EX018", "reason"]
    assert json.loads(body)["not_classified"] == reason and json.loads(body)["labels"] == [] and not json.loads(body)["classified"]
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


def test_search_finds_words_in_the_text(server, review_register):
    base, _ = server
    register = pd.read_csv(review_register, dtype=str, keep_default_na=False)
    for q in ("retail parks", "satellites", "penetr"):  # words only in the text (a prefix for the last)
        def matches(field, words=q.split()):  # every word starts a word of the field
            return all(re.search(rf"\b{w}", field, re.I) for w in words)

        expected = sorted(f for f, n, t in zip(register["firm_id"], register["name"], register["text"]) if matches(n) or matches(t))
        _, _, body = request(base + "/api/search?" + urlencode({"q": q}))
        assert expected and [f["firm_id"] for f in json.loads(body)["firms"]] == expected, q


def test_unclassified_firms_are_told_apart_from_firms_in_no_sector(server, review_labels):
    base, _ = server
    labels = pd.read_parquet(review_labels)
    in_none = sorted(set(labels["firm_id"]) - set(labels.loc[labels["assigned"], "firm_id"]))
    assert in_none, "the example register has ordinary businesses the model puts in no sector"
    reason = pd.read_csv(sibling_path(review_labels, ".exceptions.csv"), dtype=str).set_index("firm_id").loc["EX018", "reason"]
    rows = {f["firm_id"]: f for f in json.loads(request(base + "/api/search?q=ex0&limit=100")[2])["firms"]}
    assert rows[in_none[0]]["classified"] and rows[in_none[0]]["sectors"] == [] and rows[in_none[0]]["not_classified"] is None
    assert not rows["EX018"]["classified"] and rows["EX018"]["not_classified"] == reason
    page = request(base + "/?q=ex0")[2]
    row_of = lambda fid: re.search(rf"<tr><td><a href='/firm/{fid}'>.*?</tr>", page).group(0)
    assert "in no sector" in row_of(in_none[0]) and "not classified" not in row_of(in_none[0])
    assert f"not classified: {reason}" in row_of("EX018") and "in no sector" not in row_of("EX018")
    assert f"not classified: {reason}" in request(base + "/firm/EX018")[2]
    assert "in no sector" in request(base + f"/firm/{in_none[0]}")[2]


def test_firm_page_shows_sector_names_and_a_safe_website_link(server, review_labels):
    base, _ = server
    names = {s.id: s.name for s in load_taxonomy().sectors}
    page = request(base + "/firm/EX004")[2]
    labels = pd.read_parquet(review_labels).query("firm_id == 'EX004'")
    for sector in labels["sector_id"]:
        assert re.search(rf"<tr id='label-{sector}'><td>(<a [^>]*>)?{re.escape(html.escape(names[sector], quote=True))} ", page), sector
    assert "<a id='website' href='http://www.chargeloop.example/home' rel='noopener noreferrer nofollow' target='_blank'>" in page
    search = request(base + "/")[2]
    assert all(f">{html.escape(n, quote=True)}</option>" in search for n in names.values())
    hostile = request(base + f"/firm/{HOSTILE_ID}")[2]
    assert "<a id='website'" not in hostile and "javascript:" not in hostile.replace(html.escape(HOSTILE_WEBSITE, quote=True), "")
    assert f"website {html.escape(HOSTILE_WEBSITE, quote=True)} (not an http or https address: not linked)" in hostile


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
    link = page.locator("#website")
    assert link.get_attribute("href") == "http://www.chargeloop.example/home" and "noopener" in link.get_attribute("rel")
    name = load_taxonomy().sector(sector).name
    assert name in row.inner_text()


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
    assert page.locator("a#website").count() == 0 and page.locator("a[href^='javascript']").count() == 0
    page.goto(base + "/?q=solar")
    assert "<script>alert('name')</script> Solar Ltd" in page.locator("#results").inner_text() and not dialogs
