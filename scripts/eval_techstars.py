"""Score rtic on the real Techstars companies (../shared/data/techstars/companies.csv).

1. `--model`: the registered model (default: the champion, trained on the team's seed data) labels every
   Techstars company; per-sector and macro F1 over the nine sectors.
2. `--cv K`: K-fold cross-validation training on Techstars itself through the project's own trainer
   (`rtic.model.training.cross_validate`), next to TF-IDF + logistic regression and MiniLM + logistic
   regression baselines on the same folds (`bench_trainers.side_by_side`).

Usage:  .venv/bin/python scripts/eval_techstars.py [--model URI] [--cv 5] [--skip-model] [--skip-cv]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench_trainers import side_by_side
from rtic.mlops import registry
from rtic.config import Settings
from rtic.model.evaluation import sector_report
from rtic.contracts import assigned_column, probability_column
from rtic.taxonomy import load_taxonomy
from rtic.model.training import expected_shares
from techstars import DEFAULT_DATA, load_embedded


def show(title: str, report: pd.DataFrame) -> None:
    print(f"\n{title}")
    print(report.set_index("sector_id")[["support", "predicted", "precision", "recall", "f1"]].to_string(float_format=lambda v: f"{v:.3f}"))


def score_registered_model(firms, settings: Settings, model_uri: str | None) -> pd.DataFrame:
    loaded = registry.open_model(model_uri, settings)
    ref, model = loaded.ref, loaded.pyfunc
    start = time.perf_counter()
    out = model.predict(pd.DataFrame({"firm_id": firms.firm_ids, "text": firms.texts}))
    took = time.perf_counter() - start
    assigned = np.column_stack([out[assigned_column(s)] for s in firms.sector_ids])
    proba = np.column_stack([out[probability_column(s)] for s in firms.sector_ids])
    report = sector_report(firms.Y, assigned, proba, firms.sector_ids)
    show(f"registered model {ref.name} v{ref.version} on all {len(firms.texts)} Techstars firms ({took:.0f}s)", report)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", help="model URI (default: champion)")
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument("--skip-cv", action="store_true")
    args = parser.parse_args()
    settings = Settings.from_env()
    taxonomy = load_taxonomy()
    firms, encoder = load_embedded(args.data, taxonomy, settings)
    if not args.skip_model:
        score_registered_model(firms, settings, args.model)
    if not args.skip_cv:
        side_by_side(firms, encoder, expected_shares(taxonomy), args.cv, seed=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
