"""A CSV register read by Spark with each record's physical line number, checked like the local reader.

Spark's own CSV reader gives no line numbers and decodes bad bytes away. Instead Spark reads the file as
raw lines (split on "\\n" only, so "\\r" and bytes that are not UTF-8 survive) in parallel splits, and two
cheap passes rebuild the records:

1. each split says, for both possible starting states (outside / inside a quoted field), how many lines
   it has, whether it ends inside a quoted field, and where its last record starts — a few numbers per
   split, collected on the driver, which chains them into each split's first line number and state;
2. each split then cuts its lines into records (a record starts on a line that starts outside quotes)
   with their line numbers; the few records that run across a split boundary are joined by a small
   group-by.

Each record is then parsed and checked by `rtic.register.parse_record`, the same code as the local engine
(a record whose quoting is broken is read line by line there too), so reasons, details and line numbers
are the local engine's. Nothing is read by the driver but the header (already checked by `Register.open`).
"""

from __future__ import annotations

from typing import Iterable, Iterator

from rtic.register import BOM, parse_record, quote_state_after  # noqa: F401 - parse_record: the records' parser, shared

def summarize_block(lines: Iterable[bytes]) -> dict:
    """Pass 1 for one split: line count, and for each starting state the end state and last record start."""
    n, state, last = 0, {False: False, True: True}, {False: -1, True: -1}
    merged_at = None  # once both trajectories reach the same state they stay together: follow one
    for line in lines:
        for start in (False,) if merged_at is not None else (False, True):
            if not state[start]:
                last[start] = n
            state[start] = quote_state_after(line, state[start])
        if merged_at is None and state[False] == state[True]:
            merged_at = n
        n += 1
    if merged_at is not None:
        state[True] = state[False]
        if last[False] > merged_at:  # a record started after the merge: the same for both
            last[True] = last[False]
    return {"n": n, "end_out": state[False], "end_in": state[True], "last_out": last[False], "last_in": last[True]}


def plan_blocks(summaries: list[tuple[int, dict]]) -> dict[int, tuple[int, bool, int]]:
    """Chain the splits (by byte offset): each split's first line number, starting state, and the start
    line of the record still open at its start (meaningful when it starts inside quotes)."""
    plan, line, inside, open_start = {}, 1, False, 0
    for block, s in sorted(summaries):
        plan[block] = (line, inside, open_start)
        last = s["last_in"] if inside else s["last_out"]
        if last >= 0:
            open_start = line + last
        line, inside = line + s["n"], s["end_in"] if inside else s["end_out"]
    return plan


def block_records(lines: Iterable[bytes], first_line: int, inside: bool, open_start: int) -> Iterator[tuple[int, int, bytes, bool]]:
    """Pass 2 for one split: (record start line, first line of this piece, bytes, partial?) per record.

    A piece is partial when its record began in an earlier split or goes on into a later one."""
    start, seq, pieces, partial = open_start, first_line, [], inside
    line = first_line
    for raw in lines:
        if not inside:
            if pieces:
                yield start, seq, b"\n".join(pieces), partial
            start, seq, pieces, partial = line, line, [], False
        pieces.append(raw)
        inside = quote_state_after(raw, inside)
        line += 1
    if pieces:
        yield start, seq, b"\n".join(pieces), partial or inside


# -- Spark --------------------------------------------------------------------------------------------
def read_csv_records(spark, path: str, header: list[str]):
    """The CSV's data rows as a Spark DataFrame: the header's columns (strings), `line`, and `_reason`/
    `_detail`/`_bad_id` set for malformed rows and rows with bad bytes (their fields null)."""
    import pyarrow as pa
    from pyspark.sql import functions as F
    from pyspark.sql.types import BooleanType, BinaryType, LongType, StringType, StructField, StructType

    lines = (spark.read.option("lineSep", "\n").text(path)
             .select(F.col("value").cast("binary").alias("b"), F.col("_metadata.file_block_start").alias("block")))

    def by_block(batches):
        """(block, lines) for each split in a partition, in order (a partition may hold several splits)."""
        current, buffer = None, []
        for batch in batches:
            blocks, values = batch.column("block").to_pylist(), batch.column("b").to_pylist()
            for block, value in zip(blocks, values):
                if block != current and buffer:
                    yield current, buffer
                    buffer = []
                if block == 0 and not buffer and current is None and value.startswith(BOM):
                    value = value[len(BOM):]  # the file's first line: a byte-order mark is not data
                current = block
                buffer.append(value)
        if buffer:
            yield current, buffer

    summary_schema = StructType([StructField("block", LongType())] + [StructField(k, LongType()) for k in ("n", "last_out", "last_in")]
                                + [StructField(k, BooleanType()) for k in ("end_out", "end_in")])

    summary_arrow = pa.schema([(f.name, pa.int64() if isinstance(f.dataType, LongType) else pa.bool_()) for f in summary_schema])

    def pass1(batches):
        for block, buffer in by_block(batches):
            yield pa.RecordBatch.from_pylist([{"block": block, **summarize_block(buffer)}], schema=summary_arrow)

    summaries = [(r["block"], r.asDict()) for r in lines.mapInArrow(pass1, summary_schema).collect()]
    plan = plan_blocks(summaries)

    piece_schema = StructType([StructField("start", LongType()), StructField("seq", LongType()), StructField("data", BinaryType()), StructField("partial", BooleanType())])
    piece_arrow = pa.schema([("start", pa.int64()), ("seq", pa.int64()), ("data", pa.binary()), ("partial", pa.bool_())])

    def pass2(batches):
        for block, buffer in by_block(batches):
            rows = [dict(zip(("start", "seq", "data", "partial"), r)) for r in block_records(buffer, *plan[block])]
            if rows:
                yield pa.RecordBatch.from_pylist(rows, schema=piece_arrow)

    pieces = lines.mapInArrow(pass2, piece_schema)
    whole = pieces.where(~F.col("partial")).select("start", "data")
    joined = (pieces.where(F.col("partial")).groupBy("start")
              .agg(F.array_sort(F.collect_list(F.struct("seq", "data"))).alias("p"))
              .select("start", F.concat_ws("\n", F.transform("p", lambda x: x["data"].cast("string"))).cast("binary").alias("data")))
    records = whole.unionByName(joined).where(F.col("start") > 1)  # the record on line 1 is the header

    out_fields = [StructField(h, StringType()) for h in header] + [StructField("line", LongType())] + [
        StructField(k, StringType()) for k in ("_reason", "_detail", "_bad_id")]
    out_arrow = pa.schema([(f.name, pa.int64() if f.name == "line" else pa.string()) for f in out_fields])

    def parse(batches):
        for batch in batches:
            rows = []
            for start, data in zip(batch.column("start").to_pylist(), batch.column("data").to_pylist()):
                for line, fields, problem in parse_record(start, data, header):
                    row = dict(zip(header, fields)) if fields else {}
                    if problem:
                        row.update(_reason=problem["reason"], _detail=problem["detail"], _bad_id=problem["firm_id"])
                    rows.append({**row, "line": line})
            if rows:
                yield pa.RecordBatch.from_pylist(rows, schema=out_arrow)

    return records.mapInArrow(parse, StructType(out_fields))
