"""Main-text extraction: boilerplate out, content in, on hand-written pages; `rtic extract` on a saved page."""

from __future__ import annotations

import gzip

from conftest import run_cli
from rtic.crawl.extract import decode_html, extract

PAGE = """<!doctype html><html lang="en-GB"><head><title>Acme Robotics | Industrial automation</title>
<meta name="description" content="Collaborative robots for food factories.">
<script type="application/ld+json">{"@context":"https://schema.org","@type":"Organization","name":"Acme Robotics",
 "description":"Acme Robotics designs collaborative robot arms for food and drink manufacturers."}</script>
<script>var tracking = "do not extract me";</script><style>.x{color:red}</style></head>
<body>
<div id="cookie-banner"><p>We use cookies to improve your experience. Accept all cookies?</p><button>Accept</button></div>
<header><div class="logo">Acme</div><nav><ul><li><a href="/">Home</a></li><li><a href="/about">About</a></li>
<li><a href="/products">Products</a></li><li><a href="/contact">Contact</a></li></ul></nav></header>
<div class="breadcrumb"><a href="/">Home</a> › <a href="/products">Products</a></div>
<main><article>
<h1>Robot arms that work safely beside people</h1>
<p>Our collaborative robots pick, pack and palletise food products on busy production lines, without safety cages.</p>
<h2>Why manufacturers choose us</h2>
<ul><li>Installed in under a day by our own engineers</li><li>Washdown-rated for hygienic environments</li></ul>
<p>Every arm is designed and assembled in our Sheffield factory and supported for ten years.</p>
<div style="display:none">Hidden promotional text</div>
</article></main>
<aside class="sidebar"><h3>Latest news</h3><ul><li><a href="/n1">Trade show 2025</a></li><li><a href="/n2">New office</a></li></ul></aside>
<footer class="site-footer"><p>© 2026 Acme Robotics Ltd. Registered in England and Wales No. 01234567.</p>
<ul><li><a href="/privacy">Privacy</a></li><li><a href="/terms">Terms</a></li></ul></footer>
</body></html>"""


def test_main_text_kept_and_boilerplate_removed():
    ex = extract(PAGE)
    text = ex.text
    for kept in ("Robot arms that work safely", "pick, pack and palletise", "Washdown-rated", "Sheffield factory", "Why manufacturers choose us"):
        assert kept in text
    for dropped in ("cookies", "tracking", "Trade show", "Privacy", "Registered in England", "Hidden promotional", "color:red", "Contact"):
        assert dropped not in text
    assert ex.title.startswith("Acme Robotics") and ex.description == "Collaborative robots for food factories."
    assert ex.jsonld == ["Acme Robotics designs collaborative robot arms for food and drink manufacturers."]
    assert ex.lang == "en-gb"
    doc = ex.document().split("\n")
    assert doc[0] == ex.title and doc[1] == ex.description and doc[2] == ex.jsonld[0]


def test_page_without_semantic_tags_uses_block_scores():
    menu = "".join(f"<div class='item'><a href='/p{i}'>Product line {i}</a></div>" for i in range(15))
    prose = "".join(f"<p>Paragraph {i}: we calibrate laboratory balances and pipettes for hospitals and universities across the north of England.</p>" for i in range(5))
    html = f"<html><body><div class='top'>{menu}</div><div class='content'><h2>Calibration services</h2>{prose}</div><div>{menu}</div></body></html>"
    text = extract(html).text
    assert "Calibration services" in text and "Paragraph 4" in text and "Product line" not in text


def test_decoding_fallbacks_never_fail():
    assert decode_html("café".encode("cp1252")) == "café"  # not UTF-8, no charset: Windows-1252
    assert decode_html('<meta charset="iso-8859-1"><p>caf\xe9</p>'.encode("latin-1")).endswith("café</p>")
    assert decode_html("naïve".encode(), "no-such-charset") == "naïve"
    assert extract(b"").text == "" and extract(b"\x00\x00").text == ""
    assert extract("<html><body><p>only text</p></body></html>").text == "only text"


def test_extract_cli_reads_saved_page(tmp_path, rtic_home):
    saved = tmp_path / "page.html.gz"
    saved.write_bytes(gzip.compress(PAGE.encode()))
    res = run_cli("extract", str(saved), "--main-only", home=rtic_home)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("Robot arms that work safely") and "cookies" not in res.stdout
    res = run_cli("extract", str(tmp_path / "missing.html"), home=rtic_home)
    assert res.returncode == 2 and "page not found" in res.stderr
