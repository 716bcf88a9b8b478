"""Refuse to fetch what a register could turn against us: internal addresses, odd schemes, bombs.

The address check runs inside the connection itself (a network backend for httpcore), after DNS
resolution and for every connection, redirects included, and connects to the vetted address, so
a host that resolves differently a second time (DNS rebinding) cannot slip through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

import httpcore
import httpx
from httpcore._backends.auto import AutoBackend

ALLOWED_SCHEMES = {"http", "https"}


class UnsafeTarget(Exception):
    """A URL or address the crawler refuses to fetch (reason in the message)."""


MAX_URL_CHARS = 4096
NAT64_PREFIXES = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class BadURL(UnsafeTarget):
    """A URL that cannot be fetched at all (malformed host or port, not a valid URL): the site's or link's own problem."""


def embedded_ipv4(addr: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address carries and routes to: mapped, IPv4-compatible, 6to4, Teredo, NAT64."""
    out = []
    if addr.ipv4_mapped:
        out.append(("IPv4-mapped", addr.ipv4_mapped))
    if addr.sixtofour:
        out.append(("6to4", addr.sixtofour))
    if addr.teredo:
        server, client = addr.teredo
        out += [("Teredo server", server), ("Teredo client", client)]
    low32 = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if any(addr in net for net in NAT64_PREFIXES):
        out.append(("NAT64", low32))
    if int(addr) >> 32 == 0 and int(addr) > 0xFFFF:  # ::a.b.c.d (deprecated IPv4-compatible)
        out.append(("IPv4-compatible", low32))
    return out


def address_problem(ip: str) -> str | None:
    """Why an IP must not be fetched, or None when it is a public unicast address (and so is any IPv4 it embeds)."""
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address):
        for kind, inner in embedded_ipv4(addr):
            problem = address_problem(str(inner))
            if problem:
                return f"{kind} address {addr} embedding a {problem}"
        if addr.ipv4_mapped:
            addr = addr.ipv4_mapped
    for flag in ("is_loopback", "is_private", "is_link_local", "is_multicast", "is_reserved", "is_unspecified"):
        if getattr(addr, flag):
            return f"{flag[3:].replace('_', '-')} address {addr}"
    if not addr.is_global:
        return f"non-global address {addr}"
    return None


def check_url(url: str) -> None:
    """Raise UnsafeTarget (BadURL when it is malformed) unless the URL is a well-formed http(s) URL we may try."""
    if len(url) > MAX_URL_CHARS:
        raise BadURL(f"URL longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range 0-65535", "Port could not be cast ..."
        raise BadURL(f"malformed URL {url[:200]!r}: {exc}") from None
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise UnsafeTarget(f"scheme {parts.scheme or '(none)'!r} refused: only http and https")
    if not parts.hostname:
        raise BadURL(f"no host in {url[:200]!r}")
    if parts.username or parts.password:
        raise UnsafeTarget("credentials in URL refused")
    if port == 0:
        raise BadURL(f"port 0 in {url[:200]!r}")
    try:
        httpx.URL(url)  # what the client will parse: refuses e.g. 0177.0.0.1 (octal IPv4 is ambiguous)
    except (httpx.InvalidURL, ValueError, UnicodeError) as exc:
        raise BadURL(f"invalid URL {url[:200]!r}: {exc}") from None


def url_problem(url: str) -> str | None:
    """Why a URL cannot be fetched, or None."""
    try:
        check_url(url)
    except UnsafeTarget as exc:
        return str(exc)
    return None


class SafeBackend(httpcore.AsyncNetworkBackend):
    """httpcore network backend that resolves the host itself, refuses unsafe addresses and connects to a vetted one."""

    def __init__(self, allow_private: bool = False):
        self.allow_private = allow_private
        self.inner = AutoBackend()

    async def resolve(self, host: str, port: int) -> list[str]:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"DNS lookup failed for {host}: {exc.strerror or exc}") from None
        return list(dict.fromkeys(info[4][0] for info in infos))

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        addresses = await self.resolve(host, port)
        if not self.allow_private:
            problems = [p for p in map(address_problem, addresses) if p]
            if problems:  # any bad address refuses the host: a mixed answer is a rebinding trick
                raise UnsafeTarget(f"{host} resolves to a {problems[0]} (refused; --allow-private lifts this)")
        last: Exception | None = None
        for ip in addresses:
            try:
                return await self.inner.connect_tcp(ip, port, timeout=timeout, local_address=local_address, socket_options=socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        raise last or httpcore.ConnectError(f"no address for {host}")

    async def connect_unix_socket(self, *args, **kwargs):
        raise UnsafeTarget("unix sockets refused")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)
