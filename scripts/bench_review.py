"""Benchmark the review app at register scale: firm pages and searches over a 1M-firm labels index.

Builds a synthetic labels Parquet (FIRMS firms × 9 sectors, as `rtic classify` writes it) and a
register with names and texts, indexes them, records some review decisions, then serves the app on
127.0.0.1 and times real HTTP requests. Prints p50/p95 per request kind, and each p95 against the
300 ms budget as a ratio.

    .venv/bin/python scripts/bench_review.py                    # full scale: 1,000,000 firms
    .venv/bin/python scripts/bench_review.py --firms 100000     # quicker
    .venv/bin/python scripts/bench_review.py --workdir /tmp/b --reuse   # time again without rebuilding
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote, urlencode

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rtic.review.app import AppConfig, ReviewApp, make_server  # noqa: E402
from rtic.review.index import IndexSources, build_index  # noqa: E402
from rtic.review.store import ReviewStore  # noqa: E402

SECTORS = ["advanced_manufacturing", "ageing_society", "ai_data", "clean_growth", "cybersecurity", "fintech", "life_sciences",
           "smart_cities_mobility", "space"]
SHARE = [0.06, 0.04, 0.12, 0.08, 0.02, 0.05, 0.01, 0.05, 0.005]  # rough share of firms per sector
WORDS = ("acme orbital solar heat pump robot data cloud ledger care bio quantum marine green smart grid forge delta apex north"
         " harbour signal vector beacon cedar summit river meadow copper granite nova pixel kinetic atlas").split()
BUDGET_MS = 300.0


def synthetic(n: int, folder: Path, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    ids = np.array([f"F{i:07d}" for i in range(n)])
    parts = []
    for sector, share in zip(SECTORS, SHARE):
        # Most firms score low, a share high; thresholds vary by sector as trained ones do.
        member = rng.random(n) < share
        p = np.where(member, rng.beta(6, 2, n), rng.beta(1, 12, n))
        threshold = 0.35 + 0.3 * rng.random()
        parts.append(pd.DataFrame({"firm_id": ids, "sector_id": sector, "probability": p, "assigned": p >= threshold}))
    labels = pd.concat(parts).sort_values(["firm_id", "sector_id"], kind="stable")
    labels = labels.assign(model_name="rtic-sector-classifier", model_version="1", taxonomy_version="2026.1",
                           text_sha256="0" * 64, classified_at="2026-11-01T00:00:00+00:00")
    labels_path = folder / "labels.parquet"
    labels.to_parquet(labels_path, index=False)
    words = np.array(WORDS)
    names = [" ".join(w).title() + " Ltd" for w in words[rng.integers(0, len(WORDS), (n, 2))]]
    texts = [f"{nm} designs and builds {a} and {b} systems for customers across the UK. Founded in {1990 + i % 30}." for i, (nm, a, b) in
             enumerate(zip(names, words[rng.integers(0, len(WORDS), n)], words[rng.integers(0, len(WORDS), n)]))]
    register_path = folder / "register.csv"
    pd.DataFrame({"firm_id": ids, "name": names, "text": texts}).to_csv(register_path, index=False)
    return labels_path, register_path


def timed(url: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as resp:
        resp.read()
        assert resp.status == 200, url
    return (time.perf_counter() - start) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--firms", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=200, help="requests per kind (default 200)")
    ap.add_argument("--decisions", type=int, default=20_000, help="review decisions recorded before timing")
    ap.add_argument("--workdir", help="keep the synthetic files here (default: a temporary folder)")
    ap.add_argument("--evidence", action="store_true", help="also time firm pages with model evidence (needs a champion in RTIC_HOME)")
    ap.add_argument("--reuse", action="store_true", help="reuse the index already in --workdir (skip generating and indexing)")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory() if not args.workdir else None
    folder = Path(args.workdir or tmp.name)
    folder.mkdir(parents=True, exist_ok=True)

    index = folder / "labels.review-index.sqlite"
    if args.reuse and index.is_file():
        print(f"reusing {index} ({index.stat().st_size / 1e6:,.0f} MB)")
    else:
        t0 = time.perf_counter()
        labels, register = synthetic(args.firms, folder)
        t1 = time.perf_counter()
        print(f"synthetic labels: {args.firms:,} firms x {len(SECTORS)} sectors = {args.firms * len(SECTORS):,} rows in {t1 - t0:.0f} s")
        build_index(IndexSources(labels, register), index)
        print(f"index built in {time.perf_counter() - t1:.0f} s ({index.stat().st_size / 1e6:,.0f} MB)")

    rng = random.Random(1)
    reviews = folder / "reviews.sqlite"
    reviews.unlink(missing_ok=True)
    for extra in ("-wal", "-shm"):
        Path(str(reviews) + extra).unlink(missing_ok=True)
    store = ReviewStore(reviews)
    with store.conn:  # bulk: one transaction
        store.conn.executemany(
            "INSERT INTO decisions (firm_id, sector_id, decision, reviewer, note, model_version, decided_at) VALUES (?,?,?,?,?,?,?)",
            [(f"F{rng.randrange(args.firms):07d}", rng.choice(SECTORS), rng.choice(["confirm", "reject", "add"]), "bench", "", "1",
              "2026-11-02T00:00:00+00:00") for _ in range(args.decisions)])
    explainer = None
    if args.evidence:  # the champion in RTIC_HOME scores each firm page's sentences, as `rtic review serve` does
        from rtic.config import Settings
        from rtic.explain import ModelExplainer

        explainer = ModelExplainer(Settings.from_env(), None)
        print(f"evidence from {explainer.ref.uri}")
    app = ReviewApp(AppConfig(index_path=index, reviews_path=reviews, reviewer="bench", port=0, explainer=explainer))
    server = make_server(app)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def firm_url():
        return f"{base}/firm/{quote(f'F{rng.randrange(args.firms):07d}')}"

    kinds = {
        "firm page": firm_url,
        "search by id prefix": lambda: f"{base}/?{urlencode({'q': f'F{rng.randrange(args.firms):07d}'[:6]})}",
        "search by name (2 words)": lambda: f"{base}/?{urlencode({'q': ' '.join(rng.sample(WORDS, 2))})}",
        "filter sector": lambda: f"{base}/?{urlencode({'sector': rng.choice(SECTORS)})}",
        "filter needs review": lambda: f"{base}/?{urlencode({'review': 'any'})}",
        "filter sector + near threshold": lambda: f"{base}/?{urlencode({'sector': rng.choice(SECTORS), 'review': 'near'})}",
        "filter sector + disagree": lambda: f"{base}/?{urlencode({'sector': rng.choice(SECTORS), 'review': 'disagree'})}",
        "name + sector + needs review": lambda: f"{base}/?{urlencode({'q': rng.choice(WORDS), 'sector': rng.choice(SECTORS), 'review': 'any'})}",
        "next page (sector)": lambda: f"{base}/?{urlencode({'sector': rng.choice(SECTORS), 'after': f'F{rng.randrange(args.firms):07d}'})}",
    }
    for make in kinds.values():  # warm the page cache once per kind
        timed(make())
    print(f"\n{args.requests} requests per kind over HTTP, {args.firms:,} firms, {args.decisions:,} decisions; budget {BUDGET_MS:.0f} ms")
    print(f"{'request':<34}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'p95/budget':>12}")
    worst = 0.0
    for name, make in kinds.items():
        ms = np.array([timed(make()) for _ in range(args.requests)])
        p50, p95 = np.percentile(ms, 50), np.percentile(ms, 95)
        worst = max(worst, p95)
        print(f"{name:<34}{p50:>9.1f}{p95:>9.1f}{ms.max():>9.1f}{p95 / BUDGET_MS:>12.2f}")
    if explainer is not None:
        # A firm's first view scores its sentences (cold); later views come from the app's evidence cache.
        firms = [firm_url() for _ in range(min(args.requests, 50))]
        for name, urls in (("firm page + evidence, first view", firms), ("firm page + evidence, cached", firms)):
            ms = np.array([timed(u) for u in urls])
            p50, p95 = np.percentile(ms, 50), np.percentile(ms, 95)
            worst = max(worst, p95)
            print(f"{name:<34}{p50:>9.1f}{p95:>9.1f}{ms.max():>9.1f}{p95 / BUDGET_MS:>12.2f}")
    print(f"\nworst p95 {worst:.1f} ms = {worst / BUDGET_MS:.2f} x the {BUDGET_MS:.0f} ms budget")
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
