"""`rtic crawl`: fetch each firm's site politely into the crawl store, resumably.

Concurrency is across sites (a semaphore); politeness is per origin (one request at a time,
request starts at least `delay` apart, robots.txt Crawl-delay honoured up to a cap). Every page is
committed as soon as it is fetched and every site when it is judged, so a killed crawl re-run with
the same command skips what is done and resumes half-done sites without refetching their pages.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import multiprocessing
import os
import random
import re
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
from protego import Protego

from rtic.crawl import site as siteinfo
from rtic.crawl.extract import extract
from rtic.crawl.fetch import Fetch, Fetcher, FetchOptions, origin, same_site
from rtic.crawl.safety import url_problem
from rtic.crawl.store import Store, page_html
from rtic.contracts import EXCEPTION_COLUMNS, sibling_path
from rtic.errors import RticError
from rtic.register import Register
from rtic.tables import select_in, write_atomically
from rtic.websites import Websites
from rtic import config
from rtic.progress import rate_eta

log = logging.getLogger(__name__)

ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309: parse at least the first 500 KiB; a longer file is cut there, not ignored
ROBOTS_MAX_AGE = 24 * 3600.0
# A robots.txt fetch failing like this means the home page would too: the site is judged dead without retrying it.
UNREACHABLE = {"dns", "connect", "connect_timeout", "tls", "unsafe"}


@dataclass
class CrawlOptions:
    concurrency: int = config.CRAWL_CONCURRENCY
    delay: float = config.CRAWL_DELAY
    max_crawl_delay: float = config.MAX_CRAWL_DELAY
    max_pages: int = config.MAX_PAGES
    max_site_bytes: int = config.MAX_SITE_BYTES
    retries: int = config.RETRIES
    backoff: float = config.BACKOFF
    max_retry_after: float = 120.0  # a longer Retry-After gives up instead of waiting
    recrawl_after: float | None = None  # seconds; None: finished sites are never refetched
    contact_url: str = config.CONTACT_URL
    workers: int = 0  # processes for text extraction (0: in the event loop; the CLI uses up to 4)
    fetch: FetchOptions = field(default_factory=FetchOptions)

    def __post_init__(self):
        if self.concurrency < 1 or self.delay < 0 or self.max_pages < 0 or self.retries < 0 or self.workers < 0:
            raise RticError("--concurrency must be ≥ 1 and --delay, --max-pages, --retries, --workers ≥ 0")


def parse_duration(text: str) -> float:
    """'30d', '12h', '45m', '90s' or plain seconds → seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text or "")
    if not m:
        raise RticError(f"cannot read duration {text!r}: use e.g. 30d, 12h, 45m, 90s")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]


def analyse_page(body: bytes, url: str, charset: str | None) -> dict:
    """Everything the store keeps from one HTML body (runs in a worker process when --workers > 0)."""
    ex = extract(body, url=url, declared_charset=charset)
    findings = {"company_numbers": siteinfo.find_company_numbers(ex.visible), "postcodes": siteinfo.find_postcodes(ex.visible)}
    return {"title": ex.title, "lang": ex.lang, "text": ex.document(), "findings": json.dumps(findings)}


def robots_text(body: bytes, truncated: bool) -> str:
    """robots.txt bytes → text; a file cut at the size cap loses its last, partial line (never half a rule)."""
    if truncated:
        body = body[: body.rfind(b"\n") + 1]
    return body.decode("utf-8", "replace").removeprefix("\ufeff")  # a byte-order mark would hide the first line's rule


def sendable(value: str | None) -> bool:
    """Whether a header value from a server can go back in a request (printable ASCII, not absurdly long)."""
    return bool(value) and len(value) <= 1024 and value.isascii() and value.isprintable()


def _watch_parent(parent_pid: int) -> None:
    """Worker initialiser: exit when the crawl process is gone (kill -9 gives the pool no chance to stop us)."""
    import os
    import threading

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


class Politeness:
    """Per-origin turn-taking: one request at a time, starts spaced by the origin's delay."""

    def __init__(self, delay: float):
        self.default = delay
        self.delays: dict[str, float] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.last_start: dict[str, float] = {}
        self.hold_until: dict[str, float] = {}

    def set_delay(self, key: str, delay: float) -> None:
        self.delays[key] = max(self.default, delay)

    async def turn(self, key: str) -> asyncio.Lock:
        """Wait for this origin's turn; the caller releases the returned lock when its request is done."""
        lock = self.locks.setdefault(key, asyncio.Lock())
        await lock.acquire()
        # Computed after acquiring, so a Crawl-delay learnt from robots.txt applies to the very next request.
        ready = max(self.last_start.get(key, -1e9) + self.delays.get(key, self.default), self.hold_until.get(key, 0.0))
        wait = ready - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self.last_start[key] = time.monotonic()
        return lock

    def hold_off(self, key: str, seconds: float) -> None:
        """After a 429/503: no request to this origin before `seconds` from now."""
        self.hold_until[key] = max(self.hold_until.get(key, 0.0), time.monotonic() + seconds)


class Progress:
    """The crawl's counts, and a line on the log at most every `every` seconds."""

    def __init__(self, total: int, already: int, every: float = 5.0):
        self.total, self.done, self.every = total, already, every
        self.already = already
        self.pages = 0
        self.errors: Counter = Counter()
        self.missing: Counter = Counter()  # expected 404/410s: "robots.txt" (a site without one), "link" (a nav link to nowhere)
        self.examples: dict[str, str] = {}  # error kind -> the first such error's message
        self.verdicts: Counter = Counter()
        self.started = time.monotonic()
        self.last = 0.0

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        errors = ", ".join(f"{k} {v}" for k, v in self.errors.most_common(6)) or "none"
        sites = rate_eta(self.done - self.already, elapsed, self.total - self.done, "sites")
        return f"sites {self.done}/{self.total}, {self.pages} pages ({self.pages / elapsed:.1f}/s), errors: {errors}, {sites}"

    def tick(self, force: bool = False) -> None:
        if log.isEnabledFor(logging.INFO) and (force or time.monotonic() - self.last >= self.every):
            self.last = time.monotonic()
            log.info(self.line())


EXPECTED_MISSING = {404, 410}  # answered "not here" for robots.txt or a linked page: normal, not a failure


@dataclass
class CrawlSummary:
    sites: int
    skipped: int  # finished before this run
    crawled: int
    pages: int
    seconds: float
    verdicts: dict[str, int]  # this run's sites
    errors: dict[str, int]  # this run's failed requests by kind (expected 404s not included)
    store: Path
    missing: dict[str, int] = field(default_factory=dict)  # this run's expected 404/410s: robots.txt, link
    examples: dict[str, str] = field(default_factory=dict)  # error kind -> one message of that kind
    all_verdicts: dict[str, int] = field(default_factory=dict)  # every register site in the store (this run and before)
    dead_causes: dict[str, int] = field(default_factory=dict)  # the dead ones by error kind (no_website, unsafe, dns, http_404 …)
    allow_private: bool = False
    register_problems: dict[str, int] = field(default_factory=dict)  # register rows not crawled, by reason (duplicate_id …)
    problems_path: Path | None = None  # those rows, listed as `rtic classify` lists them
    websites: str = ""  # the --websites summary line, when one was given
    websites_report: Path | None = None

    def lines(self) -> list[str]:
        """The crawl's outcome for a person: what happened to every site, what failed and why, what to do."""
        rate = self.pages / self.seconds if self.seconds else 0.0
        out = [f"{self.sites} sites: {self.crawled} crawled now, {self.skipped} already done; {self.pages} pages in {self.seconds:.1f}s ({rate:.1f} pages/s)"]
        if self.register_problems:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(self.register_problems.items(), key=lambda kv: -kv[1]))
            out.append(f"register rows not crawled: {counts} (listed in {self.problems_path})")
        if self.websites:
            out.append(self.websites)

        def counted(counts: dict[str, int]) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

        verdicts = self.all_verdicts or self.verdicts
        shown = [f"{k} {v}" + (f" ({counted(self.dead_causes)})" if k == "dead" and self.dead_causes else "")
                 for k, v in sorted(verdicts.items(), key=lambda kv: (-kv[1], kv[0]))]
        out.append(f"verdicts ({'all sites in the store' if self.skipped else 'this run'}): " + (", ".join(shown) or "none"))
        out.append("errors: " + (counted(self.errors) or "none"))
        if self.missing:
            out.append("expected 404s, not errors: " + ", ".join(f"{k} {v}" for k, v in sorted(self.missing.items())))
        unsafe = self.dead_causes.get("unsafe", 0) or self.errors.get("unsafe", 0)
        if unsafe and not self.allow_private:
            example = f" (e.g. {self.examples['unsafe'].split(' (')[0]})" if self.examples.get("unsafe") else ""
            out.append(f"note: {unsafe} site(s) resolve to private, loopback or reserved addresses{example}, which the crawler refuses "
                       "so that a register cannot point it at internal machines; for a local test farm add --allow-private")
        out.append(f"store: {self.store}")
        return out


class Crawler:
    def __init__(self, store: Store, options: CrawlOptions, progress: Progress | None = None, pool=None):
        self.store, self.options, self.pool = store, options, pool
        fopts = options.fetch
        if options.contact_url and options.contact_url not in fopts.user_agent:
            fopts.user_agent = f"rtic-crawler/0.1 (+{options.contact_url})"
        self.fetcher = Fetcher(fopts)
        self.polite = Politeness(options.delay)
        self.robots: dict[str, tuple[Protego | None, str]] = {}
        self.robots_locks: dict[str, asyncio.Lock] = {}
        self.unreachable: dict[str, Fetch] = {}  # origins whose robots.txt fetch could not even connect
        self.progress = progress

    async def aclose(self):
        await self.fetcher.aclose()

    # -- requests with politeness and retries --------------------------------------------------------
    async def request(self, url: str, headers: dict | None = None, client=None, expected_missing: str = "", **kw) -> Fetch:
        """One polite fetch with retries. `expected_missing` names what a 404/410 here means ("robots.txt", "link"):
        counted apart from errors, because a site without robots.txt or with a dead nav link is healthy."""
        key = origin(url)
        attempt = 0
        while True:
            lock = await self.polite.turn(key)
            try:
                result = await self.fetcher.fetch(url, headers, client=client, **kw)
            finally:
                lock.release()
            if not result.retryable or attempt >= self.options.retries:
                break
            wait = self.options.backoff * (2 ** attempt) * (0.5 + random.random())
            if result.retry_after is not None:
                if result.retry_after > self.options.max_retry_after:
                    break
                wait = max(wait, result.retry_after)
            self.polite.hold_off(key, wait)
            attempt += 1
        if self.progress is None:
            return result
        if result.error_kind:
            self.progress.errors[result.error_kind] += 1
            self.progress.examples.setdefault(result.error_kind, (result.error or "")[:200])
        elif expected_missing and result.status in EXPECTED_MISSING:
            self.progress.missing[expected_missing] += 1
        elif result.status and result.status >= 400:
            self.progress.errors[f"http_{result.status}"] += 1
        return result

    async def robots_for(self, url: str, client=None) -> tuple[Protego | None, str]:
        """Parsed robots.txt of the URL's origin (cached in memory and in the store) and its outcome."""
        key = origin(url)
        async with self.robots_locks.setdefault(key, asyncio.Lock()):
            if key in self.robots:
                return self.robots[key]
            row = self.store.robots(key, ROBOTS_MAX_AGE)
            if row is None or row["status"] is None:  # a network failure is not cached across runs
                parts = urlsplit(url)
                result = await self.request(f"{parts.scheme}://{parts.netloc}/robots.txt", accept_any_type=True, max_bytes=ROBOTS_MAX_BYTES,
                                            client=client, truncate=True, expected_missing="robots.txt")
                body = robots_text(result.body, result.truncated) if result.ok else ""
                # A 2xx whose body could not be read (cut off, corrupt gzip, too slow) is a network error: RFC 9309
                # says assume complete disallow. Stored without a status, so the next run asks again.
                unreadable = result.status is not None and 200 <= result.status < 300 and result.error_kind is not None
                self.store.save_robots(key, None if unreadable else result.status, body, result.error)
                status, error = result.status, result.error_kind
                if error in UNREACHABLE:
                    self.unreachable[key] = result
            else:
                body, status, error = row["body"], row["status"], row["error"]
                unreadable = False
            if unreadable:
                parsed, outcome = None, "unavailable"
            elif status is not None and 200 <= status < 300:
                parsed, outcome = Protego.parse(body), "allowed"
            elif status is not None and 500 <= status < 600:
                parsed, outcome = None, "unavailable"  # RFC 9309: a server error means assume full disallow
            else:
                parsed, outcome = Protego.parse(""), ("allowed" if status else "error")  # 4xx or unreachable: no rules
            if parsed is not None:
                delay = parsed.crawl_delay(self.fetcher.options.user_agent)
                if delay:
                    self.polite.set_delay(key, min(float(delay), self.options.max_crawl_delay))
            self.robots[key] = (parsed, outcome)
            return self.robots[key]

    async def allowed(self, url: str, client=None) -> tuple[bool, str]:
        parsed, outcome = await self.robots_for(url, client)
        if parsed is None:
            return False, outcome
        return parsed.can_fetch(url, self.fetcher.options.user_agent), outcome

    # -- one site --------------------------------------------------------------------------------------
    async def crawl_site(self, firm: dict) -> str:
        client = self.fetcher.site_client()
        try:
            return await self._crawl_site(firm, client)
        finally:
            await client.aclose()

    async def _crawl_site(self, firm: dict, client) -> str:
        firm_id, url = firm["firm_id"], siteinfo.website_url(firm.get("website", ""))
        round_started = self.store.start_site(firm_id, firm.get("website", ""), url, self.options.recrawl_after)
        if round_started is None:
            return "skipped"
        if not url:
            self.store.finish_site(firm_id, verdict="dead", verdict_detail="no website in register", error_kind="no_website")
            return "dead"
        problem = url_problem(url)
        if problem:  # malformed, or a scheme we never fetch: this site's problem, not the crawl's
            self.store.finish_site(firm_id, verdict="dead", verdict_detail=problem, error_kind="bad_url", error=problem, pages=0)
            return "dead"
        stored = {row["url"]: row for row in self.store.pages(firm_id)}
        fresh = {u for u, row in stored.items() if (row["fetched_at"] or 0) >= round_started}

        home_ok, robots_outcome = await self.allowed(url, client)
        failed = self.unreachable.get(origin(url))
        if failed is not None:
            self.store.finish_site(firm_id, verdict="dead", verdict_detail=f"robots.txt: {failed.error}", error_kind=failed.error_kind,
                                   error=failed.error, robots="error", pages=0)
            return "dead"
        if not home_ok:
            self.store.finish_site(firm_id, verdict="blocked", verdict_detail=f"robots.txt {robots_outcome}: home page disallowed",
                                   robots="disallowed" if robots_outcome == "allowed" else robots_outcome, pages=0)
            return "blocked"
        home = await self.page(firm_id, url, "home", 0, stored, fresh, client)
        if home is None or not (home["status"] and 200 <= home["status"] < 300) or home["error_kind"]:
            kind = (home["error_kind"] if home is not None else None) or (f"http_{home['status']}" if home is not None and home["status"] else "error")
            detail = home["error"] if home is not None and home["error"] else f"home page {kind}"
            self.store.finish_site(firm_id, verdict="dead", verdict_detail=detail, error_kind=kind, error=detail, robots=robots_outcome,
                                   final_url=home["final_url"] if home is not None else None, pages=0)
            return "dead"
        final = home["final_url"] or url
        cross = final if not same_site(final, url) else None
        links = [(u, k) for u, k in siteinfo.choose_links(page_html(home), final, self.options.max_pages + 1) if u != url][: self.options.max_pages]
        spent = home["bytes"] or 0
        for seq, (link, kind) in enumerate(links, start=1):
            if spent >= self.options.max_site_bytes:
                break
            ok, _ = await self.allowed(link, client)
            if not ok:
                continue
            row = await self.page(firm_id, link, kind, seq, stored, fresh, client)
            spent += (row["bytes"] or 0) if row is not None else 0
        return self.judge(firm, final, cross, robots_outcome)

    async def page(self, firm_id: str, url: str, kind: str, seq: int, stored: dict, fresh: set, client=None):
        """Fetch one page unless this round already has it; conditional when an older copy exists."""
        if url in fresh:
            return stored[url]
        old = stored.get(url)
        headers = {}
        if old is not None and old["status"] == 200:
            # A validator is sent back only as printable ASCII: a site's odd bytes must not break its recrawl.
            if sendable(old["etag"]):
                headers["If-None-Match"] = old["etag"]
            if sendable(old["last_modified"]):
                headers["If-Modified-Since"] = old["last_modified"]
        result = await self.request(url, headers, client, expected_missing="" if kind == "home" else "link")
        if result.status == 304 and old is not None:
            self.store.touch_page(firm_id, url)
        else:
            fields = dict(final_url=result.final_url, kind=kind, seq=seq, status=result.status, content_type=result.content_type,
                          etag=result.etag, last_modified=result.last_modified, bytes=len(result.body), redirects=result.redirects,
                          error_kind=result.error_kind, error=result.error)
            if result.ok and result.body:
                if self.pool is not None:
                    analysis = await asyncio.get_running_loop().run_in_executor(self.pool, analyse_page, result.body, result.final_url, result.charset)
                else:
                    analysis = analyse_page(result.body, result.final_url, result.charset)
                fields.update(html=result.body, content_sha256=hashlib.sha256(result.body).hexdigest(), **analysis)
            self.store.save_page(firm_id, url, **fields)
        if self.progress and result.ok:
            self.progress.pages += 1
        row = self.store.conn.execute("SELECT * FROM pages WHERE firm_id=? AND url=?", (firm_id, url)).fetchone()
        stored[url] = row
        fresh.add(url)  # never fetched twice in one round, whatever links point back here
        return row

    def judge(self, firm: dict, final: str, cross: str | None, robots_outcome: str) -> str:
        """Verdict and findings for a site from all its stored pages (including those fetched before a restart)."""
        firm_id = firm["firm_id"]
        rows = [r for r in self.store.pages(firm_id) if r["status"] == 200 and r["text"] is not None]
        text = "\n".join(r["text"] or "" for r in rows)
        n_words = len(text.split())
        home_lang = rows[0]["lang"] if rows else ""
        numbers, postcodes = {}, {}
        for r in rows:
            found = json.loads(r["findings"] or "{}")
            for n in found.get("company_numbers", []):
                numbers.setdefault(n["number"], n)
            postcodes.update(dict.fromkeys(found.get("postcodes", [])))
        numbers, postcodes = list(numbers.values()), list(postcodes)
        score, reasons = siteinfo.match_score(firm, text, rows[0]["title"] if rows else "", [n["number"] for n in numbers], postcodes)
        parked = siteinfo.parked_reason(text, final, n_words)
        if parked:
            verdict, detail = "parked", parked
        elif not siteinfo.is_english(text, home_lang or ""):
            verdict, detail = "non_english", f"English stop-word share {siteinfo.english_share(text):.2f}; lang={home_lang or '?'}"
        else:
            verdict, detail = "ok", None
        self.store.finish_site(firm_id, verdict=verdict, verdict_detail=detail, final_url=final, cross_site_redirect=cross,
                               robots=robots_outcome, crawl_delay=self.polite.delays.get(origin(final)), lang=home_lang,
                               pages=len(rows), bytes=sum(r["bytes"] or 0 for r in rows), company_numbers=numbers,
                               postcodes=postcodes, match_score=score, match_reasons=reasons, error_kind=None, error=None)
        return verdict


def register_firms(register_path: str | Path, websites: Websites | None = None) -> tuple[list[dict], pd.DataFrame]:
    """The register rows the crawler needs, as plain dicts (firm_id, website, name, postcode, company_number), and the
    rows it leaves out (EXCEPTION_COLUMNS: empty or repeated firm_id, malformed rows), read as `rtic classify` reads them."""
    chunks = list(Register.open(register_path).chunks(chunk_rows=50_000))
    df = pd.concat([c.rows for c in chunks], ignore_index=True)
    bad = pd.concat([c.bad for c in chunks], ignore_index=True)[EXCEPTION_COLUMNS]
    if websites is not None:
        df = websites.attach(df)
    if "website" not in df.columns:
        raise RticError(f"register {register_path} has no 'website' column: nothing to crawl (a Companies House file has none: "
                        "attach them with --websites FILE, a firm_id,website file)")
    df = df.fillna("")
    if "company_number" not in df.columns:
        # A Companies House register's firm_id is the company number.
        ch = df["firm_id"].astype(str).str.fullmatch(r"(?:\d{8}|[A-Z]{2}\d{6})")
        df["company_number"] = df["firm_id"].where(ch, "")
    cols = [c for c in ("firm_id", "website", "name", "postcode", "company_number") if c in df.columns]
    return df[cols].astype(str).to_dict("records"), bad


async def _crawl(firms: list[dict], store: Store, options: CrawlOptions, progress: Progress) -> Counter:
    # Extraction is CPU work: in worker processes it neither blocks the event loop (timers stay on time) nor caps us at one core.
    pool = None
    if options.workers:
        pool = ProcessPoolExecutor(options.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_watch_parent, initargs=(os.getpid(),))
    crawler = Crawler(store, options, progress, pool)
    verdicts: Counter = Counter()
    queue: asyncio.Queue = asyncio.Queue()
    for firm in firms:
        queue.put_nowait(firm)

    async def worker():
        while True:
            try:
                firm = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                verdict = await crawler.crawl_site(firm)
            except Exception as exc:  # a bug met on one site is that site's failure, recorded; the crawl goes on
                detail = f"crawler error: {type(exc).__name__}: {str(exc)[:300]}"
                store.finish_site(firm["firm_id"], verdict="dead", verdict_detail=detail, error_kind="crawler_error", error=detail, pages=0)
                progress.errors["crawler_error"] += 1
                verdict = "dead"
            verdicts[verdict] += 1
            if verdict != "skipped":
                progress.done += 1
                progress.verdicts[verdict] += 1
                progress.tick()

    try:
        await asyncio.gather(*(worker() for _ in range(min(options.concurrency, max(len(firms), 1)))))
    finally:
        await crawler.aclose()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return verdicts


def crawl(register_path: str | Path, store_path: str | Path, options: CrawlOptions | None = None,
          websites: str | Path | None = None) -> CrawlSummary:
    """Crawl every firm's website in the register into the store; safe to kill and re-run.

    `websites`: a firm_id,website file joined on company number (rtic.websites), for registers without websites.
    Register rows the crawl leaves out (repeated or empty ids, malformed rows) are listed beside the store
    (STORE's .exceptions.csv), and websites rows that met no firm in STORE's .unmatched-websites.csv."""
    options = options or CrawlOptions()
    sites_file = Websites(websites) if websites else None
    firms, bad = register_firms(register_path, sites_file)
    if not firms:
        raise RticError(f"register {register_path} has no usable rows to crawl (see the reasons in {sibling_path(store_path, '.exceptions.csv')})")
    store = Store(store_path)
    try:
        problems_path = sibling_path(store_path, ".exceptions.csv")
        if len(bad):
            write_atomically(bad, problems_path)
        else:  # a list left by an earlier run of another register would mislead
            problems_path.unlink(missing_ok=True)
            problems_path = None
        websites_report = sites_file.write_report(sibling_path(store_path, ".unmatched-websites.csv")) if sites_file else None
        store.add_sites([(f["firm_id"], f.get("website", ""), siteinfo.website_url(f.get("website", ""))) for f in firms])
        done_before = sum(1 for f in firms if _finished(store, f, options))
        progress = Progress(len(firms), done_before)
        log.info(f"crawling {len(firms) - done_before} of {len(firms)} sites ({done_before} already done) into {store_path}; "
                 f"{options.concurrency} at a time, {options.delay:g}s between requests to one host")
        started = time.monotonic()
        verdicts = asyncio.run(_crawl(firms, store, options, progress))
        progress.tick(force=True)
        all_verdicts, dead_causes = _verdict_counts(store, [f["firm_id"] for f in firms])
        return CrawlSummary(sites=len(firms), skipped=verdicts.pop("skipped", 0), crawled=sum(verdicts.values()), pages=progress.pages,
                            seconds=time.monotonic() - started, verdicts=dict(progress.verdicts), errors=dict(progress.errors),
                            store=Path(store_path), missing=dict(progress.missing), examples=dict(progress.examples),
                            all_verdicts=all_verdicts, dead_causes=dead_causes, allow_private=options.fetch.allow_private,
                            register_problems=dict(Counter(bad["reason"])), problems_path=problems_path,
                            websites=sites_file.summary(websites_report) if sites_file else "", websites_report=websites_report)
    finally:
        store.close()


def _verdict_counts(store: Store, firm_ids: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Verdicts of these firms' sites as the store holds them (a resumed run included), and the dead ones by error kind."""
    rows = select_in(store.conn, "SELECT verdict, error_kind FROM sites WHERE state = 'done' AND firm_id IN ({})", firm_ids)
    verdicts = Counter(v for v, _ in rows if v)
    dead = Counter(kind or "other" for v, kind in rows if v == "dead")
    return dict(verdicts), dict(dead)


def _finished(store: Store, firm: dict, options: CrawlOptions) -> bool:
    row = store.site(firm["firm_id"])
    if row is None or row["state"] != "done":
        return False
    return options.recrawl_after is None or (row["finished_at"] or 0) > time.time() - options.recrawl_after


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(crawl(sys.argv[1], sys.argv[2]).__dict__, default=str, indent=1))
