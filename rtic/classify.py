"""Classify a register with a registered model and write firm labels (long form, one row per firm × sector)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from rtic import registry
from rtic.config import Settings
from rtic.encoder import text_sha256
from rtic.errors import RticError
from rtic.pyfunc_model import assigned_column, probability_column
from rtic.register import read_register
from rtic.tables import require_columns, write_atomically
from rtic.taxonomy import load_taxonomy

LABEL_COLUMNS = ["firm_id", "sector_id", "probability", "assigned", "model_name", "model_version", "taxonomy_version", "text_sha256", "classified_at"]
EXCEPTION_COLUMNS = ["firm_id", "line", "reason", "detail"]


@dataclass
class ClassifyResult:
    labels_path: Path
    exceptions_path: Path
    n_input: int
    n_classified: int
    n_exceptions: int
    firms_per_sector: dict[str, int]
    model: registry.ModelRef


def exceptions_path_for(out: Path) -> Path:
    return out.with_name(out.name.split(".")[0] + ".exceptions.csv")


def to_long(predictions: pd.DataFrame, texts: pd.Series, sector_ids: list[str], model: registry.ModelRef, taxonomy_version: str, when: str) -> pd.DataFrame:
    """Wide pyfunc output → the long firm-labels contract."""
    parts = []
    hashes = texts.map(text_sha256).to_numpy()
    for sector in sector_ids:
        parts.append(pd.DataFrame({
            "firm_id": predictions["firm_id"].to_numpy(),
            "sector_id": sector,
            "probability": predictions[probability_column(sector)].astype(float).to_numpy(),
            "assigned": predictions[assigned_column(sector)].astype(bool).to_numpy(),
            "text_sha256": hashes,
        }))
    long = pd.concat(parts, ignore_index=True)
    long["model_name"] = model.name
    long["model_version"] = model.version
    long["taxonomy_version"] = taxonomy_version
    long["classified_at"] = when
    long = long.sort_values(["firm_id", "sector_id"], kind="stable").reset_index(drop=True)
    return long[LABEL_COLUMNS]


def classify_register(
    register_path: str | Path,
    out_path: str | Path,
    settings: Settings,
    model_uri: str | None = None,
    taxonomy_path: str | Path | None = None,
    batch_size: int = 512,
    progress=print,
    store_path: str | Path | None = None,
) -> ClassifyResult:
    out_path = Path(out_path)
    if out_path.suffix.lower() not in {".parquet", ".pq"}:
        raise RticError(f"--out must be a .parquet file, got {out_path}")
    register = read_register(register_path)
    if "text" not in register.columns and store_path is not None:
        from rtic.crawl.document import attach_documents  # text from the crawl store, with a reason where there is none

        register = attach_documents(register, store_path)
    require_columns(register, ["text"], register_path, "register")
    ref = registry.resolve(model_uri, settings)
    model = registry.load(ref, settings)
    model_taxonomy = registry.model_taxonomy_version(model) or ref.taxonomy_version
    sector_ids = list((model.metadata.metadata or {}).get("sector_ids") or [])
    if taxonomy_path is not None:
        taxonomy = load_taxonomy(taxonomy_path)
        if taxonomy.version != model_taxonomy:
            raise RticError(f"model {ref.name} v{ref.version} was trained on taxonomy {model_taxonomy}, not {taxonomy.version} from {taxonomy_path}: retrain or pick another model")

    register = register.reset_index(drop=True)
    register["line"] = register.index + 2  # 1-based, after the header: what a user sees in an editor
    texts = register["text"].fillna("").astype(str)
    has_text = texts.str.strip() != ""
    exceptions = register.loc[~has_text, ["firm_id", "line"]].assign(reason="no text", detail="register row has an empty text column")
    if "text_reason" in register.columns:
        exceptions["reason"] = register.loc[~has_text, "text_reason"].replace("", "no text").to_numpy()
        exceptions["detail"] = f"crawl store {store_path}"
    todo = register[has_text]
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    progress(f"classifying {len(todo)} firms with {ref.name} v{ref.version} (taxonomy {model_taxonomy}); {len(exceptions)} without text")
    parts = []
    for start in range(0, len(todo), batch_size):
        chunk = todo.iloc[start : start + batch_size]
        predictions = model.predict(chunk[["firm_id", "text"]].reset_index(drop=True), params={"taxonomy_version": model_taxonomy})
        parts.append(to_long(predictions, chunk["text"].reset_index(drop=True), sector_ids, ref, model_taxonomy, when))
        progress(f"  {min(start + batch_size, len(todo))}/{len(todo)} firms")
    labels = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=LABEL_COLUMNS)
    exceptions_path = exceptions_path_for(out_path)
    write_atomically(exceptions[EXCEPTION_COLUMNS], exceptions_path)
    write_atomically(labels, out_path)
    assigned = labels[labels["assigned"].astype(bool)]
    per_sector = {s: int((assigned["sector_id"] == s).sum()) for s in sector_ids}
    return ClassifyResult(out_path, exceptions_path, len(register), len(todo), len(exceptions), per_sector, ref)
