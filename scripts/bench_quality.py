"""Label quality on the text-grounded gold sets, side by side in one run.

The yardstick (../shared/data/gold/, labelled against gold/LABELLING_GUIDE.md):
- techstars_gold500: 500 real company descriptions; per-sector precision/recall/F1, macro-F1 over the
  sectors with at least 10 gold positives, micro-F1, and how many of the firms in no sector get one;
- wcxb_dev_gold500: 500 real business web pages run through the project's own extractor (as a crawl
  stores them); the share of the ordinary pages (no sector) that get any sector, per sector, and the
  recall of the sector pages' gold sectors.
From both, the precision a register would see per sector: Bayes' rule with the sector's recall on real
firms, its false-positive rate on ordinary pages and the taxonomy's expected_share.

Methods, all trained on the same labelled file (default: the seed data):
- `champion`: the registered model (`--model`, default the champion in RTIC_HOME), if there is one;
- `retrained`: `rtic train` exactly as a user runs it (no outer CV), into a scratch registry;
- TF-IDF + LR and MiniLM + LR baselines (balanced logistic regression per sector, threshold 0.5).

Usage:  .venv/bin/python scripts/bench_quality.py [--labels FILE] [--model URI] [--skip-retrain] [--encoder-model NAME]
About 10 minutes on 2 cores the first time (embedding the gold texts and the seed data), a few minutes
once the embedding cache holds them.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from rtic import config
from rtic.config import DEFAULT_SEED_LABELS, Settings
from rtic.contracts import assigned_column, probability_column
from rtic.crawl.crawler import analyse_page
from rtic.embed.encoder import ENCODER_MODELS, Encoder
from rtic.labels import read_labels
from rtic.model.evaluation import macro_over, precision_at_share, sector_report
from rtic.taxonomy import load_taxonomy

REPO = Path(__file__).resolve().parents[1]
_CANDIDATES = (REPO.parent / "shared" / "data", Path("/work/shared/data"))
SHARED = next((p for p in _CANDIDATES if (p / "gold").is_dir()), _CANDIDATES[0])
MIN_GOLD_POSITIVES = 10


def label_matrix(sectors: pd.Series, sector_ids: list[str]) -> np.ndarray:
    Y = np.zeros((len(sectors), len(sector_ids)), dtype=bool)
    for i, cell in enumerate(sectors):
        for s in filter(None, (part.strip() for part in str(cell).split("|"))):
            Y[i, sector_ids.index(s)] = True
    return Y


def load_gold(sector_ids: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    gold = SHARED / "gold"
    if not gold.is_dir():
        print(f"shared gold data not found: {gold}", file=sys.stderr)
        raise SystemExit(2)
    firms = pd.read_csv(gold / "techstars_gold500.csv", dtype=str, keep_default_na=False)
    pages = pd.read_csv(gold / "wcxb_dev_gold500.csv", dtype=str, keep_default_na=False)
    # Each page through the project's own extractor, exactly as the crawler stores a page's text.
    pages["text"] = [analyse_page(gzip.open(SHARED / "wcxb-dev" / "html" / f"{pid}.html.gz").read(), url, None)["text"]
                     for pid, url in zip(pages["page_id"], pages["url"])]
    for frame in (firms, pages):
        frame.attrs["Y"] = label_matrix(frame["sectors"], sector_ids)
    return firms, pages


def scores(name: str, firms: pd.DataFrame, pages: pd.DataFrame, assigned_firms: np.ndarray, assigned_pages: np.ndarray,
           sector_ids: list[str], shares: dict) -> dict:
    """Every figure for one method; returns the summary row and prints the per-sector table."""
    Yf, Yp = firms.attrs["Y"], pages.attrs["Y"]
    ordinary = ~Yp.any(axis=1)
    # P/R/F1 and micro from the project's own report; the false-positive rate is measured on ordinary pages instead.
    report = sector_report(Yf, assigned_firms, None, sector_ids).set_index("sector_id")
    table = report.loc[sector_ids, ["support", "precision", "recall", "f1"]].rename(columns={"support": "gold"})
    table["ordinary_fp"] = assigned_pages[ordinary].mean(axis=0)
    table["register_precision"] = [precision_at_share(r.recall, r.ordinary_fp, shares.get(s)) if r.gold else float("nan")
                                   for s, r in table.iterrows()]
    scored = table[table["gold"] >= MIN_GOLD_POSITIVES]
    micro = report.loc["micro", "f1"]
    sector_pages = ~ordinary
    summary = {
        "method": name,
        f"macro_f1 (>= {MIN_GOLD_POSITIVES})": macro_over(report.reset_index(), MIN_GOLD_POSITIVES),
        "micro_f1": micro,
        "none_firms_labelled": f"{int(assigned_firms[~Yf.any(axis=1)].any(axis=1).sum())}/{int((~Yf.any(axis=1)).sum())}",
        "ordinary_pages_labelled": float(assigned_pages[ordinary].any(axis=1).mean()),
        "sector_page_recall": float((assigned_pages & Yp)[sector_pages].sum() / Yp[sector_pages].sum()),
        "register_precision (median)": float(scored["register_precision"].median()),
    }
    print(f"\n{name}: techstars_gold500 per sector, false-positive rate on the {int(ordinary.sum())} ordinary wcxb pages, "
          "and the precision a register would see at the taxonomy's expected_share")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    return summary


def baselines(train_texts: list[str], Y: np.ndarray, encoder: Encoder, eval_texts: dict[str, list[str]]) -> dict[str, dict[str, np.ndarray]]:
    """TF-IDF + LR and MiniLM + LR, one balanced logistic regression per sector, threshold 0.5."""
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, stop_words="english").fit(train_texts)
    features = {
        "TF-IDF + LR": (vectorizer.transform(train_texts), {k: vectorizer.transform(v) for k, v in eval_texts.items()}, 10.0),
        "MiniLM + LR": (encoder.encode(train_texts), {k: encoder.encode(v) for k, v in eval_texts.items()}, 1.0),
    }
    out = {}
    for name, (X, evals, C) in features.items():
        out[name] = {k: np.zeros((Xe.shape[0], Y.shape[1]), dtype=bool) for k, Xe in evals.items()}
        for j in range(Y.shape[1]):
            if Y[:, j].min() == Y[:, j].max():
                continue
            model = LogisticRegression(C=C, class_weight="balanced", max_iter=3000, solver="liblinear").fit(X, Y[:, j])
            for k, Xe in evals.items():
                out[name][k][:, j] = model.predict_proba(Xe)[:, 1] >= 0.5
    return out


def registered_predictions(model_uri: str | None, settings: Settings, eval_texts: dict[str, list[str]], sector_ids: list[str]):
    from rtic.mlops import registry

    loaded = registry.open_model(model_uri, settings)
    ref, model = loaded.ref, loaded.pyfunc
    out = {}
    for k, texts in eval_texts.items():
        pred = model.predict(pd.DataFrame({"firm_id": [str(i) for i in range(len(texts))], "text": texts}))
        out[k] = np.column_stack([pred[assigned_column(s)].to_numpy(bool) for s in sector_ids])
        out[k + "_proba"] = np.column_stack([pred[probability_column(s)].to_numpy(float) for s in sector_ids])
    return ref, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=Path, default=DEFAULT_SEED_LABELS, help="training labels for the retrained model and baselines")
    parser.add_argument("--model", help="registered model to score as `champion` (default: the champion in RTIC_HOME)")
    parser.add_argument("--skip-champion", action="store_true")
    parser.add_argument("--skip-retrain", action="store_true")
    parser.add_argument("--encoder-model", default=config.ENCODER_MODEL, choices=list(ENCODER_MODELS),
                        help="the encoder of the retrained model (the baselines always use MiniLM)")
    args = parser.parse_args()
    settings = Settings.from_env()
    taxonomy = load_taxonomy()
    sector_ids = taxonomy.sector_ids
    shares = {s.id: s.expected_share for s in taxonomy.sectors}
    started = time.perf_counter()
    firms, pages = load_gold(sector_ids)
    eval_texts = {"firms": list(firms["text"]), "pages": list(pages["text"])}
    encoder = Encoder(cache_path=settings.resolved_embedding_cache, use_bf16=settings.use_bf16)
    encoder.encode(eval_texts["firms"] + eval_texts["pages"])
    if args.encoder_model != encoder.model.name and not args.skip_retrain:
        Encoder(cache_path=settings.resolved_embedding_cache, use_bf16=settings.use_bf16, model=args.encoder_model).encode(
            eval_texts["firms"] + eval_texts["pages"])
    print(f"gold sets loaded and embedded in {time.perf_counter() - started:.0f}s "
          f"({len(firms)} firms, {len(pages)} pages; embedding cache {settings.resolved_embedding_cache})", flush=True)

    summaries = []
    if not args.skip_champion:
        from rtic.errors import RticError

        try:
            ref, pred = registered_predictions(args.model, settings, eval_texts, sector_ids)
            summaries.append(scores(f"champion ({ref.name} v{ref.version})", firms, pages, pred["firms"], pred["pages"], sector_ids, shares))
        except RticError as exc:
            print(f"\nchampion: skipped ({exc})")
    if not args.skip_retrain:
        from rtic.model.training import train

        with tempfile.TemporaryDirectory() as scratch:
            # A scratch registry, this machine's embedding cache: nothing is embedded twice.
            retrain_settings = replace(settings, home=Path(scratch), tracking_uri=None, embedding_cache=settings.resolved_embedding_cache)
            start = time.perf_counter()
            result = train(retrain_settings, labels_path=args.labels, cv=0, encoder_name=args.encoder_model)
            print(f"\nretrained on {args.labels.name} with {args.encoder_model} in {time.perf_counter() - start:.0f}s")
            _, pred = registered_predictions(None, retrain_settings, eval_texts, sector_ids)
            summaries.append(scores(f"retrained (rtic train --encoder-model {args.encoder_model}, v{result.version})", firms, pages, pred["firms"], pred["pages"], sector_ids, shares))
    labelled = read_labels(args.labels, taxonomy)
    for name, pred in baselines(labelled.texts, labelled.Y, encoder, eval_texts).items():
        summaries.append(scores(f"{name} (trained on {args.labels.name})", firms, pages, pred["firms"], pred["pages"], sector_ids, shares))
    print("\nSummary (techstars_gold500 macro over sectors with >= 10 gold positives; wcxb_dev_gold500 ordinary pages)")
    print(pd.DataFrame(summaries).set_index("method").to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"\ntotal {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
