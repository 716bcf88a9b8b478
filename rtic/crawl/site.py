"""What a fetched site tells us: which links to follow, whether it is parked or not English,
UK company numbers and postcodes on it, and how well it matches the register row."""

from __future__ import annotations

import itertools
import re
from urllib.parse import urldefrag, urljoin, urlsplit

import lxml.html

from rtic.crawl.extract import defuse
from rtic.crawl.fetch import same_site
from rtic.crawl.safety import url_problem

# Link scoring: where a firm says what it does. Weighted by keyword, matched in path and anchor text.
LINK_KEYWORDS = [
    (6, "about", re.compile(r"about|who-?we-?are|our-?story|company|profile|overview", re.I)),
    (6, "what_we_do", re.compile(r"what-?we-?do|what we do|capabilit|expertise", re.I)),
    (5, "products", re.compile(r"product|platform|shop-?by|range|catalogue|catalog", re.I)),
    (5, "services", re.compile(r"service|consult|offering", re.I)),
    (5, "solutions", re.compile(r"solution", re.I)),
    (4, "technology", re.compile(r"technolog|innovation|research|r-?and-?d|science|engineering", re.I)),
    (4, "sectors", re.compile(r"sector|industr|market|application|customers|clients", re.I)),
    (2, "case_studies", re.compile(r"case-?stud|projects|portfolio|work", re.I)),
    (1, "team", re.compile(r"team|people|leadership|careers", re.I)),
    (1, "contact", re.compile(r"contact", re.I)),
]
SKIP_LINK = re.compile(
    r"privacy|cookie|login|log-in|signin|sign-in|signup|register|account|cart|basket|checkout|wishlist|terms|legal|"
    r"disclaimer|accessibility|sitemap|/feed|/rss|/tag/|/tags/|/category/|/author/|/page/\d|/wp-admin|/wp-login|"
    r"/news/.|/blog/.|/press/.|/events/.|/\d{4}/\d{2}/|[?&](page|p|s|q|replytocom)=|"
    r"\.(pdf|jpe?g|png|gif|svg|webp|zip|docx?|xlsx?|pptx?|mp4|mp3|xml|json|css|js|ico)(\?|$)",
    re.I,
)

PARKED_PHRASES = re.compile(
    r"this domain (name )?(is|may be) for sale|buy this domain|domain (is )?for sale|make an offer on this domain|"
    r"domain parking|parked (free|domain|by)|this domain has been registered|this web ?page is parked|"
    r"future home of|website (is )?coming soon|site (is )?under construction|under construction|coming soon|"
    r"welcome to nginx|apache2? (ubuntu|debian)? ?default page|it works!|iis windows server|"
    r"default web site page|test page for the (apache|nginx)|this site can.t be reached|account suspended|"
    r"hosting account (has been )?suspended|domain (has )?expired|renew (this|your) domain",
    re.I,
)
PARKING_HOSTS = re.compile(r"sedoparking|parkingcrew|bodis|dan\.com|afternic|hugedomains|above\.com|undeveloped|"
                           r"sedo\.com|parklogic|domainmarket|godaddy\.com/domain|uniregistry|namebright|parked", re.I)
NEAR_EMPTY_WORDS = 20
MAX_ANCHORS = 3000  # links looked at per page: a real page has a few hundred; 100,000 would hold the event loop for seconds

# UK company numbers: 8 digits, or 2 letters + 6 digits (SC, NI, OC, SO, NC, R0, ...), seen next to a cue.
COMPANY_NUMBER = re.compile(
    r"(?P<cue>(?:company|co\.?|registration|registered|reg\.?|crn)\s*(?:registration\s*)?(?:no\.?|number|num\.?|#)?"
    r"(?:\s*(?:is|:|-))?|registered in (?:england|scotland|wales|northern ireland)(?:\s*(?:and|&)\s*wales)?"
    r"(?:\s*(?:under|with))?(?:\s*(?:company|registration))?\s*(?:no\.?|number|num\.?)?\s*:?)"
    r"\s*(?P<number>(?:[A-Z]{2}|\d{2})\d{6}|\d{6,7})\b",
    re.I,
)
POSTCODE = re.compile(r"\b([A-Z]{1,2}\d[A-Z\d]?)\s*(\d[A-Z]{2})\b")
EN_STOPWORDS = set(
    "the and of to a in for is on that with we our are as by be at this from or your you it an have more can all will "
    "us about which their has not been its they was were how what who".split()
)
WORD = re.compile(r"[a-zA-ZÀ-ÿ]+")


def normalise_url(url: str) -> str:
    """Lower-cased scheme and host, no fragment, at least "/" as path. A URL too malformed to split
    (an unclosed IPv6 bracket) comes back stripped but otherwise as given: `url_problem` says why."""
    try:
        url, _ = urldefrag(url.strip())
        parts = urlsplit(url)
    except ValueError:
        return url.strip()
    path = parts.path or "/"
    return parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower(), path=path).geturl()


def website_url(website: str) -> str:
    """A register's website cell → a URL (http:// when no scheme; most sites redirect to https)."""
    website = (website or "").strip()
    if not website:
        return ""
    if "://" not in website:
        website = "http://" + website.lstrip("/")
    return normalise_url(website)


def page_kind(url: str, anchor: str = "") -> str:
    text = f"{urlsplit(url).path} {anchor}"
    best = max(((w, kind) for w, kind, rx in LINK_KEYWORDS if rx.search(text)), default=(0, "other"))
    return best[1]


def choose_links(html: bytes | str, base_url: str, limit: int) -> list[tuple[str, str]]:
    """Up to `limit` same-site links worth reading, best first, as (url, kind)."""
    if limit <= 0 or not html:
        return []
    try:
        root = lxml.html.document_fromstring(defuse(html if isinstance(html, str) else html.decode("utf-8", "replace")))
    except (ValueError, lxml.etree.ParserError):
        return []
    base = root.find(".//base")
    if base is not None and base.get("href"):
        try:
            based = urljoin(base_url, base.get("href").strip())
        except ValueError:
            based = base_url
        if url_problem(based) is None:  # a malformed <base> is ignored, as browsers do
            base_url = based
    home = normalise_url(base_url)
    scored: dict[str, tuple[float, str, int]] = {}
    for order, a in enumerate(itertools.islice(root.iter("a"), MAX_ANCHORS)):
        href = (a.get("href") or "").strip()
        if not href or href.startswith(("mailto:", "tel:", "javascript:", "#", "data:")):
            continue
        try:
            url = normalise_url(urljoin(base_url, href))
        except ValueError:
            continue  # a link too malformed to resolve is that link's problem only
        if not url.startswith(("http://", "https://")) or url == home or not same_site(url, home):
            continue
        if SKIP_LINK.search(urlsplit(url).path + ("?" + urlsplit(url).query if urlsplit(url).query else "")):
            continue
        anchor = " ".join(a.text_content().split())[:80]
        text = f"{urlsplit(url).path} {anchor}"
        weight = sum(w for w, _, rx in LINK_KEYWORDS if rx.search(text))
        depth = len([p for p in urlsplit(url).path.split("/") if p])
        score = weight + (0.5 if depth <= 1 else 0) - 0.5 * max(depth - 2, 0)
        if score <= 0:
            continue
        if url not in scored or scored[url][0] < score:
            scored[url] = (score, page_kind(url, anchor), order)
    ranked = sorted(scored.items(), key=lambda kv: (-kv[1][0], kv[1][2]))
    return [(url, kind) for url, (score, kind, order) in ranked[:limit]]


def english_share(text: str) -> float:
    words = [w.lower() for w in WORD.findall(text[:20000])]
    if not words:
        return 0.0
    return sum(w in EN_STOPWORDS for w in words) / len(words)


def is_english(text: str, lang: str = "") -> bool:
    """English stop words make up ~25-40% of English prose and almost none of other languages' prose."""
    words = WORD.findall(text[:20000])
    if len(words) < 20:
        return not lang or lang.startswith("en")
    return english_share(text) >= 0.08


def parked_reason(text: str, final_url: str, n_words: int) -> str | None:
    host = urlsplit(final_url).hostname or ""
    if PARKING_HOSTS.search(host):
        return f"redirected to parking host {host}"
    m = PARKED_PHRASES.search(text[:5000])
    if m and n_words < 400:
        return f"placeholder phrase {m.group(0)!r}"
    if n_words < NEAR_EMPTY_WORDS:
        return f"near-empty ({n_words} words)"
    return None


def find_company_numbers(text: str) -> list[dict]:
    found: dict[str, dict] = {}
    for m in COMPANY_NUMBER.finditer(text):
        number = m.group("number").upper()
        if number.isdigit():
            number = number.zfill(8)
        if number not in found:
            start, end = max(0, m.start() - 40), min(len(text), m.end() + 20)
            found[number] = {"number": number, "context": " ".join(text[start:end].split())}
    return list(found.values())


def find_postcodes(text: str) -> list[str]:
    return list(dict.fromkeys(f"{a} {b}" for a, b in POSTCODE.findall(text.upper())))


def normalise_company_number(value: str) -> str:
    value = re.sub(r"\s", "", str(value or "")).upper()
    return value.zfill(8) if value.isdigit() else value


NAME_NOISE = {"ltd", "limited", "plc", "llp", "the", "uk", "group", "holdings", "co", "company", "and", "&", "services", "international"}


def match_score(register: dict, site_text: str, title: str, numbers: list[str], postcodes: list[str]) -> tuple[float, list[str]]:
    """0..1: how sure we are the site belongs to the register row, and why."""
    score, reasons = 0.0, []
    number = normalise_company_number(register.get("company_number") or "")
    if number:
        if number in numbers:
            score += 0.6
            reasons.append(f"company number {number} on site")
        elif numbers:
            score -= 0.3
            reasons.append(f"site shows other company number(s) {', '.join(numbers[:3])}")
    postcode = re.sub(r"\s", "", (register.get("postcode") or "").upper())
    if postcode:
        site_codes = {p.replace(" ", "") for p in postcodes}
        if postcode in site_codes:
            score += 0.25
            reasons.append(f"postcode {register['postcode'].strip().upper()} on site")
        elif any(p[:-3] == postcode[:-3] for p in site_codes):
            score += 0.1
            reasons.append(f"postcode district {postcode[:-3]} on site")
    name = register.get("name") or ""
    tokens = [t for t in re.findall(r"[a-z0-9]+", name.lower()) if t not in NAME_NOISE and len(t) > 1]
    if tokens:
        hay = f"{title} {site_text[:50000]}".lower()
        hits = [t for t in tokens if re.search(rf"\b{re.escape(t)}\b", hay)]
        share = len(hits) / len(tokens)
        if share:
            score += 0.25 * share
            reasons.append(f"name words on site: {' '.join(hits)}")
    return round(max(0.0, min(1.0, score)), 3), reasons
