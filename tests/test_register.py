"""The register reader on hostile files: every row accounted for, one-line errors for whole-file problems."""

import re

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rtic.errors import RticError
from rtic.register import MAX_RECORD_BYTES, Register


def read_all(path, chunk_rows=100):
    chunks = list(Register.open(path).chunks(chunk_rows))
    rows = pd.concat([c.rows for c in chunks], ignore_index=True)
    bad = pd.concat([c.bad for c in chunks], ignore_index=True)
    assert sum(c.records for c in chunks) == len(rows) + len(bad)
    return rows, bad


def numbered_register(path, n, broken=None):
    """A CSV of n firms, one per line (firm F0001 on line 2); `broken` maps a row number to its raw line."""
    lines = ["firm_id,website,text"] + [f"F{i:04d},f{i}.co.uk,Firm {i} makes software" for i in range(1, n + 1)]
    for i, raw in (broken or {}).items():
        lines[i] = raw
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_quote_never_closed_costs_its_own_row_only(tmp_path):
    """Issue 13 item 7: an unbalanced quote in row 3 of 1,000 swallowed the other 997 rows into one text field."""
    register = numbered_register(tmp_path / "r.csv", 1000, {3: 'F0003,f3.co.uk,"Firm 3 quotes badly'})
    rows, bad = read_all(register)
    assert len(rows) + len(bad) == 1000
    assert bad[["firm_id", "line", "reason"]].values.tolist() == [["F0003", 4, "malformed_row"]]
    assert "unbalanced quote" in bad["detail"].iloc[0]
    assert rows["line"].tolist() == [2, 3] + list(range(5, 1002))
    assert rows["text"].iloc[-1] == "Firm 1000 makes software"


def test_a_quote_closed_by_a_later_field_is_caught(tmp_path):
    """The stray quote is closed by the opening quote of a later quoted field: the rows between are still rows."""
    register = numbered_register(tmp_path / "r.csv", 50, {3: 'F0003,f3.co.uk,"Firm 3 quotes badly',
                                                          40: 'F0040,f40.co.uk,"Firm 40, quoted properly"'})
    rows, bad = read_all(register, chunk_rows=7)
    assert len(rows) + len(bad) == 50
    assert bad["line"].tolist() == [4] and rows["firm_id"].tolist() == [f"F{i:04d}" for i in range(1, 51) if i != 3]
    assert rows.set_index("firm_id").loc["F0040", "text"] == "Firm 40, quoted properly"


def test_well_formed_quoted_fields_over_several_lines_are_kept_whole(tmp_path):
    register = tmp_path / "r.csv"
    register.write_text('firm_id,text\nA,"first line\nsecond, with ""quotes""\nthird"\nB,plain\n', encoding="utf-8")
    rows, bad = read_all(register)
    assert bad.empty and rows["line"].tolist() == [2, 5]
    assert rows["text"].iloc[0] == 'first line\nsecond, with "quotes"\nthird'


def test_a_quote_open_past_the_record_limit_is_cut_there(tmp_path, monkeypatch):
    """Memory stays bounded: a field still open after MAX_RECORD_BYTES is a broken quote, read line by line."""
    import rtic.register

    monkeypatch.setattr(rtic.register, "MAX_RECORD_BYTES", 200)
    register = numbered_register(tmp_path / "r.csv", 30, {2: 'F0002,f2.co.uk,"never closed'})
    rows, bad = read_all(register)
    assert len(rows) + len(bad) == 30 and bad["line"].tolist() == [3]
    assert MAX_RECORD_BYTES >= 32 << 20  # the real limit leaves room for 10 MB fields


def test_a_10_mb_field_in_the_first_row(tmp_path):
    """Issue 13 item 8: csv's 128 KiB field limit raised a traceback when the big field was in row 1."""
    big = "word " * 2_000_000
    register = tmp_path / "r.csv"
    pd.DataFrame({"firm_id": ["A", "B"], "text": [big, "small"]}).to_csv(register, index=False)
    rows, bad = read_all(register)
    assert bad.empty and rows["text"].tolist() == [big, "small"]


def test_a_utf8_byte_order_mark_is_not_part_of_the_header(tmp_path):
    """Issue 13 item 9: Excel's CSV UTF-8 starts with a BOM; the header read as '\\ufefffirm_id'."""
    register = tmp_path / "r.csv"
    register.write_text('"firm_id",text\nA,Alpha\n', encoding="utf-8-sig")
    opened = Register.open(register)
    assert opened.header == ["firm_id", "text"]
    rows, bad = read_all(register)
    assert bad.empty and rows[["firm_id", "line"]].values.tolist() == [["A", 2]]


@pytest.mark.parametrize("column,values,named", [
    ("text", pa.array([1.5, 2.5]), "column 'text' is double"),
    ("text", pa.array([["x", "y"], ["z"]]), "column 'text' is list<"),
    ("firm_id", pa.array([1.5, 2.5]), "column 'firm_id' is double, it must hold text (string) or integers"),
    ("website", pa.array([True, False]), "column 'website' is bool"),
])
def test_parquet_columns_of_the_wrong_type_are_named(tmp_path, column, values, named):
    """Issue 13 item 10: a float or list text column was stringified ("1.5") and classified."""
    table = {"firm_id": pa.array(["A", "B"]), "text": pa.array(["a", "b"]), "website": pa.array(["a.uk", "b.uk"])}
    table[column] = values
    path = tmp_path / "r.parquet"
    pq.write_table(pa.table(table), path)
    with pytest.raises(RticError, match=re.escape(named)):
        Register.open(path)


def test_parquet_integer_ids_and_undecodable_text(tmp_path):
    """Integer firm ids are read as their digits (null: empty id); text that is not UTF-8, in a binary or a
    string column, makes a 'bad encoding' exception row, not a UnicodeDecodeError."""
    not_utf8 = pa.array([b"fine", b"caf\xe9", b"also fine", None], pa.binary())
    as_string = pa.Array.from_buffers(pa.string(), 4, pa.array([b"ok", b"ok", b"\xff\xfe", b"ok"], pa.binary()).buffers())
    path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"firm_id": pa.array([10, 20, 30, None], pa.int64()), "text": not_utf8, "name": as_string,
                             "lat": pa.array([51.5, None, 52.0, 53.0])}), path)
    rows, bad = read_all(path)
    assert rows[["firm_id", "text", "lat", "line"]].values.tolist() == [["10", "fine", "51.5", 1]]
    assert bad[["firm_id", "line", "reason"]].values.tolist() == [["20", 2, "bad_encoding"], ["30", 3, "bad_encoding"], ["", 4, "empty_id"]]


def test_a_damaged_parquet_file_is_one_line(tmp_path):
    """Issue 13 item 10: corrupt pages raised OSError mid-run; a file that is not Parquet at all likewise."""
    path = tmp_path / "r.parquet"
    pd.DataFrame({"firm_id": [f"F{i}" for i in range(4000)], "text": [f"text {i} " * 30 for i in range(4000)]}).to_parquet(path, row_group_size=1000)
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 400):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    with pytest.raises(RticError, match=r"cannot read register .* past row .*damaged: re-export it"):
        read_all(path, chunk_rows=1000)
    (tmp_path / "not.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(RticError, match="not a readable Parquet file"):
        Register.open(tmp_path / "not.parquet")


def test_register_is_opened_once(tmp_path, monkeypatch):
    """One open: the whole-file checks run once; the header and row estimate come from the object."""
    import rtic.register

    calls = []
    real = rtic.register.check_input_file
    monkeypatch.setattr(rtic.register, "check_input_file", lambda *a: calls.append(a) or real(*a))
    register = numbered_register(tmp_path / "r.csv", 10)
    opened = Register.open(register)
    assert opened.columns == ["firm_id", "website", "text"] and opened.estimated_rows == (10, False)
    assert sum(c.records for c in opened.chunks(3)) == 10 and len(calls) == 1


def test_a_column_named_line_and_old_mac_line_ends_are_one_line(tmp_path):
    """Hostile pass: a 'line' column collided with the reader's line numbers (ValueError traceback); a file
    whose lines end in a carriage return alone read as one line holding every row."""
    named_line = tmp_path / "line.csv"
    named_line.write_text("firm_id,text,line\nA,Alpha,1 High St\n")
    with pytest.raises(RticError, match="column named 'line'"):
        Register.open(named_line)
    old_mac = tmp_path / "mac.csv"
    old_mac.write_bytes(b"firm_id,text\rA,Alpha\rB,Beta\r")
    with pytest.raises(RticError, match="carriage return alone"):
        Register.open(old_mac)
    nul = tmp_path / "nul.csv"
    nul.write_bytes(b"firm_id,text\nA,Al\x00pha\nB,Beta\n")
    rows, bad = read_all(nul)
    assert bad.empty and rows["firm_id"].tolist() == ["A", "B"]
