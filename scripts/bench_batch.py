"""Benchmark batch classification side by side in one run: the exact path's engines (torch fp32, torch bf16,
int8 ONNX) on the gold sets, then transformer only vs the fast path per text kind, then naive vs streaming vs fast
path at full scale.

    .venv/bin/python scripts/bench_batch.py                      # default: 1,000,000-row register at full scale
    .venv/bin/python scripts/bench_batch.py --rows 100000 --long-sample 200 --long-distil 400 --sample 1000 --distil 1000
    .venv/bin/python scripts/bench_batch.py --skip-full          # only the engines and the per-kind measurements
    .venv/bin/python scripts/bench_batch.py --home models --skip-fast   # only the engines, on the model in models/

Texts are real, read from ../shared/data at run time (never copied into the project):

0. Engines: the gold sets (gold/techstars_gold500 descriptions; gold/wcxb_dev_gold500 pages run through the
   project's own extractor, rtic.crawl.crawler.analyse_page, as a crawl stores them) and --engine-long
   website-length firms. Per engine: the weights' load time apart, then steady-state firms/s of the model's whole
   predict (embedding, TF-IDF, neighbours, heads; no cache) on all cores and on one (a Spark executor core),
   cosine of its vectors to fp32's and the firms whose whole label set differs from fp32's and from bf16's.
1. Website-length texts ("long"): each firm joins 1-3 distinct business pages' main text from
   wcxb-dev/ground-truth (`ground_truth.main_content`), as a crawl joins home, about and product pages.
   The head is distilled (`rtic fastpath build --register`) on firms made from the even-numbered pages
   and evaluated on firms made from the odd-numbered pages ("long-a"), then the other way round ("long-b"):
   distillation and evaluation never share a page; both halves are then pooled.
2. Short texts: Techstars one-paragraph descriptions (techstars/companies.csv); distilled on one set of
   firms, evaluated on others.

For each kind, with cold embedding caches, the evaluation register is classified by the streaming engine
with the transformer only (the default engine, and fp32: the baseline), by the static pass alone (timed over
the register repeated to --static-firms firms) and by the fast path at its default (or --risk); it prints
firms/s, the share re-scored, agreement with the transformer-only labels (share of firms whose whole label
set is identical, share of (firm, sector) decisions, F1 on the transformer's positive labels), and the head's
own cross-fitted table (predicted) beside the same risk thresholds on the held-out firms (measured), with
throughput projected from the measured rates and hours for 5M firms.

3. Full scale (`--rows` firms: the short evaluation texts repeated under distinct firm ids, embedding
   cache warm from step 2): naive baseline (read everything, embed, predict in one go), the streaming
   engine, and the fast path, each in its own process so its peak RSS is its own. With a warm cache these
   measure each engine's own overhead and memory; the transformer's cost is taken from step 2.

Each engine is timed from the moment its model (and fast head) is loaded to the end of its output, less the
one-off lazy load of the transformer's weights (steady-state rates, as over millions of firms); the load
times are printed apart. Uses its own RTIC_HOME under --work (trains the seed model there once if needed), or --home.
The load average is printed first: rates measured one after another compare only on a quiet machine.
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

import joblib
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


# The children: each prints one JSON line with its own peak RSS. Not ru_maxrss: Linux carries it over fork and exec, so
# a child would report at least this benchmark's own RSS at the moment it was started. VmHWM is the peak of the
# process's own memory since its exec.
CHILD = r"""
import json, os, sys, threading, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from rtic.config import Settings

def high_water_mib(pid="self"):
    try:
        with open(f"/proc/{{pid}}/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):  # the process has gone
        return 0.0

# This process's multiprocessing children (the static-pass workers and the resource tracker). Others are left out: a
# short-lived subprocess read between its fork and its exec would show this process's own memory.
def worker_pids():
    pids = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{{task}}/children") as f:
                pids.update(f.read().split())
        except OSError:  # a thread that ended since the listing
            pass
    def is_worker(pid):
        try:
            with open(f"/proc/{{pid}}/cmdline", "rb") as f:
                return b"multiprocessing" in f.read()
        except OSError:
            return False
    return {{pid for pid in pids if is_worker(pid)}}

if __name__ == "__main__":  # spawned worker processes import this file again: they must not re-run it
    # The fast path's static-pass workers (and multiprocessing's helper) are sampled while they live: their VmHWM
    # only grows, so the last reading of each is its peak to within the sampling interval.
    children, finished = {{}}, threading.Event()
    def sample_children():
        while not finished.wait(0.2):
            for pid in worker_pids():
                children[pid] = max(children.get(pid, 0.0), high_water_mib(pid))
    sampler = threading.Thread(target=sample_children, daemon=True)
    sampler.start()
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
        risk = {{"static": 1.0, "static1": 1.0}}.get(mode, float(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[5] else None)
        import logging
        ready = []  # the first progress line comes once the model (and fast head) are loaded: time the firms from there
        class FirstLine(logging.Handler):
            def emit(self, record):
                if not ready:
                    ready.append(time.monotonic())
        logging.getLogger("rtic.score.batch").addHandler(FirstLine())
        logging.getLogger("rtic.score.batch").setLevel(logging.INFO)
        from rtic import config
        # static: the static pass shared by one worker per core; static1: in this one process; fast: rtic's default
        workers = {{"static": max(2, os.cpu_count() or 1), "static1": 1}}.get(mode, config.FAST_WORKERS)
        r = classify_register(register, out, settings, chunk_rows=int(sys.argv[4]), fast=(mode in ("fast", "static", "static1")), fast_risk=risk,
                              restart=True, fast_workers=workers)
        extra = {{"escalated": r.n_escalated, "classified": r.n_classified, "load_seconds": ready[0] - t, "risk": r.fast_risk,
                  "workers": workers if mode != "stream" else 0}}
        t = ready[0]
    seconds = time.monotonic() - t - loading[0]
    finished.set()
    sampler.join()  # so that `children` is not changed while it is read
    print(json.dumps({{"seconds": seconds, "weights_load_seconds": loading[0],
                      "peak_rss_mib": high_water_mib(), "children_peak_rss_mib": sorted(children.values(), reverse=True), **extra}}))
"""


def run_engine(mode: str, register: Path, out: Path, env: dict, chunk_rows: int, risk: float | None = None) -> dict:
    script = out.parent / "bench_child.py"
    script.write_text(CHILD.format(repo=str(REPO)))
    wall, stdout = child([str(script), mode, str(register), str(out), str(chunk_rows), "" if risk is None else str(risk)], env)
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


def wide(labels: pd.DataFrame, column: str, sectors: list[str]) -> np.ndarray:
    """Long labels (sorted by firm, sector) -> firms x sectors matrix of one column."""
    return labels[column].to_numpy().reshape(-1, len(sectors))


def risk_table(run: dict, thresholds: dict[str, float]) -> None:
    """The head's own cross-fitted table (predicted) against the same risk thresholds on the held-out firms (measured).

    A re-scored firm gets exactly the transformer's labels (tested), so re-scored share and agreement at every
    threshold are measured from the static run and the transformer run; throughput is projected from the two
    measured rates.
    """
    from rtic.score.fastpath import change_risk, label_agreement, rescore_mask

    lt, ls, head = run["lt"], run["ls"], run["head"]
    sectors = sorted(head.sector_ids)  # the long labels are sorted by (firm, sector)
    sigma = dict(zip(head.sector_ids, head.sigma))
    y_t, y_s = wide(lt, "assigned", sectors), wide(ls, "assigned", sectors)
    risk = change_risk(wide(ls, "logit", sectors), np.array([thresholds[k] for k in sectors]), np.array([sigma[k] for k in sectors]))
    rate_t, rate_s, rate_32 = run["firms"]["t"] / run["seconds"]["t"], run["firms"]["s"] / run["seconds"]["s"], run["rate_fp32"]
    print("  the head's cross-fitted table (predicted, on its distillation sample) against held-out firms (measured), per risk threshold;")
    print(f"  firms/s projected as 1/(1/{rate_s:,.0f} + share/{rate_t:.1f}); x fp32 = against the fp32 transformer ({rate_32:.1f} firms/s)")
    print("    risk >=   predicted: re-scored  firms    | measured: re-scored  firms    decisions | firms/s  x fp32  x default  5M firms")
    for row in head.validation:
        near = rescore_mask(risk, row["risk"])
        cells, firms = label_agreement(y_t, np.where(near[:, None], y_t, y_s))
        rate = 1 / (1 / rate_s + near.mean() / rate_t)
        print(f"    {row['risk']:8.3g}  {row['rescored']:17.1%}  {row['firm_agreement']:7.2%}  | {near.mean():18.1%}  {firms:7.2%}  {cells:9.2%} "
              f"| {rate:7,.0f}  {rate / rate_32:5.1f}x  {rate / rate_t:7.1f}x  {5e6 / rate / 3600:6.1f} h")


def pooled_rate(runs: list[dict], key: str) -> float:
    """Firms per second of one pass ("t" transformer, "s" static alone, "f" fast path) over all the runs."""
    return sum(r["firms"][key] for r in runs) / sum(r["seconds"][key] for r in runs)


def measure_kind(kind: str, distil: list[str], evaluation: list[str], args, work: Path, base_env: dict, thresholds: dict[str, float]) -> dict:
    """Distil a head on `distil` (a sample of that register), then classify `evaluation` four ways with cold caches:
    transformer only (default engine; and fp32, the issue's baseline), static pass alone, fast path at its default.

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
    shutil.copy(Path(base_env["RTIC_HOME"]) / "embedding_cache.sqlite", work / f"cache_distil_{kind}.sqlite")
    env = {**base_env, "RTIC_EMBEDDING_CACHE": str(work / f"cache_distil_{kind}.sqlite")}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "rtic.cli", "fastpath", "build", "--register", str(distil_csv), "--sample", str(len(distil))],
                          cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"fastpath build failed:\n{proc.stderr[-3000:]}")
    print(f"fastpath build --register ({len(distil):,} firms, transformer included): {time.monotonic() - start:.0f} s")
    head_json = sorted((Path(base_env["RTIC_HOME"]) / "static").glob("head-*.json"))[-1]
    for suffix in (".joblib", ".json"):
        shutil.copy(head_json.with_suffix(suffix), work / f"head_{kind}{suffix}")
    head = joblib.load(work / f"head_{kind}.joblib")

    env_t = {**base_env, "RTIC_EMBEDDING_CACHE": str(work / f"cache_t_{kind}.sqlite")}
    env_32 = {**base_env, "RTIC_EMBEDDING_CACHE": str(work / f"cache_32_{kind}.sqlite"), "RTIC_BF16": "0"}
    env_f = {**base_env, "RTIC_EMBEDDING_CACHE": str(work / f"cache_f_{kind}.sqlite")}
    t = run_engine("stream", eval_csv, work / f"{kind}_transformer.parquet", env_t, 512)
    t32 = run_engine("stream", eval_csv, work / f"{kind}_fp32.parquet", env_32, 512) if not args.skip_fp32 else None
    s = run_engine("static", static_csv, work / f"{kind}_static.parquet", env_f, 512)
    s1 = run_engine("static1", static_csv, work / f"{kind}_static1.parquet", env_f, 512)
    f = run_engine("fast", eval_csv, work / f"{kind}_fast.parquet", env_f, 512, risk=args.risk)
    f["risk_note"] = f"risk>={f['risk']:.3g}" + ("" if args.risk is not None else " (default)")
    n = len(evaluation)
    rate_t, rate_s, rate_f = n / t["seconds"], n * repeats / s["seconds"], n / f["seconds"]
    rate_s1 = n * repeats / s1["seconds"]
    rate_32 = n / t32["seconds"] if t32 else float("nan")
    read = lambda name: pd.read_parquet(work / name).sort_values(["firm_id", "sector_id"]).reset_index(drop=True)  # noqa: E731
    lt, lf = read(f"{kind}_transformer.parquet"), read(f"{kind}_fast.parquet")
    ls = read(f"{kind}_static.parquet")
    ls = ls[ls["firm_id"].str.slice(len(f"S{kind}-")).astype(int) < n].reset_index(drop=True)  # the first copy: same firms as lt
    ls["firm_id"] = lt["firm_id"]
    ls["logit"] = logits(ls)
    cell, firm = agreement(lt, lf["assigned"])
    print(f"transformer only, default engine ({'bf16' if cpu_bf16() else 'fp32'} here): {rate_t:7.1f} firms/s  (measured, {t['seconds']:.0f} s; "
          f"model load {t['load_seconds']:.1f} s and weights load {t['weights_load_seconds']:.1f} s apart)")
    if t32:
        cell32, firm32 = agreement(lt, read(f"{kind}_fp32.parquet")["assigned"])
        print(f"transformer only, fp32 (the baseline)       : {rate_32:7.1f} firms/s  (measured, {t32['seconds']:.0f} s); its labels against the "
              f"default engine's: {firm32:.2%} of firms, {cell32:.2%} of decisions identical")
    print(f"static pass alone                           : {rate_s:7.1f} firms/s  (measured over {n * repeats:,} firms, {s['seconds']:.1f} s) "
          f"= {rate_s / rate_32:.1f}x fp32, {rate_s / rate_t:.1f}x the default; {s['workers']} worker processes")
    print(f"static pass alone, in one process           : {rate_s1:7.1f} firms/s  ({s1['seconds']:.1f} s): the workers give "
          f"{rate_s / rate_s1:.2f}x; labels {'identical' if read(f'{kind}_static1.parquet')['assigned'].equals(read(f'{kind}_static.parquet')['assigned']) else 'DIFFERENT'}")
    print(f"fast path, {f['risk_note']:<22}         : {rate_f:7.1f} firms/s  (measured, {f['seconds']:.0f} s; {f['escalated'] / n:.1%} re-scored) "
          f"= {rate_f / rate_32:.1f}x fp32, {rate_f / rate_t:.1f}x the default")
    predicted = next((row for row in head.validation if row["risk"] == f["risk"]), None)
    print(f"  agreement with transformer-only labels (default engine), measured on the held-out firms: {firm:.2%} of firms identical, "
          f"{cell:.2%} of (firm, sector) decisions, F1 on the transformer's positive labels {positive_f1(lt, lf['assigned']):.3f}"
          + (f"; the head's table predicted {predicted['firm_agreement']:.2%} of firms at {predicted['rescored']:.1%} re-scored "
             f"(95% lower bound {predicted['firm_agreement_low']:.2%})" if predicted else ""))
    run = {"n": n, "firms": {"t": n, "s": n * repeats, "f": n}, "seconds": {"t": t["seconds"], "s": s["seconds"], "f": f["seconds"]},
           "escalated": f["escalated"], "lt": lt, "ls": ls, "lf": lf, "head": head, "rate_fp32": rate_32,
           "seconds_fp32": t32["seconds"] if t32 else float("nan")}
    risk_table(run, thresholds)
    print(f"  5M firms: transformer only {5e6 / rate_t / 3600:,.1f} h (fp32 {5e6 / rate_32 / 3600:,.1f} h); fast path {f['risk_note']} "
          f"(measured rate) {5e6 / rate_f / 3600:,.1f} h")
    return run


def cpu_bf16() -> bool:
    from rtic.embed.encoder import cpu_has_bf16

    return os.environ.get("RTIC_BF16", "1" if cpu_has_bf16() else "0") not in ("0", "false", "no")


def pooled(kind: str, runs: list[dict]) -> None:
    """Both halves of a kind together: every evaluation firm once, rates pooled over the runs."""
    lt = pd.concat([r["lt"] for r in runs], ignore_index=True)
    lf = pd.concat([r["lf"] for r in runs], ignore_index=True)
    n, rate_t = sum(r["n"] for r in runs), pooled_rate(runs, "t")
    rate_s, rate_f = pooled_rate(runs, "s"), pooled_rate(runs, "f")
    rate_32 = n / sum(r["seconds_fp32"] for r in runs)
    cell, firm = agreement(lt, lf["assigned"])
    print(f"\n== {kind} texts, both halves pooled ({n:,} evaluation firms, {len(lt):,} decisions)")
    print(f"transformer only {rate_t:.1f} firms/s (fp32 {rate_32:.1f}); static pass alone {rate_s:,.0f} firms/s = {rate_s / rate_32:.1f}x fp32; "
          f"fast path at the default {rate_f:,.1f} firms/s = {rate_f / rate_32:.1f}x fp32, {rate_f / rate_t:.1f}x the default "
          f"({sum(r['escalated'] for r in runs) / n:.1%} re-scored): {firm:.2%} of firms identical, {cell:.2%} of decisions, "
          f"positive F1 {positive_f1(lt, lf['assigned']):.3f}")
    print(f"  5M firms: transformer only {5e6 / rate_t / 3600:,.1f} h (fp32 {5e6 / rate_32 / 3600:,.1f} h); fast path at the default "
          f"(measured rate) {5e6 / rate_f / 3600:,.1f} h")


# -- 0. the exact path's engines: torch fp32 (the baseline), torch bf16 (the default here), int8 ONNX ----
ENGINE_NAMES = {"fp32": ("torch", False), "bf16": ("torch", True), "int8": ("onnx-int8", False)}


class Recording:
    """An encoder that keeps the vectors it last returned (to compare engines on the very vectors the model used)."""

    def __init__(self, inner):
        self.inner, self.vectors = inner, None

    def encode(self, texts):
        self.vectors = self.inner.encode(texts)
        return self.vectors


def gold_texts() -> dict[str, list[str]]:
    """The shared gold sets' texts: Techstars descriptions, and the WCXB pages through the project's own extractor."""
    import gzip

    from rtic.crawl.crawler import analyse_page

    gold = SHARED / "gold"
    firms = pd.read_csv(gold / "techstars_gold500.csv", dtype=str, keep_default_na=False)
    pages = pd.read_csv(gold / "wcxb_dev_gold500.csv", dtype=str, keep_default_na=False)
    texts = [analyse_page(gzip.open(SHARED / "wcxb-dev" / "html" / f"{pid}.html.gz").read(), url, None)["text"]
             for pid, url in zip(pages["page_id"], pages["url"])]
    return {"techstars_gold500": firms["text"].tolist(), "wcxb_dev_gold500": texts}


def measure_engines(clf, settings, sets: dict[str, list[str]], long_rate_texts: list[str], single_texts: int) -> dict:
    """Per engine: weights load (apart), steady-state firms/s of the model's whole predict (embedding, TF-IDF,
    neighbours, heads; cold cache) on each set and on website-length firms, on all cores and on one; cosine of its
    vectors to fp32 and firms whose label set differs from fp32's and from bf16's, per gold set."""
    import copy

    import torch

    from rtic.embed.encoder import Encoder

    results = {}
    all_sets = {**sets, "website-length": long_rate_texts}
    spec = clf.encoder.model  # the encoder the model was trained with
    for name, (engine, bf16) in ENGINE_NAMES.items():
        encoder = Encoder(use_bf16=bf16, engine=engine, int8_dir=settings.int8_dir, batch_size=settings.batch_size, model=spec)
        start = time.monotonic()
        encoder._load()  # the one-off load (and, for int8, the digest check), timed apart
        model = copy.copy(clf)
        model.encoder = Recording(encoder)
        model.predict_proba(["warm-up text for the first call"])
        row = {"load_s": time.monotonic() - start, "rate": {}, "labels": {}, "vectors": {}}
        for set_name, texts in all_sets.items():
            start = time.monotonic()
            proba = model.predict_proba(texts)
            row["rate"][set_name] = len(texts) / (time.monotonic() - start)
            row["labels"][set_name], row["vectors"][set_name] = proba >= clf.thresholds_, model.encoder.vectors
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        one = Encoder(use_bf16=bf16, engine=engine, int8_dir=settings.int8_dir, batch_size=settings.batch_size, model=spec)
        if engine == "onnx-int8":
            from rtic.embed.int8 import Int8SentenceModel, int8_path

            one._model = Int8SentenceModel(int8_path(settings.int8_dir, spec), threads=1, model=spec)
        model.encoder = one
        model.predict_proba(["warm-up text for the first call"])
        start = time.monotonic()
        model.predict_proba(long_rate_texts[:single_texts])
        row["rate_one_core_long"] = single_texts / (time.monotonic() - start)
        torch.set_num_threads(threads)
        results[name] = row
    return results


def report_engines(results: dict, sets: dict[str, list[str]], long_median: int) -> None:
    fp32, bf16 = results["fp32"], results["bf16"]
    print(f"\n== exact path: engines side by side (the model's whole predict, cold cache; load apart; website-length = "
          f"{len(next(iter(results.values()))['labels']['website-length'])} firms of 1-3 WCXB pages, median {long_median:,} characters)")
    names = [*sets, "website-length"]
    print("  firms/s (x fp32)  engine  load s  " + "  ".join(f"{s:>24}" for s in names) + "  website-length, 1 core")
    for name, row in results.items():
        rates = "  ".join(f"{row['rate'][s]:16.1f} ({row['rate'][s] / fp32['rate'][s]:4.1f}x)" for s in names)
        print(f"                    {name:<6}  {row['load_s']:6.1f}  {rates}  {row['rate_one_core_long']:15.2f} "
              f"({row['rate_one_core_long'] / fp32['rate_one_core_long']:4.1f}x)")
    print("  agreement with fp32 (and with bf16) on the gold sets: cosine of the vectors; firms whose whole label set differs")
    for name, row in results.items():
        for s in [*sets, "website-length"]:
            cos = (row["vectors"][s] * fp32["vectors"][s]).sum(axis=1)  # unit vectors
            diff32 = int((row["labels"][s] != fp32["labels"][s]).any(axis=1).sum())
            diffbf = int((row["labels"][s] != bf16["labels"][s]).any(axis=1).sum())
            n = len(row["labels"][s])
            print(f"    {name:<5} {s:<18}: cosine min {cos.min():.4f}, 1st pct {np.percentile(cos, 1):.4f}, mean {cos.mean():.5f}; "
                  f"firms changed vs fp32 {diff32}/{n} ({diff32 / n:.1%}), vs bf16 {diffbf}/{n}; "
                  f"decisions changed vs fp32 {int((row['labels'][s] != fp32['labels'][s]).sum())}")
    for name, row in results.items():
        rate = row["rate"]["website-length"]
        print(f"  5M website-length firms, {name}: {5e6 / rate / 3600:,.1f} h on this machine; "
              f"{5e6 / row['rate_one_core_long'] / 3600:,.0f} executor-core hours (measured on one core)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="firms in the full-scale register (default 1,000,000)")
    ap.add_argument("--sample", type=int, default=2000, help="short texts to evaluate on (default 2000)")
    ap.add_argument("--distil", type=int, default=1500, help="short texts to distil on, other firms (default 1500)")
    ap.add_argument("--long-sample", type=int, default=300, help="website-length texts to evaluate on (default 300)")
    ap.add_argument("--long-distil", type=int, default=600, help="website-length texts to distil on, from other pages (default 600)")
    ap.add_argument("--long-halves", type=int, choices=(0, 1, 2), default=2, help="website-length: both halves (default), only the first, or none (0)")
    ap.add_argument("--risk", type=float, default=None, help="fast-path risk threshold for the end-to-end runs (default: rtic's default, "
                    "the threshold the head's own table gives for 97%% of firms identical)")
    ap.add_argument("--static-firms", type=int, default=3000, help="time the static pass alone over at least this many firms "
                    "(the evaluation register repeated; default 3000)")
    ap.add_argument("--gold-firms", type=int, default=500, help="firms of each gold set the engines are compared on (default all 500)")
    ap.add_argument("--engine-long", type=int, default=100, help="website-length firms the engines are timed on (default 100)")
    ap.add_argument("--engine-one-core", type=int, default=40, help="website-length firms the engines are timed on with one thread (default 40)")
    ap.add_argument("--chunk-rows", type=int, default=4096)
    ap.add_argument("--work", type=Path, default=REPO / "out" / "bench_batch", help="scratch folder (default out/bench_batch)")
    ap.add_argument("--home", type=Path, help="RTIC_HOME with the model to measure (default WORK/home, where the seed model is trained if missing)")
    ap.add_argument("--skip-engines", action="store_true", help="leave out the engines part (fp32 / bf16 / int8 on the gold sets)")
    ap.add_argument("--skip-fast", action="store_true", help="leave out the fast-path part (per text kind)")
    ap.add_argument("--skip-fp32", action="store_true", help="in the fast-path part, leave out the fp32 transformer-only runs")
    ap.add_argument("--skip-naive", action="store_true", help="leave out the naive baseline at full scale")
    ap.add_argument("--skip-full", action="store_true", help="leave out the full-scale part")
    args = ap.parse_args()
    if SHARED is None:
        raise SystemExit("needs ../shared/data (techstars/companies.csv, wcxb-dev/ and gold/)")
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    home = (args.home or work / "home").resolve()
    base_env = {"RTIC_HOME": str(home)}
    if subprocess.run([sys.executable, "-m", "rtic.cli", "train", "--if-missing"], cwd=REPO, env={**os.environ, **base_env}, capture_output=True).returncode:
        raise SystemExit("training the seed model failed")
    os.environ["RTIC_HOME"] = str(home)
    from rtic.mlops import registry
    from rtic.config import Settings

    settings = Settings.from_env()
    print(f"load average at start (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores: "
          "rates measured one after another are comparable only when it stays low")
    started = time.monotonic()
    loaded = registry.open_model(None, settings)
    clf = loaded.classifier
    print(f"model {loaded.ref.uri} opened in {time.monotonic() - started:.1f} s (registry, digests, pickles; the encoder's weights load apart)")
    thresholds = {s: float(np.log(t / (1 - t))) for s, t in zip(clf.sector_ids, clf.thresholds_)}  # threshold logits

    texts = pd.read_csv(SHARED / "techstars" / "companies.csv", dtype=str, keep_default_na=False)["text"]
    texts = texts[texts.str.strip() != ""].drop_duplicates().sample(frac=1.0, random_state=0).reset_index(drop=True)
    short_eval, short_distil = texts.head(args.sample).tolist(), texts.iloc[args.sample : args.sample + args.distil].tolist()
    pages = [json.loads(p.read_text())["ground_truth"]["main_content"] for p in sorted((SHARED / "wcxb-dev" / "ground-truth").glob("*.json"))]
    pages = [p for p in pages if p.strip()]

    if not args.skip_engines:
        subprocess.run([sys.executable, "-m", "rtic.cli", "encoder", "build", "--model", clf.encoder.model.name], cwd=REPO, env={**os.environ, **base_env}, capture_output=True, check=True)
        sets = {name: texts[: args.gold_firms] for name, texts in gold_texts().items()}
        long_rate = long_texts(args.engine_long, pages, seed=3)
        report_engines(measure_engines(clf, settings, sets, long_rate, args.engine_one_core), sets, int(np.median([len(t) for t in long_rate])))
    if args.skip_fast:
        return

    # Build the static table once, outside the timings (it is per installation, not per run). Only the table: a plain
    # `fastpath build` would also distil a head on the model's training texts, which every kind below replaces.
    from rtic.score.fastpath import build_static_model

    build_static_model(settings, model=clf.encoder.model)
    # Website-length texts, twice: distil on firms made from one half of the pages, evaluate on firms made
    # from the other half, then the halves swapped; distillation and evaluation never share a page.
    halves = {"long-a": (pages[0::2], pages[1::2]), "long-b": (pages[1::2], pages[0::2])}
    runs = [measure_kind(name, long_texts(args.long_distil, fit, seed=1), long_texts(args.long_sample, held, seed=2), args, work, base_env, thresholds)
            for name, (fit, held) in list(halves.items())[: args.long_halves]]
    if len(runs) > 1:
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
        results[mode] = r = run_engine(mode, big, out, warm, args.chunk_rows, risk=args.risk)
        kids = r["children_peak_rss_mib"]
        workers = (f" + child processes {' + '.join(f'{k:.0f}' for k in kids)} MiB = {r['peak_rss_mib'] + sum(kids):.0f} MiB in all"
                   if kids else "")
        print(f"{mode:<7}: {args.rows / r['seconds']:8.0f} firms/s  peak RSS {r['peak_rss_mib']:7.0f} MiB{workers}  ({r['seconds']:.0f} s"
              + (f"; start-up: model and head load {r['load_seconds']:.1f} s" if "load_seconds" in r else "") + ")"
              + (f"  {r['escalated'] / args.rows:.1%} re-scored" if mode == "fast" else ""))
    if "naive" in results:
        n, s = results["naive"], results["stream"]
        print(f"streaming / naive: throughput {n['seconds'] / s['seconds']:.2f}x, peak RSS {s['peak_rss_mib'] / n['peak_rss_mib']:.2f}x")
    print(f"fast / streaming (warm cache): throughput {results['stream']['seconds'] / results['fast']['seconds']:.2f}x")

    print("\n== projections for new short texts at full scale (rates measured above; the sum is a projection)")
    static_rate = args.rows / results["fast"]["seconds"]  # static head + engine, escalations free from the warm cache
    per_firm_t = 1 / rate_t  # measured on the sample through the streaming engine, so it includes the engine
    per_firm_f = 1 / static_rate + esc / rate_t
    print(f"transformer only: {1 / per_firm_t:,.1f} firms/s -> 5M firms in {5e6 * per_firm_t / 3600:,.1f} h")
    print(f"fast path ({esc:.1%} re-scored): {1 / per_firm_f:,.0f} firms/s -> 5M firms in {5e6 * per_firm_f / 3600:,.1f} h "
          f"({per_firm_t / per_firm_f:.0f}x the transformer)")


if __name__ == "__main__":
    main()
