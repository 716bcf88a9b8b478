"""The wide labels CSV for spreadsheets (rtic.firm_labels.export_wide), on labels made by the real model."""

import csv

import pandas as pd
import pytest

from review_fixtures import HOSTILE_ID, review_labels, review_register  # noqa: F401 (fixtures)
from rtic.errors import RticError
from rtic.firm_labels import exceptions_path, export_wide


def read_wide(path):
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_wide_csv_has_one_row_per_firm_with_name_website_and_a_column_per_sector(review_labels, review_register, tmp_path):
    labels = pd.read_parquet(review_labels)
    register = pd.read_csv(review_register, dtype=str, keep_default_na=False).set_index("firm_id")
    unclassified = pd.read_csv(exceptions_path(review_labels), dtype=str, keep_default_na=False).set_index("firm_id")
    result = export_wide(review_labels, tmp_path / "wide.csv", register=review_register)
    wide = read_wide(result.out)
    sectors = sorted(labels["sector_id"].unique())
    assert list(wide.columns) == ["firm_id", "name", "website", *sectors, "model_name", "model_version", "taxonomy_version", "not_classified"]
    # Every register firm once: the classified in labels order, then the unclassified with their reason.
    assert list(wide["firm_id"]) == list(dict.fromkeys(labels["firm_id"])) + list(unclassified.index)
    assert sorted(wide["firm_id"]) == sorted(register.index)
    assert result.n_classified == labels["firm_id"].nunique() and result.n_not_classified == len(unclassified)
    wide = wide.set_index("firm_id")
    for row in labels.itertuples():
        assert wide.loc[row.firm_id, row.sector_id] == ("yes" if row.assigned else "no")
        assert wide.loc[row.firm_id, "model_version"] == row.model_version and wide.loc[row.firm_id, "not_classified"] == ""
    for firm, reason in unclassified["reason"].items():
        assert wide.loc[firm, "not_classified"] == reason and (wide.loc[firm, sectors] == "").all()
    assert wide.loc["EX004", "name"] == register.loc["EX004", "name"] and wide.loc["EX004", "website"] == register.loc["EX004", "website"]

    probs = read_wide(export_wide(review_labels, tmp_path / "p.csv", register=review_register, values="probability").out)
    probs = probs.set_index("firm_id")
    for row in labels.itertuples():
        assert float(probs.loc[row.firm_id, row.sector_id]) == pytest.approx(row.probability, abs=5e-5)


def test_cells_a_spreadsheet_would_run_as_formulas_are_quoted(review_labels, tmp_path):
    register = tmp_path / "register.csv"
    firms = sorted(pd.read_parquet(review_labels)["firm_id"].unique())
    names = {firms[0]: "=HYPERLINK(\"http://evil.example\",\"click\")", firms[1]: "+44 Solar", firms[2]: "@SUM(A1)"}
    pd.DataFrame({"firm_id": firms, "name": [names.get(f, "Plain Ltd") for f in firms], "text": "x"}).to_csv(register, index=False)
    wide = read_wide(export_wide(review_labels, tmp_path / "wide.csv", register=register).out).set_index("firm_id")
    for firm, name in names.items():
        assert wide.loc[firm, "name"] == "'" + name
    assert wide.loc[firms[3], "name"] == "Plain Ltd"


def test_streamed_in_small_batches_gives_the_same_file(review_labels, review_register, tmp_path, monkeypatch):
    import rtic.firm_labels as fl

    whole = export_wide(review_labels, tmp_path / "whole.csv", register=review_register)
    monkeypatch.setattr(fl, "BATCH_ROWS", 4)  # 9 sectors a firm: every firm is split across batches
    pieces = export_wide(review_labels, tmp_path / "pieces.csv", register=review_register)
    assert pieces.out.read_bytes() == whole.out.read_bytes()


def test_published_labels_export_the_reviewed_verdict(review_labels, tmp_path):
    from rtic.review.publish import publish_file
    from rtic.review.store import ReviewStore

    labels = pd.read_parquet(review_labels)
    row = labels[labels["assigned"]].iloc[0]
    reviews = tmp_path / "reviews.sqlite"
    ReviewStore(reviews).record(row["firm_id"], row["sector_id"], "reject", "alice")
    published = publish_file(review_labels, reviews, tmp_path / "published.parquet").out
    wide = read_wide(export_wide(published, tmp_path / "wide.csv").out).set_index("firm_id")
    assert wide.loc[row["firm_id"], row["sector_id"]] == "no"


def test_bad_inputs_are_refused_and_leave_no_file(review_labels, tmp_path):
    out = tmp_path / "wide.csv"
    with pytest.raises(RticError, match="values must be"):
        export_wide(review_labels, out, values="maybe")
    with pytest.raises(RticError, match=r"\.csv"):
        export_wide(review_labels, tmp_path / "wide.xlsx")
    with pytest.raises(RticError, match="not found"):
        export_wide(tmp_path / "missing.parquet", out)
    # A firm's rows in two places cannot be streamed into one row: refused, not written twice.
    labels = pd.read_parquet(review_labels)
    first = labels["firm_id"].iloc[0]
    shuffled = tmp_path / "shuffled.parquet"
    pd.concat([labels[labels["firm_id"] == first].iloc[:2], labels[labels["firm_id"] != first], labels[labels["firm_id"] == first].iloc[2:]]).to_parquet(shuffled)
    with pytest.raises(RticError, match=f"firm {first}'s sectors in two places"):
        export_wide(shuffled, out)
    assert not out.exists() and not list(tmp_path.glob(".wide.csv.*"))


def test_hostile_firm_text_stays_in_its_cell(review_labels, review_register, tmp_path):
    out = export_wide(review_labels, tmp_path / "wide.csv", register=review_register).out
    with out.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert len({len(r) for r in rows}) == 1  # every row as wide as the header
    hostile = next(r for r in rows if r[0] == HOSTILE_ID)
    assert hostile[1] == "<script>alert('name')</script> Solar Ltd"


def test_rtic_labels_export_cli(review_labels, review_register, tmp_path, rtic_home):
    from conftest import run_cli

    out = tmp_path / "wide.csv"
    res = run_cli("labels", "export", "--labels", str(review_labels), "--register", str(review_register), "--values", "probability",
                  "--out", str(out), home=rtic_home)
    assert res.returncode == 0, res.stderr
    assert "sector cells are probability" in res.stdout
    wide = read_wide(out)
    assert len(wide) == pd.read_csv(review_register, dtype=str)["firm_id"].nunique()
    bad = run_cli("labels", "export", "--labels", str(review_labels), "--values", "maybe", "--out", str(tmp_path / "x.csv"), home=rtic_home)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "values must be one of" in bad.stderr
    assert not (tmp_path / "x.csv").exists()
