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
from httpcore._backends.auto import AutoBackend

ALLOWED_SCHEMES = {"http", "https"}


class UnsafeTarget(Exception):
    """A URL or address the crawler refuses to fetch (reason in the message)."""


def address_problem(ip: str) -> str | None:
    """Why an IP must not be fetched, or None when it is a public unicast address."""
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    for flag in ("is_loopback", "is_private", "is_link_local", "is_multicast", "is_reserved", "is_unspecified"):
        if getattr(addr, flag):
            return f"{flag[3:].replace('_', '-')} address {addr}"
    if not addr.is_global:
        return f"non-global address {addr}"
    return None


def check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise UnsafeTarget(f"scheme {parts.scheme or '(none)'!r} refused: only http and https")
    if not parts.hostname:
        raise UnsafeTarget(f"no host in {url!r}")
    if parts.username or parts.password:
        raise UnsafeTarget("credentials in URL refused")


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
