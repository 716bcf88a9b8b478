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
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pandas as pd

from rtic.mlops import registry
from rtic.config import Settings
from rtic.contracts import (EXCEPTION_COLUMNS, SCORING_ERROR, LABEL_COLUMNS, OUTPUT_COLUMNS, assigned_column, probability_column,
                            sibling_path)
from rtic.embed.encoder import text_sha256
from rtic.errors import RticError
from rtic.progress import rate_eta
from rtic.register import Register
from rtic.tables import atomic_path, check_writable, require_columns, select_in, write_atomically
from rtic.text import RegisterText, TextSource

log = logging.getLogger(__name__)

RUN_FORMAT = 2  # 2: parts hold carried rows in input order; seen ids and --since index in SQLite


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
    fast_margin: float | None = None  # fast path: the margin z used (given, or chosen for the agreement target)
    exceptions_by_reason: dict[str, int] = field(default_factory=dict)
    manifest_path: Path | None = None
    resumed_chunks: int = 0
    websites: str = ""  # --websites: how many were attached, and where the unused rows are listed
    websites_report: Path | None = None


def exceptions_path_for(out: Path) -> Path:
    return sibling_path(out, ".exceptions.csv")


def parts_dir_for(out: Path) -> Path:
    return sibling_path(out, ".parts")


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


class Previous:
    """A previous labels Parquet for --since, indexed in SQLite on disk (memory stays flat at 5M firms).

    The index maps firm_id → (text hash | model version, the row groups holding the firm's rows), so each
    chunk looks up its own firms and copies the unchanged firms' rows from just those row groups.
    """

    def __init__(self, path: Path, index_path: Path):
        import pyarrow.parquet as pq
        import sqlite3

        self.path, self.file = path, pq.ParquetFile(path)
        self.db = sqlite3.connect(str(index_path))
        self._cache: dict[int, pd.DataFrame] = {}
        if not self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'built'").fetchone():  # built once; a resume reuses it
            self._build()

    @staticmethod
    def check(path: str | Path) -> Path:
        """A clear one-line error before any work when PREVIOUS is missing or not a firm-labels Parquet."""
        import pyarrow.parquet as pq

        path = Path(path)
        if not path.is_file():
            raise RticError(f"--since output not found: {path}")
        try:
            names = set(pq.ParquetFile(path).schema_arrow.names)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
            raise RticError(f"--since {path} is not a firm-labels Parquet: {str(exc).splitlines()[0]}") from None
        missing = [c for c in LABEL_COLUMNS if c not in names]
        if missing:
            raise RticError(f"--since {path} is not a firm-labels Parquet: no column {', '.join(missing)}")
        return path

    def _build(self) -> None:
        with self.db:
            self.db.execute("DROP TABLE IF EXISTS prev")
            self.db.execute("CREATE TABLE prev (firm_id TEXT PRIMARY KEY, key TEXT, rg_first INTEGER, rg_last INTEGER) WITHOUT ROWID")
            for rg in range(self.file.num_row_groups):
                part = self.file.read_row_group(rg, columns=["firm_id", "text_sha256", "model_version"]).to_pandas().drop_duplicates("firm_id")
                keys = part["text_sha256"].astype(str) + "|" + part["model_version"].astype(str)
                self.db.executemany("INSERT INTO prev VALUES (?, ?, ?, ?) ON CONFLICT(firm_id) DO UPDATE SET rg_last = excluded.rg_last",
                                    zip(part["firm_id"].astype(str), keys, [rg] * len(part), [rg] * len(part)))
            self.db.execute("CREATE TABLE built (at TEXT)")

    def _lookup(self, ids: list[str]) -> dict[str, tuple[str, int, int]]:
        return {fid: (key, first, last) for fid, key, first, last in select_in(self.db, "SELECT * FROM prev WHERE firm_id IN ({})", ids)}

    def carried(self, texts: pd.DataFrame, model_version: str) -> tuple[pd.Series, pd.DataFrame]:
        """Which firms' text hash and model version are unchanged, and those firms' previous rows."""
        found = self._lookup(texts["firm_id"].tolist())
        now = texts["text"].map(text_sha256) + "|" + model_version
        before = [found.get(fid, ("",))[0] for fid in texts["firm_id"]]
        same = pd.Series(now.to_numpy() == before, index=texts.index)
        return same, self._rows(texts.loc[same, "firm_id"].tolist(), found)

    def _rows(self, ids: list[str], found: dict[str, tuple[str, int, int]]) -> pd.DataFrame:
        """The previous output's rows for these firms (OUTPUT_COLUMNS), read from their row groups only."""
        groups = sorted({rg for fid in ids for rg in range(found[fid][1], found[fid][2] + 1)})
        frames = []
        for rg in groups:
            if rg not in self._cache:
                if len(self._cache) >= 2:  # consecutive chunks mostly read the same row group or the next
                    self._cache.pop(next(iter(self._cache)))
                table = self.file.read_row_group(rg)
                frame = table.to_pandas()
                if "scored_by" not in frame.columns:
                    frame["scored_by"] = "transformer"
                self._cache[rg] = frame[OUTPUT_COLUMNS]
            frame = self._cache[rg]
            frames.append(frame[frame["firm_id"].isin(ids)])
        if not frames:
            return empty_labels()
        return pd.concat(frames, ignore_index=True).drop_duplicates(["firm_id", "sector_id"])

    def close(self) -> None:
        self.db.close()


def empty_labels() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in OUTPUT_COLUMNS}).astype({"probability": float, "assigned": bool})


def in_input_order(labels: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Labels in register order (each firm's sectors by id), whatever order they were scored or carried in."""
    line = labels["firm_id"].map(pd.Series(rows["line"].to_numpy(), index=rows["firm_id"].to_numpy()))
    order = pd.DataFrame({"line": line.to_numpy(), "sector_id": labels["sector_id"].to_numpy()}).sort_values(["line", "sector_id"], kind="stable").index
    return labels.iloc[order].reset_index(drop=True)


# -- the run ------------------------------------------------------------------------------------------
def _run_identity(register_path: Path, ref: registry.ModelRef, chunk_rows: int, engine_key: dict, since: Path | None, source: TextSource) -> dict:
    stat = register_path.stat()
    return {
        "format": RUN_FORMAT, "register": str(register_path.resolve()), "register_size": stat.st_size, "register_mtime_ns": stat.st_mtime_ns,
        "model_uri": ref.uri, "model_version": ref.version, "chunk_rows": chunk_rows, "scorer": engine_key,
        "since": str(since.resolve()) if since else None, "text_source": source.describe(),
        "since_size_mtime": [since.stat().st_size, since.stat().st_mtime_ns] if since else None,  # its index in OUT.parts is built once
    }


def _prepare_parts(parts: Path, identity: dict, restart: bool) -> tuple[dict, bool]:
    """Start or resume a run in `parts`; a run with other arguments is refused unless restart."""
    run_file = parts / "run.json"
    finished = (parts / "manifest.json").exists()  # a finished run is simply replaced by a new one
    if run_file.exists() and not restart and not finished:
        state = json.loads(run_file.read_text())
        if state["identity"] == identity:
            return state, True
        changed = sorted(k for k in identity if state["identity"].get(k) != identity[k])
        raise RticError(f"{parts} holds an unfinished run with different {', '.join(changed)}: re-run with the same arguments to resume, or add --restart")
    if parts.exists():
        shutil.rmtree(parts)
    parts.mkdir(parents=True)
    state = {"identity": identity, "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with atomic_path(run_file) as tmp:
        tmp.write_text(json.dumps(state, indent=2))
    return state, False


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
    fast_margin: float | None = None,
    source: TextSource | None = None,
    fast_agreement: float | None = None,
    websites: str | Path | None = None,
) -> ClassifyResult:
    """Stream `register_path` through the model into OUT (labels), OUT's .exceptions.csv and OUT.parts/.

    `chunk_rows` raw records per chunk (default `batch_size`); `since` a previous labels Parquet whose
    unchanged firms (same text hash and model version) are copied instead of re-scored; `fast` scores
    with the static-embedding head first and re-scores firms within `fast_margin` z of a threshold with the
    transformer (default: the z the head's validation table gives for `fast_agreement`, see rtic.score.fastpath);
    `websites` a firm_id,website file joined on company number (rtic.websites): firms it gives a website are not
    `no_website` exceptions, and its rows that meet no firm are listed in OUT's .unmatched-websites.csv.
    """
    from rtic.websites import Websites

    out_path = Path(out_path)
    if out_path.suffix.lower() not in {".parquet", ".pq"}:
        raise RticError(f"--out must be a .parquet file, got {out_path}")
    rows_per_chunk = batch_size if chunk_rows is None else chunk_rows
    if rows_per_chunk < 1:
        raise RticError(f"--chunk-rows must be at least 1, got {rows_per_chunk}")
    check_writable(out_path)  # before the register is read or the model loaded
    register_path = Path(register_path)
    source = source or RegisterText()
    register = Register.open(register_path)  # whole-file checks: exists, readable, has firm_id, column types
    require_columns(register.columns, source.required_columns, register_path, "register")
    since = Previous.check(since) if since else None
    sites_file = Websites(websites) if websites else None
    model = registry.open_model(model_uri, settings, taxonomy_path)
    ref, model_taxonomy, sector_ids = model.ref, model.taxonomy_version, model.sector_ids

    def transformer(frame: pd.DataFrame) -> pd.DataFrame:
        out = model.pyfunc.predict(frame[["firm_id", "text"]].reset_index(drop=True), params={"taxonomy_version": model_taxonomy})
        out["scored_by"] = "transformer"
        return out

    scorer, scorer_key = transformer, {"kind": "transformer"}
    if fast:
        from rtic.score.fastpath import FastScorer

        fast_scorer = FastScorer.for_model(model, settings, transformer, margin=fast_margin, agreement=fast_agreement)
        scorer, scorer_key = fast_scorer, fast_scorer.identity()

    chunk_rows = int(chunk_rows or batch_size)
    parts = parts_dir_for(out_path)
    identity = _run_identity(register_path, ref, chunk_rows, scorer_key, Path(since) if since else None, source)
    if sites_file is not None:
        stat = sites_file.path.stat()
        identity["websites"] = [str(sites_file.path.resolve()), stat.st_size, stat.st_mtime_ns]
    state, resumed = _prepare_parts(parts, identity, restart)
    previous = Previous(since, parts / "previous.sqlite") if since else None
    when = state["started_at"]  # one timestamp for the run, so a resumed run writes what an unbroken one would
    total, exact = register.estimated_rows
    log.info(f"classifying {'' if exact else '~'}{total:,} firms from {register_path.name} with {ref.name} v{ref.version} "
             f"(taxonomy {model_taxonomy}; {'fast path' if fast else 'transformer'}; chunks of {chunk_rows:,}; text from {source.describe()})"
             + (f"; resuming from {parts}" if resumed else ""))

    counts = {"records": 0, "classified": 0, "carried": 0, "escalated": 0, "exceptions": 0, "reasons": {}, "assigned": {s: 0 for s in sector_ids}}
    started, fresh_records, resumed_chunks = time.monotonic(), 0, 0
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
        _add_counts(counts, done)
        left = max(total - counts["records"], 0)
        log.info(f"  {counts['records']:,}/{'' if exact else '~'}{total:,} firms ({chunk.fraction_read:.0%} of file), "
                 f"{rate_eta(fresh_records, time.monotonic() - started, left, 'firms')}"
                 + (f"; {counts['escalated']:,} re-scored by transformer" if fast else ""))

    if previous is not None:
        previous.close()
    labels_path, exceptions_path = _merge(parts, out_path)
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
                          fast_margin=scorer_key.get("margin") if fast else None,
                          websites=sites_file.summary(websites_report) if sites_file else "", websites_report=websites_report)


def _add_counts(counts: dict, done: dict) -> None:
    for key in ("records", "classified", "carried", "escalated", "exceptions"):
        counts[key] += done[key]
    for key, value in done["reasons"].items():
        counts["reasons"][key] = counts["reasons"].get(key, 0) + value
    for key, value in done["assigned"].items():
        counts["assigned"][key] = counts["assigned"].get(key, 0) + value


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


def _merge(parts: Path, out_path: Path) -> tuple[Path, Path]:
    """Concatenate the chunk parts, in chunk order, into OUT and its exceptions CSV (one part in memory at a time)."""
    return (merge_parquet(sorted(parts.glob("chunk-??????.parquet")), out_path, OUTPUT_COLUMNS),
            merge_csv(sorted(parts.glob("chunk-*.exceptions.parquet")), exceptions_path_for(out_path), EXCEPTION_COLUMNS))


def merge_parquet(files: list[Path], out_path: Path, columns: list[str]) -> Path:
    """Stream Parquet files (in the given order) into one Parquet at out_path, row group by row group."""
    import pyarrow.parquet as pq

    with atomic_path(out_path) as tmp:
        writer = None
        for part in files:
            source = pq.ParquetFile(part)
            for rg in range(source.num_row_groups):
                table = source.read_row_group(rg, columns=columns)
                if table.num_rows == 0:
                    continue
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table.cast(writer.schema))
        if writer is None:  # nothing classified: still an (empty) table with the contract's columns
            empty_labels()[columns].to_parquet(tmp, index=False)
        else:
            writer.close()
    return out_path


def merge_csv(files: list[Path], out_path: Path, columns: list[str]) -> Path:
    """Stream Parquet files (in the given order) into one CSV at out_path, row group by row group."""
    import pyarrow.parquet as pq

    with atomic_path(out_path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        header = True
        for part in files:
            source = pq.ParquetFile(part)
            for rg in range(source.num_row_groups):
                source.read_row_group(rg).to_pandas().reindex(columns=columns).to_csv(fh, index=False, header=header)
                header = False
        if header:
            pd.DataFrame(columns=columns).to_csv(fh, index=False)
    return out_path
