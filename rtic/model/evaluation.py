"""Multi-label metrics per sector (with macro and micro averages), folds that keep label balance, and
the plots and tables a training or evaluation run logs."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve

METRIC_COLUMNS = ("precision", "recall", "f1", "pr_auc", "ece", "precision_at_expected")


def calibration_error(y: np.ndarray, proba: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: |mean predicted - observed rate| over equal-width bins, weighted by bin size."""
    y, proba = np.asarray(y, dtype=float), np.asarray(proba, dtype=float)
    if len(y) == 0:
        return float("nan")
    which = np.minimum((proba * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            error += in_bin.sum() * abs(proba[in_bin].mean() - y[in_bin].mean())
    return float(error / len(y))


def precision_at_share(recall: float, false_positive_rate: float, share: float | None) -> float:
    """Precision the same classifier would have where a `share` of firms are positive (Bayes' rule).

    Labelled sets are rich in positives; in a whole register most firms are in no emerging sector, so
    the same false-positive rate costs far more precision there.
    """
    if share is None or not np.isfinite(share):
        return float("nan")
    hits = recall * share
    false = false_positive_rate * (1 - share)
    return float(hits / (hits + false)) if hits + false > 0 else 0.0


def sector_report(
    Y: np.ndarray,
    assigned: np.ndarray,
    proba: np.ndarray | None,
    sector_ids: list[str],
    expected_share: dict[str, float | None] | None = None,
) -> pd.DataFrame:
    """One row per sector (support, precision, recall, F1, PR-AUC, calibration error, precision at the
    sector's expected register share) plus 'macro' and 'micro' rows."""
    Y = np.asarray(Y, dtype=bool)
    assigned = np.asarray(assigned, dtype=bool)
    expected_share = expected_share or {}
    rows = []
    for j, sector in enumerate(sector_ids):
        y, a = Y[:, j], assigned[:, j]
        tp, fp, fn = int((y & a).sum()), int((~y & a).sum()), int((y & ~a).sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        has_proba = proba is not None and len(y) > 0
        pr_auc = float(average_precision_score(y, proba[:, j])) if has_proba and y.any() else float("nan")
        negatives = int((~y).sum())
        fpr = fp / negatives if negatives else 0.0
        rows.append({"sector_id": sector, "support": int(y.sum()), "predicted": int(a.sum()), "tp": tp, "fp": fp, "fn": fn,
                     "precision": precision, "recall": recall, "f1": f1, "pr_auc": pr_auc,
                     "ece": calibration_error(y, proba[:, j]) if has_proba else float("nan"),
                     "expected_share": expected_share.get(sector) or float("nan"),
                     "precision_at_expected": precision_at_share(recall, fpr, expected_share.get(sector)) if y.any() else float("nan")})
    report = pd.DataFrame(rows)
    scored = report[report["support"] > 0]
    macro = {"sector_id": "macro", "support": int(report["support"].sum()), "predicted": int(report["predicted"].sum())}
    macro.update({c: scored[c].mean() for c in METRIC_COLUMNS})
    tp, fp, fn = report["tp"].sum(), report["fp"].sum(), report["fn"].sum()
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    micro = {"sector_id": "micro", "support": int(report["support"].sum()), "predicted": int(report["predicted"].sum()),
             "tp": int(tp), "fp": int(fp), "fn": int(fn), "precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}
    if proba is not None and Y.any():
        micro["pr_auc"] = float(average_precision_score(Y.ravel(), np.asarray(proba).ravel()))
        micro["ece"] = calibration_error(Y.ravel(), np.asarray(proba).ravel())
    return pd.concat([report, pd.DataFrame([macro, micro])], ignore_index=True)


def report_metrics(report: pd.DataFrame, prefix: str = "") -> dict[str, float]:
    """Flatten a sector report into MLflow metric names like `f1_ai_data`, `macro_f1`."""
    metrics: dict[str, float] = {}
    for row in report.to_dict("records"):
        for col in METRIC_COLUMNS:
            value = row.get(col)
            if value is not None and pd.notna(value):
                sector = row["sector_id"]
                name = f"{sector}_{col}" if sector in ("macro", "micro") else f"{col}_{sector}"
                metrics[prefix + name] = float(value)
    return metrics


def macro_over(report: pd.DataFrame, min_support: int, column: str = "f1") -> float:
    """Macro average of `column` over the sectors with at least `min_support` positives."""
    sectors = report[~report["sector_id"].isin(["macro", "micro"]) & (report["support"] >= min_support)]
    return float(sectors[column].mean()) if len(sectors) else float("nan")


# -- folds ------------------------------------------------------------------------------------------
def stratified_folds(Y: np.ndarray, k: int, seed: int = 0, groups: Sequence | None = None) -> np.ndarray:
    """Fold number (0..k-1) per row: iterative stratification for multi-label data (Sechidis et al. 2011).

    Rows of one group (one firm) always share a fold. Groups are placed rarest label first, each into the
    fold that most lacks that label, so every sector's positives spread evenly over the folds; rows with
    no label fill the folds that most lack rows.
    """
    Y = np.asarray(Y, dtype=int)
    n = len(Y)
    group_of = np.unique(np.asarray(groups if groups is not None else np.arange(n)), return_inverse=True)[1]
    n_groups = group_of.max() + 1 if n else 0
    k = max(1, min(k, n_groups))
    G = np.zeros((n_groups, Y.shape[1]), dtype=int)  # a group's labels: the union of its rows'
    np.maximum.at(G, group_of, Y)
    sizes = np.bincount(group_of, minlength=n_groups)
    rng = np.random.default_rng(seed)
    fold_of_group = np.full(n_groups, -1)
    need_rows = np.full(k, sizes.sum() / k)
    need_labels = np.tile(G.sum(axis=0) / k, (k, 1)).astype(float)
    remaining = np.ones(n_groups, dtype=bool)
    while True:
        counts = G[remaining].sum(axis=0)
        live = np.flatnonzero(counts > 0)
        if not len(live):
            break
        label = live[np.argmin(counts[live])]
        members = np.flatnonzero(remaining & (G[:, label] > 0))
        for g in rng.permutation(members):
            best = np.flatnonzero(need_labels[:, label] == need_labels[:, label].max())
            if len(best) > 1:
                best = best[need_rows[best] == need_rows[best].max()]
            fold = int(rng.choice(best))
            fold_of_group[g] = fold
            need_labels[fold] -= G[g]
            need_rows[fold] -= sizes[g]
            remaining[g] = False
    for g in rng.permutation(np.flatnonzero(remaining)):
        fold = int(np.argmax(need_rows))
        fold_of_group[g] = fold
        need_rows[fold] -= sizes[g]
    return fold_of_group[group_of]


# -- artifacts --------------------------------------------------------------------------------------
def misclassified(firm_ids: Sequence[str], texts: Sequence[str], Y: np.ndarray, assigned: np.ndarray, proba: np.ndarray,
                  sector_ids: list[str]) -> pd.DataFrame:
    """One row per firm and sector where the model and the label disagree, most confident errors first."""
    rows = []
    for i, j in zip(*np.nonzero(np.asarray(Y, bool) != np.asarray(assigned, bool))):
        rows.append({"firm_id": firm_ids[i], "sector_id": sector_ids[j], "error": "false_negative" if Y[i, j] else "false_positive",
                     "probability": float(proba[i, j]), "labelled_sectors": "|".join(s for s, on in zip(sector_ids, Y[i]) if on),
                     "text": str(texts[i])[:500]})
    frame = pd.DataFrame(rows, columns=["firm_id", "sector_id", "error", "probability", "labelled_sectors", "text"])
    confidence = (frame["probability"] - 0.5).abs()
    return frame.assign(_c=confidence).sort_values(["_c", "firm_id"], ascending=[False, True]).drop(columns="_c").reset_index(drop=True)


def _grid(n: int) -> tuple[int, int]:
    cols = min(3, max(n, 1))
    return (n + cols - 1) // cols, cols


def plot_pr_curves(Y: np.ndarray, proba: np.ndarray, sector_ids: list[str], path, thresholds: Sequence[float] | None = None) -> None:
    """Precision-recall curve per sector, with the chosen operating point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = _grid(len(sector_ids))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.3 * rows), squeeze=False)
    for j, sector in enumerate(sector_ids):
        ax = axes[j // cols][j % cols]
        y = np.asarray(Y[:, j], bool)
        if y.any() and (~y).any():
            precision, recall, cuts = precision_recall_curve(y, proba[:, j])
            ax.plot(recall, precision)
            if thresholds is not None:
                a = proba[:, j] >= thresholds[j]
                if a.any():
                    ax.plot([(a & y).sum() / y.sum()], [(a & y).sum() / a.sum()], "o", color="C3", label="threshold")
                    ax.legend(loc="lower left", fontsize=7)
            ax.set_title(f"{sector} (AP {average_precision_score(y, proba[:, j]):.2f}, n={int(y.sum())})", fontsize=9)
        else:
            ax.set_title(f"{sector} (no positives)", fontsize=9)
        ax.set_xlim(0, 1), ax.set_ylim(0, 1.02), ax.set_xlabel("recall", fontsize=8), ax.set_ylabel("precision", fontsize=8)
    for j in range(len(sector_ids), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_calibration(Y: np.ndarray, proba: np.ndarray, sector_ids: list[str], path, bins: int = 10) -> None:
    """Reliability diagram: observed positive rate against mean predicted probability, per sector."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    for j, sector in enumerate(sector_ids):
        y, p = np.asarray(Y[:, j], float), proba[:, j]
        which = np.minimum((p * bins).astype(int), bins - 1)
        xs = [p[which == b].mean() for b in range(bins) if (which == b).any()]
        ys = [y[which == b].mean() for b in range(bins) if (which == b).any()]
        ax.plot(xs, ys, "o-", ms=3, lw=1, label=f"{sector} (ECE {calibration_error(y, p):.3f})")
    ax.set_xlabel("mean predicted probability"), ax.set_ylabel("observed share positive")
    ax.legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def cooccurrence(Y: np.ndarray, sector_ids: list[str]) -> pd.DataFrame:
    """Firms labelled with both sectors (diagonal: firms in the sector)."""
    Y = np.asarray(Y, dtype=int)
    return pd.DataFrame(Y.T @ Y, index=sector_ids, columns=sector_ids)


def plot_cooccurrence(Y: np.ndarray, sector_ids: list[str], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = cooccurrence(Y, sector_ids).to_numpy()
    fig, ax = plt.subplots(figsize=(1 + 0.7 * len(sector_ids), 0.8 + 0.6 * len(sector_ids)))
    im = ax.imshow(np.log1p(matrix), cmap="viridis")
    ax.set_xticks(range(len(sector_ids)), sector_ids, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(sector_ids)), sector_ids, fontsize=7)
    for a in range(len(sector_ids)):
        for b in range(len(sector_ids)):
            ax.text(b, a, str(matrix[a, b]), ha="center", va="center", fontsize=6, color="w")
    ax.set_title("labelled firms in both sectors", fontsize=9)
    fig.colorbar(im, ax=ax, label="log(1 + firms)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
