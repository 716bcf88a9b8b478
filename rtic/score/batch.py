"""Classify a register with a registered model and write firm labels (long form, one row per firm × sector).

The register is streamed in chunks of raw records. Each chunk's labels and exceptions are written as
Parquet parts under `OUT.parts/` as soon as they are scored, with a small JSON of counts written last as
the chunk's commit mark; a killed run re-run with the same arguments skips committed chunks and carries
on. At the end the parts are merged (streamed, bounded memory) into the single long-form labels Parquet
at OUT, the exceptions CSV beside it, and `OUT.parts/manifest.json` describing the whole run.

Where firm text comes from is a `rtic.text.TextSource`: the register's own `text` column, or a crawl store
(texts for some firms, reasons for the others).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pandas as pd

from rtic.mlops import registry
from rtic.config import Settings
from rtic.contracts import (EXCEPTION_COLUMNS, SCORING_ERROR, OUTPUT_COLUMNS, assigned_column, probability_column,
                            sibling_path)
from rtic import config
from rtic.embed.encoder import ENGINES, text_sha256
from rtic.errors import RticError
from rtic.progress import rate_eta
from rtic.register import Register
from rtic.tables import atomic_path, check_writable, require_columns, write_atomically
from rtic.score.previous import Previous
from rtic.score.runstate import (add_counts, empty_labels, merge_parts, parts_dir_for, prepare_parts,
                                 run_identity)
from rtic.text import RegisterText, TextSource

log = logging.getLogger(__name__)



@dataclass
class ClassifyResult:
    labels_path: Path
    exceptions_path: Path
    n_input: int
    n_classified: int
    n_exceptions: int
    firms_per_sector: dict[str, int]
    model: registry.ModelRef
    n_carried: int = 0  # unchanged since the previous output, copied from it (--since)
    n_escalated: int = 0  # fast path: firms re-scored by the transformer
    fast_risk: float | None = None  # fast path: the risk threshold used (given, or chosen for the agreement target)
    exceptions_by_reason: dict[str, int] = field(default_factory=dict)
    manifest_path: Path | None = None
    resumed_chunks: int = 0
    websites: str = ""  # --websites: how many were attached, and where the unused rows are listed
    websites_report: Path | None = None


# -- scoring ----------------------------------------------------------------------------------------
def to_long(predictions: pd.DataFrame, texts: pd.Series, sector_ids: list[str], model: registry.ModelRef, taxonomy_version: str, when: str) -> pd.DataFrame:
    """Wide pyfunc output → the long firm-labels contract (plus `scored_by`)."""
    parts = []
    hashes = texts.map(text_sha256).to_numpy()
    scored_by = predictions["scored_by"].to_numpy() if "scored_by" in predictions.columns else "transformer"
    for sector in sector_ids:
        parts.append(pd.DataFrame({
            "firm_id": predictions["firm_id"].to_numpy(),
            "sector_id": sector,
            "probability": predictions[probability_column(sector)].astype(float).to_numpy(),
            "assigned": predictions[assigned_column(sector)].astype(bool).to_numpy(),
            "text_sha256": hashes,
            "scored_by": scored_by,
        }))
    long = pd.concat(parts, ignore_index=True)
    long["model_name"] = model.name
    long["model_version"] = model.version
    long["taxonomy_version"] = taxonomy_version
    long["classified_at"] = when
    long = long.sort_values(["firm_id", "sector_id"], kind="stable").reset_index(drop=True)
    return long[OUTPUT_COLUMNS]


def predict_guarded(predict: Callable[[pd.DataFrame], pd.DataFrame], frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score a chunk; if the chunk fails, score firm by firm so one bad firm becomes one 'error' row."""
    try:
        return predict(frame), pd.DataFrame(columns=EXCEPTION_COLUMNS)
    except Exception:  # noqa: BLE001 - any model failure must be reported per firm, not end the run
        good, errors = [], []
        for i in range(len(frame)):
            one = frame.iloc[i : i + 1].reset_index(drop=True)
            try:
                good.append(predict(one))
            except Exception as exc:  # noqa: BLE001
                errors.append({"firm_id": one["firm_id"][0], "line": one["line"][0], "reason": SCORING_ERROR, "detail": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]})
        preds = pd.concat(good, ignore_index=True) if good else None
        return preds, pd.DataFrame(errors, columns=EXCEPTION_COLUMNS)


def in_input_order(labels: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Labels in register order (each firm's sectors by id), whatever order they were scored or carried in."""
    line = labels["firm_id"].map(pd.Series(rows["line"].to_numpy(), index=rows["firm_id"].to_numpy()))
    order = pd.DataFrame({"line": line.to_numpy(), "sector_id": labels["sector_id"].to_numpy()}).sort_values(["line", "sector_id"], kind="stable").index
    return labels.iloc[order].reset_index(drop=True)


def classify_register(
    register_path: str | Path,
    out_path: str | Path,
    settings: Settings,
    model_uri: str | None = None,
    taxonomy_path: str | Path | None = None,
    batch_size: int = 512,
    chunk_rows: int | None = None,
    since: str | Path | None = None,
    restart: bool = False,
    fast: bool = False,
    fast_risk: float | None = None,
    source: TextSource | None = None,
    fast_agreement: float | None = None,
    websites: str | Path | None = None,
    encoder: str = config.ENCODER_ENGINE,
    fast_workers: int = config.FAST_WORKERS,
) -> ClassifyResult:
    """Stream `register_path` through the model into OUT (labels), OUT's .exceptions.csv and OUT.parts/.

    `chunk_rows` raw records per chunk (default `batch_size`); `since` a previous labels Parquet whose
    unchanged firms (same text hash and model version) are copied instead of re-scored; `fast` scores
    with the static-embedding head first and re-scores with the transformer every firm whose risk of any label change
    is at least `fast_risk` (default: the threshold the head's validation table gives for `fast_agreement`, a share of
    firms whose whole label set equals the transformer's; see rtic.score.fastpath);
    `websites` a firm_id,website file joined on company number (rtic.websites): firms it gives a website are not
    `no_website` exceptions, and its rows that meet no firm are listed in OUT's .unmatched-websites.csv;
    `encoder` the engine that embeds text for the transformer path (rtic.embed.encoder.ENGINES); `fast_workers` the
    processes that share the fast path's static pass.
    """
    from rtic.websites import Websites

    out_path = Path(out_path)
    if out_path.suffix.lower() not in {".parquet", ".pq"}:
        raise RticError(f"--out must be a .parquet file, got {out_path}")
    rows_per_chunk = batch_size if chunk_rows is None else chunk_rows
    if rows_per_chunk < 1:
        raise RticError(f"--chunk-rows must be at least 1, got {rows_per_chunk}")
    if encoder not in ENGINES:
        raise RticError(f"--encoder must be one of {', '.join(ENGINES)}, got {encoder!r}")
    if encoder != "torch" and fast:
        raise RticError(f"--encoder {encoder} and --fast: the fast head is distilled from the torch encoder; use one or the other")
    check_writable(out_path)  # before the register is read or the model loaded
    register_path = Path(register_path)
    source = source or RegisterText()
    register = Register.open(register_path)  # whole-file checks: exists, readable, has firm_id, column types
    require_columns(register.columns, source.required_columns, register_path, "register")
    since = Previous.check(since) if since else None
    sites_file = Websites(websites) if websites else None
    model = registry.open_model(model_uri, settings, taxonomy_path)
    ref, model_taxonomy, sector_ids = model.ref, model.taxonomy_version, model.sector_ids
    if encoder != "torch":  # the pyfunc scores with this classifier object, so its encoder is the one that runs
        model.classifier.encoder = model.classifier.encoder.with_engine(encoder, int8_dir=settings.int8_dir)

    def transformer(frame: pd.DataFrame) -> pd.DataFrame:
        out = model.pyfunc.predict(frame[["firm_id", "text"]].reset_index(drop=True), params={"taxonomy_version": model_taxonomy})
        out["scored_by"] = "transformer"
        return out

    scorer, scorer_key = transformer, {"kind": "transformer"} if encoder == "torch" else {"kind": "transformer", "encoder": encoder}
    if fast:
        from rtic.score.fastpath import FastScorer

        fast_scorer = FastScorer.for_model(model, settings, transformer, risk=fast_risk, agreement=fast_agreement, workers=fast_workers)
        scorer, scorer_key = fast_scorer, fast_scorer.identity()

    chunk_rows = int(chunk_rows or batch_size)
    parts = parts_dir_for(out_path)
    identity = run_identity(register_path, ref, chunk_rows, scorer_key, Path(since) if since else None, source)
    if sites_file is not None:
        stat = sites_file.path.stat()
        identity["websites"] = [str(sites_file.path.resolve()), stat.st_size, stat.st_mtime_ns]
    state, resumed = prepare_parts(parts, identity, restart)
    previous = Previous(since, parts / "previous.sqlite") if since else None
    when = state["started_at"]  # one timestamp for the run, so a resumed run writes what an unbroken one would
    total, exact = register.estimated_rows
    if fast:
        fast_scorer.start(min(total, chunk_rows))
    log.info(f"classifying {'' if exact else '~'}{total:,} firms from {register_path.name} with {ref.name} v{ref.version} "
             f"(taxonomy {model_taxonomy}; {'fast path' if fast else 'transformer'}; chunks of {chunk_rows:,}; text from {source.describe()})"
             + (f"; resuming from {parts}" if resumed else ""))

    counts = {"records": 0, "classified": 0, "carried": 0, "escalated": 0, "exceptions": 0, "reasons": {}, "assigned": {s: 0 for s in sector_ids}}
    started, fresh_records, resumed_chunks = time.monotonic(), 0, 0
    try:
        for chunk in register.chunks(chunk_rows, seen_path=parts / "seen.sqlite"):
            if sites_file is not None:  # on resumed chunks too, so the unmatched report covers the whole register
                chunk.rows = sites_file.attach(chunk.rows)
            mark = parts / f"chunk-{chunk.index:06d}.json"
            if mark.exists():
                done = json.loads(mark.read_text())
                resumed_chunks += 1
            else:
                done = _run_chunk(chunk, parts, source, scorer, previous, ref, model_taxonomy, sector_ids, when, fast)
                fresh_records += chunk.records
            add_counts(counts, done)
            left = max(total - counts["records"], 0)
            log.info(f"  {counts['records']:,}/{'' if exact else '~'}{total:,} firms ({chunk.fraction_read:.0%} of file), "
                     f"{rate_eta(fresh_records, time.monotonic() - started, left, 'firms')}"
                     + (f"; {counts['escalated']:,} re-scored by transformer" if fast else ""))
    finally:
        if fast:
            scorer.close()  # the static-pass workers

    if previous is not None:
        previous.close()
    labels_path, exceptions_path = merge_parts(parts, out_path)
    n_classified = counts["classified"] + counts["carried"]
    if counts["records"] != n_classified + counts["exceptions"]:  # the run's own reconciliation
        raise RuntimeError(f"counts do not reconcile: {counts}")
    manifest = {
        **state, "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"uri": ref.uri, "name": ref.name, "version": ref.version, "taxonomy_version": model_taxonomy},
        "counts": {"input_rows": counts["records"], "scored": counts["classified"], "carried_from_previous": counts["carried"],
                   "escalated_to_transformer": counts["escalated"], "exceptions": counts["exceptions"], "exceptions_by_reason": counts["reasons"],
                   "firms_per_sector": counts["assigned"]},
        "outputs": {"labels": str(labels_path), "exceptions": str(exceptions_path)},
        "parts": sorted(p.name for p in parts.glob("chunk-??????.parquet")),  # each with .exceptions/.json beside it
    }
    websites_report = sites_file.write_report(sibling_path(out_path, ".unmatched-websites.csv")) if sites_file else None
    if sites_file is not None:
        manifest["outputs"]["unmatched_websites"] = str(websites_report) if websites_report else None
    manifest_path = parts / "manifest.json"
    with atomic_path(manifest_path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
    return ClassifyResult(labels_path, exceptions_path, counts["records"], n_classified, counts["exceptions"], counts["assigned"], ref,
                          n_carried=counts["carried"], n_escalated=counts["escalated"], exceptions_by_reason=counts["reasons"],
                          manifest_path=manifest_path, resumed_chunks=resumed_chunks,
                          fast_risk=scorer_key.get("risk") if fast else None,
                          websites=sites_file.summary(websites_report) if sites_file else "", websites_report=websites_report)


def _run_chunk(chunk, parts: Path, source: TextSource, scorer, previous: Previous | None, ref, model_taxonomy: str, sector_ids: list[str], when: str, fast: bool) -> dict:
    """Score one chunk and commit it: labels part (scored and carried rows, in input order), exceptions part, then the counts mark."""
    texts, missing = source.texts(chunk.rows)
    carried = empty_labels()
    if previous is not None and len(texts):
        same, carried = previous.carried(texts, ref.version)
        texts = texts[~same].reset_index(drop=True)
    predictions, errors = predict_guarded(scorer, texts) if len(texts) else (None, pd.DataFrame(columns=EXCEPTION_COLUMNS))
    if predictions is not None and len(predictions):
        scored_texts = texts.set_index("firm_id").loc[predictions["firm_id"], "text"].reset_index(drop=True)
        labels = to_long(predictions.reset_index(drop=True), scored_texts, sector_ids, ref, model_taxonomy, when)
    else:
        labels = empty_labels()
    n_scored = labels["firm_id"].nunique()
    escalated = int(labels.loc[labels["scored_by"] == "transformer", "firm_id"].nunique()) if fast else 0
    if len(carried):
        labels = pd.concat([labels, carried.astype(labels.dtypes.to_dict())], ignore_index=True)
    labels = in_input_order(labels, chunk.rows)
    exceptions = pd.concat([df for df in (chunk.bad, missing, errors) if len(df)] or [pd.DataFrame(columns=EXCEPTION_COLUMNS)], ignore_index=True)
    exceptions = exceptions[EXCEPTION_COLUMNS].astype({"firm_id": str, "reason": str, "detail": str}).astype({"line": "int64"}).sort_values("line", kind="stable")
    stem = parts / f"chunk-{chunk.index:06d}"
    write_atomically(exceptions.reset_index(drop=True), stem.with_suffix(".exceptions.parquet"))
    write_atomically(labels, stem.with_suffix(".parquet"))
    assigned = labels[labels["assigned"].astype(bool)]
    done = {
        "records": chunk.records, "classified": int(n_scored), "carried": int(carried["firm_id"].nunique()), "exceptions": len(exceptions),
        "escalated": escalated,
        "reasons": {str(k): int(v) for k, v in exceptions["reason"].value_counts().items()},
        "assigned": {s: int((assigned["sector_id"] == s).sum()) for s in sector_ids},
    }
    with atomic_path(stem.with_suffix(".json")) as tmp:  # the commit mark: written last
        tmp.write_text(json.dumps(done))
    return done
