"""Benchmark the project's trainer against two baselines on Techstars, and the few-shot learning curve.

1. Side by side on the same stratified 5-fold split (`rtic.model.evaluation.stratified_folds`, seed 0):
   - TF-IDF + logistic regression (balanced, threshold 0.5)
   - MiniLM embeddings + logistic regression (balanced, threshold 0.5)
   - rtic's trainer exactly as `rtic train` runs it (`rtic.model.training.cross_validate`): each fold's model
     tunes calibration and thresholds inside its own training folds, never on the test fold.
   Macro-F1 over all sectors and over the sectors with at least 50 examples, micro-F1, macro PR-AUC,
   and fit+predict seconds.
2. `--fewshot 8 16 32 64`: a data scientist with k seed firms per sector (plus 4k firms in none): train
   on such a sample drawn from folds 1-4, score fold 0, repeated `--repeats` times. Methods: the rtic
   trainer (embedding+TF-IDF and embedding only), and embedding only with each sector's description
   and key phrases added as extra positive examples ("description prior").

Usage (full scale, about 10 minutes on 2 cores once embeddings are cached):
  .venv/bin/python scripts/bench_trainers.py --fewshot 8 16 32 64
Contrastive fine-tuning (SetFit-style) at one k, timed:  --skip-cv --setfit-k 8
Reduced: --skip-cv, --limit N (first N firms), --repeats 1.
Supervised end-to-end fine-tuning of MiniLM (scripts/finetune.py) vs the rtic trainer on the same CV folds:
  --skip-cv --finetune --finetune-folds 0            (one fold, about 10-15 minutes on 2 cores)
  --skip-cv --finetune --finetune-folds 0 1 2 3 4    (all five)
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from rtic.model.classifier import SectorClassifier
from rtic.config import Settings
from rtic.embed.encoder import Encoder
from rtic.model.evaluation import macro_over, sector_report, stratified_folds
from rtic.model.fewshot import description_rows, sample_few_shot
from rtic.labels import LabelledFirms
from rtic.taxonomy import load_taxonomy
from rtic.model.training import cross_validate, expected_shares
from techstars import DEFAULT_DATA, load_embedded

MIN_SUPPORT = 50


def logistic_baseline(X_train, Y_train, X_test, C: float) -> tuple[np.ndarray, np.ndarray]:
    proba = np.zeros((X_test.shape[0], Y_train.shape[1]))
    for j in range(Y_train.shape[1]):
        if Y_train[:, j].min() != Y_train[:, j].max():
            model = LogisticRegression(C=C, class_weight="balanced", max_iter=3000, solver="liblinear")
            proba[:, j] = model.fit(X_train, Y_train[:, j]).predict_proba(X_test)[:, 1]
    return proba >= 0.5, proba


def tfidf_lr(texts, Y, train, test, embeddings):
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, stop_words="english")
    return logistic_baseline(vec.fit_transform(texts[train]), Y[train], vec.transform(texts[test]), C=10.0)


def minilm_lr(texts, Y, train, test, embeddings):
    return logistic_baseline(embeddings[train], Y[train], embeddings[test], C=1.0)


def max_f1(y: np.ndarray, scores: np.ndarray) -> float:
    """The best F1 over every threshold on `scores`."""
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(y[order])
    return float((2 * tp / (np.arange(1, len(y) + 1) + y.sum())).max()) if y.sum() else float("nan")


def summarise(name: str, report: pd.DataFrame, seconds: float) -> dict:
    r = report.set_index("sector_id")
    return {"method": name, f"macro_f1 (>={MIN_SUPPORT})": macro_over(report, MIN_SUPPORT), "macro_f1 (all)": r.loc["macro", "f1"],
            "micro_f1": r.loc["micro", "f1"], "macro_pr_auc": r.loc["macro", "pr_auc"], "macro_ece": r.loc["macro", "ece"], "seconds": seconds}


def side_by_side(firms: LabelledFirms, encoder: Encoder, shares: dict, k: int, seed: int) -> None:
    texts, Y = np.array(firms.texts, dtype=object), firms.Y
    embeddings = encoder.encode(firms.texts)
    folds = stratified_folds(Y, k, seed=seed, groups=firms.firm_ids)  # the split cross_validate uses
    rows, reports = [], {}
    for name, method in (("TF-IDF + LR", tfidf_lr), ("MiniLM + LR", minilm_lr)):
        start = time.perf_counter()
        assigned, proba = np.zeros(Y.shape, bool), np.zeros(Y.shape)
        for fold in range(k):
            test, train = folds == fold, folds != fold
            assigned[test], proba[test] = method(texts, Y, train, test, embeddings)
        reports[name] = sector_report(Y, assigned, proba, firms.sector_ids, shares)
        rows.append(summarise(name, reports[name], time.perf_counter() - start))
        print(f"{name}: done in {rows[-1]['seconds']:.0f}s", flush=True)
    start = time.perf_counter()
    name = "rtic trainer (rtic train)"
    result = cross_validate(firms, lambda: SectorClassifier(firms.sector_ids, encoder=encoder, random_state=seed), k=k, seed=seed,
                            expected_share=shares)
    assert (result.folds == folds).all()
    reports[name] = result.report
    rows.append(summarise(name, result.report, time.perf_counter() - start))
    per_sector = pd.DataFrame({n: r.set_index("sector_id")["f1"] for n, r in reports.items()})
    per_sector.insert(0, "support", reports[name].set_index("sector_id")["support"])
    print(f"\nper-sector F1, {k}-fold CV on {len(texts)} Techstars firms (same folds for every method)")
    print(per_sector.to_string(float_format=lambda v: f"{v:.3f}"))
    print("\nrtic trainer, per sector: PR-AUC, calibration error, precision at the taxonomy's expected register share")
    print(result.report.set_index("sector_id")[["support", "precision", "recall", "f1", "pr_auc", "ece", "expected_share", "precision_at_expected"]]
          .to_string(float_format=lambda v: f"{v:.3f}"))
    summary = pd.DataFrame(rows)
    print("\nsummary")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    # Upper bound, not a result: each sector's best F1 over all thresholds, picked on the test folds.
    big = result.report.iloc[: Y.shape[1]]["support"].to_numpy() >= MIN_SUPPORT
    oracle = [max_f1(Y[:, j], result.proba[:, j]) for j in range(Y.shape[1])]
    print(f"rtic trainer's scores with oracle thresholds (chosen on the test folds): macro-F1 (>= {MIN_SUPPORT}) "
          f"{np.mean(np.array(oracle)[big]):.3f} — the ceiling that threshold choice alone could reach")
    column = f"macro_f1 (>={MIN_SUPPORT})"
    for _, base in summary.iloc[:-1].iterrows():
        print(f"rtic trainer / {base['method']}: macro-F1 (>= {MIN_SUPPORT}) ratio {summary.iloc[-1][column] / base[column]:.3f}")


def fewshot_curve(firms: LabelledFirms, taxonomy, encoder: Encoder, shots: list[int], repeats: int, seed: int) -> None:
    texts, Y = np.array(firms.texts, dtype=object), firms.Y
    folds = stratified_folds(Y, 5, seed=seed, groups=firms.firm_ids)
    test, pool = np.flatnonzero(folds == 0), np.flatnonzero(folds != 0)
    prior_texts, prior_Y = description_rows(taxonomy)
    methods = {
        "rtic trainer (embedding+tfidf)": (dict(features="embedding+tfidf"), False),
        "rtic trainer (embedding)": (dict(features="embedding"), False),
        "embedding + description prior": (dict(features="embedding"), True),
    }
    rows = []
    for k in shots:
        for r in range(repeats):
            chosen = sample_few_shot(Y, pool, k=k, n_none=4 * k, seed=seed + 100 * r + k)
            for name, (kwargs, prior) in methods.items():
                train_texts, train_Y = list(texts[chosen]), Y[chosen]
                if prior:
                    train_texts, train_Y = train_texts + prior_texts, np.vstack([train_Y, prior_Y])
                start = time.perf_counter()
                clf = SectorClassifier(firms.sector_ids, encoder=encoder, random_state=seed, **kwargs).fit(train_texts, train_Y)
                proba = clf.predict_proba(list(texts[test]))
                seconds = time.perf_counter() - start
                report = sector_report(Y[test], proba >= clf.thresholds_, proba, firms.sector_ids)
                big = report["sector_id"].isin([s for s, n in zip(firms.sector_ids, Y.sum(0)) if n >= MIN_SUPPORT])
                rows.append({"k": k, "repeat": r, "method": name, "train_firms": len(chosen), f"macro_f1 (>={MIN_SUPPORT})": report.loc[big, "f1"].mean(),
                             "macro_pr_auc": report.loc[big, "pr_auc"].mean(), "fit+predict s": seconds})
            print(f"k={k} repeat {r + 1}/{repeats}: " + ", ".join(f"{x['method']} {x[f'macro_f1 (>={MIN_SUPPORT})']:.3f}" for x in rows[-len(methods):]), flush=True)
    table = pd.DataFrame(rows).groupby(["k", "method"], sort=False).agg(
        train_firms=("train_firms", "mean"), macro_f1=(f"macro_f1 (>={MIN_SUPPORT})", "mean"), sd=(f"macro_f1 (>={MIN_SUPPORT})", "std"),
        macro_pr_auc=("macro_pr_auc", "mean"), seconds=("fit+predict s", "mean"))
    print(f"\nfew-shot learning curve: k seed firms per sector + 4k in none, scored on {len(test)} held-out firms "
          f"(macro over sectors with >= {MIN_SUPPORT} examples; mean of {repeats} draws)")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))


def contrastive_fine_tune(texts: list[str], Y: np.ndarray, iterations: int, seed: int, batch_size: int = 16):
    """SetFit-style: fine-tune MiniLM so that firms sharing a sector embed close (cosine-similarity loss on
    pairs: per firm and iteration, one partner sharing a sector and one sharing none). Returns the model."""
    import torch
    from sentence_transformers import SentenceTransformer

    from rtic.embed.encoder import MINILM

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = SentenceTransformer(str(MINILM.model_dir()), device="cpu", local_files_only=True)
    key = [tuple(row) for row in Y]
    pairs = []
    for _ in range(iterations):
        for i in range(len(texts)):
            same = [m for m in range(len(texts)) if m != i and ((Y[m] & Y[i]).any() or (key[m] == key[i]))]
            other = [m for m in range(len(texts)) if not (Y[m] & Y[i]).any() and key[m] != key[i]]
            if same:
                pairs.append((i, int(rng.choice(same)), 1.0))
            if other:
                pairs.append((i, int(rng.choice(other)), 0.0))
    order = rng.permutation(len(pairs))
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-5)
    model.train()
    for start in range(0, len(order), batch_size):
        batch = [pairs[p] for p in order[start : start + batch_size]]
        left = model(model.tokenize([texts[a] for a, _, _ in batch]))["sentence_embedding"]
        right = model(model.tokenize([texts[b] for _, b, _ in batch]))["sentence_embedding"]
        target = torch.tensor([t for _, _, t in batch], dtype=left.dtype)
        loss = torch.nn.functional.mse_loss(torch.nn.functional.cosine_similarity(left, right), target)
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    model.eval()
    return model, len(pairs)


def setfit_comparison(firms: LabelledFirms, encoder: Encoder, k: int, iterations: int, seed: int) -> None:
    """Contrastive fine-tuning vs frozen embeddings, both + logistic regression, on one k-shot sample."""
    texts, Y = np.array(firms.texts, dtype=object), firms.Y
    folds = stratified_folds(Y, 5, seed=seed, groups=firms.firm_ids)
    test, pool = np.flatnonzero(folds == 0), np.flatnonzero(folds != 0)
    chosen = sample_few_shot(Y, pool, k=k, n_none=4 * k, seed=seed + k)
    big = Y.sum(0) >= MIN_SUPPORT
    results = {}
    start = time.perf_counter()
    model, n_pairs = contrastive_fine_tune(list(texts[chosen]), Y[chosen], iterations, seed)
    tune_seconds = time.perf_counter() - start
    start = time.perf_counter()
    tuned_train = model.encode(list(texts[chosen]), normalize_embeddings=True, batch_size=32)
    tuned_test = model.encode(list(texts[test]), normalize_embeddings=True, batch_size=32)
    embed_seconds = time.perf_counter() - start
    for name, (train_X, test_X) in {"frozen MiniLM + LR": (encoder.encode(list(texts[chosen])), encoder.encode(list(texts[test]))),
                                    "contrastive fine-tuned MiniLM + LR": (tuned_train, tuned_test)}.items():
        assigned, proba = logistic_baseline(train_X, Y[chosen], test_X, C=1.0)
        report = sector_report(Y[test], assigned, proba, firms.sector_ids)
        results[name] = (report.iloc[: len(big)].loc[big, "f1"].mean(), report.iloc[: len(big)].loc[big, "pr_auc"].mean())
    print(f"\nSetFit-style contrastive fine-tuning, k={k} per sector ({len(chosen)} firms, {n_pairs} pairs, {iterations} iterations), "
          f"CPU threads {__import__('torch').get_num_threads()}: fine-tuning {tune_seconds:.0f}s, re-embedding {len(chosen) + len(test)} texts {embed_seconds:.0f}s")
    for name, (f1, ap) in results.items():
        print(f"  {name:<38} macro_f1 (>={MIN_SUPPORT}) {f1:.3f}  macro_pr_auc {ap:.3f}")


def finetune_comparison(firms: LabelledFirms, encoder: Encoder, shares: dict, k: int, run_folds: list[int], epochs: int, seed: int) -> None:
    """Fine-tuned MiniLM (its own sector head; and its embedding fed to SectorClassifier) vs the rtic trainer,
    fold by fold on the split every method here uses. Calibration and thresholds of the fine-tuned variants
    come from an inner held-out slice of the training folds (scripts/finetune.py), never from the test fold."""
    from finetune import FineTuneConfig, FineTunedClassifier, tuned_sector_classifier

    texts, Y = np.array(firms.texts, dtype=object), firms.Y
    folds = stratified_folds(Y, k, seed=seed, groups=firms.firm_ids)
    config = FineTuneConfig(epochs=epochs, seed=seed)
    names = ("rtic trainer (rtic train)", "fine-tuned MiniLM, own head", "fine-tuned MiniLM -> SectorClassifier")
    proba = {n: np.zeros(Y.shape) for n in names}
    assigned = {n: np.zeros(Y.shape, bool) for n in names}
    seconds = {n: 0.0 for n in names}
    rows = np.isin(folds, run_folds)
    big = Y.sum(0) >= MIN_SUPPORT

    def record(name, fold_rows, clf, started):
        proba[name][fold_rows] = clf.predict_proba(list(texts[fold_rows]))
        assigned[name][fold_rows] = proba[name][fold_rows] >= clf.thresholds_
        seconds[name] += time.perf_counter() - started
        report = sector_report(Y[fold_rows], assigned[name][fold_rows], proba[name][fold_rows], firms.sector_ids)
        print(f"  fold {fold}: {name}: macro-F1 (>= {MIN_SUPPORT}) {report.iloc[: len(big)].loc[big, 'f1'].mean():.3f} "
              f"(fit+predict {time.perf_counter() - started:.0f}s)", flush=True)

    for fold in run_folds:
        test, train = folds == fold, folds != fold
        started = time.perf_counter()
        clf = SectorClassifier(firms.sector_ids, encoder=encoder, random_state=seed).fit(list(texts[train]), Y[train])
        record(names[0], test, clf, started)
        started = time.perf_counter()
        tuned = FineTunedClassifier(firms.sector_ids, config, progress=lambda m: print(m, flush=True)).fit(list(texts[train]), Y[train])
        record(names[1], test, tuned, started)
        started = time.perf_counter()
        record(names[2], test, tuned_sector_classifier(tuned, list(texts[train]), Y[train], random_state=seed), started)
        seconds[names[2]] += tuned.fit_seconds_  # it needs the fine-tune too
    reports = {n: sector_report(Y[rows], assigned[n][rows], proba[n][rows], firms.sector_ids, shares) for n in names}
    per_sector = pd.DataFrame({n: r.set_index("sector_id")["f1"] for n, r in reports.items()})
    per_sector.insert(0, "test support", reports[names[0]].set_index("sector_id")["support"])
    print(f"\nper-sector F1 on folds {run_folds} of the {k}-fold split ({int(rows.sum())} held-out firms; fine-tune {epochs} epochs, "
          f"thresholds from an inner {config.holdout:.0%} slice of the training folds)")
    print(per_sector.to_string(float_format=lambda v: f"{v:.3f}"))
    summary = pd.DataFrame([{**summarise(n, reports[n], seconds[n]), f"macro_f1 (>={MIN_SUPPORT})": reports[n].iloc[: len(big)].loc[big, "f1"].mean()}
                            for n in names])
    print("\nsummary (macro over the sectors with >= 50 examples in the whole set; seconds = fit+predict over these folds)")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stdout)
    logging.getLogger("rtic").setLevel(logging.INFO)  # the trainer's fold lines, as `rtic train` shows them
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-cv", action="store_true", help="only the few-shot curve")
    parser.add_argument("--fewshot", type=int, nargs="*", default=[], help="seed firms per sector, e.g. 8 16 32 64")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, help="use only the first N firms (reduced scale)")
    parser.add_argument("--setfit-k", type=int, help="also time and score SetFit-style contrastive fine-tuning at this k")
    parser.add_argument("--setfit-iterations", type=int, default=20, help="pair-generation iterations for --setfit-k (default 20)")
    parser.add_argument("--finetune", action="store_true", help="also compare supervised fine-tuning of MiniLM with the rtic trainer")
    parser.add_argument("--finetune-epochs", type=int, default=3, help="fine-tuning epochs (default 3)")
    parser.add_argument("--finetune-folds", type=int, nargs="+", default=[0], help="which CV folds to run it on (default: 0)")
    args = parser.parse_args()
    settings = Settings.from_env()
    taxonomy = load_taxonomy()
    firms, encoder = load_embedded(args.data, taxonomy, settings, limit=args.limit)
    if not args.skip_cv:
        side_by_side(firms, encoder, expected_shares(taxonomy), args.folds, args.seed)
    if args.fewshot:
        fewshot_curve(firms, taxonomy, encoder, args.fewshot, args.repeats, args.seed)
    if args.setfit_k:
        setfit_comparison(firms, encoder, args.setfit_k, args.setfit_iterations, args.seed)
    if args.finetune:
        finetune_comparison(firms, encoder, expected_shares(taxonomy), args.folds, args.finetune_folds, args.finetune_epochs, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
