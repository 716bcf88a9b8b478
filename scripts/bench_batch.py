"""Benchmark batch classification: naive baseline vs streaming engine vs fast path, side by side in one run.

    .venv/bin/python scripts/bench_batch.py                      # full scale: 1,000,000-row register
    .venv/bin/python scripts/bench_batch.py --rows 100000        # reduced scale

Texts are real company descriptions from ../shared/data/techstars/companies.csv (never copied into the
project). Two measurements, because the transformer embeds only tens of texts a second on this CPU:

1. Sample (measured end to end, cold embedding caches): `--sample` unique texts classified by the
   streaming engine with the transformer only, and by the fast path. Gives transformer and fast-path
   throughput when every text is new, and the fast path's label agreement with the transformer.
2. Full scale (`--rows` firms: the sample's texts repeated under distinct firm ids, embedding cache
   warm from step 1): naive baseline (read everything, embed, predict in one go), the streaming engine,
   and the fast path, each in its own process so its peak RSS is its own. With a warm cache these
   measure each engine's own overhead and memory; the transformer's cost is taken from step 1.

Each engine is timed from the moment its model (and fast head) is loaded to the end of its output;
loading (seconds, once per run) is left out of firms/s. It prints measured figures and, marked as projections, firms/s with new texts and hours for 5M firms.
Uses its own RTIC_HOME under --work (trains the seed model there once if needed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SHARED = next((p for p in (REPO.parent / "shared" / "data", Path("/work/shared/data")) if p.exists()), None)


def child(args: list[str], env: dict) -> tuple[float, str]:
    """Run a Python child in its own process (so its peak RSS is its own); return (wall seconds, stdout)."""
    start = time.monotonic()
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"child failed: {' '.join(args)}\n{proc.stderr[-3000:]}")
    return time.monotonic() - start, proc.stdout


# The children: each prints one JSON line with its own peak RSS (ru_maxrss of the process itself).
CHILD = r"""
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from rtic.config import Settings
mode, register, out = sys.argv[1], sys.argv[2], sys.argv[3]
settings = Settings.from_env()
t = time.monotonic()
extra = {{}}
if mode == "naive":
    # The obvious program: read the whole register, embed and predict everything at once, write.
    # Timed from the same point as the engines: model loaded.
    from datetime import datetime, timezone
    from rtic import registry
    from rtic.classify import to_long
    from rtic.tables import read_table, write_atomically
    ref = registry.resolve(None, settings)
    model = registry.load(ref, settings)
    t = time.monotonic()
    df = read_table(register, "register")
    df = df[df["text"].str.strip() != ""].reset_index(drop=True)
    predictions = model.predict(df[["firm_id", "text"]])
    labels = to_long(predictions, df["text"], model.metadata.metadata["sector_ids"], ref, "x", datetime.now(timezone.utc).isoformat())
    write_atomically(labels, out)
else:
    from rtic.classify import classify_register
    margin = {{"fast": None, "static": 0.0}}.get(mode)
    ready = []  # the first progress line comes once the model (and fast head) are loaded: time the firms from there
    r = classify_register(register, out, settings, chunk_rows=int(sys.argv[4]), fast=(mode in ("fast", "static")), fast_margin=margin, restart=True,
                          progress=lambda m: ready.append(time.monotonic()) if not ready else None)
    extra = {{"escalated": r.n_escalated, "classified": r.n_classified, "load_seconds": ready[0] - t}}
    t = ready[0]
print(json.dumps({{"seconds": time.monotonic() - t, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **extra}}))
"""


def run_engine(mode: str, register: Path, out: Path, env: dict, chunk_rows: int) -> dict:
    script = out.parent / "bench_child.py"
    script.write_text(CHILD.format(repo=str(REPO)))
    wall, stdout = child([str(script), mode, str(register), str(out), str(chunk_rows)], env)
    result = json.loads(stdout.strip().splitlines()[-1])
    result["wall"] = wall
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="firms in the full-scale register (default 1,000,000)")
    ap.add_argument("--sample", type=int, default=2000, help="unique texts for the cold-cache measurements (default 2000)")
    ap.add_argument("--chunk-rows", type=int, default=4096)
    ap.add_argument("--work", type=Path, default=REPO / "out" / "bench_batch", help="scratch folder (default out/bench_batch)")
    ap.add_argument("--skip-naive", action="store_true", help="leave out the naive baseline at full scale")
    args = ap.parse_args()
    if SHARED is None:
        raise SystemExit("needs ../shared/data/techstars/companies.csv")
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    home = work / "home"
    base_env = {"RTIC_HOME": str(home)}
    if subprocess.run([sys.executable, "-m", "rtic.cli", "train", "--if-missing"], cwd=REPO, env={**os.environ, **base_env}, capture_output=True).returncode:
        raise SystemExit("training the seed model failed")

    texts = pd.read_csv(SHARED / "techstars" / "companies.csv", dtype=str, keep_default_na=False)["text"]
    texts = texts[texts.str.strip() != ""].drop_duplicates().sample(frac=1.0, random_state=0).head(args.sample).reset_index(drop=True)
    sample = work / "sample.csv"
    pd.DataFrame({"firm_id": [f"S{i:07d}" for i in range(len(texts))], "text": texts}).to_csv(sample, index=False)

    # Build the static table and the fast head once, outside the timings (they are per model version).
    tiny = work / "tiny.csv"
    pd.DataFrame({"firm_id": ["T1"], "text": ["warm-up"]}).to_csv(tiny, index=False)
    run_engine("fast", tiny, work / "tiny.parquet", base_env, args.chunk_rows)

    print(f"== 1. sample: {len(texts):,} unique real texts, cold embedding caches (measured)")
    for f in work.glob("cache_*.sqlite*"):
        f.unlink()
    cold_t = {**base_env, "RTIC_EMBEDDING_CACHE": str(work / "cache_t.sqlite")}
    cold_f = {**base_env, "RTIC_EMBEDDING_CACHE": str(work / "cache_f.sqlite")}
    t = run_engine("stream", sample, work / "sample_transformer.parquet", cold_t, 512)
    f = run_engine("fast", sample, work / "sample_fast.parquet", cold_f, 512)
    rate_t, rate_f = len(texts) / t["seconds"], len(texts) / f["seconds"]
    lt = pd.read_parquet(work / "sample_transformer.parquet").sort_values(["firm_id", "sector_id"]).reset_index(drop=True)
    lf = pd.read_parquet(work / "sample_fast.parquet").sort_values(["firm_id", "sector_id"]).reset_index(drop=True)
    cell = (lt["assigned"] == lf["assigned"]).mean()
    firm = (lt.groupby("firm_id")["assigned"].apply(tuple) == lf.groupby("firm_id")["assigned"].apply(tuple)).mean()
    esc = f["escalated"] / len(texts)
    print(f"transformer only : {rate_t:8.1f} firms/s  ({t['seconds']:.0f} s)")
    print(f"fast path        : {rate_f:8.1f} firms/s  ({f['seconds']:.0f} s; {f['escalated']:,} = {esc:.1%} re-scored by the transformer)")
    print(f"fast / transformer throughput: {rate_f / rate_t:.1f}x")
    print(f"label agreement with transformer-only: {cell:.2%} of (firm, sector) decisions; {firm:.2%} of firms with identical label sets")

    # Other margins, from the same sample: the static head's own labels (margin 0, measured) and the
    # transformer's labels above; a re-scored firm gets exactly the transformer's labels (tested).
    s0 = run_engine("static", sample, work / "sample_static.parquet", cold_f, 512)
    rate_s = len(texts) / s0["seconds"]
    import glob

    import joblib

    head = joblib.load(sorted(glob.glob(str(home / "static" / "head-*.joblib")))[-1])
    ls = pd.read_parquet(work / "sample_static.parquet").sort_values(["firm_id", "sector_id"]).reset_index(drop=True)
    thr = ls["sector_id"].map(dict(zip(head.sector_ids, head.thresholds_)))
    dist = (ls["probability"] - thr).abs()
    print(f"static head alone: {rate_s:,.0f} firms/s (measured); margin table (escalation and agreement measured on the sample, "
          f"throughput projected as 1/(1/{rate_s:,.0f} + share/{rate_t:.1f})):")
    for margin in (0.0, 0.02, 0.05, 0.1, 0.15, 0.2):
        near = (dist < margin).groupby(ls["firm_id"]).transform("any")
        final = ls["assigned"].where(~near, lt["assigned"])
        share = near.groupby(ls["firm_id"]).first().mean()
        rate = 1 / (1 / rate_s + share / rate_t)
        agree_firm = (final == lt["assigned"]).groupby(ls["firm_id"]).all().mean()
        print(f"  margin {margin:4.2f}: {share:6.1%} re-scored, agreement {(final == lt['assigned']).mean():.2%} cells / "
              f"{agree_firm:.2%} firms, ~{rate:,.0f} firms/s = {rate / rate_t:.1f}x transformer")

    print(f"\n== 2. full scale: {args.rows:,} firms (sample texts repeated, embedding cache warm from step 1; measured)")
    big = work / f"register_{args.rows}.csv"
    if not big.exists():
        reps = -(-args.rows // len(texts))
        rows = pd.DataFrame({"text": pd.concat([texts] * reps, ignore_index=True).head(args.rows)})
        rows.insert(0, "firm_id", [f"{i:08d}" for i in range(len(rows))])
        rows.to_csv(big, index=False)
    warm = {**base_env, "RTIC_EMBEDDING_CACHE": str(work / "cache_t.sqlite")}
    results = {}
    for mode in (["naive"] if not args.skip_naive else []) + ["stream", "fast"]:
        out = work / f"big_{mode}.parquet"
        for p in out.parent.glob(f"big_{mode}.*"):
            if p.is_dir():
                import shutil

                shutil.rmtree(p)
            else:
                p.unlink()
        results[mode] = r = run_engine(mode, big, out, warm, args.chunk_rows)
        print(f"{mode:<7}: {args.rows / r['seconds']:8.0f} firms/s  peak RSS {r['peak_rss_mib']:7.0f} MiB  ({r['seconds']:.0f} s)"
              + (f"  {r['escalated'] / args.rows:.1%} re-scored" if mode == "fast" else ""))
    if "naive" in results:
        n, s = results["naive"], results["stream"]
        print(f"streaming / naive: throughput {n['seconds'] / s['seconds']:.2f}x, peak RSS {s['peak_rss_mib'] / n['peak_rss_mib']:.2f}x")
    print(f"fast / streaming (warm cache): throughput {results['stream']['seconds'] / results['fast']['seconds']:.2f}x")

    print("\n== projections for new texts (not measured at this scale)")
    static_rate = args.rows / results["fast"]["seconds"]  # static head + engine, escalations free from the warm cache
    per_firm_t = 1 / rate_t  # measured on the sample through the streaming engine, so it includes the engine
    per_firm_f = 1 / static_rate + esc / rate_t
    print(f"transformer only: {1 / per_firm_t:,.1f} firms/s -> 5M firms in {5e6 * per_firm_t / 3600:,.1f} h")
    print(f"fast path ({esc:.1%} re-scored): {1 / per_firm_f:,.0f} firms/s -> 5M firms in {5e6 * per_firm_f / 3600:,.1f} h "
          f"({per_firm_t / per_firm_f:.0f}x the transformer)")


if __name__ == "__main__":
    main()
