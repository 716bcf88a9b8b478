"""What each installed sentence encoder costs per text, side by side in one run (all-MiniLM-L6-v2 against
all-mpnet-base-v2, the opt-in one): weights load apart, then texts/s with no cache, in bf16 where this CPU has
it and in fp32, on the team's seed texts (what `rtic train` embeds), real short descriptions
(../shared/data/gold/techstars_gold500) and real business pages through the project's extractor
(../shared/data/gold/wcxb_dev_gold500, as a crawl stores them). Encoders alternate per set, so a change in the
machine's load falls on both; the load average is printed first.

    .venv/bin/python scripts/bench_encoders.py [--texts 200] [--pages 60]
"""

from __future__ import annotations

import argparse
import gzip
import os
import time
from pathlib import Path

import pandas as pd

from rtic.config import DEFAULT_SEED_LABELS
from rtic.embed.encoder import ENCODER_MODELS, Encoder, cpu_has_bf16
from rtic.errors import RticError

REPO = Path(__file__).resolve().parents[1]
SHARED = next((p for p in (REPO.parent / "shared" / "data", Path("/work/shared/data")) if (p / "gold").is_dir()), None)


def text_sets(n_texts: int, n_pages: int) -> dict[str, list[str]]:
    sets = {"seed texts": pd.read_csv(DEFAULT_SEED_LABELS, dtype=str, keep_default_na=False)["text"].sample(n_texts, random_state=0).tolist()}
    if SHARED is None:
        print("../shared/data not found: seed texts only")
        return sets
    from rtic.crawl.crawler import analyse_page

    firms = pd.read_csv(SHARED / "gold" / "techstars_gold500.csv", dtype=str, keep_default_na=False)
    pages = pd.read_csv(SHARED / "gold" / "wcxb_dev_gold500.csv", dtype=str, keep_default_na=False).head(n_pages)
    sets["techstars descriptions"] = firms["text"].head(n_texts).tolist()
    sets["wcxb pages"] = [analyse_page(gzip.open(SHARED / "wcxb-dev" / "html" / f"{pid}.html.gz").read(), url, None)["text"]
                          for pid, url in zip(pages["page_id"], pages["url"])]
    return sets


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=200, help="seed texts and Techstars descriptions timed (default 200)")
    ap.add_argument("--pages", type=int, default=60, help="WCXB pages timed (default 60)")
    args = ap.parse_args()
    print(f"load average at start (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    sets = text_sets(args.texts, args.pages)
    precisions = [True, False] if cpu_has_bf16() else [False]
    encoders = {}
    for name in ENCODER_MODELS:
        for bf16 in precisions:
            encoder = Encoder(cache_path=None, use_bf16=bf16, model=name)
            started = time.monotonic()
            try:
                encoder._load()
            except RticError as exc:
                print(f"{name}: skipped ({exc})")
                break
            encoder.encode(["warm-up text for the first call"])
            encoders[(name, "bf16" if bf16 else "fp32")] = encoder
            print(f"{name} {'bf16' if bf16 else 'fp32'}: weights loaded in {time.monotonic() - started:.1f} s")
    rates: dict[tuple, dict[str, float]] = {key: {} for key in encoders}
    for set_name, texts in sets.items():
        for key, encoder in encoders.items():  # alternate encoders within a set: the same load falls on each
            started = time.monotonic()
            encoder.encode(texts)
            rates[key][set_name] = len(texts) / (time.monotonic() - started)
    print("\ntexts/s (no cache; x the MiniLM row of the same precision)")
    print(f"  {'encoder':<20} {'precision':<9} " + "  ".join(f"{s:>26}" for s in sets))
    for (name, precision), row in rates.items():
        base = rates.get((next(iter(ENCODER_MODELS)), precision), row)
        print(f"  {name:<20} {precision:<9} " + "  ".join(f"{row[s]:17.1f} ({row[s] / base[s]:4.2f}x)" for s in sets))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
