"""Company registers: the firms to classify (CSV or Parquet), including Companies House bulk files as they come.

`read_register` loads a whole (small) register and refuses bad ones; `stream_register` reads a register
of any size in chunks of raw records and turns row-level problems (wrong field count, bad UTF-8, empty or
repeated firm_id) into exception rows with their line numbers, so one bad row never stops a 5-million-row
run. The ids seen so far live in SQLite on disk (`SeenIds`), not in memory. Whole-file problems (missing or empty file, no firm_id column) stay one-line RticErrors.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from rtic.contracts import BAD_ENCODING, DUPLICATE_ID, EMPTY_ID, EXCEPTION_COLUMNS, MALFORMED_ROW, REASONS
from rtic.errors import RticError
from rtic.tables import PARQUET_SUFFIXES, check_input_file, check_unique_ids, read_table, require_columns, select_in
from rtic import config

# Companies House BasicCompanyData → register contract. Two CH headers carry a leading space.
COMPANIES_HOUSE_COLUMNS = {
    "CompanyNumber": "firm_id",
    "CompanyName": "name",
    "RegAddress.PostCode": "postcode",
    "URI": "ch_uri",
}
CH_SIC_COLUMNS = [f"SICCode.SicText_{i}" for i in range(1, 5)]


def is_companies_house(df: pd.DataFrame) -> bool:
    return "CompanyNumber" in {c.strip() for c in df.columns}


def from_companies_house(df: pd.DataFrame) -> pd.DataFrame:
    """Map a BasicCompanyData frame onto the register contract (firm_id, name, postcode, sic_codes)."""
    df = df.rename(columns={c: c.strip() for c in df.columns})
    out = df.rename(columns=COMPANIES_HOUSE_COLUMNS)
    sic = [c for c in CH_SIC_COLUMNS if c in df.columns]
    if sic:
        # "62012 - Business and domestic software development" → "62012"
        codes = df[sic].fillna("").astype(str).apply(lambda col: col.str.split(" - ").str[0].str.strip())
        out["sic_codes"] = codes.apply(lambda row: "|".join(c for c in row if c and c.lower() != "none supplied"), axis=1) if len(df) else ""
    return out


def read_register(path: str | Path) -> pd.DataFrame:
    """Read a whole register, checked: a firm_id column (or CompanyNumber), ids present and unique."""
    df = read_table(path, "register")
    if is_companies_house(df):
        df = from_companies_house(df)
    require_columns(df, ["firm_id"], path, "register")
    df["firm_id"] = df["firm_id"].astype(str).str.strip()
    check_unique_ids(df, path, "register")
    if df.empty:
        raise RticError(f"register {path} has a header but no firms")
    return df


# -- streaming --------------------------------------------------------------------------------------
@dataclass
class RegisterChunk:
    """One chunk of raw records: the good rows (register contract + `line`) and the rejected ones."""

    index: int  # 0-based chunk number; chunk k always holds the same raw records
    rows: pd.DataFrame  # firm_id, line, and the register's other columns, as strings
    bad: pd.DataFrame  # EXCEPTION_COLUMNS
    records: int  # raw records read in this chunk (= len(rows) + len(bad))
    fraction_read: float  # how far through the file, 0..1 (bytes for CSV, rows for Parquet)


def _check_header(columns: list[str], path: Path) -> list[str]:
    """Register columns after the Companies House mapping; a missing firm_id is a whole-file error."""
    probe = pd.DataFrame(columns=columns)
    if is_companies_house(probe):
        probe = from_companies_house(probe)
    require_columns(probe, ["firm_id"], path, "register")
    return list(probe.columns)


def register_columns(path: str | Path) -> list[str]:
    """The register's columns after mapping (reads the header and one row); whole-file problems raise."""
    path = check_input_file(path, "register")
    if path.suffix.lower() in PARQUET_SUFFIXES:
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises several types for a broken file
            raise RticError(f"cannot read register {path}: {str(exc).splitlines()[0]}") from None
        if pf.metadata.num_rows == 0:
            raise RticError(f"register {path} has a header but no firms")
        return _check_header([str(n) for n in pf.schema_arrow.names], path)
    with path.open("r", encoding="utf-8", errors="surrogateescape", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        first = next((row for row in reader if row), None)
    if not header:
        raise RticError(f"register is empty: {path}")
    if first is None:
        raise RticError(f"register {path} has a header but no firms")
    if any(_has_bad_bytes(h) for h in header):
        raise RticError(f"register {path} header is not valid UTF-8: re-save it as UTF-8")
    return _check_header(header, path)


def estimate_rows(path: str | Path) -> tuple[int, bool]:
    """(number of firms, exact?): Parquet metadata is exact; for CSV, lines minus the header (fast byte count)."""
    path = check_input_file(path, "register")
    if path.suffix.lower() in PARQUET_SUFFIXES:
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows, True
    lines = 0
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            lines += block.count(b"\n")
            last = block
    if not last.endswith(b"\n"):
        lines += 1
    return max(lines - 1, 0), False


def _has_bad_bytes(value: str) -> bool:
    # surrogateescape turns each undecodable byte into a lone surrogate U+DC80..U+DCFF
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def check_record(row: list[str], width: int, id_at: int | None, line: int) -> dict | None:
    """The exception row for a raw CSV record with the wrong field count or bytes that are not UTF-8, else None.

    Shared by the local reader and the Spark engine so both give the same reasons and details.
    """
    if len(row) != width:
        return {"firm_id": _id_of(row, id_at), "line": line, "reason": MALFORMED_ROW, "detail": f"expected {width} fields, found {len(row)}"}
    if any(_has_bad_bytes(v) for v in row):
        return {"firm_id": _id_of(row, id_at), "line": line, "reason": BAD_ENCODING, "detail": REASONS[BAD_ENCODING]}
    return None


def id_column(header: list[str]) -> int | None:
    """Where the raw header keeps the firm id (firm_id, or Companies House's CompanyNumber)."""
    return header.index("firm_id") if "firm_id" in header else next((i for i, h in enumerate(header) if h.strip() == "CompanyNumber"), None)




class SeenIds:
    """firm_id → line of its first row, in SQLite on disk: memory stays flat at any register size.

    Marking is idempotent (first line wins, by line number), so a resumed run that re-reads its
    finished chunks, or re-does a chunk it was killed in, finds the same first rows as an unbroken run.
    """

    def __init__(self, path: str | Path | None = None):
        import sqlite3
        import tempfile

        self._tmp = None
        if path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="rtic-seen-")
            path = Path(self._tmp.name) / "seen.sqlite"
        self.db = sqlite3.connect(str(path))
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS seen (firm_id TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID")

    def repeated(self, ids: list[str], lines: list[int]) -> list[bool]:
        """Record these rows' ids, then say which rows repeat an id whose first row is on an earlier line."""
        with self.db:
            self.db.executemany("INSERT INTO seen VALUES (?, ?) ON CONFLICT(firm_id) DO UPDATE SET line = MIN(line, excluded.line)",
                                zip(ids, lines))
        first = dict(select_in(self.db, "SELECT firm_id, line FROM seen WHERE firm_id IN ({})", list(dict.fromkeys(ids))))
        return [first[fid] < line for fid, line in zip(ids, lines)]

    def close(self) -> None:
        self.db.close()
        if self._tmp is not None:
            self._tmp.cleanup()


def _finish(records: list[dict], bad: list[dict], columns: list[str], seen: SeenIds, companies_house: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Map, strip ids, and move rows with an empty or repeated firm_id to the bad list (first one wins)."""
    frame = pd.DataFrame.from_records(records, columns=columns + ["line"]) if records else pd.DataFrame(columns=columns + ["line"])
    if companies_house:
        frame = from_companies_house(frame)
    frame["firm_id"] = frame["firm_id"].fillna("").astype(str).str.strip()
    empty = (frame["firm_id"] == "").to_numpy()
    repeated = np.zeros(len(frame), dtype=bool)
    if (~empty).any():
        repeated[~empty] = seen.repeated(frame["firm_id"][~empty].tolist(), [int(v) for v in frame["line"][~empty]])
    for fid, line, is_empty, is_repeated in zip(frame["firm_id"], frame["line"], empty, repeated):
        if is_empty or is_repeated:
            reason, detail = EMPTY_ID if is_empty else DUPLICATE_ID
            bad.append({"firm_id": fid, "line": line, "reason": reason, "detail": detail})
    bad_frame = pd.DataFrame(bad, columns=EXCEPTION_COLUMNS).sort_values("line", kind="stable").reset_index(drop=True)
    return frame[~(empty | repeated)].reset_index(drop=True), bad_frame


def stream_register(path: str | Path, chunk_rows: int = config.CHUNK_ROWS, seen_path: str | Path | None = None) -> Iterator[RegisterChunk]:
    """Yield the register in chunks of `chunk_rows` raw records, with row-level problems as exception rows.

    Memory is one chunk: the firm_ids seen (for duplicate detection) live in SQLite at `seen_path` (a
    temporary file when None; a run keeps it beside its parts so a resume reuses it). Chunk boundaries
    depend only on the file and `chunk_rows`, so a resumed run sees exactly the chunks of the first.
    """
    path = check_input_file(path, "register")
    register_columns(path)  # whole-file checks before the first chunk
    seen = SeenIds(seen_path)
    try:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            yield from _stream_parquet(path, chunk_rows, seen)
        else:
            yield from _stream_csv(path, chunk_rows, seen)
    finally:
        seen.close()


def _stream_parquet(path: Path, chunk_rows: int, seen: SeenIds) -> Iterator[RegisterChunk]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    total = max(pf.metadata.num_rows, 1)
    columns = [str(n) for n in pf.schema_arrow.names]
    companies_house = is_companies_house(pd.DataFrame(columns=columns))
    done = 0
    for index, batch in enumerate(pf.iter_batches(batch_size=chunk_rows)):
        frame = batch.to_pandas()
        frame.columns = columns
        frame = frame.astype(object).where(frame.notna(), "").astype(str)
        frame["line"] = range(done + 1, done + len(frame) + 1)  # Parquet has no lines: 1-based row number
        rows, bad = _finish(frame.to_dict("records"), [], columns, seen, companies_house)
        done += len(frame)
        yield RegisterChunk(index, rows, bad, len(frame), done / total)
    if done == 0:
        raise RticError(f"register {path} has a header but no firms")


def _stream_csv(path: Path, chunk_rows: int, seen: SeenIds) -> Iterator[RegisterChunk]:
    size = max(path.stat().st_size, 1)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # website text can exceed csv's 128 KiB default
    with path.open("r", encoding="utf-8", errors="surrogateescape", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        width = len(header)
        companies_house = is_companies_house(pd.DataFrame(columns=header))
        id_at = id_column(header)
        index, records, bad, count, line = 0, [], [], 0, reader.line_num
        for row in reader:
            start, line = line + 1, reader.line_num  # a quoted field may span several physical lines
            if not row:  # blank line: not a record
                continue
            count += 1
            problem = check_record(row, width, id_at, start)
            if problem:
                bad.append(problem)
            else:
                records.append({**dict(zip(header, row)), "line": start})
            if count == chunk_rows:
                rows, bad_frame = _finish(records, bad, header, seen, companies_house)
                yield RegisterChunk(index, rows, bad_frame, count, _progress(fh, size))
                index, records, bad, count = index + 1, [], [], 0
        if count or index == 0:
            if count == 0:
                raise RticError(f"register {path} has a header but no firms")
            rows, bad_frame = _finish(records, bad, header, seen, companies_house)
            yield RegisterChunk(index, rows, bad_frame, count, 1.0)


def _id_of(row: list[str], at: int | None) -> str:
    """The firm_id of a rejected row, when it can be read, so the analyst can find the firm."""
    value = row[at] if at is not None and at < len(row) else ""
    return "" if _has_bad_bytes(value) else value.strip()


def _progress(fh, size: int) -> float:
    try:
        return min(fh.buffer.tell() / size, 1.0)
    except (OSError, ValueError):
        return 0.0
