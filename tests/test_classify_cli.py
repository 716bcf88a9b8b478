
import pandas as pd
import pytest

from rtic.contracts import LABEL_COLUMNS
from rtic.config import PACKAGE_DATA
from conftest import run_cli

EXAMPLE = PACKAGE_DATA / "example_register.csv"


def assert_one_line_error(res, *needles):
    assert res.returncode == 2, res.stderr
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_classify_example_end_to_end(trained, rtic_home, tmp_path):
    out = tmp_path / "labels.parquet"
    res = run_cli("classify", str(EXAMPLE), "--out", str(out), home=rtic_home)
    assert res.returncode == 0, res.stderr
    assert "firms per sector" in res.stdout
    # Progress is logged to stderr as plain lines, with the rate and ETA after each chunk.
    assert "firms from example_register.csv with" in res.stderr and "firms/s, ETA" in res.stderr, res.stderr
    assert "classifying" not in res.stdout

    labels = pd.read_parquet(out)
    assert list(labels.columns)[: len(LABEL_COLUMNS)] == LABEL_COLUMNS
    register = pd.read_csv(EXAMPLE, dtype=str, keep_default_na=False)
    with_text = register[register["text"].str.strip() != ""]
    assert set(labels["firm_id"]) == set(with_text["firm_id"])
    assert (labels.groupby("firm_id").size() == 9).all()
    assert (labels["model_version"] == trained.version).all()
    assert labels["probability"].between(0, 1).all()
    assert labels["text_sha256"].str.len().eq(64).all()

    exceptions = pd.read_csv(tmp_path / "labels.exceptions.csv", dtype=str)
    assert set(exceptions["firm_id"]) == {"EX018", "EX020"}
    assert set(exceptions["reason"]) == {"no_text"}
    # Every register row is accounted for.
    assert labels["firm_id"].nunique() + len(exceptions) == len(register)


@pytest.mark.parametrize("quiet", [["--quiet", "classify"], ["classify", "--quiet"]], ids=["global", "command"])
def test_quiet_leaves_progress_out_and_the_summary_in(trained, rtic_home, tmp_path, quiet):
    res = run_cli(*quiet, str(EXAMPLE), "--out", str(tmp_path / "labels.parquet"), home=rtic_home)
    assert res.returncode == 0, res.stderr
    assert "firms per sector" in res.stdout
    assert "classifying" not in res.stderr and "ETA" not in res.stderr, res.stderr


@pytest.mark.parametrize(
    "content, needles",
    [
        (None, ["not found"]),
        ("name,text\nA,hello\n", ["no column 'firm_id'"]),
        ("firm_id,name\n1,A\n", ["no column 'text'"]),
        ("", ["empty"]),
        ("firm_id,text\n", ["no firms"]),
        (b"firm_id,t\xe9xt\n1,a\n", ["header", "not valid UTF-8"]),
    ],
    ids=["missing-file", "no-firm-id", "no-text", "empty-file", "header-only", "bad-header-bytes"],
)
def test_bad_register_input(trained, rtic_home, tmp_path, content, needles):
    register = tmp_path / "register.csv"
    if isinstance(content, bytes):
        register.write_bytes(content)
    elif content is not None:
        register.write_text(content)
    out = tmp_path / "labels.parquet"
    res = run_cli("classify", str(register), "--out", str(out), home=rtic_home)
    assert_one_line_error(res, *needles)
    assert not out.exists() and not (tmp_path / "labels.exceptions.csv").exists()
    assert list(tmp_path.glob(".*tmp")) == []


def test_unknown_model_says_how_to_train(rtic_home, tmp_path):
    out = tmp_path / "labels.parquet"
    res = run_cli("classify", str(EXAMPLE), "--out", str(out), "--model", "models:/nope@champion", home=rtic_home)
    assert_one_line_error(res, "not found", "rtic train")
    assert not out.exists()


def test_empty_registry_says_how_to_train(tmp_path):
    res = run_cli("classify", str(EXAMPLE), "--out", str(tmp_path / "l.parquet"), home=tmp_path / "fresh_home")
    assert_one_line_error(res, "rtic train")


def test_taxonomy_mismatch_is_refused(trained, rtic_home, tmp_path):
    other = tmp_path / "tax.yaml"
    text = (PACKAGE_DATA / "taxonomy.yaml").read_text().replace('version: "', 'version: "other-', 1)
    other.write_text(text)
    res = run_cli("classify", str(EXAMPLE), "--out", str(tmp_path / "l.parquet"), "--taxonomy", str(other), home=rtic_home)
    assert_one_line_error(res, "taxonomy", "other-")


def test_companies_house_file_is_accepted(trained, rtic_home, tmp_path):
    ch = tmp_path / "ch.csv"
    ch.write_text(
        "CompanyName, CompanyNumber,RegAddress.PostCode,SICCode.SicText_1,text\n"
        'ACME ROBOTS LTD,01234567,CV1 2AB,"28990 - Manufacture of other special-purpose machinery",We build welding robots.\n'
    )
    out = tmp_path / "labels.parquet"
    res = run_cli("classify", str(ch), "--out", str(out), home=rtic_home)
    assert res.returncode == 0, res.stderr
    assert set(pd.read_parquet(out)["firm_id"]) == {"01234567"}


def test_row_level_problems_are_exceptions_not_errors(trained, rtic_home, tmp_path):
    """Duplicate ids and bad bytes in one row no longer stop the run: they are exception rows with lines."""
    register = tmp_path / "register.csv"
    register.write_bytes(b"firm_id,text\n1,We build welding robots.\n1,Second row for firm 1.\n2,caf\xe9 \xff\n3,Heat pumps.\n")
    out = tmp_path / "labels.parquet"
    res = run_cli("classify", str(register), "--out", str(out), home=rtic_home)
    assert res.returncode == 0, res.stderr
    assert set(pd.read_parquet(out)["firm_id"]) == {"1", "3"}
    exceptions = pd.read_csv(tmp_path / "labels.exceptions.csv", dtype=str)
    assert exceptions[["firm_id", "line", "reason"]].values.tolist() == [["1", "3", "duplicate_id"], ["2", "4", "bad_encoding"]]


def test_companies_house_file_with_a_websites_file(trained, settings, tmp_path):
    """--websites joins on company number: a firm with a website but no text is no_text (worth crawling), not no_website;
    websites rows meeting no firm are listed."""
    from rtic.score.batch import classify_register

    ch = tmp_path / "ch.csv"
    pd.DataFrame({"CompanyName": ["ACME ROBOTS LTD", "BETA LTD", "GAMMA LTD"], "CompanyNumber": ["01234567", "SC012345", "07654321"],
                  "text": ["We build welding robots.", "", ""]}).to_csv(ch, index=False)
    websites = tmp_path / "websites.csv"
    pd.DataFrame({"CompanyNumber": ["1234567", "SC012345", "09999999"],
                  "website": ["acme.example", "beta.example", "nobody.example"]}).to_csv(websites, index=False)
    out = tmp_path / "labels.parquet"
    result = classify_register(ch, out, settings, websites=websites)
    exceptions = pd.read_csv(result.exceptions_path, dtype=str).set_index("firm_id")
    assert exceptions["reason"].to_dict() == {"SC012345": "no_text", "07654321": "no_website"}
    report = pd.read_csv(tmp_path / "labels.unmatched-websites.csv", dtype=str)
    assert report[["firm_id", "reason"]].values.tolist() == [["09999999", "no_such_firm"]]
    assert result.websites.startswith(f"websites from {websites}: 2 of 3 attached")
    assert result.websites_report == tmp_path / "labels.unmatched-websites.csv"
