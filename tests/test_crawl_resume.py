"""Kill -9 a real `rtic crawl` mid-run, run the same command again: nothing finished is lost, no stored page is fetched twice."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pandas as pd

from conftest import REPO
from sitefarm import Farm, page

PROSE = "We build battery management systems for electric buses and grid storage, designed and tested in Coventry. " * 2


def committed_pages(store) -> set[str]:
    if not store.exists():
        return set()
    try:
        conn = sqlite3.connect(store, timeout=5)
        return {r[0] for r in conn.execute("SELECT url FROM pages")}
    except sqlite3.OperationalError:
        return set()


def test_kill_mid_crawl_and_resume(tmp_path):
    links = "".join(f"<a href='/services/{i}'>Service {i}</a> " for i in range(4))
    with Farm() as farm:
        sites = [farm.add({"/": page("Home", f"<p>{PROSE}</p>{links}"),
                           **{f"/services/{i}": page(f"S{i}", f"<p>Service {i}. {PROSE}</p>") for i in range(4)}},
                          latency=(0.05, 0.1)) for _ in range(6)]
        register = tmp_path / "register.csv"
        pd.DataFrame({"firm_id": [f"F{i}" for i in range(6)], "website": [s.url for s in sites]}).to_csv(register, index=False)
        store = tmp_path / "crawl.db"
        cmd = [sys.executable, "-m", "rtic.cli", "crawl", str(register), "--store", str(store), "--allow-private",
               "--delay", "0.15", "--concurrency", "2", "--quiet"]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while len(committed_pages(store)) < 8 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert workers, "rtic crawl runs extraction in worker processes by default"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        before = committed_pages(store)
        assert 8 <= len(before) < 30, "the kill should land mid-crawl"
        n_requests_before = len(farm.log)

        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        conn = sqlite3.connect(store)
        states = dict(conn.execute("SELECT firm_id, state FROM sites"))
        assert states == {f"F{i}": "done" for i in range(6)}
        verdicts = {r[0] for r in conn.execute("SELECT verdict FROM sites")}
        assert verdicts == {"ok"}
        assert conn.execute("SELECT COUNT(*) FROM pages WHERE status = 200").fetchone()[0] == 30
        # Pages committed before the kill were not requested again by the second run.
        again = [(port, path) for port, path, _, _ in farm.log[n_requests_before:]]
        for url in before:
            port, path = int(url.split(":")[2].split("/")[0]), "/" + url.split("/", 3)[3]
            assert (port, path) not in again, f"{url} fetched twice"
        # The killed crawl's extraction workers went with it.
        deadline = time.monotonic() + 5
        while any(os.path.exists(f"/proc/{pid}") for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in workers if os.path.exists(f"/proc/{pid}")], "orphaned extraction workers"
        # And a third run has nothing left to do.
        third = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert "0 crawled now, 6 already done" in third.stdout
