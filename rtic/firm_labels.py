"""Reading the firm labels `rtic classify` writes (long-form Parquet and the exceptions CSV beside it).

Not to be confused with rtic/labels.py, which reads *labelled firms* (`firm_id,text,sectors`), the
training and evaluation input. This module serves the consumers of classify's output: one firm's
rows and its exceptions row (explain, review), the sector ids of a labels file, and the wide CSV
for spreadsheets (`rtic labels export`).
"""

from __future__ import annotations

import logging

import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from rtic.contracts import parse_bool_column, sibling_path
from rtic.errors import RticError
from rtic.tables import PARQUET_SUFFIXES, atomic_path, check_input_file, select_in

log = logging.getLogger(__name__)
WIDE_VALUES = ("assigned", "probability")
WIDE_FIRST = ["firm_id", "name", "website"]
WIDE_LAST = ["model_name", "model_version", "taxonomy_version", "not_classified"]
WIDE_LABEL_COLUMNS = ["firm_id", "sector_id", "probability", "assigned", "model_name", "model_version", "taxonomy_version"]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet reads a cell starting so as a formula
BATCH_ROWS = 200_000


def exceptions_path(labels: str | Path) -> Path:
    return sibling_path(labels, ".exceptions.csv")


def read_firm_labels(labels: str | Path, firm_id: str) -> pd.DataFrame:
    """The firm's rows of a labels Parquet (read with a filter, so a 9M-row file costs little)."""
    import pyarrow.parquet as pq

    path = Path(labels)
    if not path.is_file():
        raise RticError(f"labels file not found: {path}")
    try:
        table = pq.read_table(path, filters=[("firm_id", "=", firm_id)])
    except Exception as exc:  # pyarrow's errors for a file that is not Parquet vary
        raise RticError(f"cannot read labels file {path}: {str(exc).splitlines()[0]}") from None
    return table.to_pandas()


def open_labels_parquet(labels: str | Path, columns: list[str]):
    """A labels Parquet opened for streaming (pyarrow ParquetFile), checked to have `columns`."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(labels)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise RticError(f"cannot read labels file {labels}: {str(exc).splitlines()[0]}") from None
    missing = [c for c in columns if c not in pf.schema_arrow.names]
    if missing:
        raise RticError(f"labels file {labels} has no column {', '.join(map(repr, missing))}: is it the output of `rtic classify`?")
    return pf


def _exception_rows(labels: str | Path):
    """The rows of the exceptions file beside `labels`, streamed; nothing when there is none."""
    path = exceptions_path(labels)
    if not path.is_file():
        return
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        with path.open(encoding="utf-8", errors="replace", newline="") as fh:
            yield from csv.DictReader(fh)
    except csv.Error as exc:
        raise RticError(f"cannot read exceptions file {path}: {exc}") from None


def find_exception(labels: str | Path, firm_id: str) -> dict | None:
    """The firm's row (reason, detail) in the exceptions file `rtic classify` wrote beside the labels, or None.
    Streamed and stopped at the firm, so a million-row exceptions file costs one pass at most."""
    for row in _exception_rows(labels):
        if (row.get("firm_id") or "").strip() == firm_id:
            return {"reason": row.get("reason") or "", "detail": row.get("detail") or "", "file": str(exceptions_path(labels))}
    return None


def labels_sector_ids(labels: str | Path) -> list[str]:
    """The sector ids of a labels Parquet (the model's taxonomy), in first-seen order, reading only that column."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        column = pq.read_table(labels, columns=["sector_id"], read_dictionary=["sector_id"]).column("sector_id")
    except Exception as exc:  # pyarrow's errors for a file that is not Parquet vary
        raise RticError(f"cannot read labels file {labels}: {str(exc).splitlines()[0]}") from None
    return [str(s) for s in pc.unique(column.combine_chunks().dictionary_decode()).to_pylist() if s is not None]


# -- the wide CSV ---------------------------------------------------------------------------------
def spreadsheet_cell(value) -> str:
    """Text for a spreadsheet cell: one starting like a formula (=, +, -, @) is quoted with a leading ' (OWASP CSV injection)."""
    text = "" if value is None or (isinstance(value, float) and value != value) else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


class RegisterLookup:
    """firm_id -> (name, website) of a register, in SQLite on disk: memory stays flat at any register size."""

    def __init__(self, register: str | Path):
        import sqlite3
        import tempfile

        from rtic.register import Register

        self._tmp = tempfile.TemporaryDirectory(prefix="rtic-wide-")
        self.db = sqlite3.connect(str(Path(self._tmp.name) / "register.sqlite"))
        self.db.execute("CREATE TABLE firms (firm_id TEXT PRIMARY KEY, name TEXT, website TEXT) WITHOUT ROWID")
        n = 0
        for chunk in Register.open(register).chunks(chunk_rows=20_000):
            rows = chunk.rows
            names = rows["name"] if "name" in rows.columns else [""] * len(rows)
            websites = rows["website"] if "website" in rows.columns else [""] * len(rows)
            with self.db:
                self.db.executemany("INSERT OR IGNORE INTO firms VALUES (?, ?, ?)", zip(rows["firm_id"], names, websites))
            n += len(rows)
            log.info(f"  read {n:,} register rows (names, websites)")

    def get(self, ids: list[str]) -> dict[str, tuple[str, str]]:
        return {f: (n or "", w or "") for f, n, w in select_in(self.db, "SELECT firm_id, name, website FROM firms WHERE firm_id IN ({})", ids)}

    def close(self) -> None:
        self.db.close()
        self._tmp.cleanup()


def split_firm(labels: Path, firm_id: str) -> RticError:
    return RticError(f"labels file {labels} lists firm {firm_id}'s sectors in two places: the export needs each firm's rows "
                     "together, as rtic classify and rtic review publish write them")


@dataclass
class WideExport:
    out: Path
    values: str
    sector_ids: list[str]
    n_classified: int = 0
    n_not_classified: int = 0
    n_named: int = 0  # rows whose firm was found in the register
    warnings: list[str] = field(default_factory=list)


def export_wide(labels: str | Path, out: str | Path, register: str | Path | None = None, values: str = "assigned") -> WideExport:
    """Firm labels as a wide CSV, one row per firm: firm_id, name, website (from `register`), one column per
    sector, model_name, model_version, taxonomy_version, not_classified.

    A sector cell is `yes`/`no` (values="assigned": the label; a published labels file gives the verdict
    with reviews applied) or the probability to 4 decimals (values="probability"). Firms `rtic classify`
    could not classify follow, from the exceptions file beside the labels, with empty sector cells and
    their reason in `not_classified`. Streamed: the labels in batches, each firm's rows together (as
    classify and review publish write them), the register and the ids already written in SQLite on disk,
    so memory stays flat at millions of firms. Written atomically.
    """
    from rtic.register import SeenIds

    labels, out = check_input_file(labels, "labels file"), Path(out)
    if values not in WIDE_VALUES:
        raise RticError(f"values must be one of {', '.join(WIDE_VALUES)}, got {values!r}")
    if labels.suffix.lower() not in PARQUET_SUFFIXES:
        raise RticError(f"labels file must be Parquet (the output of rtic classify or rtic review publish), got {labels}")
    if out.suffix.lower() != ".csv":
        raise RticError(f"--out must be a .csv file, got {out}")
    pf = open_labels_parquet(labels, WIDE_LABEL_COLUMNS)
    sectors = labels_sector_ids(labels)
    clash = sorted(set(sectors) & set(WIDE_FIRST + WIDE_LAST))
    if clash:
        raise RticError(f"sector id(s) {', '.join(clash)} would clash with the wide CSV's own columns")
    result = WideExport(out, values, sectors)
    lookup = RegisterLookup(register) if register is not None else None
    seen = SeenIds()
    written = 0  # firms written so far: the "line" SeenIds orders them by

    def names_of(ids: list[str]) -> dict[str, tuple[str, str]]:
        found = lookup.get(ids) if lookup is not None else {}
        result.n_named += len(found)
        return found

    def check_new(ids: list[str]) -> None:
        nonlocal written
        again = [f for f, rep in zip(ids, seen.repeated(ids, list(range(written, written + len(ids))))) if rep]
        written += len(ids)
        if again:
            raise split_firm(labels, again[0])

    def firm_block(df: pd.DataFrame, writer) -> None:
        if df.empty:
            return
        ids = list(dict.fromkeys(df["firm_id"]))
        starts = df["firm_id"][df["firm_id"] != df["firm_id"].shift()]  # the first row of each run of one firm's rows
        if len(starts) != len(ids):
            raise split_firm(labels, starts[starts.duplicated()].iloc[0])
        check_new(ids)
        cell = (parse_bool_column(df["assigned"], f"labels file {labels}") if values == "assigned" else df["probability"].to_numpy(float))
        try:
            wide = pd.DataFrame({"firm_id": df["firm_id"].to_numpy(), "sector_id": df["sector_id"].to_numpy(), "v": cell}
                                ).pivot(index="firm_id", columns="sector_id", values="v").reindex(index=ids, columns=sectors)
        except ValueError:
            raise RticError(f"labels file {labels} has a firm with the same sector twice") from None
        meta = df.drop_duplicates("firm_id").set_index("firm_id").loc[ids, ["model_name", "model_version", "taxonomy_version"]]
        found = names_of(ids)
        for fid, row, (mn, mv, tv) in zip(ids, wide.itertuples(index=False), meta.itertuples(index=False)):
            if values == "assigned":
                cells = ["" if v != v else ("yes" if v else "no") for v in row]  # NaN: the firm has no row for that sector
            else:
                cells = ["" if v != v else f"{v:.4f}" for v in row]
            name, website = found.get(fid, ("", ""))
            writer.writerow([spreadsheet_cell(fid), spreadsheet_cell(name), spreadsheet_cell(website), *cells,
                             spreadsheet_cell(mn), spreadsheet_cell(mv), spreadsheet_cell(tv), ""])
        result.n_classified += len(ids)

    try:
        with atomic_path(out) as tmp:
            with tmp.open("w", encoding="utf-8", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(WIDE_FIRST + sectors + WIDE_LAST)
                pending, done_rows, total = pd.DataFrame(), 0, pf.metadata.num_rows
                for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=WIDE_LABEL_COLUMNS):
                    df = pd.concat([pending, batch.to_pandas()], ignore_index=True) if len(pending) else batch.to_pandas()
                    df["firm_id"] = df["firm_id"].astype(str)
                    last = df["firm_id"].iloc[-1]
                    tail = df["firm_id"] == last
                    first_tail = int(tail.to_numpy().argmax())
                    if tail.iloc[first_tail:].all():  # the last firm may go on in the next batch: hold it back
                        pending, df = df.iloc[first_tail:], df.iloc[:first_tail]
                    else:
                        pending = pd.DataFrame()
                    firm_block(df, writer)
                    done_rows += batch.num_rows
                    log.info(f"  wrote {result.n_classified:,} firms ({done_rows:,}/{total:,} label rows)")
                firm_block(pending, writer)
                # Firms classify could not classify, with its reason; ids already written (a repeated
                # register row's exception) are not written twice.
                block: list[dict] = []

                def flush() -> None:
                    nonlocal written
                    ids = [r["firm_id"] for r in block]
                    repeated = seen.repeated(ids, list(range(written, written + len(ids))))
                    written += len(ids)
                    found = names_of([f for f, rep in zip(ids, repeated) if not rep])
                    for r, rep in zip(block, repeated):
                        if rep:
                            continue
                        name, website = found.get(r["firm_id"], ("", ""))
                        writer.writerow([spreadsheet_cell(r["firm_id"]), spreadsheet_cell(name), spreadsheet_cell(website),
                                         *[""] * len(sectors), "", "", "", spreadsheet_cell(r.get("reason") or "")])
                        result.n_not_classified += 1
                    block.clear()

                for row in _exception_rows(labels):
                    row["firm_id"] = (row.get("firm_id") or "").strip()
                    if row["firm_id"]:  # a register row with no id cannot be a spreadsheet row of a firm
                        block.append(row)
                    if len(block) >= 5000:
                        flush()
                flush()
    finally:
        seen.close()
        if lookup is not None:
            lookup.close()
    return result
