"""Score rtic on the real Techstars companies (../shared/data/techstars/companies.csv).

1. `--model`: the registered model (default: the champion, trained on the team's seed data) labels every
   Techstars company; per-sector and macro F1 over the nine sectors.
2. `--cv K`: K-fold cross-validation training on Techstars itself through the project's own
   SectorClassifier, next to a TF-IDF + logistic regression baseline on the same folds.

Usage:  .venv/bin/python scripts/eval_techstars.py [--model URI] [--cv 5] [--skip-model] [--skip-cv]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold

from rtic import registry
from rtic.classifier import SectorClassifier
from rtic.config import Settings
from rtic.encoder import Encoder
from rtic.evaluation import sector_report
from rtic.labels import read_labels
from rtic.pyfunc_model import assigned_column, probability_column
from rtic.taxonomy import load_taxonomy

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "techstars" / "companies.csv"


def show(title: str, report: pd.DataFrame) -> None:
    print(f"\n{title}")
    print(report.set_index("sector_id")[["support", "predicted", "precision", "recall", "f1"]].to_string(float_format=lambda v: f"{v:.3f}"))


def score_registered_model(firms, settings: Settings, model_uri: str | None) -> pd.DataFrame:
    ref = registry.resolve(model_uri, settings)
    model = registry.load(ref, settings)
    start = time.perf_counter()
    out = model.predict(pd.DataFrame({"firm_id": firms.firm_ids, "text": firms.texts}))
    took = time.perf_counter() - start
    assigned = np.column_stack([out[assigned_column(s)] for s in firms.sector_ids])
    proba = np.column_stack([out[probability_column(s)] for s in firms.sector_ids])
    report = sector_report(firms.Y, assigned, proba, firms.sector_ids)
    show(f"registered model {ref.name} v{ref.version} on all {len(firms.texts)} Techstars firms ({took:.0f}s)", report)
    return report


def tfidf_baseline(train_texts, train_Y, test_texts) -> tuple[np.ndarray, np.ndarray]:
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, stop_words="english")
    Xtr, Xte = vec.fit_transform(train_texts), vec.transform(test_texts)
    proba = np.zeros((len(test_texts), train_Y.shape[1]))
    for j in range(train_Y.shape[1]):
        if train_Y[:, j].min() == train_Y[:, j].max():
            continue
        proba[:, j] = LogisticRegression(C=10.0, class_weight="balanced", max_iter=2000).fit(Xtr, train_Y[:, j]).predict_proba(Xte)[:, 1]
    return proba >= 0.5, proba


def cross_validate(firms, encoder: Encoder, k: int, seed: int = 0) -> None:
    texts, Y = np.array(firms.texts, dtype=object), firms.Y
    results = {"rtic SectorClassifier (embedding+tfidf)": [], "rtic SectorClassifier (embedding)": [], "baseline TF-IDF + LR": []}
    preds = {name: (np.zeros(Y.shape, bool), np.zeros(Y.shape)) for name in results}
    timings = {name: 0.0 for name in results}
    for fold, (tr, te) in enumerate(KFold(k, shuffle=True, random_state=seed).split(texts)):
        for name in results:
            start = time.perf_counter()
            if name.startswith("baseline"):
                a, p = tfidf_baseline(list(texts[tr]), Y[tr], list(texts[te]))
            else:
                features = name.split("(")[1].rstrip(")")
                clf = SectorClassifier(firms.sector_ids, encoder=encoder, features=features, random_state=seed).fit(list(texts[tr]), Y[tr])
                p = clf.predict_proba(list(texts[te]))
                a = p >= clf.thresholds_
            timings[name] += time.perf_counter() - start
            preds[name][0][te], preds[name][1][te] = a, p
            results[name].append(sector_report(Y[te], a, p, firms.sector_ids).set_index("sector_id").loc["macro", "f1"])
        print(f"fold {fold + 1}/{k}: " + ", ".join(f"{n.split(' (')[0] if n.startswith('baseline') else n}: {results[n][-1]:.3f}" for n in results), flush=True)
    summary = []
    for name in results:
        report = sector_report(Y, preds[name][0], preds[name][1], firms.sector_ids)
        show(f"{k}-fold out-of-fold predictions, {name}", report)
        macro = report.set_index("sector_id").loc["macro"]
        summary.append({"method": name, "macro_f1 (pooled OOF)": macro["f1"], "macro_f1 fold mean": np.mean(results[name]),
                        "fold sd": np.std(results[name]), "macro_pr_auc": macro["pr_auc"], "fit+predict s": timings[name]})
    print(f"\nsummary, {k}-fold CV on Techstars (same folds for every method)")
    print(pd.DataFrame(summary).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", help="model URI (default: champion)")
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument("--skip-cv", action="store_true")
    args = parser.parse_args()
    if not args.data.exists():
        print(f"shared data not found: {args.data}", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    taxonomy = load_taxonomy()
    firms = read_labels(args.data, taxonomy)
    print(f"{len(firms.texts)} Techstars firms; positives per sector: " + ", ".join(f"{s} {int(n)}" for s, n in zip(firms.sector_ids, firms.Y.sum(0))))
    encoder = Encoder(cache_path=settings.resolved_embedding_cache, use_bf16=settings.use_bf16)
    start = time.perf_counter()
    encoder.encode(firms.texts)
    print(f"embedded {encoder.texts_embedded} new texts in {time.perf_counter() - start:.0f}s (rest from cache)")
    if not args.skip_model:
        score_registered_model(firms, settings, args.model)
    if not args.skip_cv:
        cross_validate(firms, encoder, args.cv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
