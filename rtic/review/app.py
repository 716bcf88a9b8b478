"""The review web app: search firms, read a firm's labels and evidence, record decisions.

Standard library only (http.server's ThreadingHTTPServer): the app is a handful of routes of
server-rendered HTML, so a framework would add dependencies and attack surface without saving code,
and it keeps every security header and escape in plain sight here. There is no JavaScript at all;
the Content-Security-Policy says so (script-src 'none'), so even a crawled page whose text slipped
past escaping could not run a script in the reviewer's browser.

Security: bound to 127.0.0.1 by default; Host must be the address served (no DNS rebinding);
every POST needs the server's CSRF token and, when the browser sends one, a same-origin Origin
(scheme, host and port). A POST must declare its length (at most MAX_BODY bytes; no chunked
bodies); an idle or stalled connection is closed after IDLE_TIMEOUT seconds, and at most
MAX_CONNECTIONS are served at once (more are answered 503 and closed), so held-open sockets cannot
pile up threads.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import logging
import queue
import re
import secrets
import socket
import threading
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from rtic.errors import RticError
from rtic.review.index import FirmRecord, LabelsIndex
from rtic.review.store import DECISIONS, ReviewStore, check_decision
from rtic import config

log = logging.getLogger(__name__)

CSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; script-src 'none'"
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
header{background:#17324d;color:#fff;padding:.6em 1.2em;display:flex;gap:1em;align-items:baseline}
header a{color:#fff;text-decoration:none;font-weight:600}
main{max-width:1100px;margin:1em auto;padding:0 1em}
form.search{display:flex;gap:.5em;flex-wrap:wrap;margin-bottom:1em}
input,select,button{font:inherit;padding:.3em .5em}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border-bottom:1px solid #dde1e6;padding:.35em .5em;text-align:left;vertical-align:top}
.tag{display:inline-block;background:#e3ecf7;border-radius:3px;padding:0 .4em;margin:0 .2em .2em 0;font-size:90%}
.flag{color:#a04000}
.yes{font-weight:600;color:#0a6b2d}.no{color:#777}
section{background:#fff;border:1px solid #dde1e6;border-radius:4px;padding:.6em 1em;margin:1em 0}
.text{white-space:pre-wrap;max-height:28em;overflow:auto;border:1px solid #eee;padding:.5em}
mark{background:#ffe27a;padding:0 .1em}mark.strong{background:#ffc400}
.decide button{margin-right:.2em}
.err{background:#fde8e8;border-color:#e0a0a0}
.muted{color:#666;font-size:90%}
"""


MAX_BODY = 100_000  # bytes of a POSTed form: a decision and a 2,000-character note fit many times over
IDLE_TIMEOUT = 15.0  # seconds a connection may sit without sending (keep-alive, half-sent request or body)
MAX_CONNECTIONS = 64  # connections served at once, one thread each
MAX_SEARCH_LIMIT = 500
MAX_FORM_FIELDS = 50  # the decision form has three


def esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def safe_website_url(website: str) -> str | None:
    """The register's website as an http(s) URL fit for a link, or None: any other scheme (javascript:, data:,
    file:), a URL with credentials, spaces or control characters, or no host is not linked."""
    from rtic.crawl.site import website_url

    raw = (website or "").strip()
    if not raw or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in raw):
        return None
    try:
        url = website_url(raw)
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port  # a bad port ("javascript:alert(1)" read as host:port) raises
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host or "@" in parts.netloc or not re.fullmatch(r"[\w.-]+|[0-9a-f:.]+", host):
        return None
    return url


@dataclass
class AppConfig:
    index_path: Path
    reviews_path: Path
    reviewer: str = ""
    host: str = config.REVIEW_HOST
    port: int = config.REVIEW_PORT
    store: Path | None = None
    explainer: object | None = None  # rtic.explain.ModelExplainer, or None: no evidence
    evidence_note: str = ""  # why there is no evidence, shown on firm pages
    sector_names: dict[str, str] = field(default_factory=dict)  # sector id -> display name (from the taxonomy)
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))


class ReviewApp:
    """Request handling independent of the socket server, so the routes are plain methods."""

    def __init__(self, config: AppConfig):
        self.config = config
        self.csrf_token = hmac.new(config.secret, b"rtic-review-csrf", hashlib.sha256).hexdigest()
        self._local = threading.local()
        self._pool: queue.SimpleQueue = queue.SimpleQueue()
        self._model_lock = threading.Lock()
        self._evidence_cache: dict[tuple[str, str], list] = {}
        self.allowed_hosts: set[str] = set()
        self.allowed_origins: set[str] = set()

    # -- connections ---------------------------------------------------------------------------
    # The server runs each connection in a new thread; SQLite's page cache lives in the connection,
    # so connections are pooled and lent to a thread for one request rather than opened per thread.
    def checkout(self) -> None:
        try:
            self._local.conns = self._pool.get_nowait()
        except queue.Empty:
            self._local.conns = (LabelsIndex(self.config.index_path, self.config.reviews_path), ReviewStore(self.config.reviews_path))

    def checkin(self) -> None:
        conns, self._local.conns = getattr(self._local, "conns", None), None
        if conns is not None:
            self._pool.put(conns)

    @property
    def index(self) -> LabelsIndex:
        if getattr(self._local, "conns", None) is None:
            self.checkout()
        return self._local.conns[0]

    @property
    def store(self) -> ReviewStore:
        if getattr(self._local, "conns", None) is None:
            self.checkout()
        return self._local.conns[1]

    # -- evidence ----------------------------------------------------------------------------
    def firm_text(self, record: FirmRecord) -> str:
        if record.text or self.config.store is None:
            return record.text
        from rtic.text import crawl_document

        try:
            return crawl_document(self.config.store, record.firm_id)[0]
        except RticError:
            return ""

    def evidence(self, record: FirmRecord, text: str) -> list:
        ex = self.config.explainer
        if ex is None or not text.strip():
            return []
        from rtic.embed.encoder import text_sha256

        key = (record.firm_id, text_sha256(text))
        if key not in self._evidence_cache:
            sectors = [{"sector_id": l.sector_id, "probability": l.probability, "threshold": ex.thresholds.get(l.sector_id, 1.0),
                        "assigned": l.model_assigned} for l in record.labels if l.probability is not None]
            with self._model_lock:  # one model, scored by one request at a time
                self._evidence_cache[key] = ex.evidence(text, sectors)
            if len(self._evidence_cache) > 512:
                self._evidence_cache.pop(next(iter(self._evidence_cache)))
        return self._evidence_cache[key]

    # -- pages -------------------------------------------------------------------------------
    def sector_name(self, sector_id: str) -> str:
        return self.config.sector_names.get(sector_id) or sector_id

    def sector_html(self, sector_id: str) -> str:
        """The sector's display name, with its id beside it (ids are what the CLI and files use)."""
        name = self.config.sector_names.get(sector_id)
        return f"{esc(name)} <span class='muted'>{esc(sector_id)}</span>" if name and name != sector_id else esc(sector_id)

    def status_html(self, classified: bool, not_classified: str | None, sectors: list[str]) -> str:
        """A firm's sectors, or why it has none: classified into no sector is not the same as not classified."""
        if sectors:
            return "".join(f"<span class='tag' title='{esc(s)}'>{esc(self.sector_name(s))}</span>" for s in sectors)
        if not_classified:
            return f"<span class='flag unclassified'>not classified: {esc(not_classified)}</span>"
        if not classified:
            return "<span class='flag unclassified'>not in the labels file</span>"
        return "<span class='muted nosector'>in no sector</span>"

    def page(self, title: str, body: str) -> str:
        reviewer = esc(self.config.reviewer) if self.config.reviewer else ""
        return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)} · rtic review</title>"
                f"<link rel='stylesheet' href='/static/app.css'></head><body><header><a href='/'>rtic review</a>"
                f"<span class='muted'>{reviewer}</span></header><main>{body}</main></body></html>")

    def search_page(self, params: dict) -> str:
        q, sector, review, after = (params.get(k, "") for k in ("q", "sector", "review", "after"))
        rows = self.index.search(q=q, sector=sector or None, review=review or None, after=after, limit=50)
        sectors = "".join(f"<option value='{esc(s)}'{' selected' if s == sector else ''}>{esc(self.sector_name(s))}</option>" for s in self.index.sector_ids())
        reviews = "".join(f"<option value='{esc(r)}'{' selected' if r == review else ''}>{esc(label)}</option>" for r, label in
                          (("near", "near threshold, not reviewed"), ("disagree", "reviewer and model disagree"), ("any", "needs review (either)")))
        form = (f"<form class='search' method='get' action='/'><input name='q' value='{esc(q)}' placeholder='firm id, name or words in the text' size='32' autofocus>"
                f"<select name='sector'><option value=''>any sector</option>{sectors}</select>"
                f"<select name='review'><option value=''>all firms</option>{reviews}</select><button type='submit'>Search</button></form>")
        body = [form]
        if rows:
            body.append("<table id='results'><tr><th>firm</th><th>name</th><th>sectors</th><th>needs review</th></tr>")
            for r in rows:
                tags = self.status_html(r.classified, r.not_classified, r.sectors)
                flags = "<br>".join(f"<span class='flag'>{esc(x)}</span>" for x in r.reasons)
                body.append(f"<tr><td><a href='/firm/{quote(r.firm_id, safe='')}'>{esc(r.firm_id)}</a></td><td>{esc(r.name)}</td><td>{tags}</td><td>{flags}</td></tr>")
            body.append("</table>")
            if len(rows) == 50:
                nxt = urlencode({"q": q, "sector": sector, "review": review, "after": rows[-1].firm_id})
                body.append(f"<p><a id='next' href='/?{esc(nxt)}'>next 50 →</a></p>")
        else:
            body.append("<p id='no-results'>No firms match.</p>")
        return self.page("search", "".join(body))

    def firm_page(self, firm_id: str, params: dict, error: str = "") -> str | None:
        record = self.index.firm(firm_id)
        if record is None:
            return None
        text = self.firm_text(record)
        evidence = self.evidence(record, text)
        by_sector = {ev.sector_id: ev for ev in evidence}
        shown = params.get("sector") if params.get("sector") in by_sector else (evidence[0].sector_id if evidence else "")
        fid = quote(firm_id, safe="")
        body = [f"<h1 id='firm-title'>{esc(record.firm_id)} {esc(record.name)}</h1>"]
        if error:
            body.append(f"<section class='err' id='error'>{esc(error)}</section>")
        url = safe_website_url(record.website)
        if url:
            body.append(f"<p>website <a id='website' href='{esc(url)}' rel='noopener noreferrer nofollow' target='_blank'>{esc(url)}</a></p>")
        elif record.website:
            body.append(f"<p class='muted' id='website'>website {esc(record.website)} (not an http or https address: not linked)</p>")
        if not record.classified or not record.published:
            body.append(f"<p id='status'>{self.status_html(record.classified, record.not_classified, record.published)}</p>")
        body.append(f"<p class='muted'>model {esc(record.model_name)} version {esc(record.model_version)}, taxonomy {esc(record.taxonomy_version)};"
                    f" classified {esc(record.classified_at)}; text sha256 {esc((record.text_sha256 or '')[:12])}</p>")
        # One form for the table: each button names its decision and sector; the note goes with it.
        body.append(f"<section><h2>Labels</h2><form method='post' action='/firm/{fid}/decide' id='decide'>"
                    f"<input type='hidden' name='csrf' value='{self.csrf_token}'>"
                    "<table id='labels'><tr><th>sector</th><th>probability</th><th>threshold</th><th>model</th>"
                    "<th>decision</th><th>published</th><th>review</th></tr>")
        for l in record.labels:
            p = "" if l.probability is None else f"{l.probability:.3f}"
            thr = "" if l.threshold is None else f"{l.threshold:.3f}"
            buttons = [f"<button type='submit' name='action' value='{d}:{esc(l.sector_id)}' id='{d}-{esc(l.sector_id)}'>{d}</button>"
                       for d in DECISIONS if not ((d == "confirm" and not l.model_assigned) or (d == "add" and l.model_assigned))]
            flag = " <span class='flag'>near threshold</span>" if l.near and l.decision is None else ""
            if l.decision is not None and l.assigned != l.model_assigned:
                flag += " <span class='flag'>reviewer and model disagree</span>"
            name = self.sector_html(l.sector_id)
            link = f"<a href='/firm/{fid}?sector={quote(l.sector_id)}'>{name}</a>" if l.sector_id in by_sector else name
            body.append(f"<tr id='label-{esc(l.sector_id)}'><td>{link}{flag}</td><td>{p}</td><td>{thr}</td>"
                        f"<td class='{'yes' if l.model_assigned else 'no'}'>{'assigned' if l.model_assigned else '—'}</td>"
                        f"<td class='decision'>{esc(l.decision or '')}</td><td class='published {'yes' if l.assigned else 'no'}'>{'yes' if l.assigned else 'no'}</td>"
                        f"<td class='decide'>{''.join(buttons)}</td></tr>")
        body.append(f"</table><p><label>note <input name='note' id='note' size='60' maxlength='2000'></label> "
                    f"<span class='muted'>deciding as {esc(self.config.reviewer) or '(no reviewer: start with --reviewer NAME)'}</span></p></form></section>")
        body.append(self._evidence_html(by_sector.get(shown), evidence, record.firm_id))
        body.append(f"<section><h2>Text</h2>{self._highlighted(text, by_sector.get(shown))}</section>")
        body.append(self._history_html(firm_id))
        return self.page(record.firm_id, "".join(body))

    def _evidence_html(self, ev, evidence: list, firm_id: str) -> str:
        if self.config.explainer is None:
            return f"<section id='evidence'><h2>Evidence</h2><p class='muted'>{esc(self.config.evidence_note or 'no model loaded')}</p></section>"
        if ev is None:
            return "<section id='evidence'><h2>Evidence</h2><p class='muted'>no assigned or near-miss sector</p></section>"
        fid = quote(firm_id, safe="")
        tabs = " ".join(f"<a href='/firm/{fid}?sector={quote(e.sector_id)}'>{'<b>' if e is ev else ''}{esc(self.sector_name(e.sector_id))}{'</b>' if e is ev else ''}</a>"
                        for e in evidence)
        out = [f"<section id='evidence'><h2>Evidence: {self.sector_html(ev.sector_id)} ({esc(ev.status)}, {ev.probability:.3f} against {ev.threshold:.3f})</h2>"
               f"<p>{tabs}</p><ol>"]
        out += [f"<li>[{s.probability:.2f}] {esc(s.text)}</li>" for s in ev.sentences]
        out.append("</ol>")
        if ev.terms:
            out.append("<p>terms: " + ", ".join(f"<span class='tag'>{esc(t)} {w:.2f}</span>" for t, w in ev.terms) + "</p>")
        if ev.neighbours:
            out.append("<p>nearest labelled training firms:</p><ul>" + "".join(
                f"<li>{esc(n['firm_id'])} ({n['similarity']:.2f}): {esc(', '.join(self.sector_name(x) for x in n['sectors'].split('|') if x) or '(none)')}"
                f" <span class='muted'>{esc(n.get('text', ''))}</span></li>" for n in ev.neighbours) + "</ul>")
        return "".join(out) + "</section>"

    @staticmethod
    def _highlighted(text: str, ev) -> str:
        if not text:
            return "<p class='muted'>no text for this firm</p>"
        spans = sorted(ev.sentences, key=lambda s: s.start) if ev else []
        out, pos = [], 0
        for s in spans:
            out.append(esc(text[pos:s.start]))
            strong = " strong" if s is ev.sentences[0] else ""
            out.append(f"<mark class='ev{strong}' title='{esc(ev.sector_id)} {s.probability:.2f}'>{esc(text[s.start:s.end])}</mark>")
            pos = s.end
        out.append(esc(text[pos:]))
        return f"<div class='text' id='text'>{''.join(out)}</div>"

    def _history_html(self, firm_id: str) -> str:
        rows = self.store.history(firm_id)
        if not rows:
            return "<section id='history'><h2>History</h2><p class='muted'>no decisions yet</p></section>"
        body = "".join(f"<tr><td>{esc(d.decided_at)}</td><td>{self.sector_html(d.sector_id)}</td><td>{esc(d.decision)}</td><td>{esc(d.reviewer)}</td>"
                       f"<td>{esc(d.model_version)}</td><td>{esc(d.note)}</td></tr>" for d in reversed(rows))
        return ("<section id='history'><h2>History</h2><table><tr><th>when</th><th>sector</th><th>decision</th><th>reviewer</th>"
                f"<th>model version</th><th>note</th></tr>{body}</table></section>")

    # -- decisions ---------------------------------------------------------------------------
    def decide(self, firm_id: str, form: dict) -> None:
        """Record one decision from a POSTed form; RticError for anything wrong with it."""
        record = self.index.firm(firm_id)
        if record is None:
            raise RticError(f"unknown firm {firm_id}")
        decision, _, sector = form.get("action", "").partition(":")
        reviewer = self.config.reviewer
        label = next((l for l in record.labels if l.sector_id == sector), None)
        if label is None and sector not in self.index.sector_ids():
            raise RticError(f"unknown sector {sector!r}")
        check_decision(decision, None if label is None else label.model_assigned)
        self.store.record(firm_id, sector, decision, reviewer, note=form.get("note", "")[:2000], model_version=record.model_version or "")

    def firm_json(self, firm_id: str) -> dict | None:
        record = self.index.firm(firm_id)
        if record is None:
            return None
        data = asdict(record)
        data["published"] = record.published
        data["classified"] = record.classified
        data["history"] = [asdict(d) for d in self.store.history(firm_id)]
        data["evidence"] = [asdict(e) for e in self.evidence(record, self.firm_text(record))]
        return data


def search_limit(value: str | None) -> int:
    """The /api/search limit: a whole number from 1 to MAX_SEARCH_LIMIT (default 50)."""
    if value is None:
        return 50
    value = value.strip()
    if not value.isdigit() or not 1 <= int(value) <= MAX_SEARCH_LIMIT:
        raise RticError(f"limit must be a whole number from 1 to {MAX_SEARCH_LIMIT}, got {value[:20]!r}")
    return int(value)


class Handler(BaseHTTPRequestHandler):
    app: ReviewApp  # set on the subclass made by make_server
    server_version = "rtic-review"
    sys_version = ""
    timeout = IDLE_TIMEOUT  # socket timeout: an idle keep-alive or stalled request is dropped, its thread freed

    def handle(self):
        self.app.checkout()
        try:
            super().handle()
        finally:
            self.app.checkin()

    def log_message(self, fmt, *args):  # quiet: one line per request would drown the terminal
        pass

    def _send(self, status: int, body: str | bytes, content_type: str = "text/html; charset=utf-8", extra: dict | None = None) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        for k, v in {**SECURITY_HEADERS, "Content-Type": content_type, "Content-Length": str(len(data)), **(extra or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _json(self, status: int, obj) -> None:
        self._send(status, json.dumps(obj, default=str), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._send(status, self.app.page("error", f"<section class='err' id='error'>{esc(message)}</section>"))

    def _refuse(self, status: int, message: str) -> None:
        """An error before the body is read: close the connection, since the unread body would be taken for the next request."""
        self.close_connection = True
        self._error(status, message)

    def _host_ok(self) -> bool:
        return (self.headers.get("Host") or "") in self.app.allowed_hosts

    def do_GET(self):
        if not self._host_ok():
            return self._error(HTTPStatus.MISDIRECTED_REQUEST, "unexpected Host header")
        url = urlsplit(self.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            if url.path == "/":
                return self._send(200, self.app.search_page(params))
            if url.path == "/static/app.css":
                return self._send(200, CSS, "text/css; charset=utf-8")
            if url.path == "/api/search":
                rows = self.app.index.search(q=params.get("q", ""), sector=params.get("sector") or None, review=params.get("review") or None,
                                             after=params.get("after", ""), limit=search_limit(params.get("limit")))
                return self._json(200, {"firms": [asdict(r) for r in rows]})
            if url.path.startswith("/api/firm/"):
                data = self.app.firm_json(unquote(url.path[len("/api/firm/"):]))
                return self._json(200, data) if data else self._json(404, {"error": "unknown firm"})
            if url.path.startswith("/firm/"):
                page = self.app.firm_page(unquote(url.path[len("/firm/"):]), params, params.get("error", ""))
                return self._send(200, page) if page else self._error(404, "unknown firm")
        except RticError as exc:
            return self._error(400, str(exc))
        except ValueError:
            return self._error(400, "bad request parameters")
        return self._error(404, "not found")

    do_HEAD = do_GET

    def do_POST(self):
        if not self._host_ok():
            return self._error(HTTPStatus.MISDIRECTED_REQUEST, "unexpected Host header")
        origin = self.headers.get("Origin")
        if origin is not None and origin.strip().lower() not in self.app.allowed_origins:
            return self._refuse(403, "cross-site request refused (Origin)")
        if self.headers.get("Transfer-Encoding"):
            return self._refuse(411, "chunked request bodies are not accepted: send Content-Length")
        declared = (self.headers.get("Content-Length") or "").strip()
        if not declared:
            return self._refuse(411, "Content-Length required")
        if not declared.isdigit():  # refuses -1 (which would read to end of stream), +5, 1e3, spaces
            return self._refuse(400, "bad Content-Length")
        length = int(declared)
        if length > MAX_BODY:
            return self._refuse(413, "request too large")
        try:
            raw = self.rfile.read(length)
        except (TimeoutError, socket.timeout, ConnectionError):
            self.close_connection = True
            return
        if len(raw) < length:  # the client gave up before sending what it declared
            self.close_connection = True
            return
        try:
            fields = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
        except ValueError:
            return self._error(400, f"more than {MAX_FORM_FIELDS} form fields")
        form = {k: v[0] for k, v in fields.items()}
        if not hmac.compare_digest(form.get("csrf", ""), self.app.csrf_token):
            return self._error(403, "missing or wrong CSRF token: reload the page")
        url = urlsplit(self.path)
        if not (url.path.startswith("/firm/") and url.path.endswith("/decide")):
            return self._error(404, "not found")
        firm_id = unquote(url.path[len("/firm/"):-len("/decide")])
        try:
            self.app.decide(firm_id, form)
            location = f"/firm/{quote(firm_id, safe='')}"
        except RticError as exc:
            location = f"/firm/{quote(firm_id, safe='')}?{urlencode({'error': str(exc)})}"
        self._send(HTTPStatus.SEE_OTHER, "", extra={"Location": location})


class BoundedThreadingHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with at most `max_connections` connections (threads) at once; the next is told 503 and closed."""

    max_connections = MAX_CONNECTIONS
    request_queue_size = 128  # listen backlog: a burst is accepted (and capped, and timed out) rather than left in the kernel
    block_on_close = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.slots = threading.BoundedSemaphore(self.max_connections)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            try:
                request.settimeout(1.0)
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 5\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def make_server(app: ReviewApp) -> ThreadingHTTPServer:
    """A server for the app (port 0 picks a free port); call serve_forever() on it."""
    handler = type("BoundHandler", (Handler,), {"app": app})
    try:
        server = BoundedThreadingHTTPServer((app.config.host, app.config.port), handler)
    except OSError as exc:
        raise RticError(f"cannot listen on {app.config.host}:{app.config.port}: {exc.strerror or exc}") from None
    server.daemon_threads = True
    port = server.server_address[1]
    names = {app.config.host, "localhost", "127.0.0.1"} if app.config.host in ("127.0.0.1", "localhost") else {app.config.host}
    app.allowed_hosts = {f"{n}:{port}" for n in names}
    app.allowed_origins = {f"http://{h}" for h in app.allowed_hosts}  # the server speaks plain HTTP only
    return server


def labels_model_uri(labels: Path) -> str | None:
    """models:/NAME/VERSION of the model that made a labels file (its first row)."""
    import pyarrow.parquet as pq

    try:
        batch = next(pq.ParquetFile(labels).iter_batches(batch_size=1, columns=["model_name", "model_version"]), None)
    except Exception:
        return None
    if batch is None or batch.num_rows == 0:
        return None
    row = batch.to_pylist()[0]
    return f"models:/{row['model_name']}/{row['model_version']}"


def build_app(settings, labels: str | Path, reviews: str | Path, register: str | Path | None = None, store: str | Path | None = None,
              reviewer: str = "", host: str = config.REVIEW_HOST, port: int = config.REVIEW_PORT, use_model: bool = True,
              index_path: str | Path | None = None, margin: float | None = None, explainer=None,
              taxonomy: str | Path | None = None) -> ReviewApp:
    """Load the model (for evidence), build or reuse the labels index, and configure the app.

    Sector display names come from `taxonomy` (default: the default taxonomy); a sector it lacks shows its id."""
    from rtic.review.index import DEFAULT_MARGIN, IndexSources, ensure_index
    from rtic.taxonomy import load_taxonomy

    labels = Path(labels)
    if not labels.is_file():
        raise RticError(f"labels file not found: {labels}")
    note, thresholds = "evidence off (--no-model)", {}
    if explainer is not None:
        thresholds = {explainer.ref.version: explainer.thresholds}
    elif use_model:
        uri = labels_model_uri(labels)
        try:
            from rtic.explain import ModelExplainer

            log.info(f"loading {uri} for evidence …")
            explainer = ModelExplainer(settings, uri)
            thresholds = {explainer.ref.version: explainer.thresholds}
            for w in explainer.warnings:
                log.warning(f"warning: {w}")
        except RticError as exc:
            note = f"no evidence: {exc}"
            log.warning(f"warning: {note}")
    sources = IndexSources(labels=labels, register=Path(register) if register else None, thresholds=thresholds,
                           margin=DEFAULT_MARGIN if margin is None else margin)
    index = ensure_index(sources, Path(index_path) if index_path else None)
    tax = load_taxonomy(taxonomy)
    names = {s.id: s.name for s in (*tax.sectors, *tax.verticals)}
    config = AppConfig(index_path=index, reviews_path=Path(reviews), reviewer=reviewer.strip(), host=host, port=port,
                       store=Path(store) if store else None, explainer=explainer, evidence_note=note, sector_names=names)
    return ReviewApp(config)
