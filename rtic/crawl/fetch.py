"""One HTTP GET done carefully: safe addresses, manual redirects, size caps while streaming, own decompression.

`Fetcher.fetch` never raises for network trouble: it returns a `Fetch` with `error_kind` set
(dns, connect, connect_timeout, tls, timeout, reset, unsafe, too_large, not_html, redirect_loop, too_many_redirects,
bad_url, http). Retrying and politeness belong to the caller (see crawler.py), because a retry
must wait its turn like any other request.
"""

from __future__ import annotations

import asyncio
import email.utils
import ssl
import time
import zlib
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from rtic.crawl.safety import BadURL, SafeBackend, UnsafeTarget, check_url
from rtic import config

HTML_TYPES = ("text/html", "application/xhtml+xml")
RETRYABLE_STATUS = {429, 500, 502, 503, 504}


@dataclass
class FetchOptions:
    user_agent: str = "rtic-crawler/0.1 (+https://github.com/rtic/rtic; research crawler for industrial classification)"
    connect_timeout: float = config.CONNECT_TIMEOUT
    read_timeout: float = config.READ_TIMEOUT
    page_timeout: float = config.PAGE_TIMEOUT
    max_page_bytes: int = config.MAX_PAGE_BYTES
    max_redirects: int = 5
    allow_private: bool = False
    max_connections: int = 64


@dataclass
class Fetch:
    url: str
    final_url: str = ""
    status: int | None = None
    content_type: str = ""
    charset: str | None = None
    body: bytes = b""
    etag: str | None = None
    last_modified: str | None = None
    retry_after: float | None = None
    redirects: list[str] = field(default_factory=list)
    error_kind: str | None = None
    error: str | None = None
    seconds: float = 0.0
    truncated: bool = False  # body cut at max_bytes (only when the caller asked for truncation)

    @property
    def ok(self) -> bool:
        return self.error_kind is None and self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        return self.error_kind in {"connect", "reset", "dns_temporary"} or self.status in RETRYABLE_STATUS


def registrable_domain(host: str) -> str:
    """example.co.uk from www.shop.example.co.uk; a light eTLD+1 good enough to tell one site from another."""
    host = (host or "").lower().rstrip(".")
    labels = host.split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in {"co", "org", "ac", "gov", "ltd", "plc", "net", "me", "sch", "nhs", "com", "edu", "nom"}:
        return ".".join(labels[-3:])
    if all(label.isdigit() for label in labels):  # an IP address is its own site
        return host
    return ".".join(labels[-2:])


def _port(parts) -> int | str | None:
    """The URL's port, or its raw text when it is not a valid port (never raises)."""
    try:
        return parts.port
    except ValueError:
        return parts.netloc.rpartition(":")[2]


def same_site(a: str, b: str) -> bool:
    try:
        pa, pb = urlsplit(a), urlsplit(b)
    except ValueError:  # malformed (e.g. an unclosed IPv6 bracket): not the same site as anything
        return False
    if (pa.hostname or "").replace(".", "").isdigit() or (pb.hostname or "").replace(".", "").isdigit():
        return pa.hostname == pb.hostname and _port(pa) == _port(pb)  # IP hosts (tests): host and port
    return registrable_domain(pa.hostname or "") == registrable_domain(pb.hostname or "")


def origin(url: str) -> str:
    """scheme://host:port, the key for politeness and robots.txt; never raises, even for a malformed URL."""
    try:
        p = urlsplit(url)
    except ValueError:
        return f"malformed:{url[:200]}"
    port = _port(p) or (443 if p.scheme == "https" else 80)
    return f"{p.scheme}://{(p.hostname or '').lower()}:{port}"


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time()) if when else None


class _Decoder:
    """Content-Encoding decoding with an output cap, so a gzip bomb stops at the cap instead of filling memory."""

    def __init__(self, encoding: str, limit: int):
        encoding = (encoding or "identity").strip().lower()
        if encoding in {"gzip", "x-gzip"}:
            self.z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self.z = zlib.decompressobj()
        elif encoding in {"identity", ""}:
            self.z = None
        else:
            raise ValueError(f"unsupported content-encoding {encoding!r}")
        self.limit = limit
        self.size = 0
        self.parts: list[bytes] = []

    def feed(self, chunk: bytes) -> bool:
        """Add raw bytes; False once the decoded size passes the limit (the body keeps its first `limit` bytes)."""
        if self.z is None:
            out = chunk
        else:
            out = self.z.decompress(chunk, self.limit - self.size + 1)
        keep = max(self.limit - self.size, 0)
        self.size += len(out)
        self.parts.append(out[:keep])
        return self.size <= self.limit and not (self.z is not None and self.z.unconsumed_tail)

    def body(self) -> bytes:
        return b"".join(self.parts)


def _classify_error(exc: Exception) -> tuple[str, str]:
    text = str(exc) or exc.__class__.__name__
    if isinstance(exc, (BadURL, httpx.InvalidURL)):
        return "bad_url", text
    if isinstance(exc, httpx.RemoteProtocolError) and "location header" in text.lower():
        return "bad_url", f"redirect to a malformed URL: {text}"  # httpx checks Location before we see the response
    if isinstance(exc, UnsafeTarget):
        return "unsafe", text
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect_timeout", text or "connect timed out"
    if isinstance(exc, httpx.TimeoutException) or isinstance(exc, asyncio.TimeoutError):
        return "timeout", text or "timed out"
    if isinstance(exc, httpx.ConnectError):
        if "DNS lookup failed" in text:
            temporary = "Temporary failure" in text or "try again" in text.lower()
            return ("dns_temporary" if temporary else "dns"), text
        if isinstance(exc.__cause__ or exc.__context__, ssl.SSLError) or "SSL" in text or "certificate" in text.lower():
            return "tls", text
        return "connect", text
    if isinstance(exc, (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError, ConnectionError)):
        return "reset", text
    if isinstance(exc, httpx.UnsupportedProtocol):
        return "bad_url", text
    if isinstance(exc, httpx.HTTPError):
        return "http_error", text
    raise exc


class Fetcher:
    """Makes clients that connect through the safety backend. Give each site its own small client
    (`site_client`): one connection per host is all politeness allows, and httpcore's pool scans every
    connection it holds on each request, so one big shared pool costs CPU in proportion to the sites in flight."""

    def __init__(self, options: FetchOptions):
        self.options = options
        self.ssl_context = httpx.create_ssl_context()  # built once: creating one is slow
        self.backend = SafeBackend(allow_private=options.allow_private)
        self.client = self._client(options.max_connections)

    def _client(self, max_connections: int) -> httpx.AsyncClient:
        options = self.options
        transport = httpx.AsyncHTTPTransport(verify=self.ssl_context, retries=0)  # shared context: loading CAs is slow
        # Swap in a pool that connects through the safety backend (httpx exposes no resolver hook).
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=self.ssl_context, max_connections=max_connections, max_keepalive_connections=max_connections,
            keepalive_expiry=5.0, network_backend=self.backend,
        )
        return httpx.AsyncClient(
            transport=transport,
            follow_redirects=False,
            timeout=httpx.Timeout(connect=options.connect_timeout, read=options.read_timeout, write=options.read_timeout, pool=options.page_timeout),
            headers={"User-Agent": options.user_agent, "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5",
                     "Accept-Encoding": "gzip, deflate", "Accept-Language": "en-GB,en;q=0.8"},
        )

    def site_client(self) -> httpx.AsyncClient:
        """A client for one site: two connections (the site, and where it redirects); close it when the site is done."""
        return self._client(2)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def fetch(self, url: str, headers: dict | None = None, accept_any_type: bool = False, max_bytes: int | None = None,
                    client: httpx.AsyncClient | None = None, truncate: bool = False) -> Fetch:
        """GET url. Over max_bytes the fetch fails as too_large, or with truncate=True keeps the first max_bytes (robots.txt)."""
        result = Fetch(url=url, final_url=url)
        started = time.monotonic()
        try:
            await asyncio.wait_for(self._follow(client or self.client, result, headers or {}, accept_any_type,
                                                max_bytes or self.options.max_page_bytes, truncate), self.options.page_timeout)
        except asyncio.TimeoutError:
            result.error_kind, result.error = "timeout", f"page took longer than {self.options.page_timeout:g}s"
        except Exception as exc:  # network trouble becomes data; anything unexpected is re-raised by _classify_error
            result.error_kind, result.error = _classify_error(exc)
        result.seconds = time.monotonic() - started
        return result

    async def _follow(self, client: httpx.AsyncClient, result: Fetch, headers: dict, accept_any_type: bool, max_bytes: int,
                      truncate: bool = False) -> None:
        url = result.url
        seen = {url}
        for hop in range(self.options.max_redirects + 1):
            try:
                check_url(url)
            except UnsafeTarget as exc:
                where = "" if hop == 0 else f"redirect to {url[:200]!r}: "
                kind = "bad_url" if hop == 0 or isinstance(exc, BadURL) else "unsafe"
                result.error_kind, result.error = kind, f"{where}{exc}"
                return
            async with client.stream("GET", url, headers=headers) as resp:
                result.final_url = url
                result.status = resp.status_code
                if resp.is_redirect and "location" in resp.headers:
                    location = resp.headers["location"].strip()
                    try:
                        nxt = urljoin(url, location)
                    except ValueError as exc:
                        result.error_kind, result.error = "bad_url", f"redirect to malformed location {location[:200]!r}: {exc}"
                        return
                    result.redirects.append(nxt)
                    if nxt in seen:
                        result.error_kind, result.error = "redirect_loop", f"redirect loop back to {nxt}"
                        return
                    seen.add(nxt)
                    url = nxt
                    continue
                await self._read(result, resp, accept_any_type, max_bytes, truncate)
                return
        result.error_kind, result.error = "too_many_redirects", f"more than {self.options.max_redirects} redirects"

    async def _read(self, result: Fetch, resp: httpx.Response, accept_any_type: bool, max_bytes: int, truncate: bool = False) -> None:
        h = resp.headers
        result.etag, result.last_modified = h.get("etag"), h.get("last-modified")
        result.retry_after = parse_retry_after(h.get("retry-after"))
        ctype = h.get("content-type", "")
        result.content_type = ctype.split(";")[0].strip().lower()
        if "charset=" in ctype.lower():
            result.charset = ctype.lower().split("charset=")[-1].split(";")[0].strip().strip('"\'') or None
        if resp.status_code == 304 or resp.status_code >= 400:
            return  # no body needed: status tells the caller what happened
        if not accept_any_type and result.content_type and not result.content_type.startswith(HTML_TYPES):
            result.error_kind, result.error = "not_html", f"content type {result.content_type}"
            return
        declared = h.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes and not h.get("content-encoding") and not truncate:
            result.error_kind, result.error = "too_large", f"content-length {declared} over the {max_bytes} byte cap"
            return
        try:
            decoder = _Decoder(h.get("content-encoding", ""), max_bytes)
        except ValueError as exc:
            result.error_kind, result.error = "bad_encoding", str(exc)
            return
        try:
            async for chunk in resp.aiter_raw():
                if not decoder.feed(chunk):
                    if truncate:
                        result.truncated = True
                        break
                    result.error_kind, result.error = "too_large", f"body over the {max_bytes} byte cap (decoded)"
                    return
        except zlib.error as exc:
            result.error_kind, result.error = "bad_encoding", f"corrupt compressed body: {exc}"
            return
        result.body = decoder.body()
        if not accept_any_type and not result.content_type and not _looks_like_html(result.body):
            result.error_kind, result.error = "not_html", "no content type and the body is not HTML"


def _looks_like_html(body: bytes) -> bool:
    head = body[:1024].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<!--")) or b"<html" in head
