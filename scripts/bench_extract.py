"""Extraction quality on WCXB dev pages: rtic's extractor and trafilatura side by side, word F1 per page type.

    .venv/bin/pip install -c constraints.txt -e '.[bench]'     # trafilatura (benchmark only)
    .venv/bin/python scripts/bench_extract.py [--data ../shared/data/wcxb-dev] [--limit N]

Score (the data set's README): word-level F1 between extracted text and ground_truth.main_content,
lower-cased \\w+ tokens, multiset overlap, averaged per page type. Also prints ms per page.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rtic.crawl.extract import extract  # noqa: E402

TOKEN = re.compile(r"\w+")
PUBLISHED = {"trafilatura": {"service": 0.763, "product": 0.567, "collection": 0.553, "listing": 0.589},
             "rs-trafilatura": {"service": 0.844, "product": 0.641, "collection": 0.716, "listing": 0.707}}


def f1(predicted: str, truth: str) -> float:
    p, t = Counter(TOKEN.findall(predicted.lower())), Counter(TOKEN.findall(truth.lower()))
    if not p and not t:
        return 1.0
    overlap = sum((p & t).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(p.values()), overlap / sum(t.values())
    return 2 * precision * recall / (precision + recall)


def default_data() -> Path:
    for base in (REPO.parent / "shared" / "data", Path("/work/shared/data")):
        if (base / "wcxb-dev").is_dir():
            return base / "wcxb-dev"
    raise SystemExit("wcxb-dev not found: pass --data")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--limit", type=int, default=0, help="first N pages only (0: all)")
    ap.add_argument("--no-trafilatura", action="store_true")
    ap.add_argument("--worst", type=int, default=0, help="list the N pages where rtic scores lowest")
    args = ap.parse_args()
    data = args.data or default_data()
    try:
        import trafilatura
    except ImportError:
        trafilatura = None
        if not args.no_trafilatura:
            print("trafilatura not installed (pip install -e '.[bench]'); scoring rtic only", file=sys.stderr)
    if args.no_trafilatura:
        trafilatura = None

    scores = {"rtic": defaultdict(list), "trafilatura": defaultdict(list)}
    seconds = Counter()
    per_page = []
    files = sorted((data / "ground-truth").glob("*.json"))
    if args.limit:
        files = files[: args.limit]
    for gt_path in files:
        gt = json.loads(gt_path.read_text())
        kind = gt["_internal"]["page_type"]["primary"]
        truth = gt["ground_truth"]["main_content"] or ""
        html = gzip.decompress((data / "html" / f"{gt_path.stem}.html.gz").read_bytes())
        t0 = time.perf_counter()
        ours = extract(html, url=gt.get("url")).text
        seconds["rtic"] += time.perf_counter() - t0
        s = f1(ours, truth)
        scores["rtic"][kind].append(s)
        per_page.append((s, gt_path.stem, kind))
        if trafilatura is not None:
            t0 = time.perf_counter()
            theirs = trafilatura.extract(html.decode("utf-8", errors="replace"), url=gt.get("url"), favor_recall=False) or ""
            seconds["trafilatura"] += time.perf_counter() - t0
            scores["trafilatura"][kind].append(f1(theirs, truth))

    kinds = ["service", "product", "collection", "listing"]
    print(f"WCXB dev, {len(files)} pages, word F1 (mean per page type)\n")
    print(f"{'extractor':<28}" + "".join(f"{k:>12}" for k in kinds) + f"{'all':>10}{'ms/page':>10}")
    for name, table in scores.items():
        if not table:
            continue
        all_scores = [s for v in table.values() for s in v]
        row = "".join(f"{(sum(table[k]) / len(table[k]) if table[k] else float('nan')):>12.3f}" for k in kinds)
        print(f"{name + ' (measured)':<28}{row}{sum(all_scores) / len(all_scores):>10.3f}{1000 * seconds[name] / len(all_scores):>10.1f}")
    for name, pub in PUBLISHED.items():
        print(f"{name + ' (published)':<28}" + "".join(f"{pub[k]:>12.3f}" for k in kinds))
    print("\npages per type: " + ", ".join(f"{k} {len(scores['rtic'][k])}" for k in kinds))
    if args.worst:
        print("\nlowest rtic pages:")
        for s, stem, kind in sorted(per_page)[: args.worst]:
            print(f"  {stem} {kind:<11} {s:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
