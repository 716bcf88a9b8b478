"""A classify run's state on disk: where its parts go, its identity (resume only with the same arguments),
the per-chunk counts, and the streamed merge of the committed parts into OUT and its exceptions CSV."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from rtic.contracts import EXCEPTION_COLUMNS, OUTPUT_COLUMNS, sibling_path
from rtic.errors import RticError
from rtic.mlops import registry
from rtic.tables import atomic_path
from rtic.text import TextSource

RUN_FORMAT = 2  # 2: parts hold carried rows in input order; seen ids and --since index in SQLite


def exceptions_path_for(out: Path) -> Path:
    return sibling_path(out, ".exceptions.csv")


def parts_dir_for(out: Path) -> Path:
    return sibling_path(out, ".parts")


def empty_labels() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in OUTPUT_COLUMNS}).astype({"probability": float, "assigned": bool})


def run_identity(register_path: Path, ref: registry.ModelRef, chunk_rows: int, engine_key: dict, since: Path | None, source: TextSource) -> dict:
    stat = register_path.stat()
    return {
        "format": RUN_FORMAT, "register": str(register_path.resolve()), "register_size": stat.st_size, "register_mtime_ns": stat.st_mtime_ns,
        "model_uri": ref.uri, "model_version": ref.version, "chunk_rows": chunk_rows, "scorer": engine_key,
        "since": str(since.resolve()) if since else None, "text_source": source.describe(),
        "since_size_mtime": [since.stat().st_size, since.stat().st_mtime_ns] if since else None,  # its index in OUT.parts is built once
    }


def prepare_parts(parts: Path, identity: dict, restart: bool) -> tuple[dict, bool]:
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


def add_counts(counts: dict, done: dict) -> None:
    for key in ("records", "classified", "carried", "escalated", "exceptions"):
        counts[key] += done[key]
    for key, value in done["reasons"].items():
        counts["reasons"][key] = counts["reasons"].get(key, 0) + value
    for key, value in done["assigned"].items():
        counts["assigned"][key] = counts["assigned"].get(key, 0) + value


def merge_parts(parts: Path, out_path: Path) -> tuple[Path, Path]:
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
