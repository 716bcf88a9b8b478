"""Multi-label metrics per sector, with macro and micro averages."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score


def sector_report(Y: np.ndarray, assigned: np.ndarray, proba: np.ndarray | None, sector_ids: list[str]) -> pd.DataFrame:
    """One row per sector (support, precision, recall, F1, PR-AUC) plus 'macro' and 'micro' rows."""
    Y = np.asarray(Y, dtype=bool)
    assigned = np.asarray(assigned, dtype=bool)
    rows = []
    for j, sector in enumerate(sector_ids):
        y, a = Y[:, j], assigned[:, j]
        tp, fp, fn = int((y & a).sum()), int((~y & a).sum()), int((y & ~a).sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        pr_auc = float(average_precision_score(y, proba[:, j])) if proba is not None and y.any() else float("nan")
        rows.append({"sector_id": sector, "support": int(y.sum()), "predicted": int(a.sum()), "tp": tp, "fp": fp, "fn": fn,
                     "precision": precision, "recall": recall, "f1": f1, "pr_auc": pr_auc})
    report = pd.DataFrame(rows)
    scored = report[report["support"] > 0]
    macro = {"sector_id": "macro", "support": int(report["support"].sum()), "predicted": int(report["predicted"].sum()),
             "precision": scored["precision"].mean(), "recall": scored["recall"].mean(), "f1": scored["f1"].mean(),
             "pr_auc": scored["pr_auc"].mean()}
    tp, fp, fn = report["tp"].sum(), report["fp"].sum(), report["fn"].sum()
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    micro = {"sector_id": "micro", "support": int(report["support"].sum()), "predicted": int(report["predicted"].sum()),
             "tp": int(tp), "fp": int(fp), "fn": int(fn), "precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}
    return pd.concat([report, pd.DataFrame([macro, micro])], ignore_index=True)


def report_metrics(report: pd.DataFrame, prefix: str = "") -> dict[str, float]:
    """Flatten a sector report into MLflow metric names like `f1_ai_data`, `macro_f1`."""
    metrics: dict[str, float] = {}
    for row in report.itertuples():
        for col in ("precision", "recall", "f1", "pr_auc"):
            value = getattr(row, col)
            if pd.notna(value):
                name = f"{row.sector_id}_{col}" if row.sector_id in ("macro", "micro") else f"{col}_{row.sector_id}"
                metrics[prefix + name] = float(value)
    return metrics
