"""Crawl throughput against a local farm of simulated sites, measured against the politeness bound.

    .venv/bin/python scripts/bench_crawl.py                      # 500 sites, runs at concurrency 32, 128 and 500, delay 1 s
    .venv/bin/python scripts/bench_crawl.py --sites 100 --runs 32:0.5   # smaller

The farm (tests/sitefarm.py) runs in a separate process: 500 HTTP servers on 127.0.0.1, each a site
with a home page, robots.txt and 8 linked pages of ~15 KB, every response delayed 50-200 ms. With
`--delay D` seconds between requests to one host and C sites in flight, no polite crawler can exceed
min(C, sites) / D requests per second: that is the bound. CPU seconds are the crawler process's own
(user + system), fetching, extracting and storing included.
"""

from __future__ import annotations

import argparse
import os
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import pandas as pd  # noqa: E402

from rtic.crawl.crawler import CrawlOptions, crawl  # noqa: E402
from rtic.crawl.fetch import FetchOptions  # noqa: E402

SECTIONS = ["about-us", "what-we-do", "products", "services", "solutions", "technology", "sectors", "case-studies"]


def site_routes(i: int) -> dict:
    from sitefarm import Route, page

    prose = (f"Firm {i} designs and manufactures specialist equipment for the energy, water and transport sectors. "
             "Our engineers work with clients from first concept to installation and long-term support. ") * 12
    nav = "".join(f"<a href='/{s}'>{s.replace('-', ' ').title()}</a> " for s in SECTIONS)
    extra = "".join(f"<a href='/news/{k}'>News {k}</a> <a href='/privacy'>Privacy</a> " for k in range(10))
    routes = {"/robots.txt": Route("User-agent: *\nDisallow: /admin\n", headers={"Content-Type": "text/plain"}),
              "/": page(f"Firm {i}", f"<h1>Firm {i}</h1><p>{prose}</p><div>{nav}{extra}</div>")}
    for s in SECTIONS:
        routes[f"/{s}"] = page(f"{s} | Firm {i}", f"<h2>{s}</h2><p>{prose}</p><ul>" + "".join(f"<li>Item {k} of {s}</li>" for k in range(20)) + "</ul>")
    return routes


def farm_process(n_sites: int, conn) -> None:
    from sitefarm import Farm

    with Farm() as farm:
        ports = [farm.add(site_routes(i), latency=(0.05, 0.2)).port for i in range(n_sites)]
        conn.send(ports)
        conn.recv()  # stop signal


def cpu_seconds() -> float:
    """This process plus its finished children (the extraction workers, joined at the end of each crawl)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sites", type=int, default=500)
    ap.add_argument("--runs", default="32:1,128:1,500:1", help="comma-separated CONCURRENCY:DELAY pairs")
    ap.add_argument("--workers", type=int, default=2, help="extraction processes (rtic crawl --workers; 0: in the event loop)")
    args = ap.parse_args()
    parent, child = mp.Pipe()
    proc = mp.Process(target=farm_process, args=(args.sites, child), daemon=True)
    proc.start()
    ports = parent.recv()
    print(f"farm: {len(ports)} sites on 127.0.0.1, 10 requests each (robots + home + 8 pages), 50-200 ms latency per response; "
          f"{args.workers} extraction workers; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start\n")
    print(f"{'concurrency':>11} {'delay':>6} {'bound req/s':>12} {'req/s':>8} {'% bound':>8} {'pages/s':>8} {'CPU s/page':>11} {'CPU busy':>9} {'wall s':>7}")
    try:
        for spec in args.runs.split(","):
            concurrency, delay = int(spec.split(":")[0]), float(spec.split(":")[1])
            with tempfile.TemporaryDirectory() as tmp:
                register = Path(tmp) / "register.csv"
                pd.DataFrame({"firm_id": [f"F{i}" for i in range(len(ports))], "website": [f"http://127.0.0.1:{p}/" for p in ports]}).to_csv(register, index=False)
                options = CrawlOptions(concurrency=concurrency, delay=delay, workers=args.workers, fetch=FetchOptions(allow_private=True, max_connections=max(64, concurrency * 2)))
                cpu0, t0 = cpu_seconds(), time.monotonic()
                summary = crawl(register, Path(tmp) / "crawl.db", options)
                wall, cpu = time.monotonic() - t0, cpu_seconds() - cpu0
            requests = summary.pages + summary.crawled  # robots.txt is a request too
            bound = min(concurrency, len(ports)) / delay
            print(f"{concurrency:>11} {delay:>6g} {bound:>12.1f} {requests / wall:>8.1f} {100 * requests / wall / bound:>7.1f}% "
                  f"{summary.pages / wall:>8.1f} {cpu / max(summary.pages, 1) * 1000:>9.2f}ms {100 * cpu / wall:>8.0f}% {wall:>7.1f}"
                  + ("" if summary.verdicts == {"ok": len(ports)} else f"  verdicts {summary.verdicts} errors {summary.errors}"))
    finally:
        parent.send("stop")
        proc.join(10)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (other work on the machine takes CPU from the crawl)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
