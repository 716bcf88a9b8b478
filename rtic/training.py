"""Train the sector classifier from labelled firms and log it to MLflow as a registered pyfunc model."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from rtic import registry
from rtic.classifier import SectorClassifier
from rtic.config import DEFAULT_SEED_LABELS, MODEL_NAME, Settings
from rtic.encoder import Encoder
from rtic.evaluation import report_metrics, sector_report
from rtic.labels import read_labels
from rtic.taxonomy import load_taxonomy


@dataclass
class TrainResult:
    name: str
    version: str
    run_id: str
    taxonomy_version: str
    report: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    is_champion: bool = False


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def train(
    settings: Settings,
    labels_path: str | Path | None = None,
    taxonomy_path: str | Path | None = None,
    name: str = MODEL_NAME,
    features: str = "embedding+tfidf",
    C: float = 1.0,
    seed: int = 0,
    progress=print,
) -> TrainResult:
    import joblib
    import mlflow

    labels_path = Path(labels_path) if labels_path else DEFAULT_SEED_LABELS
    taxonomy = load_taxonomy(taxonomy_path)
    firms = read_labels(labels_path, taxonomy)
    for w in firms.warnings:
        progress(f"warning: {w}")
    registry.configure(settings)

    encoder = Encoder(cache_path=settings.resolved_embedding_cache, use_bf16=settings.use_bf16, batch_size=settings.batch_size)
    progress(f"embedding {len(firms.texts)} labelled firms (cached in {settings.resolved_embedding_cache}) …")
    encoder.encode(firms.texts)
    progress(f"  {encoder.texts_embedded} embedded now, {len(firms.texts) - encoder.texts_embedded} from cache")
    classifier = SectorClassifier(taxonomy.sector_ids, encoder=encoder, features=features, C=C, random_state=seed)
    progress(f"fitting {len(taxonomy.sector_ids)} sectors with {classifier.cv}-fold out-of-fold calibration …")
    classifier.fit(firms.texts, firms.Y)
    for w in classifier.warnings_:
        progress(f"warning: {w}")
    oof = classifier.oof_proba_
    report = sector_report(firms.Y, oof >= classifier.thresholds_, oof, taxonomy.sector_ids)
    report["threshold"] = list(classifier.thresholds_) + [float("nan")] * 2

    with mlflow.start_run(run_name=f"train {labels_path.name}") as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params({
            "labels_file": str(labels_path), "labels_sha256": file_sha256(labels_path), "n_firms": len(firms.texts),
            "taxonomy_version": taxonomy.version, "features": features, "C": C, "seed": seed,
            "embedding_model": encoder.model_key, "cv_folds": classifier.cv,
        })
        mlflow.log_metrics(report_metrics(report, prefix="oof_"))
        mlflow.set_tags({"taxonomy_version": taxonomy.version, "rtic.task": "train"})
        report_path = Path(tmp) / "sector_report.csv"
        report.to_csv(report_path, index=False)
        mlflow.log_artifact(str(report_path))
        clf_path = Path(tmp) / "classifier.joblib"
        joblib.dump(classifier, clf_path)
        meta = {"taxonomy_version": taxonomy.version, "sector_ids": taxonomy.sector_ids, "embedding_model": encoder.model_key,
                "labels_sha256": file_sha256(labels_path), "thresholds": dict(zip(taxonomy.sector_ids, map(float, classifier.thresholds_)))}
        example = pd.DataFrame({"firm_id": [firms.firm_ids[0]], "text": [firms.texts[0][:300]]})
        progress("logging and registering the model in MLflow …")
        mv = registry.log_model(clf_path, meta, example, name)
    from mlflow import MlflowClient

    aliases = MlflowClient().get_registered_model(name).aliases or {}
    return TrainResult(name=name, version=str(mv.version), run_id=run.info.run_id, taxonomy_version=taxonomy.version,
                       report=report, warnings=firms.warnings + classifier.warnings_, is_champion=str(aliases.get("champion")) == str(mv.version))
