"""Batch engine robustness: duplicate ids across a resume, the on-disk seen-id index, and --since output
in the order of an uninterrupted full run. Real model, real MLflow SQLite registry."""

import logging

import pandas as pd
import pytest

from rtic.score.batch import classify_register
from rtic.score.runstate import parts_dir_for
from rtic.config import DEFAULT_SEED_LABELS
from rtic.register import SeenIds



class Stop(Exception):
    pass


def seed_frame(n: int, offset: int = 0) -> pd.DataFrame:
    seed = pd.read_csv(DEFAULT_SEED_LABELS, dtype=str, keep_default_na=False).iloc[offset : offset + n]
    text = seed["text"].str.replace(r"\s+", " ", regex=True)  # one physical line per row: line numbers by eye
    return pd.DataFrame({"firm_id": [f"F{i:03d}" for i in range(len(seed))], "name": seed["firm_id"].to_numpy(), "text": text.to_numpy()})


def test_seen_ids_first_line_wins_and_remarking_is_idempotent(tmp_path):
    seen = SeenIds(tmp_path / "seen.sqlite")
    assert seen.repeated(["a", "b", "a"], [2, 3, 4]) == [False, False, True]
    assert seen.repeated(["c", "b"], [5, 6]) == [False, True]
    # A resumed run re-does the chunk it was killed in: the same rows are not their own duplicates.
    assert seen.repeated(["c", "b"], [5, 6]) == [False, True]
    seen.close()
    reopened = SeenIds(tmp_path / "seen.sqlite")  # the index survives the process
    assert reopened.repeated(["a", "z"], [9, 10]) == [True, False]
    # Marked out of order (not what a run does, but the index must not depend on it): the lower line wins.
    assert reopened.repeated(["q"], [20]) == [False] and reopened.repeated(["q"], [15]) == [False]
    assert reopened.repeated(["q"], [20]) == [True]
    reopened.close()


def test_resumed_run_detects_a_duplicate_first_seen_in_a_finished_chunk(trained, settings, tmp_path, caplog):
    frame = seed_frame(12)
    frame.loc[9, "firm_id"] = "F001"  # line 11 repeats line 3's firm, three chunks later
    register = tmp_path / "r.csv"
    frame.to_csv(register, index=False)
    out = tmp_path / "out" / "labels.parquet"

    class StopAfterFirstChunk(logging.Filter):  # the per-chunk progress line is logged once the chunk is on disk
        def filter(self, record):
            if record.getMessage().startswith("  "):
                raise Stop
            return True

    caplog.set_level(logging.INFO, logger="rtic.score.batch")
    batch_log = logging.getLogger("rtic.score.batch")
    stop = StopAfterFirstChunk()
    batch_log.addFilter(stop)
    try:
        with pytest.raises(Stop):
            classify_register(register, out, settings, chunk_rows=3)
    finally:
        batch_log.removeFilter(stop)
    parts = parts_dir_for(out)
    assert sorted(p.name for p in parts.glob("chunk-*.json")) == ["chunk-000000.json"] and not out.exists()
    assert (parts / "seen.sqlite").exists()

    caplog.clear()
    resumed = classify_register(register, out, settings, chunk_rows=3)
    messages = [r.getMessage() for r in caplog.records if r.name == "rtic.score.batch"]
    assert resumed.resumed_chunks == 1 and "resuming" in messages[0]
    exceptions = pd.read_csv(resumed.exceptions_path, dtype=str, keep_default_na=False)
    assert exceptions[["firm_id", "line", "reason"]].values.tolist() == [["F001", "11", "duplicate_id"]]

    fresh = classify_register(register, tmp_path / "fresh" / "labels.parquet", settings, chunk_rows=3)
    pd.testing.assert_frame_equal(pd.read_parquet(out).drop(columns="classified_at"), pd.read_parquet(fresh.labels_path).drop(columns="classified_at"))
    assert pd.read_csv(fresh.exceptions_path, dtype=str, keep_default_na=False).equals(exceptions)


def test_since_output_is_in_the_order_of_a_full_run(trained, settings, tmp_path):
    may = seed_frame(14, offset=100)
    may.to_csv(tmp_path / "may.csv", index=False)
    before = classify_register(tmp_path / "may.csv", tmp_path / "may.parquet", settings, chunk_rows=4)
    june = may.copy()
    june.loc[[2, 7], "text"] = ["We now make satellite antennas for small spacecraft.", "Open banking payments API for lenders."]
    new = pd.DataFrame({"firm_id": ["A-new"], "name": ["new"], "text": ["Heat pumps and solar panels for homes."]})
    june = pd.concat([june.iloc[:5], new, june.iloc[5:]], ignore_index=True)  # a new firm in the middle; ids not sorted
    june = june.iloc[::-1].reset_index(drop=True)
    june.to_csv(tmp_path / "june.csv", index=False)

    since = classify_register(tmp_path / "june.csv", tmp_path / "june.parquet", settings, chunk_rows=4, since=before.labels_path)
    full = classify_register(tmp_path / "june.csv", tmp_path / "full.parquet", settings, chunk_rows=5)
    assert (since.n_carried, since.n_classified) == (12, 15)
    got, want = pd.read_parquet(since.labels_path), pd.read_parquet(full.labels_path)
    # Same rows in the same order as the full run (which is register order, whatever the chunk size) ...
    assert got[["firm_id", "sector_id"]].values.tolist() == want[["firm_id", "sector_id"]].values.tolist()
    assert list(dict.fromkeys(got["firm_id"])) == june["firm_id"].tolist()
    pd.testing.assert_frame_equal(got.drop(columns="classified_at"), want.drop(columns="classified_at"), atol=1e-6)
    # ... and the carried firms are May's rows exactly, timestamp included.
    carried = got["firm_id"].isin(may["firm_id"].drop([2, 7]))
    may_rows = pd.read_parquet(before.labels_path).set_index(["firm_id", "sector_id"])
    pd.testing.assert_frame_equal(got[carried].set_index(["firm_id", "sector_id"]), may_rows.loc[got[carried].set_index(["firm_id", "sector_id"]).index])
    assert since.firms_per_sector == full.firms_per_sector  # carried firms count in the summary too
