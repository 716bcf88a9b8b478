"""Real HTTP servers on 127.0.0.1 for crawler tests and the throughput benchmark.

A `Farm` runs an asyncio HTTP/1.1 server per simulated site (one port each) in a background
thread. Each site maps paths to `Route`s, which can be slow, hang, reset the connection, answer a
sequence of statuses (503 then 200), send any headers or raw bytes. Every request is logged.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import struct
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Route:
    body: bytes | str = b""
    status: int = 200
    headers: dict = field(default_factory=lambda: {"Content-Type": "text/html; charset=utf-8"})
    delay: float = 0.0  # before the response
    behaviour: str = ""  # "" | hang | reset | drip
    sequence: list | None = None  # list of (status, headers, body) served in turn; the last one repeats
    drip_seconds: float = 0.0  # drip: pause between 100-byte pieces
    no_length: bool = False  # send no Content-Length: the body ends when the server closes the connection

    def respond(self, n: int) -> tuple[int, dict, bytes]:
        if self.sequence:
            status, headers, body = self.sequence[min(n, len(self.sequence) - 1)]
        else:
            status, headers, body = self.status, self.headers, self.body
        return status, dict(headers), body.encode() if isinstance(body, str) else body


REASONS = {200: "OK", 301: "Moved Permanently", 302: "Found", 304: "Not Modified", 404: "Not Found", 429: "Too Many Requests",
           500: "Internal Server Error", 503: "Service Unavailable"}


class Site:
    def __init__(self, farm: "Farm", routes: dict[str, Route], latency: tuple[float, float] = (0.0, 0.0)):
        self.farm, self.routes, self.latency = farm, routes, latency
        self.port: int | None = None
        self.counts: dict[str, int] = {}
        self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
                path = target.split("?")[0] if target.split("?")[0] in self.routes else target
                n = self.counts.get(target, 0)
                self.counts[target] = n + 1
                self.farm.log.append((self.port, target, headers, time.monotonic()))
                route = self.routes.get(path) or self.routes.get(target)
                if self.latency[1]:
                    await asyncio.sleep(self.farm.rng_uniform(*self.latency))
                if route is None:
                    status, rheaders, body = 404, {"Content-Type": "text/html"}, b"<html><body>not found</body></html>"
                else:
                    if route.delay:
                        await asyncio.sleep(route.delay)
                    if route.behaviour == "hang":
                        await asyncio.sleep(3600)
                    if route.behaviour == "reset":
                        sock = writer.get_extra_info("socket")
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        writer.transport.abort()
                        return
                    status, rheaders, body = route.respond(n)
                if "If-None-Match" in rheaders.get("X-Honour", "") and headers.get("if-none-match") == rheaders.get("ETag"):
                    status, body = 304, b""
                rheaders.pop("X-Honour", None)
                if route is not None and route.no_length:
                    rheaders["Connection"] = "close"
                else:
                    rheaders.setdefault("Content-Length", str(len(body)))
                out = f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in rheaders.items()) + "\r\n"
                writer.write(out.encode("latin-1"))
                if route is not None and route.behaviour == "drip":
                    for i in range(0, len(body), 100):
                        writer.write(body[i : i + 100])
                        await writer.drain()
                        await asyncio.sleep(route.drip_seconds)
                else:
                    writer.write(body)
                await writer.drain()
                if route is not None and route.no_length:
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        except asyncio.CancelledError:  # farm shutting down: end quietly
            return
        finally:
            try:
                writer.close()
            except Exception:
                pass


class Farm:
    """Start with `with Farm() as farm: site = farm.add({...})`; sites may be added while running."""

    def __init__(self, seed: int = 0):
        import random

        self.rng = random.Random(seed)
        self.log: list = []
        self.sites: list[Site] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def rng_uniform(self, a: float, b: float) -> float:
        return self.rng.uniform(a, b)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        async def stop():
            for site in self.sites:
                site.server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def add(self, routes: dict[str, Route | str], latency: tuple[float, float] = (0.0, 0.0), host: str = "127.0.0.1") -> Site:
        routes = {path: (r if isinstance(r, Route) else Route(r)) for path, r in routes.items()}
        site = Site(self, routes, latency)

        async def start():
            site.server = await asyncio.start_server(site.handle, host, 0, backlog=512)
            site.port = site.server.sockets[0].getsockname()[1]

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.sites.append(site)
        return site

    def requests(self, site: Site, path: str | None = None) -> list:
        return [entry for entry in self.log if entry[0] == site.port and (path is None or entry[1] == path)]


def page(title: str, body: str, extra_head: str = "") -> str:
    return (f"<!doctype html><html lang='en'><head><title>{title}</title>{extra_head}</head><body>"
            f"<nav><a href='/'>Home</a> <a href='/about-us'>About us</a> <a href='/privacy'>Privacy</a></nav>"
            f"<main>{body}</main><footer>Copyright 2026 · <a href='/cookies'>Cookies</a></footer></body></html>")


def gzip_bomb(decoded_bytes: int) -> bytes:
    return gzip.compress(b"\0" * decoded_bytes, compresslevel=9)
