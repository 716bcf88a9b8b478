"""`rtic classify --engine spark`: the registered pyfunc through mlflow.pyfunc.spark_udf on a real Spark
local[2] (started by the test, UI off, bound to 127.0.0.1) gives the local engine's output."""

import os
from pathlib import Path

import pandas as pd
import pytest

from rtic.score.batch import classify_register
from rtic.score.runstate import exceptions_path_for
from conftest import run_cli

SPARK_ENV = {"SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_SUBMIT_ARGS": "--conf spark.ui.enabled=false --conf spark.sql.shuffle.partitions=4 pyspark-shell"}


MALFORMED = (
    "firm_id,name,website,text\n"
    "A1,Alpha,alpha.co.uk,We build welding robots and automation cells for car plants.\n"
    "A2,Beta,beta.co.uk,\"Open banking payments API for lenders,\nwith fraud scoring.\"\n"     # 3-4
    "A3,Gamma,,\n"
    "A4,Delta,delta.co.uk,\n"
    "A1,Alpha again,alpha.com,Repeated firm.\n"
    ",Nameless,x.co.uk,Row without an id.\n"
    "A7,Too,many,fields,here\n"
    "A5,Epsilon,eps.co.uk,\"Residential care home for older people,\n\nwith dementia nursing.\"\n"  # 10-12
    "A0,Zeta,zeta.co.uk,Satellite radar data for insurers and farmers.\n"
).encode() + b"A8,Bad,bad.co.uk,caf\xe9 and \"heat pumps\"\n" + b"A9,Last,last.co.uk,Cyber security audits for hospitals."


def tidy(df):
    return df.drop(columns=["classified_at"]).reset_index(drop=True)


CSV_EXCEPTIONS = [["A3", "5", "no_website"], ["A4", "6", "no_text"], ["A1", "7", "duplicate_id"], ["", "8", "empty_id"],
                  ["A7", "9", "malformed_row"], ["A8", "14", "bad_encoding"]]


def assert_same_output(out: Path, local, expected=CSV_EXCEPTIONS):
    spark_labels, local_labels = tidy(pd.read_parquet(out)), tidy(pd.read_parquet(local.labels_path))
    assert list(dict.fromkeys(spark_labels["firm_id"])) == ["A1", "A2", "A5", "A0", "A9"]  # register order, not sorted
    pd.testing.assert_frame_equal(spark_labels.drop(columns=["probability"]), local_labels.drop(columns=["probability"]))
    assert (spark_labels["probability"] - local_labels["probability"]).abs().max() < 1e-6
    spark_exc = pd.read_csv(exceptions_path_for(out), dtype=str, keep_default_na=False)
    local_exc = pd.read_csv(local.exceptions_path, dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(spark_exc, local_exc)
    assert spark_exc[["firm_id", "line", "reason"]].values.tolist() == expected


@pytest.fixture(scope="module")
def malformed(trained, settings, tmp_path_factory):
    """The malformed register and the local engine's output for it."""
    folder = tmp_path_factory.mktemp("spark")
    register = folder / "register.csv"
    register.write_bytes(MALFORMED)
    return register, classify_register(register, folder / "local.parquet", settings, chunk_rows=3)


def test_spark_engine_equals_local_engine(malformed, rtic_home, tmp_path):
    """Labels and exceptions (reasons, line numbers, order) equal the local engine's, with the file cut into
    many small splits so records and quoted newlines cross split boundaries."""
    register, local = malformed
    out = tmp_path / "spark.parquet"
    env = {**SPARK_ENV, "PYSPARK_SUBMIT_ARGS": SPARK_ENV["PYSPARK_SUBMIT_ARGS"].replace(
        "pyspark-shell", "--conf spark.sql.files.maxPartitionBytes=97 --conf spark.sql.files.openCostInBytes=0 pyspark-shell")}
    res = run_cli("classify", str(register), "--out", str(out), "--engine", "spark", "--spark-master", "local[2]", home=rtic_home, env=env)
    assert res.returncode == 0, res.stderr
    assert "firms per sector" in res.stdout and "11 firms in register: 5 classified, 6 not classified" in res.stdout
    assert_same_output(out, local)
    # Progress is one line per stage: no stage bars, no pandas-version warnings, no Spark WARN/INFO lines.
    assert [l.split(":")[0] for l in res.stderr.splitlines() if l.startswith("stage ")] == [f"stage {k}/4" for k in range(1, 5)]
    assert "does not yet fully support pandas" not in res.stderr and "[Stage" not in res.stderr
    assert not [l for l in res.stderr.splitlines() if " WARN " in l or " INFO " in l], res.stderr


# -- the Spark engine's CSV reader, its pure-Python parts: records and line numbers from split lines --------
TRICKY = (
    b"firm_id,website,text\r\n"
    b"A,a.co.uk,Alpha text\r\n"                          # 2 CRLF endings kept inside records
    b"B,b.co.uk,too,many,fields\n"                       # 3 malformed
    b',,"multi\nline, with ""quotes"" and,\ncommas"\n'   # 4-6 empty id, a field over three lines
    b'A,a2.co.uk,"Alpha again"\n'                        # 7 duplicate
    b"C,c.co.uk,caf\xe9\n"                               # 8 bad encoding
    b'D,d.co.uk,"caf\xe9 on\ntwo lines"\n'               # 9-10 bad encoding across lines
    b'E,e.co.uk,5" screens, stray quote\n'               # 11 a stray quote in an unquoted field is literal (and 4 fields)
    b'F,f.co.uk,Plain "quoted" words\n'                  # 12 literal quotes mid-field
    b"\n"                                                # 13 blank line: not a record
    b'G,"g.co.uk","x""\n""y"\n'                          # 14-15 doubled quotes at a line end
    b"H,h.co.uk,last row without newline"                # 16
)


def reassemble(data: bytes, cuts: list[int], header: list[str]):
    """What the Spark reader does, with `cuts` as the split boundaries (line indexes), without Spark."""
    from rtic.score.spark_register import block_records, parse_record, plan_blocks, summarize_block

    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    edges = [0, *cuts, len(lines)]
    blocks = [(i, lines[a:b]) for i, (a, b) in enumerate(zip(edges, edges[1:])) if b > a]
    plan = plan_blocks([(i, summarize_block(ls)) for i, ls in blocks])
    pieces = [p for i, ls in blocks for p in block_records(ls, *plan[i])]
    records = {start: d for start, _, d, partial in pieces if not partial}
    for start in {p[0] for p in pieces if p[3]}:
        records[start] = b"\n".join(d for _, _, d, _ in sorted((p for p in pieces if p[3] and p[0] == start), key=lambda p: p[1]))
    good, bad = [], []
    for start in sorted(records):
        if start > 1:
            for line, fields, problem in parse_record(start, records[start], header):
                (bad.append([problem["firm_id"], line, problem["reason"], problem["detail"]]) if problem else good.append([line, *fields]))
    return good, bad


@pytest.mark.parametrize("cuts", [[], [1], [3, 4], [4, 5, 6], [2, 5, 9, 10, 14], list(range(1, 16))], ids=lambda c: "cuts" + "-".join(map(str, c)))
def test_split_lines_rebuild_the_local_readers_records(tmp_path, cuts):
    """Wherever the file is split, records, fields, line numbers and malformed-row reasons equal the local reader's."""
    from rtic.register import Register

    register = tmp_path / "r.csv"
    register.write_bytes(TRICKY)
    chunks = list(Register.open(register).chunks(chunk_rows=100))
    local_good = [[int(r["line"]), r["firm_id"], r["website"], r["text"]] for r in chunks[0].rows.to_dict("records")]
    local_bad = [[r["firm_id"], int(r["line"]), r["reason"], r["detail"]] for r in chunks[0].bad.to_dict("records") if r["reason"] in ("malformed_row", "bad_encoding")]
    good, bad = reassemble(TRICKY, cuts, ["firm_id", "website", "text"])
    good = [g for g in good if g[1] and g[1] != "A" or g[0] == 2]  # empty and repeated ids are checked later, by Spark
    assert good == local_good and bad == local_bad
    assert [g[0] for g in good] == [2, 12, 14, 16] and [b[1] for b in bad] == [3, 8, 9, 11]
    assert good[0][3] == "Alpha text" and good[2][3] == "x\"\n\"y"


def test_readme_spark_submit_form(malformed, settings, rtic_home, tmp_path):
    """The README's spark-submit command on a Parquet register, against local[2]: the master comes from
    spark-submit; Parquet rows are numbered 1, 2, ... as by the local engine."""
    import subprocess
    import sys

    from conftest import REPO

    csv_register, _ = malformed
    frame = pd.read_csv(csv_register, dtype=str, keep_default_na=False, on_bad_lines="skip", encoding_errors="replace")
    frame = frame[~frame["firm_id"].isin(["A7", "A8"])]  # Parquet has no malformed rows or bad bytes
    register = tmp_path / "register.parquet"
    frame.to_parquet(register, index=False)
    local = classify_register(register, tmp_path / "local.parquet", settings, chunk_rows=4)
    out = tmp_path / "submitted.parquet"
    launcher = subprocess.run([sys.executable, "-m", "rtic.score.spark_submit"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    assert launcher.endswith("spark_submit.py")
    env = {k: v for k, v in os.environ.items() if k not in ("PYSPARK_SUBMIT_ARGS", "MLFLOW_TRACKING_URI")}
    # spark-submit finds its Spark through the `python3` on PATH: the project's venv, as when it is activated
    env.update(RTIC_HOME=str(rtic_home), SPARK_LOCAL_IP="127.0.0.1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    cmd = [str(Path(sys.executable).parent / "spark-submit"), "--master", "local[2]", "--conf", "spark.ui.enabled=false", "--conf", "spark.sql.shuffle.partitions=4",
           "--conf", f"spark.pyspark.python={sys.executable}", launcher, "classify", str(register), "--out", str(out), "--engine", "spark"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "on Spark (local[2])" in res.stdout + res.stderr and "9 firms in register: 5 classified" in res.stdout
    assert_same_output(out, local, [["A3", "3", "no_website"], ["A4", "4", "no_text"], ["A1", "5", "duplicate_id"], ["", "6", "empty_id"]])


@pytest.mark.parametrize("flags", [["--fast"], ["--since", "prev.parquet"], ["--restart"], ["--store", "crawl.sqlite"], ["--fast-risk", "0.2"], ["--encoder", "onnx-int8"]],
                         ids=lambda f: f[0])
def test_spark_engine_refuses_local_only_options(tmp_path, capsys, flags):
    """Refused in one line before Spark or the model is touched (so in-process, no registry needed)."""
    from rtic.cli import main

    assert main(["classify", "register.csv", "--out", str(tmp_path / "o.parquet"), "--engine", "spark", *flags]) == 2
    lines = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert len(lines) == 1 and flags[0] in lines[0] and "local engine only" in lines[0], lines
    assert main(["classify", "register.csv", "--out", str(tmp_path / "o.parquet"), "--spark-master", "local[2]"]) == 2
    assert "--spark-master needs --engine spark" in capsys.readouterr().err


def test_split_lines_match_the_local_reader_on_random_csv(tmp_path):
    """Random files of quotes, commas and newlines (quoted and stray), cut at random lines: the same records
    and line numbers as Python's csv reader gives the local engine."""
    import random

    from rtic.register import Register

    rng = random.Random(5)
    for trial in range(150):
        body = ["firm_id,b,c"]
        for i in range(rng.randint(1, 12)):
            cells = []
            for _ in range(rng.choice([3, 3, 3, 2, 4])):
                raw = "".join(rng.choice(['x', 'y', ',', '"', '\n', ' ']) for _ in range(rng.randint(0, 6)))
                cells.append('"' + raw.replace('"', '""') + '"' if rng.random() < 0.5 else raw.replace("\n", "").replace(",", ""))
            cells[0] = f"id{i}"
            body.append(",".join(cells))
        data = ("\n".join(body) + rng.choice(["", "\n"])).encode()
        register = tmp_path / f"r{trial}.csv"
        register.write_bytes(data)
        local = pd.concat([pd.concat([c.rows[["line", "firm_id"]].astype(str), c.bad[["line", "firm_id"]].astype(str)]) for c in Register.open(register).chunks(1000)])
        n_lines = data.count(b"\n") + (not data.endswith(b"\n"))
        cuts = sorted(rng.sample(range(1, n_lines), k=min(n_lines - 1, rng.randint(0, 5)))) if n_lines > 1 else []
        good, bad = reassemble(data, cuts, ["firm_id", "b", "c"])
        # Spark strips good rows' ids after reading (rtic.score.spark.strip), as the local reader does
        spark_side = sorted([(str(g[0]), g[1].strip()) for g in good] + [(str(b[1]), b[0]) for b in bad], key=lambda t: int(t[0]))
        assert spark_side == sorted(map(tuple, local[["line", "firm_id"]].values.tolist()), key=lambda t: int(t[0])), (data, cuts)


def test_spark_reads_hostile_registers_as_the_local_engine_does(trained, settings, rtic_home, tmp_path):
    """Issue 13 items 7, 9 and 10 on Spark: a UTF-8 BOM (and quoted header), a stray quote that costs only
    its own row, Parquet integer ids and binary text that is not UTF-8 give the local engine's exceptions."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    csv_register = tmp_path / "excel.csv"
    csv_register.write_bytes(b"\xef\xbb\xbf" + (
        '"firm_id",text\n'
        "B1,We build welding robots for car plants.\n"
        'B2,"Open banking payments API for lenders\n'      # 3: a quote never closed
        "B3,Satellite radar data for insurers.\n"
        'B4,"Cyber security audits, for hospitals."\n').encode())
    parquet_register = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"firm_id": pa.array([11, 12, 13], pa.int64()),
                             "text": pa.array([b"Heat pumps for homes.", b"caf\xe9 bakery", b"Drone mapping for farms."], pa.binary())}),
                   parquet_register)
    for register, expected in ((csv_register, [["B2", "3", "malformed_row"]]), (parquet_register, [["12", "2", "bad_encoding"]])):
        local = classify_register(register, tmp_path / f"{register.stem}-local.parquet", settings)
        out = tmp_path / f"{register.stem}-spark.parquet"
        res = run_cli("classify", str(register), "--out", str(out), "--engine", "spark", "--spark-master", "local[2]", home=rtic_home, env=SPARK_ENV)
        assert res.returncode == 0, res.stderr
        pd.testing.assert_frame_equal(tidy(pd.read_parquet(out)).drop(columns="probability"), tidy(pd.read_parquet(local.labels_path)).drop(columns="probability"))
        spark_exc = pd.read_csv(exceptions_path_for(out), dtype=str, keep_default_na=False)
        pd.testing.assert_frame_equal(spark_exc, pd.read_csv(local.exceptions_path, dtype=str, keep_default_na=False))
        assert spark_exc[["firm_id", "line", "reason"]].values.tolist() == expected
