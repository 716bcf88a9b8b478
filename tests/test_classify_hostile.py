"""`rtic classify` on hostile registers and outputs, through the real CLI (issue 13 items 7-11)."""

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import run_cli
from rtic.score.runstate import exceptions_path_for

TEXTS = ["We build battery storage for the grid.", "A bakery selling sourdough bread in Leeds.",
         "Machine learning software for insurers.", "Satellite imaging for farmers."]


def one_line_error(res, needle):
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert needle in res.stderr, res.stderr


def test_an_unbalanced_quote_loses_only_its_own_row(trained, rtic_home, tmp_path):
    """Item 7: a stray quote in row 3 of 1,000 reported "3 firms in register: 3 classified", exit 0."""
    lines = ["firm_id,text"] + [f"F{i:04d},{TEXTS[i % 4]}" for i in range(1, 1001)]
    lines[3] = 'F0003,"We quote badly'
    register = tmp_path / "r.csv"
    register.write_text("\n".join(lines) + "\n")
    out = tmp_path / "labels.parquet"
    res = run_cli("classify", str(register), "--out", str(out), "--quiet", home=rtic_home)
    assert res.returncode == 0, res.stderr
    assert "1000 firms in register: 999 classified, 1 not classified" in res.stdout
    exceptions = pd.read_csv(exceptions_path_for(out), dtype=str)
    assert exceptions[["firm_id", "line", "reason"]].values.tolist() == [["F0003", "4", "malformed_row"]]
    assert pd.read_parquet(out)["firm_id"].nunique() == 999


def test_bom_big_field_and_integer_ids(trained, rtic_home, tmp_path):
    """Items 8 and 9: a UTF-8 BOM (Excel) and a 10 MB field in row 1; Parquet integer ids are read as digits."""
    register = tmp_path / "excel.csv"
    pd.DataFrame({"firm_id": ["A", "B"], "name": ["x" * 10_000_000, "B Ltd"], "text": TEXTS[:2]}).to_csv(register, index=False, encoding="utf-8-sig")
    res = run_cli("classify", str(register), "--out", str(tmp_path / "a.parquet"), "--quiet", home=rtic_home)
    assert res.returncode == 0 and "2 firms in register: 2 classified" in res.stdout, res.stderr

    register = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"firm_id": pa.array([7, 8], pa.int64()), "text": TEXTS[:2]}), register)
    res = run_cli("classify", str(register), "--out", str(tmp_path / "b.parquet"), "--quiet", home=rtic_home)
    assert res.returncode == 0, res.stderr
    assert sorted(pd.read_parquet(tmp_path / "b.parquet")["firm_id"].unique()) == ["7", "8"]
    assert "integers" in run_cli("classify", "--help", home=rtic_home).stdout


def test_parquet_of_the_wrong_type_undecodable_or_damaged(trained, rtic_home, tmp_path):
    """Item 10: float text was classified as "1.5"; bad UTF-8 and damaged pages raised tracebacks."""
    floats = tmp_path / "floats.parquet"
    pq.write_table(pa.table({"firm_id": ["A", "B"], "text": [1.5, 2.5]}), floats)
    one_line_error(run_cli("classify", str(floats), "--out", str(tmp_path / "o.parquet"), home=rtic_home), "column 'text' is double")

    undecodable = tmp_path / "binary.parquet"
    texts = pa.array([TEXTS[0].encode(), b"caf\xe9 and bakery"], pa.binary())
    pq.write_table(pa.table({"firm_id": ["A", "B"], "text": texts}), undecodable)
    out = tmp_path / "bin.parquet"
    res = run_cli("classify", str(undecodable), "--out", str(out), "--quiet", home=rtic_home)
    assert res.returncode == 0 and "2 firms in register: 1 classified, 1 not classified" in res.stdout, res.stderr
    assert pd.read_csv(exceptions_path_for(out), dtype=str)[["firm_id", "reason"]].values.tolist() == [["B", "bad_encoding"]]

    damaged = tmp_path / "damaged.parquet"
    pd.DataFrame({"firm_id": [f"F{i}" for i in range(3000)], "text": [f"{TEXTS[i % 4]} {i}" * 20 for i in range(3000)]}).to_parquet(damaged, row_group_size=1000)
    data = bytearray(damaged.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 300):
        data[i] ^= 0x5A
    damaged.write_bytes(bytes(data))
    one_line_error(run_cli("classify", str(damaged), "--out", str(tmp_path / "d.parquet"), "--chunk-rows", "1000", "--quiet", home=rtic_home),
                   "the Parquet file is damaged")


def test_an_unwritable_out_is_refused_before_the_model_loads(tmp_path):
    """Item 11: a read-only --out folder raised PermissionError after the model had loaded. An empty home has
    no model, so a refusal naming --out shows the output was checked first."""
    register = tmp_path / "r.csv"
    register.write_text("firm_id,text\nA,We build software\n")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    home = tmp_path / "empty-home"
    one_line_error(run_cli("classify", str(register), "--out", str(blocker / "labels.parquet"), home=home), "cannot write --out")
    one_line_error(run_cli("classify", str(register), "--out", str(tmp_path), home=home), "--out must be a .parquet file")
    one_line_error(run_cli("classify", str(register), "--out", str(tmp_path / "o.parquet"), "--chunk-rows", "0", home=home),
                   "--chunk-rows must be at least 1")


@pytest.mark.skipif(__import__("os").geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_out_folder_is_refused(tmp_path):
    register = tmp_path / "r.csv"
    register.write_text("firm_id,text\nA,We build software\n")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    one_line_error(run_cli("classify", str(register), "--out", str(locked / "labels.parquet"), home=tmp_path / "h"), "cannot write --out")


def test_promote_refuses_a_tolerance_that_is_not_a_number(trained, rtic_home):
    """Item 16 through the CLI: `--tolerance nan` promoted a worse model."""
    for value in ("nan", "inf", "-3"):
        one_line_error(run_cli("models", "promote", trained.version, "--eval-set", "mini", "--tolerance", value, home=rtic_home),
                       "--tolerance")
