"""The model lifecycle over the MLflow registry: list, show, compare and promote registered versions.

Figures come from the runs MLflow already holds: a version's training run (cross-validated metrics) and
the evaluation runs `rtic evaluate` logs, tagged with the model version and an evaluation-set name.
"""

from __future__ import annotations

import getpass
import math
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from rtic.mlops import registry
from rtic.config import CHAMPION_ALIAS, EXPERIMENT_NAME, MODEL_NAME, Settings
from rtic.errors import RticError
from rtic import config

KEY_METRICS = ("macro_f1", "micro_f1", "macro_pr_auc", "macro_ece")
AVERAGES = ("macro", "micro")  # the sector report's summary rows


def _client(settings: Settings):
    registry.configure(settings, read_only=True)  # evaluation_runs and reports still search through MLflow's fluent API
    return registry.client(settings)


def _version(client, name: str, version: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, str(version))
    except MlflowException:
        raise RticError(f"model {name} has no version {version} (see `rtic models list`)") from None


def _training_metrics(client, mv, run=None) -> dict[str, float]:
    """The version's training-run metrics with the cv_/oof_ prefix removed (cv_ preferred)."""
    if not mv.run_id:
        return {}
    metrics = (run or client.get_run(mv.run_id)).data.metrics
    for prefix in ("cv_", "oof_"):
        found = {k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)}
        if found:
            return found
    return dict(metrics)


def _figures_on(mv, run) -> str:
    """Which labels a version's headline figures were measured on, and how: "cross-validation on seed_labels.csv (a1b2c3d4)"."""
    params = run.data.params if run else {}
    labels = Path(params["labels_file"]).name if params.get("labels_file") else "?"
    sha = (mv.tags.get("labels_sha256") or params.get("labels_sha256") or "")[:8]
    return f"{mv.tags.get('metrics_from', 'training')} on {labels}" + (f" ({sha})" if sha else "")


def _aliases_by_version(client, name: str) -> dict[str, list[str]]:
    from mlflow.exceptions import MlflowException

    try:
        aliases = client.get_registered_model(name).aliases or {}
    except MlflowException:
        raise RticError(f"no registered model named {name}: train one with `rtic train`") from None
    out: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        out.setdefault(str(version), []).append(alias)
    return out


def list_versions(settings: Settings, name: str = MODEL_NAME) -> pd.DataFrame:
    """One row per registered version, newest first: aliases, taxonomy, key training metrics and the labels they
    were measured on (figures_on: figures on different labels are not comparable), then each named evaluation
    set's macro F1 (`macro_f1@SET`, the version's latest `rtic evaluate` on it): the comparable figures."""
    client = _client(settings)
    aliases = _aliases_by_version(client, name)
    evals = evaluation_runs(settings, name)
    rows = []
    for mv in client.search_model_versions(f"name = '{name}'"):
        run = client.get_run(mv.run_id) if mv.run_id else None
        metrics = _training_metrics(client, mv, run)
        row = {"version": int(mv.version), "aliases": ",".join(sorted(aliases.get(str(mv.version), []))),
               "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M"),
               "taxonomy": mv.tags.get("taxonomy_version", "")}
        row.update({k: metrics.get(k, float("nan")) for k in KEY_METRICS})
        row["figures_on"] = _figures_on(mv, run)
        if not evals.empty:
            mine = evals[evals["tags.rtic.model_version"] == str(mv.version)]
            for eval_set, group in mine.groupby("tags.rtic.eval_set", sort=True):
                row[f"macro_f1@{eval_set}"] = group.iloc[0].get("metrics.macro_f1", float("nan"))  # newest first
        rows.append(row)
    if not rows:
        return pd.DataFrame(rows)
    table = pd.DataFrame(rows).sort_values("version", ascending=False).reset_index(drop=True)
    fixed = [c for c in table.columns if not c.startswith("macro_f1@")]
    return table[fixed + sorted(c for c in table.columns if c.startswith("macro_f1@"))]


def evaluation_runs(settings: Settings, name: str, version: str | None = None, eval_set: str | None = None) -> pd.DataFrame:
    """Evaluation runs of one version (of every version when None; optionally on one set), newest first."""
    import mlflow

    registry.configure(settings, read_only=True)
    query = f"tags.`rtic.task` = 'evaluate' and tags.`rtic.model_name` = '{name}'"
    if version is not None:
        query += f" and tags.`rtic.model_version` = '{version}'"
    if eval_set:
        query += f" and tags.`rtic.eval_set` = '{eval_set}'"
    return mlflow.search_runs(experiment_names=[EXPERIMENT_NAME], filter_string=query, order_by=["start_time DESC"])


def show_version(settings: Settings, version: str, name: str = MODEL_NAME) -> dict:
    """Everything about one version: tags, aliases, training parameters and metrics, its evaluations."""
    client = _client(settings)
    mv = _version(client, name, version)
    run = client.get_run(mv.run_id) if mv.run_id else None
    evals = evaluation_runs(settings, name, str(mv.version))
    return {
        "name": name, "version": str(mv.version), "aliases": _aliases_by_version(client, name).get(str(mv.version), []),
        "source": mv.source, "run_id": mv.run_id, "tags": dict(mv.tags),
        "params": dict(run.data.params) if run else {}, "run_tags": {k: v for k, v in (run.data.tags if run else {}).items() if not k.startswith("mlflow.")},
        "metrics": _training_metrics(client, mv),
        "evaluations": [{"eval_set": r["tags.rtic.eval_set"], "run_id": r["run_id"], "macro_f1": r.get("metrics.macro_f1")}
                        for _, r in evals.iterrows()],
    }


def _sector_report(client, run_id: str) -> pd.DataFrame:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="sector_report.csv", dst_path=tmp)
        except Exception:  # an older run without the report
            raise RticError(f"run {run_id} has no sector_report.csv artifact") from None
        return pd.read_csv(path)


def version_report(settings: Settings, version: str, name: str = MODEL_NAME, eval_set: str | None = None) -> tuple[pd.DataFrame, str]:
    """A version's per-sector report: from its latest evaluation on `eval_set`, else its training run."""
    client = _client(settings)
    mv = _version(client, name, version)
    if eval_set:
        runs = evaluation_runs(settings, name, str(mv.version), eval_set)
        if runs.empty:
            raise RticError(f"{name} version {mv.version} has no evaluation on '{eval_set}': "
                            f"run `rtic evaluate --labels FILE --eval-set {eval_set} --model models:/{name}/{mv.version}`")
        return _sector_report(client, runs.iloc[0]["run_id"]), f"evaluation on {eval_set}"
    return _sector_report(client, mv.run_id), f"training ({mv.tags.get('metrics_from', 'cross-validation')})"


def compare(settings: Settings, a: str, b: str, name: str = MODEL_NAME, eval_set: str | None = None) -> pd.DataFrame:
    """Per-sector precision, recall, F1 and PR-AUC of two versions side by side, with B - A."""
    ra, _ = version_report(settings, a, name, eval_set)
    rb, _ = version_report(settings, b, name, eval_set)
    cols = ["precision", "recall", "f1", "pr_auc"]
    left, right = ra.set_index("sector_id"), rb.set_index("sector_id")
    merged = left[["support"]].join(left[cols].add_suffix(f"_v{a}"), how="outer").join(right[cols].add_suffix(f"_v{b}"), how="outer")
    merged["f1_change"] = merged[f"f1_v{b}"] - merged[f"f1_v{a}"]
    # Sectors in the reports' (taxonomy) order, the macro and micro averages last.
    order = [s for s in dict.fromkeys(list(left.index) + list(right.index)) if s not in AVERAGES] + [s for s in AVERAGES if s in merged.index]
    return merged.loc[order].reset_index()


@dataclass
class Promotion:
    version: str
    previous: str | None
    promoted: bool
    forced: bool
    message: str


def promote(settings: Settings, version: str, eval_set: str | None = None, tolerance: float = config.PROMOTE_TOLERANCE, force: bool = False,
            reason: str = "", who: str | None = None, name: str = MODEL_NAME, metric: str = "f1") -> Promotion:
    """Point `champion` at `version` when its macro metric on `eval_set` is no worse than the champion's
    minus `tolerance` (-1 to 1; below 0 the candidate must beat the champion by that much); with `force`, promote
    regardless, recording who and why on the version."""
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and -1 <= tolerance <= 1):
        raise RticError(f"--tolerance is how much lower the candidate's macro {metric} may be, between -1 and 1, got {tolerance}")
    client = _client(settings)
    mv = _version(client, name, version)
    version = str(mv.version)
    current = _aliases_by_version(client, name)
    previous = next((v for v, names in current.items() if CHAMPION_ALIAS in names), None)
    who = who or os.environ.get("RTIC_USER") or getpass.getuser()
    if previous == version:
        return Promotion(version, previous, False, False, f"version {version} is already champion")
    if force and not reason.strip():
        raise RticError("--force needs --reason: say why the comparison is overridden")
    message = "no champion before" if previous is None else ""
    if previous is not None and not force:
        if not eval_set:
            raise RticError("name the evaluation set to compare on (--eval-set), or --force with --reason")
        cand, _ = version_report(settings, version, name, eval_set)
        champ, _ = version_report(settings, previous, name, eval_set)
        c, p = (float(r.set_index("sector_id").loc["macro", metric]) for r in (cand, champ))
        message = f"macro {metric} on {eval_set}: candidate v{version} {c:.3f}, champion v{previous} {p:.3f}, tolerance {tolerance}"
        if not (math.isfinite(c) and math.isfinite(p)):  # NaN compares false: it must never pass for "no worse"
            return Promotion(version, previous, False, False, f"not promoted: {message}: a figure is missing, re-run `rtic evaluate` "
                                                              "(or use --force --reason)")
        if c < p - tolerance:
            return Promotion(version, previous, False, False, f"not promoted: {message} (use --force --reason to override)")
    client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    tags = {"promoted_by": who, "promoted_at": stamp, "promoted_over": previous or "", "promotion_forced": str(bool(force)).lower(),
            "promotion_eval_set": eval_set or "", "promotion_reason": reason or message}
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    return Promotion(version, previous, True, force, f"v{version} is champion (was {previous or 'none'}); {reason or message}")


def ui_command(settings: Settings, port: int = config.UI_PORT) -> list[str]:
    """The `mlflow ui` command line for this project's store, bound to 127.0.0.1 only."""
    import sys

    if not 1 <= port <= 65535:
        raise RticError(f"--port must be between 1 and 65535, got {port}")
    if settings.registry_missing:  # `mlflow ui` would create an empty registry there
        raise RticError(f"no model registry yet at {settings.where()}: train one with `rtic train` (or `make demo`)")
    uri = settings.resolved_tracking_uri
    cmd = [str(Path(sys.executable).with_name("mlflow")), "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)]
    if uri.startswith("sqlite:"):
        cmd += ["--default-artifact-root", settings.artifact_root.as_uri()]
    return cmd
