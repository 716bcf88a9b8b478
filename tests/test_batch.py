"""Batch classification: streaming with row-level exceptions, resume after a kill, --since, Parquet and
Companies House input, the fast path. Real model, real MLflow SQLite registry, the real CLI."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from rtic.score.batch import classify_register
from rtic.config import DEFAULT_SEED_LABELS, PACKAGE_DATA
from rtic.register import Register
from conftest import REPO, SHARED_DATA, run_cli

EXAMPLE = PACKAGE_DATA / "example_register.csv"
SHARED = SHARED_DATA if SHARED_DATA.exists() else Path("/work/shared/data")


def comparable(labels: pd.DataFrame) -> pd.DataFrame:
    """Labels without the run timestamp, in a fixed order."""
    return labels.drop(columns=["classified_at"]).sort_values(["firm_id", "sector_id"]).reset_index(drop=True)


def seed_register(path: Path, n: int, offset: int = 0) -> Path:
    """A register of n distinct real texts from the team's seed data."""
    seed = pd.read_csv(DEFAULT_SEED_LABELS, dtype=str, keep_default_na=False).iloc[offset : offset + n]
    pd.DataFrame({"firm_id": [f"F{i:05d}" for i in range(len(seed))], "name": seed["firm_id"], "text": seed["text"]}).to_csv(path, index=False)
    return path


def test_stream_register_reports_bad_rows_with_lines(tmp_path):
    register = tmp_path / "r.csv"
    register.write_bytes(
        b"firm_id,website,text\n"
        b"A,a.co.uk,Alpha text\n"          # 2 ok
        b"B,b.co.uk,too,many,fields\n"     # 3 malformed
        b',,"multi\nline text"\n'          # 4-5 empty id
        b"A,a2.co.uk,Alpha again\n"        # 6 duplicate
        b"C,c.co.uk,caf\xe9\n"             # 7 bad encoding
        b"D,,\n"                            # 8 ok here (no text is the text source's business)
    )
    chunks = list(Register.open(register).chunks(chunk_rows=2))
    assert [c.records for c in chunks] == [2, 2, 2]
    rows = pd.concat([c.rows for c in chunks])
    bad = pd.concat([c.bad for c in chunks])
    assert rows[["firm_id", "line"]].values.tolist() == [["A", 2], ["D", 8]]
    assert bad[["firm_id", "line", "reason"]].values.tolist() == [
        ["B", 3, "malformed_row"], ["", 4, "empty_id"], ["A", 6, "duplicate_id"], ["C", 7, "bad_encoding"]]
    assert "expected 3 fields, found 5" in bad["detail"].iloc[0]


def test_every_firm_accounted_for_and_summary_reconciles(trained, settings, tmp_path):
    register = tmp_path / "r.csv"
    good = pd.read_csv(EXAMPLE, dtype=str, keep_default_na=False)
    body = good.assign(website="").to_csv(index=False)
    body += 'EX001,dup,"Repeated firm",\nEX900,short,row\nEX901,No site,,\nEX902,Has site,,www.ex902.co.uk\n'
    register.write_text(body)
    result = classify_register(register, tmp_path / "out.parquet", settings, chunk_rows=7)
    labels = pd.read_parquet(result.labels_path)
    exceptions = pd.read_csv(result.exceptions_path, dtype=str, keep_default_na=False)
    data_rows = len(good) + 4
    assert result.n_input == data_rows == labels["firm_id"].nunique() + len(exceptions)
    assert result.n_classified == labels["firm_id"].nunique() and result.n_exceptions == len(exceptions)
    reasons = dict(zip(exceptions["firm_id"] + "@" + exceptions["line"], exceptions["reason"]))
    assert reasons["EX001@22"] == "duplicate_id"
    assert reasons["EX900@23"] == "malformed_row"
    assert reasons["EX901@24"] == "no_website" and reasons["EX018@19"] == "no_website"
    assert reasons["EX902@25"] == "no_text"
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest["counts"]["input_rows"] == data_rows
    assert manifest["counts"]["scored"] + manifest["counts"]["exceptions"] == data_rows
    assert len(manifest["parts"]) == -(-data_rows // 7)


def test_killed_run_resumes_to_the_same_output(trained, rtic_home, tmp_path):
    register = seed_register(tmp_path / "r.csv", 160)
    env = {"RTIC_EMBEDDING_CACHE": str(tmp_path / "cache.sqlite")}  # cold cache: every chunk does real work
    out = tmp_path / "killed" / "labels.parquet"
    parts = out.parent / "labels.parts"
    args = [sys.executable, "-m", "rtic.cli", "classify", str(register), "--out", str(out), "--chunk-rows", "8"]
    proc = subprocess.Popen(args, cwd=REPO, env={**os.environ, "RTIC_HOME": str(rtic_home), **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (parts / "chunk-000002.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not out.exists() and not (parts / "manifest.json").exists()
    committed = sorted(parts.glob("chunk-*.json"))
    assert 3 <= len(committed) < 20
    before = {p.name: p.stat().st_mtime_ns for p in committed}

    res = run_cli("classify", str(register), "--out", str(out), "--chunk-rows", "8", home=rtic_home, env=env)
    assert res.returncode == 0, res.stderr
    assert "resuming" in res.stderr
    assert {p.name: p.stat().st_mtime_ns for p in committed} == before  # committed chunks were not redone

    fresh = tmp_path / "fresh" / "labels.parquet"
    res = run_cli("classify", str(register), "--out", str(fresh), "--chunk-rows", "8", home=rtic_home, env=env)
    assert res.returncode == 0, res.stderr
    pd.testing.assert_frame_equal(comparable(pd.read_parquet(out)), comparable(pd.read_parquet(fresh)))
    assert pd.read_parquet(out)["classified_at"].nunique() == 1
    assert len(pd.read_parquet(out)) == 160 * 9

    # Other arguments on top of an unfinished run are refused in one line, not mixed in.
    (parts / "manifest.json").unlink()
    res = run_cli("classify", str(register), "--out", str(out), "--chunk-rows", "16", home=rtic_home, env=env)
    assert res.returncode == 2 and "chunk_rows" in res.stderr and "--restart" in res.stderr


def test_since_rescores_only_changed_firms(trained, settings, tmp_path):
    register = seed_register(tmp_path / "may.csv", 30)
    may = classify_register(register, tmp_path / "may.parquet", settings, chunk_rows=8)
    june_register = pd.read_csv(register, dtype=str, keep_default_na=False)
    june_register.loc[3, "text"] = "We now make satellite antennas and ground stations for small spacecraft."
    june_register = pd.concat([june_register, pd.DataFrame({"firm_id": ["NEW1"], "name": ["new"], "text": ["Open banking payments API."]})])
    june_register.to_csv(tmp_path / "june.csv", index=False)
    june = classify_register(tmp_path / "june.csv", tmp_path / "june.parquet", settings, chunk_rows=8, since=may.labels_path)
    assert (june.n_input, june.n_classified, june.n_carried) == (31, 31, 29)
    labels = pd.read_parquet(june.labels_path)
    changed = {"F00003", "NEW1"}
    # Unchanged firms are the May rows exactly (May's timestamp included); the changed ones are new rows.
    before = pd.read_parquet(may.labels_path)
    keep = lambda df: df[~df["firm_id"].isin(changed)].sort_values(["firm_id", "sector_id"]).reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(keep(labels), keep(before))
    assert set(labels.loc[labels["firm_id"] == "F00003", "text_sha256"]).isdisjoint(before.loc[before["firm_id"] == "F00003", "text_sha256"])
    full = classify_register(tmp_path / "june.csv", tmp_path / "june_full.parquet", settings, chunk_rows=8)
    pd.testing.assert_frame_equal(comparable(labels), comparable(pd.read_parquet(full.labels_path)))


def test_parquet_register_gives_the_same_labels(trained, settings, tmp_path):
    register = pd.read_csv(EXAMPLE, dtype=str, keep_default_na=False)
    register.to_parquet(tmp_path / "r.parquet", index=False)
    from_csv = classify_register(EXAMPLE, tmp_path / "csv.parquet", settings, chunk_rows=6)
    from_pq = classify_register(tmp_path / "r.parquet", tmp_path / "pq.parquet", settings, chunk_rows=6)
    pd.testing.assert_frame_equal(comparable(pd.read_parquet(from_csv.labels_path)), comparable(pd.read_parquet(from_pq.labels_path)))
    assert pd.read_csv(from_pq.exceptions_path, dtype=str)["line"].tolist() == ["18", "20"]  # Parquet: 1-based row number


def test_companies_house_basic_company_data_as_it_comes(trained, settings, tmp_path):
    header_file = SHARED / "uk" / "companies_house_basiccompanydata_columns.txt"
    if not header_file.exists():
        pytest.skip("shared data not available")
    header = [l for l in header_file.read_text().splitlines() if l and not l.startswith("#")]
    assert len(header) == 55
    rows = []
    for i, text in enumerate(["We build welding robots for car plants.", "Family bakery and tea room.", ""]):
        row = {h: "" for h in header}
        row.update({"CompanyName": f"FIRM {i} LTD", " CompanyNumber": f"0000000{i}", "RegAddress.PostCode": "CV1 2AB",
                    "SICCode.SicText_1": "28990 - Manufacture of other special-purpose machinery", "SICCode.SicText_2": "None Supplied"})
        rows.append({**row, "text": text})
    pd.DataFrame(rows, columns=header + ["text"]).to_csv(tmp_path / "BasicCompanyData.csv", index=False)
    result = classify_register(tmp_path / "BasicCompanyData.csv", tmp_path / "ch.parquet", settings)
    assert set(pd.read_parquet(result.labels_path)["firm_id"]) == {"00000000", "00000001"}
    assert (result.n_input, result.n_exceptions) == (3, 1)


def test_fast_path_margins(trained, settings, rtic_home, tmp_path):
    res = run_cli("fastpath", "build", home=rtic_home)
    assert res.returncode == 0, res.stderr
    assert (rtic_home / "static" / "all-MiniLM-L6-v2-static-v1.npy").exists()
    register = seed_register(tmp_path / "r.csv", 60, offset=400)
    exact = classify_register(register, tmp_path / "t.parquet", settings, chunk_rows=25)
    transformer = pd.read_parquet(exact.labels_path)

    everyone = classify_register(register, tmp_path / "all.parquet", settings, chunk_rows=25, fast=True, fast_risk=0.0)
    assert everyone.n_escalated == 60
    pd.testing.assert_frame_equal(comparable(pd.read_parquet(everyone.labels_path)), comparable(transformer))

    nobody = classify_register(register, tmp_path / "none.parquet", settings, chunk_rows=25, fast=True, fast_risk=1.0)
    static = pd.read_parquet(nobody.labels_path)
    assert nobody.n_escalated == 0 and set(static["scored_by"]) == {"static"}
    assert static["probability"].between(0, 1).all()
    # The distilled head agrees with its teacher on most (firm, sector) decisions, even with no re-scoring.
    agreement = (comparable(static)["assigned"] == comparable(transformer)["assigned"]).mean()
    assert agreement > 0.85

    some = classify_register(register, tmp_path / "some.parquet", settings, chunk_rows=25, fast=True, fast_risk=0.2)
    mixed = comparable(pd.read_parquet(some.labels_path))
    rescored = mixed["scored_by"] == "transformer"
    assert some.n_escalated == mixed.loc[rescored, "firm_id"].nunique() <= 60
    # Re-scored firms carry the transformer's labels, the others the static head's: nothing in between.
    pd.testing.assert_frame_equal(mixed[rescored].drop(columns="scored_by"), comparable(transformer)[rescored].drop(columns="scored_by"))
    pd.testing.assert_frame_equal(mixed[~rescored], comparable(static)[~rescored])


def test_dotted_out_names_keep_their_own_side_files(trained, settings, tmp_path):
    """Two --out names that differ only after a dot must not share parts or exceptions (only the last suffix is cut)."""
    from rtic.clusters.pipeline import sibling
    from rtic.contracts import sibling_path
    from rtic.review.index import default_index_path

    out = tmp_path / "out"
    first = classify_register(EXAMPLE, out / "labels.2026.11.parquet", settings, chunk_rows=7)
    second = classify_register(EXAMPLE, out / "labels.2026.12.parquet", settings, chunk_rows=7)
    assert first.exceptions_path == out / "labels.2026.11.exceptions.csv"
    assert second.exceptions_path == out / "labels.2026.12.exceptions.csv"
    assert first.manifest_path.parent == out / "labels.2026.11.parts"
    assert second.manifest_path.parent == out / "labels.2026.12.parts"
    for result in (first, second):
        assert result.labels_path.is_file() and result.exceptions_path.is_file() and result.manifest_path.is_file()
    assert not (out / "labels.exceptions.csv").exists() and not (out / "labels.parts").exists()
    assert comparable(pd.read_parquet(first.labels_path)).equals(comparable(pd.read_parquet(second.labels_path)))
    assert default_index_path(out / "labels.2026.11.parquet") == out / "labels.2026.11.review-index.sqlite"
    assert sibling(out / "clusters.2026.11.parquet", "members") == out / "clusters.2026.11.members.parquet"
    assert sibling_path("labels.parquet", ".exceptions.csv") == Path("labels.exceptions.csv")
