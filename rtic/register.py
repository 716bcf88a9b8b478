"""Company registers: the firms to classify (CSV or Parquet), including Companies House bulk files as they come.

`read_register` loads a whole (small) register and refuses bad ones. `Register.open` opens a register of
any size once, making the whole-file checks (missing or empty file, no firm_id column, no firms, unreadable
Parquet, Parquet columns of the wrong type) as one-line RticErrors; `Register.chunks` then streams it in
chunks of raw records and turns row-level problems (wrong field count, a stray quote, bad UTF-8, empty or
repeated firm_id) into exception rows with their line numbers, so one bad row never stops a 5-million-row
run. The ids seen so far live in SQLite on disk (`SeenIds`), not in memory.
"""

from __future__ import annotations

import csv
import io
import itertools
import sys
from dataclasses import dataclass
from functools import cached_property
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


BOM = b"\xef\xbb\xbf"  # Excel's "CSV UTF-8" starts the file with it
MAX_RECORD_BYTES = 64 << 20  # a quoted field still open past this many bytes is a broken quote, not text
# Parquet column types read as text: strings (plain or dictionary-encoded) and binary (decoded as UTF-8).
TEXT_COLUMNS = ("firm_id", "name", "website", "postcode", "sic_codes", "text")
QUOTE, COMMA, NEWLINE = ord('"'), ord(","), ord("\n")
UNBALANCED_QUOTE = "unbalanced quote: a quoted field opened on this line is not closed on it (rows after it are read on their own)"


class Register:
    """A register file opened and checked once: its format, header, mapped columns and row estimate,
    streamed in chunks (like pyarrow's ParquetFile).

    `Register.open` makes every whole-file check (exists, not empty, readable, UTF-8 header, a firm_id
    column, at least one firm, Parquet column types) and raises RticError; `chunks` then streams the rows,
    turning row-level problems into exception rows with their line numbers.
    """

    def __init__(self, path: Path, format: str, header: list[str]):
        self.path, self.format, self.header = path, format, header  # header: the file's own column names
        probe = pd.DataFrame(columns=header)
        self.companies_house = is_companies_house(probe)
        self.columns = list((from_companies_house(probe) if self.companies_house else probe).columns)  # after mapping

    @classmethod
    def open(cls, path: str | Path) -> "Register":
        path = check_input_file(path, "register")
        register = cls._open_parquet(path) if path.suffix.lower() in PARQUET_SUFFIXES else cls._open_csv(path)
        require_columns(register.columns, ["firm_id"], path, "register")
        if "line" in register.columns:  # each row's line number travels in a column of that name
            raise RticError(f"register {path} has a column named 'line', which rtic uses for each row's line number: rename it")
        return register

    @classmethod
    def _open_parquet(cls, path: Path) -> "Register":
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a broken file
            raise RticError(f"cannot read register {path}: {_first_line(exc)} (not a readable Parquet file: re-export it)") from None
        register = cls(path, "parquet", [str(n) for n in pf.schema_arrow.names])
        if pf.metadata.num_rows == 0:
            raise RticError(f"register {path} has a header but no firms")
        for field in pf.schema_arrow:
            _check_parquet_type(field, register, path)
        return register

    @classmethod
    def _open_csv(cls, path: Path) -> "Register":
        with path.open("rb") as fh:
            records = csv_records(fh)
            rows = [fields for _, fields, _ in parse_record(1, next(records, (1, b""))[1], None)]
            first = next((True for start, data in records if data.strip(b"\r")), None)
        if not rows:
            raise RticError(f"register is empty: {path}")
        if len(rows) > 1:  # lines ended by "\r" alone: the whole file is one "\n" line
            raise RticError(f"register {path} ends its lines with a carriage return alone (old Mac format): re-save it with "
                            "Windows or Unix line ends")
        header = rows[0]
        if any(_has_bad_bytes(h) for h in header):
            raise RticError(f"register {path} header is not valid UTF-8: re-save it as UTF-8")
        if first is None:
            raise RticError(f"register {path} has a header but no firms")
        return cls(path, "csv", header)

    @cached_property
    def estimated_rows(self) -> tuple[int, bool]:
        """(number of firms, exact?): Parquet metadata is exact; for CSV, lines minus the header (fast byte count)."""
        if self.format == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(self.path).metadata.num_rows, True
        lines, last = 0, b""
        with self.path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                lines += block.count(b"\n")
                last = block
        if not last.endswith(b"\n"):
            lines += 1
        return max(lines - 1, 0), False

    def chunks(self, chunk_rows: int = config.CHUNK_ROWS, seen_path: str | Path | None = None) -> Iterator[RegisterChunk]:
        """Yield the register in chunks of `chunk_rows` raw records, with row-level problems as exception rows.

        Memory is one chunk: the firm_ids seen (for duplicate detection) live in SQLite at `seen_path` (a
        temporary file when None; a run keeps it beside its parts so a resume reuses it). Chunk boundaries
        depend only on the file and `chunk_rows`, so a resumed run sees exactly the chunks of the first.
        """
        seen = SeenIds(seen_path)
        try:
            yield from (self._parquet_chunks if self.format == "parquet" else self._csv_chunks)(chunk_rows, seen)
        finally:
            seen.close()

    def _parquet_chunks(self, chunk_rows: int, seen: SeenIds) -> Iterator[RegisterChunk]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(self.path)
        total = max(pf.metadata.num_rows, 1)
        done = 0
        batches = pf.iter_batches(batch_size=chunk_rows)
        for index in itertools.count():
            try:
                batch = next(batches, None)
            except (OSError, pa.ArrowException) as exc:  # damaged pages: a whole-file problem, named once
                raise RticError(f"cannot read register {self.path} past row {done:,}: {_first_line(exc)} "
                                "(the Parquet file is damaged: re-export it)") from None
            if batch is None:
                break
            texts = [_as_text(batch.column(i)) for i in range(len(self.header))]
            frame = pd.DataFrame({i: pd.Series(values, dtype=object) for i, (values, _) in enumerate(texts)})
            frame.columns = self.header  # by position: a file may repeat a column name
            frame["line"] = range(done + 1, done + len(frame) + 1)  # Parquet has no lines: 1-based row number
            undecodable = np.zeros(len(frame), dtype=bool)
            for i, (_, from_bytes) in enumerate(texts):
                if from_bytes:
                    undecodable |= frame.iloc[:, i].map(_has_bad_bytes).to_numpy(bool)
            id_at = id_column(self.header)
            bad = [{"firm_id": _id_of([str(v) for v in frame.iloc[k, : len(self.header)]], id_at), "line": int(frame["line"].iloc[k]),
                    "reason": BAD_ENCODING, "detail": REASONS[BAD_ENCODING]} for k in np.flatnonzero(undecodable)]
            rows, bad_frame = _finish(frame[~undecodable].to_dict("records"), bad, self.header, seen, self.companies_house)
            done += len(frame)
            yield RegisterChunk(index, rows, bad_frame, len(frame), done / total)

    def _csv_chunks(self, chunk_rows: int, seen: SeenIds) -> Iterator[RegisterChunk]:
        size = max(self.path.stat().st_size, 1)
        header = self.header
        with self.path.open("rb") as fh:
            index, records, bad, count = 0, [], [], 0
            for start, data in csv_records(fh):
                if start == 1:
                    continue  # the header
                for line, fields, problem in parse_record(start, data, header):
                    count += 1
                    if problem:
                        bad.append(problem)
                    else:
                        records.append({**dict(zip(header, fields)), "line": line})
                    if count == chunk_rows:
                        rows, bad_frame = _finish(records, bad, header, seen, self.companies_house)
                        yield RegisterChunk(index, rows, bad_frame, count, _progress(fh, size))
                        index, records, bad, count = index + 1, [], [], 0
            if count or index == 0:
                rows, bad_frame = _finish(records, bad, header, seen, self.companies_house)
                yield RegisterChunk(index, rows, bad_frame, count, 1.0)


def _check_parquet_type(field, register: Register, path: Path) -> None:
    """A column the register contract reads as text must hold text (ids may also be integers)."""
    import pyarrow as pa

    name = COMPANIES_HOUSE_COLUMNS.get(field.name.strip(), field.name.strip())
    if name not in TEXT_COLUMNS:
        return
    kind = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
    if _is_text_type(kind) or pa.types.is_null(kind) or (name == "firm_id" and pa.types.is_integer(kind)):
        return
    allowed = "text (string) or integers" if name == "firm_id" else "text (string)"
    raise RticError(f"register {path}: column '{field.name}' is {field.type}, it must hold {allowed}: re-export it with that column as text")


def _is_text_type(kind) -> bool:
    import pyarrow as pa

    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind)


def _as_text(column) -> tuple[list[str] | pd.Series, bool]:
    """A Parquet column as Python strings ('' for null), and whether they were decoded from bytes: bytes that
    are not UTF-8 survive as lone surrogates (as the CSV reader keeps them), so the row becomes a 'bad
    encoding' exception instead of a crash."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    kind = column.type
    if pa.types.is_integer(kind):
        column, kind = pc.cast(column, pa.string()), pa.string()
    if _is_text_type(kind):
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            try:
                column.validate(full=True)  # Parquet readers do not check that strings are UTF-8
                return column.to_pandas().fillna("").astype(str), False
            except pa.ArrowInvalid:  # a string column with bytes that are not UTF-8
                column = column.view(pa.large_binary() if pa.types.is_large_string(kind) else pa.binary())
        return ["" if v is None else v.decode("utf-8", errors="surrogateescape") for v in column.to_pylist()], True
    if pa.types.is_null(kind):
        return [""] * len(column), False
    values = column.to_pandas()
    return values.astype(object).where(values.notna(), "").astype(str), False


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# -- CSV records (shared with the Spark reader, so both cut, parse and reject rows alike) --------------
def quote_state_after(line: bytes, inside: bool) -> bool:
    """Whether a physical line ends inside a quoted field, given whether it starts inside one.

    Follows Python csv's excel dialect: a quote opens a quoted field only at the start of a field, `""`
    inside one is a literal quote, and a stray quote in an unquoted field is literal. Works on bytes:
    UTF-8 (and any bad byte) never contains the bytes of `"` or `,`.
    """
    i = line.find(b'"')
    while i != -1:
        if inside:
            if i + 1 < len(line) and line[i + 1] == QUOTE:  # "" inside a quoted field
                i = line.find(b'"', i + 2)
                continue
            inside = False
        elif i == 0 or line[i - 1] == COMMA:  # outside quotes, a comma before is a delimiter: field start
            inside = True
        i = line.find(b'"', i + 1)
    return inside


def csv_records(fh) -> Iterator[tuple[int, bytes]]:
    """(first physical line, bytes) of each record of a binary CSV file, lines split on "\\n" only (as Spark
    splits them); a record runs on while a quoted field is open, up to MAX_RECORD_BYTES."""
    inside, pieces, start, size = False, [], 1, 0
    for line, raw in enumerate(fh, start=1):
        if line == 1 and raw.startswith(BOM):
            raw = raw[len(BOM):]
        raw = raw[:-1] if raw.endswith(b"\n") else raw
        if not inside:
            start = line
        pieces.append(raw)
        size += len(raw)
        inside = quote_state_after(raw, inside)
        if not inside or size > MAX_RECORD_BYTES:
            yield start, b"\n".join(pieces)
            inside, pieces, size = False, [], 0
    if pieces:
        yield start, b"\n".join(pieces)


def quoting_broken(data: bytes) -> bool:
    """Whether a record's quoting is broken: a quoted field never closed, or closed by a quote followed by
    something other than a comma or the line end (the quote that closed it opened a later field)."""
    inside, i = False, data.find(b'"')
    while i != -1:
        if inside:
            if data[i + 1 : i + 2] == b'"':
                i = data.find(b'"', i + 2)
                continue
            inside = False
            if data[i + 1 : i + 2] not in (b"", b",", b"\r", b"\n"):
                return True
        elif i == 0 or data[i - 1] in (COMMA, NEWLINE):
            inside = True
        i = data.find(b'"', i + 1)
    return inside


def parse_record(line: int, data: bytes, header: list[str] | None) -> Iterator[tuple[int, list[str] | None, dict | None]]:
    """(line, fields, None) for a good row, (line, None, exception row) for a rejected one; a blank line: nothing.

    A record over several lines whose quoting is broken (a stray quote opened a field that swallowed the
    rows after it) is read again line by line: the line with the stray quote becomes a 'malformed row',
    every other line is its own row, so a stray quote costs one row, never the rest of the file.
    With `header` None, the fields are returned unchecked (reading the header itself).
    """
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # website text can exceed csv's 128 KiB default (and Spark executors parse here)
    if b"\n" in data and quoting_broken(data):
        for k, piece in enumerate(data.split(b"\n")):
            if quote_state_after(piece, False):
                fields = _fields(piece)
                yield line + k, None, {"firm_id": _id_of(fields[0] if fields else [], _id_at(header)), "line": line + k,
                                       "reason": MALFORMED_ROW, "detail": UNBALANCED_QUOTE}
            else:
                yield from _checked(line + k, piece, header)
        return
    yield from _checked(line, data, header)


def _fields(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8", errors="surrogateescape"), newline="")))


def _checked(line: int, data: bytes, header: list[str] | None) -> Iterator[tuple[int, list[str] | None, dict | None]]:
    for row in _fields(data):
        if not row:
            continue
        problem = None if header is None else check_record(row, len(header), _id_at(header), line)
        yield (line, None, problem) if problem else (line, row, None)


def _id_at(header: list[str] | None) -> int | None:
    return None if header is None else id_column(header)


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


def _id_of(row: list[str], at: int | None) -> str:
    """The firm_id of a rejected row, when it can be read, so the analyst can find the firm."""
    value = row[at] if at is not None and at < len(row) else ""
    return "" if _has_bad_bytes(value) else value.strip()


def _progress(fh, size: int) -> float:
    try:
        return min(fh.tell() / size, 1.0)
    except (OSError, ValueError):
        return 0.0
