"""Benchmark batch classification: transformer only vs the fast path per text kind, then naive vs streaming
vs fast path at full scale, side by side in one run.

    .venv/bin/python scripts/bench_batch.py                      # default: 1,000,000-row register at full scale
    .venv/bin/python scripts/bench_batch.py --rows 100000 --long-sample 200 --long-distil 400 --sample 1000 --distil 1000
    .venv/bin/python scripts/bench_batch.py --skip-full          # only the per-kind measurements

Texts are real, read from ../shared/data at run time (never copied into the project):

1. Website-length texts ("long"): each firm joins 1-3 distinct business pages' main text from
   wcxb-dev/ground-truth (`ground_truth.main_content`), as a crawl joins home, about and product pages.
   The head is distilled (`rtic fastpath build --register`) on firms made from the even-numbered pages
   and evaluated on firms made from the odd-numbered pages ("long-a"), then the other way round ("long-b"):
   distillation and evaluation never share a page; both halves are then pooled.
2. Short texts: Techstars one-paragraph descriptions (techstars/companies.csv); distilled on one set of
   firms, evaluated on others.

For each kind, with cold embedding caches, the evaluation register is classified by the streaming engine
with the transformer only, by the static pass alone (z = 0; timed over the register repeated to
--static-firms firms) and by the fast path at its default (or --margin); it prints firms/s, the share
re-scored, agreement with the transformer-only labels (per (firm, sector) decision, per firm, and F1 on
the transformer's positive labels), and a table over z (re-scored share and agreement measured from the same runs, throughput
projected from the two measured rates), with hours for 5M firms.

3. Full scale (`--rows` firms: the short evaluation texts repeated under distinct firm ids, embedding
   cache warm from step 2): naive baseline (read everything, embed, predict in one go), the streaming
   engine, and the fast path, each in its own process so its peak RSS is its own. With a warm cache these
   measure each engine's own overhead and memory; the transformer's cost is taken from step 2.

Each engine is timed from the moment its model (and fast head) is loaded to the end of its output, less the
one-off lazy load of the transformer's weights (steady-state rates, as over millions of firms).
Uses its own RTIC_HOME under --work (trains the seed model there once if needed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
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
# The transformer's weights load lazily on first use (seconds, once per process): timed apart and left out,
# so rates are steady-state rates whatever the register size.
import rtic.embed.encoder
load = rtic.embed.encoder.Encoder._load
loading = [0.0]
def timed_load(self):
    if self._model is not None:
        return self._model
    start = time.monotonic()
    try:
        return load(self)
    finally:
        loading[0] += time.monotonic() - start
rtic.embed.encoder.Encoder._load = timed_load
t = time.monotonic()
extra = {{}}
if mode == "naive":
    # The obvious program: read the whole register, embed and predict everything at once, write.
    # Timed from the same point as the engines: model loaded.
    from datetime import datetime, timezone
    from rtic.mlops import registry
    from rtic.score.batch import to_long
    from rtic.tables import read_table, write_atomically
    loaded = registry.open_model(None, settings)
    ref, model = loaded.ref, loaded.pyfunc
    t = time.monotonic()
    df = read_table(register, "register")
    df = df[df["text"].str.strip() != ""].reset_index(drop=True)
    predictions = model.predict(df[["firm_id", "text"]])
    labels = to_long(predictions, df["text"], model.metadata.metadata["sector_ids"], ref, "x", datetime.now(timezone.utc).isoformat())
    write_atomically(labels, out)
else:
    from rtic.score.batch import classify_register
    margin = {{"static": 0.0}}.get(mode, float(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[5] else None)
    import logging
    ready = []  # the first progress line comes once the model (and fast head) are loaded: time the firms from there
    class FirstLine(logging.Handler):
        def emit(self, record):
            if not ready:
                ready.append(time.monotonic())
    logging.getLogger("rtic.score.batch").addHandler(FirstLine())
    logging.getLogger("rtic.score.batch").setLevel(logging.INFO)
    r = classify_register(register, out, settings, chunk_rows=int(sys.argv[4]), fast=(mode in ("fast", "static")), fast_margin=margin, restart=True)
    extra = {{"escalated": r.n_escalated, "classified": r.n_classified, "load_seconds": ready[0] - t, "margin": r.fast_margin}}
    t = ready[0]
print(json.dumps({{"seconds": time.monotonic() - t - loading[0], "weights_load_seconds": loading[0],
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **extra}}))
"""


def run_engine(mode: str, register: Path, out: Path, env: dict, chunk_rows: int, margin: float | None = None) -> dict:
    script = out.parent / "bench_child.py"
    script.write_text(CHILD.format(repo=str(REPO)))
    wall, stdout = child([str(script), mode, str(register), str(out), str(chunk_rows), "" if margin is None else str(margin)], env)
    result = json.loads(stdout.strip().splitlines()[-1])
    result["wall"] = wall
    return result


def long_texts(n: int, pages: list[str], seed: int) -> list[str]:
    """Website-length firm texts: each joins 1-3 distinct real business pages (as a crawl joins home, about, products)."""
    rng = np.random.default_rng(seed)
    return ["\n\n".join(pages[j] for j in rng.choice(len(pages), int(rng.integers(1, 4)), replace=False)) for _ in range(n)]


def register_of(texts: list[str], path: Path, prefix: str) -> Path:
    pd.DataFrame({"firm_id": [f"{prefix}{i:07d}" for i in range(len(texts))], "text": texts}).to_csv(path, index=False)
    return path


def logits(labels: pd.DataFrame) -> pd.Series:
    p = labels["probability"].clip(1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def agreement(truth: pd.DataFrame, other: pd.Series) -> tuple[float, float]:
    """(share of (firm, sector) decisions, share of firms with an identical label set) equal to the transformer's."""
    same = other.to_numpy() == truth["assigned"].to_numpy()
    return float(same.mean()), float(pd.Series(same).groupby(truth["firm_id"].to_numpy()).all().mean())


def positive_f1(truth: pd.DataFrame, other: pd.Series) -> float:
    """F1 of the fast labels against the transformer's positive labels: agreement where labels are rare."""
    t, o = truth["assigned"].to_numpy(), other.to_numpy()
    return float(2 * (t & o).sum() / max(t.sum() + o.sum(), 1))


def margin_table(runs: list[dict], zs=(0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)) -> None:
    """Other margins from the same runs: each run's static-pass logits, its head's sigmas, the transformer's labels.

    A re-scored firm gets exactly the transformer's labels (tested), so re-scored share and agreement are
    measured; throughput is projected from the two measured rates (pooled over the runs).
    """
    lt = pd.concat([r["lt"] for r in runs], ignore_index=True)
    ls = pd.concat([r["ls"] for r in runs], ignore_index=True)
    distance = pd.concat([r["distance"] for r in runs], ignore_index=True)
    rate_t, rate_s = pooled_rate(runs, "t"), pooled_rate(runs, "s")
    print(f"  margin table (re-scored share and agreement measured; throughput projected as 1/(1/{rate_s:,.0f} + share/{rate_t:.1f})):")
    print("      z  re-scored   cells    firms  pos-F1   firms/s  x transformer  5M firms")
    for z in zs:
        near = (distance < z).groupby(ls["firm_id"]).transform("any")
        share = float(near.groupby(ls["firm_id"]).first().mean())
        final = ls["assigned"].where(~near, lt["assigned"])
        cell_z, firm_z = agreement(lt, final)
        rate = 1 / (1 / rate_s + share / rate_t)
        print(f"   {z:4.2f}  {share:8.1%}  {cell_z:7.2%}  {firm_z:7.2%}  {positive_f1(lt, final):6.3f}  {rate:8,.0f}  {rate / rate_t:12.1f}x  {5e6 / rate / 3600:6.1f} h")


def pooled_rate(runs: list[dict], key: str) -> float:
    """Firms per second of one pass ("t" transformer, "s" static alone, "f" fast path) over all the runs."""
    return sum(r["firms"][key] for r in runs) / sum(r["seconds"][key] for r in runs)


def measure_kind(kind: str, distil: list[str], evaluation: list[str], args, work: Path, base_env: dict, thresholds: dict) -> dict:
    """Distil a head on `distil` (a sample of that register), then classify `evaluation` three ways with cold caches.

    The static pass alone is also timed on the evaluation register repeated (distinct firm ids) to at least
    --static-firms firms, so that its rate is measured over seconds, not a fraction of one.
    """
    print(f"\n== {kind} texts: distil on {len(distil):,}, evaluate on {len(evaluation):,} other firms "
          f"(median {int(np.median([len(t) for t in evaluation])):,} characters); cold embedding caches")
    distil_csv, eval_csv = register_of(distil, work / f"distil_{kind}.csv", "D"), register_of(evaluation, work / f"eval_{kind}.csv", f"E{kind}-")
    repeats = max(1, -(-args.static_firms // len(evaluation)))
    static_csv = register_of(evaluation * repeats, work / f"static_{kind}.csv", f"S{kind}-")
    for f in work.glob(f"cache_*_{kind}.sqlite*"):
        f.unlink()
    # Distillation starts from the cache training left (the model's training texts are in it, as on a user's
    # machine); the evaluation runs below start cold.
    shutil.copy(work / "home" / "embedding_cache.sqlite", work / f"cache_distil_{kind}.sqlite")
    env = {**base_env, "RTIC_EMBEDDING_CACHE": str(work / f"cache_distil_{kind}.sqlite")}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "rtic.cli", "fastpath", "build", "--register", str(distil_csv), "--sample", str(len(distil))],
                          cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"fastpath build failed:\n{proc.stderr[-3000:]}")
    print(f"fastpath build --register ({len(distil):,} firms, transformer included): {time.monotonic() - start:.0f} s")
    print("\n".join("  " + line for line in proc.stdout.splitlines()[1:]))
    head_json = sorted((work / "home" / "static").glob("head-*.json"))[-1]
    for suffix in (".joblib", ".json"):
        shutil.copy(head_json.with_suffix(suffix), work / f"head_{kind}{suffix}")
    sigma = json.loads(head_json.read_text())["sigma"]

    env_t = {**base_env, "RTIC_EMBEDDING_CACHE": str(work / f"cache_t_{kind}.sqlite")}
    env_f = {**base_env, "RTIC_EMBEDDING_CACHE": str(work / f"cache_f_{kind}.sqlite")}
    t = run_engine("stream", eval_csv, work / f"{kind}_transformer.parquet", env_t, 512)
    s = run_engine("static", static_csv, work / f"{kind}_static.parquet", env_f, 512)
    f = run_engine("fast", eval_csv, work / f"{kind}_fast.parquet", env_f, 512, margin=args.margin)
    f["margin_note"] = f"z={f['margin']:g}" + ("" if args.margin is not None else " (default)")
    n = len(evaluation)
    rate_t, rate_s, rate_f = n / t["seconds"], n * repeats / s["seconds"], n / f["seconds"]
    read = lambda name: pd.read_parquet(work / name).sort_values(["firm_id", "sector_id"]).reset_index(drop=True)  # noqa: E731
    lt, lf = read(f"{kind}_transformer.parquet"), read(f"{kind}_fast.parquet")
    ls = read(f"{kind}_static.parquet")
    ls = ls[ls["firm_id"].str.slice(len(f"S{kind}-")).astype(int) < n].reset_index(drop=True)  # the first copy: same firms as lt
    ls["firm_id"] = lt["firm_id"]
    cell, firm = agreement(lt, lf["assigned"])
    print(f"transformer only       : {rate_t:9.1f} firms/s  (measured, {t['seconds']:.0f} s)")
    print(f"static pass alone (z=0): {rate_s:9.1f} firms/s  (measured over {n * repeats:,} firms, {s['seconds']:.1f} s) = {rate_s / rate_t:.1f}x the transformer")
    print(f"fast path, {f['margin_note']:<12}: {rate_f:9.1f} firms/s  (measured, {f['seconds']:.0f} s; {f['escalated'] / n:.1%} re-scored) "
          f"= {rate_f / rate_t:.1f}x the transformer")
    print(f"  agreement with transformer-only labels: {cell:.2%} of (firm, sector) decisions, {firm:.2%} of firms identical, "
          f"F1 on the transformer's positive labels {positive_f1(lt, lf['assigned']):.3f}")
    run = {"n": n, "firms": {"t": n, "s": n * repeats, "f": n}, "seconds": {"t": t["seconds"], "s": s["seconds"], "f": f["seconds"]},
           "escalated": f["escalated"], "lt": lt, "ls": ls, "lf": lf,
           "distance": (logits(ls) - ls["sector_id"].map(thresholds)).abs() / ls["sector_id"].map(sigma)}
    margin_table([run])
    print(f"  5M firms: transformer only {5e6 / rate_t / 3600:,.1f} h; fast path {f['margin_note']} (measured rate) {5e6 / rate_f / 3600:,.1f} h")
    return run


def pooled(kind: str, runs: list[dict]) -> None:
    """Both halves of a kind together: every evaluation firm once, rates pooled over the runs."""
    lt = pd.concat([r["lt"] for r in runs], ignore_index=True)
    lf = pd.concat([r["lf"] for r in runs], ignore_index=True)
    n, rate_t = sum(r["n"] for r in runs), pooled_rate(runs, "t")
    rate_s, rate_f = pooled_rate(runs, "s"), pooled_rate(runs, "f")
    cell, firm = agreement(lt, lf["assigned"])
    print(f"\n== {kind} texts, both halves pooled ({n:,} evaluation firms, {len(lt):,} decisions)")
    print(f"transformer only {rate_t:.1f} firms/s; static pass alone {rate_s:,.0f} firms/s = {rate_s / rate_t:.1f}x; "
          f"fast path at the default {rate_f:,.1f} firms/s = {rate_f / rate_t:.1f}x "
          f"({sum(r['escalated'] for r in runs) / n:.1%} re-scored): {cell:.2%} of decisions, {firm:.2%} of firms, "
          f"positive F1 {positive_f1(lt, lf['assigned']):.3f}")
    margin_table(runs)
    print(f"  5M firms: transformer only {5e6 / rate_t / 3600:,.1f} h; fast path at the default (measured rate) {5e6 / rate_f / 3600:,.1f} h")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="firms in the full-scale register (default 1,000,000)")
    ap.add_argument("--sample", type=int, default=2000, help="short texts to evaluate on (default 2000)")
    ap.add_argument("--distil", type=int, default=1500, help="short texts to distil on, other firms (default 1500)")
    ap.add_argument("--long-sample", type=int, default=300, help="website-length texts to evaluate on (default 300)")
    ap.add_argument("--long-distil", type=int, default=600, help="website-length texts to distil on, from other pages (default 600)")
    ap.add_argument("--margin", type=float, default=None, help="fast-path margin z for the end-to-end runs (default: rtic's default, "
                    "the z the head's own table gives for 97%% agreement)")
    ap.add_argument("--static-firms", type=int, default=3000, help="time the static pass alone over at least this many firms "
                    "(the evaluation register repeated; default 3000)")
    ap.add_argument("--chunk-rows", type=int, default=4096)
    ap.add_argument("--work", type=Path, default=REPO / "out" / "bench_batch", help="scratch folder (default out/bench_batch)")
    ap.add_argument("--skip-naive", action="store_true", help="leave out the naive baseline at full scale")
    ap.add_argument("--skip-full", action="store_true", help="leave out the full-scale part")
    args = ap.parse_args()
    if SHARED is None:
        raise SystemExit("needs ../shared/data (techstars/companies.csv and wcxb-dev/)")
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    home = work / "home"
    base_env = {"RTIC_HOME": str(home)}
    if subprocess.run([sys.executable, "-m", "rtic.cli", "train", "--if-missing"], cwd=REPO, env={**os.environ, **base_env}, capture_output=True).returncode:
        raise SystemExit("training the seed model failed")
    os.environ["RTIC_HOME"] = str(home)
    from rtic.mlops import registry
    from rtic.config import Settings

    settings = Settings.from_env()
    clf = registry.open_model(None, settings).classifier
    thresholds = {s: float(np.log(t / (1 - t))) for s, t in zip(clf.sector_ids, clf.thresholds_)}

    texts = pd.read_csv(SHARED / "techstars" / "companies.csv", dtype=str, keep_default_na=False)["text"]
    texts = texts[texts.str.strip() != ""].drop_duplicates().sample(frac=1.0, random_state=0).reset_index(drop=True)
    short_eval, short_distil = texts.head(args.sample).tolist(), texts.iloc[args.sample : args.sample + args.distil].tolist()
    pages = [json.loads(p.read_text())["ground_truth"]["main_content"] for p in sorted((SHARED / "wcxb-dev" / "ground-truth").glob("*.json"))]
    pages = [p for p in pages if p.strip()]

    # Build the static table once, outside the timings (it is per installation, not per run).
    subprocess.run([sys.executable, "-m", "rtic.cli", "fastpath", "build"], cwd=REPO, env={**os.environ, **base_env}, capture_output=True, check=True)
    # Website-length texts, twice: distil on firms made from one half of the pages, evaluate on firms made
    # from the other half, then the halves swapped; distillation and evaluation never share a page.
    halves = {"long-a": (pages[0::2], pages[1::2]), "long-b": (pages[1::2], pages[0::2])}
    runs = [measure_kind(name, long_texts(args.long_distil, fit, seed=1), long_texts(args.long_sample, held, seed=2), args, work, base_env, thresholds)
            for name, (fit, held) in halves.items()]
    pooled("long", runs)
    results = {"short": measure_kind("short", short_distil, short_eval, args, work, base_env, thresholds)}
    if args.skip_full:
        return
    # The full-scale part runs on short texts: their head back in place.
    head_json = sorted((home / "static").glob("head-*.json"))[-1]
    for suffix in (".joblib", ".json"):
        shutil.copy(work / f"head_short{suffix}", head_json.with_suffix(suffix))
    texts = pd.Series(short_eval)
    rate_t, esc = pooled_rate([results["short"]], "t"), results["short"]["escalated"] / results["short"]["n"]
    print(f"\n== full scale: {args.rows:,} firms (the short evaluation texts repeated, embedding cache warm from that run; measured)")
    big = work / f"register_{args.rows}.csv"
    if not big.exists():
        reps = -(-args.rows // len(texts))
        rows = pd.DataFrame({"text": pd.concat([texts] * reps, ignore_index=True).head(args.rows)})
        rows.insert(0, "firm_id", [f"{i:08d}" for i in range(len(rows))])
        rows.to_csv(big, index=False)
    warm = {**base_env, "RTIC_EMBEDDING_CACHE": str(work / "cache_t_short.sqlite")}
    results = {}  # from here on: the full-scale runs
    for mode in (["naive"] if not args.skip_naive else []) + ["stream", "fast"]:
        out = work / f"big_{mode}.parquet"
        for p in out.parent.glob(f"big_{mode}.*"):
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
        results[mode] = r = run_engine(mode, big, out, warm, args.chunk_rows, margin=args.margin)
        print(f"{mode:<7}: {args.rows / r['seconds']:8.0f} firms/s  peak RSS {r['peak_rss_mib']:7.0f} MiB  ({r['seconds']:.0f} s)"
              + (f"  {r['escalated'] / args.rows:.1%} re-scored" if mode == "fast" else ""))
    if "naive" in results:
        n, s = results["naive"], results["stream"]
        print(f"streaming / naive: throughput {n['seconds'] / s['seconds']:.2f}x, peak RSS {s['peak_rss_mib'] / n['peak_rss_mib']:.2f}x")
    print(f"fast / streaming (warm cache): throughput {results['stream']['seconds'] / results['fast']['seconds']:.2f}x")

    print("\n== projections for new short texts at full scale (not measured at this scale)")
    static_rate = args.rows / results["fast"]["seconds"]  # static head + engine, escalations free from the warm cache
    per_firm_t = 1 / rate_t  # measured on the sample through the streaming engine, so it includes the engine
    per_firm_f = 1 / static_rate + esc / rate_t
    print(f"transformer only: {1 / per_firm_t:,.1f} firms/s -> 5M firms in {5e6 * per_firm_t / 3600:,.1f} h")
    print(f"fast path ({esc:.1%} re-scored): {1 / per_firm_f:,.0f} firms/s -> 5M firms in {5e6 * per_firm_f / 3600:,.1f} h "
          f"({per_firm_t / per_firm_f:.0f}x the transformer)")


if __name__ == "__main__":
    main()
