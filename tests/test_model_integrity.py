"""A registered model is checked before any of its code runs: damaged or replaced artifacts, a damaged
registry and URIs that are not models are each refused with one line (issue 13 items 17-19)."""

import json
import shutil
from pathlib import Path

import pytest

from conftest import run_cli
from rtic.config import MODEL_NAME, Settings
from rtic.errors import RticError
from rtic.mlops import registry


@pytest.fixture()
def model_dir(trained, settings) -> Path:
    """The champion's artifact folder; every file a test changes is put back afterwards."""
    mlflow_client = registry.client(settings)
    uri = mlflow_client.get_model_version_download_uri(MODEL_NAME, trained.version)
    path = Path(uri.removeprefix("file://"))
    saved = {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}
    yield path
    for p in path.rglob("*"):
        if p.is_file() and p not in saved:
            p.unlink()
    for p, data in saved.items():
        p.write_bytes(data)


def test_the_digest_is_recorded_at_registration_and_checked_on_load(trained, settings, model_dir):
    mv = registry.client(settings).get_model_version(MODEL_NAME, trained.version)
    digests = json.loads(mv.tags[registry.DIGEST_TAG])
    assert {"MLmodel", "pyfunc.py", "artifacts/classifier.joblib", "artifacts/meta.json", "code/"} <= set(digests)
    loaded = registry.open_model(None, settings)
    assert loaded.path == model_dir and loaded.classifier.sector_ids == loaded.sector_ids
    assert loaded.training_labels is not None and loaded.training_labels.is_file()  # from the training run


def test_a_replaced_pyfunc_file_is_refused_before_it_runs(trained, settings, rtic_home, model_dir, tmp_path):
    """Issue 13 item 19: a replaced pyfunc_model.py ran on load."""
    marker = tmp_path / "ran"
    (model_dir / "pyfunc.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n" + (model_dir / "pyfunc.py").read_text())
    with pytest.raises(RticError, match=r"pyfunc.py in .* changed since it was registered"):
        registry.open_model(None, settings)
    register = tmp_path / "r.csv"
    register.write_text("firm_id,text\nA,We build software\n")
    res = run_cli("classify", str(register), "--out", str(tmp_path / "out.parquet"), home=rtic_home)
    assert res.returncode == 2 and "pyfunc.py" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not marker.exists()


@pytest.mark.parametrize("damaged,change", [
    ("artifacts/classifier.joblib", lambda b: b[: len(b) // 2]),
    ("artifacts/meta.json", lambda b: b"{not json"),
    ("MLmodel", lambda b: b"flavors: [unclosed\n"),
    ("code/rtic/register.py", lambda b: b + b"\nraise SystemExit('replaced')\n"),
])
def test_a_damaged_artifact_is_named_in_one_line(trained, settings, rtic_home, model_dir, tmp_path, damaged, change):
    """Issue 13 item 17: KeyError, JSONDecodeError and YAML tracebacks for damaged artifacts."""
    path = model_dir / damaged
    path.write_bytes(change(path.read_bytes()))
    named = "code/" if damaged.startswith("code/") else damaged
    register = tmp_path / "r.csv"
    register.write_text("firm_id,text\nA,We build software\n")
    res = run_cli("classify", str(register), "--out", str(tmp_path / "o.parquet"), home=rtic_home)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert named in res.stderr and "re-register with `rtic train`" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_a_damaged_artifact_of_an_unregistered_model_is_named(trained, settings, model_dir, tmp_path):
    """Loaded by folder (no registry, no digest): the pyfunc itself names the artifact it cannot read."""
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    (copy / "artifacts" / "meta.json").write_text("{}")
    with pytest.raises(RticError, match="artifact meta.json is damaged"):
        registry.open_model(str(copy), settings)
    (copy / "artifacts" / "meta.json").write_bytes((model_dir / "artifacts" / "meta.json").read_bytes())
    (copy / "artifacts" / "classifier.joblib").write_bytes(b"\x80\x04garbage")
    with pytest.raises(RticError, match="artifact classifier.joblib is damaged"):
        registry.open_model(str(copy), settings)


def test_a_damaged_registry_database_is_one_line(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "mlflow.db").write_bytes(b"this is not an SQLite database" * 100)
    register = tmp_path / "r.csv"
    register.write_text("firm_id,text\nA,We build software\n")
    for args in (["classify", str(register), "--out", str(tmp_path / "o.parquet")], ["models", "list"]):
        res = run_cli(*args, home=home)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert "mlflow.db cannot be read" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    with pytest.raises(RticError, match="cannot be read"):
        registry.open_model(None, Settings(home=home))


@pytest.mark.parametrize("uri,says", [
    ("http://127.0.0.1:1/model", "is not a model URI rtic can load"),
    ("", "--model is empty"),
    ("   ", "--model is empty"),
    ("runs:/0123456789abcdef/model", "not found"),
    ("models:/rtic-sector-classifier/notanumber", "not found"),
    ("/no/such/folder", "no MLflow model folder there"),
])
def test_a_model_uri_that_is_not_a_model_is_one_line(trained, rtic_home, tmp_path, uri, says):
    """Issue 13 item 18: an http URI raised 'not enough values to unpack'; '' silently used the champion."""
    register = tmp_path / "r.csv"
    register.write_text("firm_id,text\nA,We build software\n")
    res = run_cli("classify", str(register), "--out", str(tmp_path / "o.parquet"), "--model", uri, home=rtic_home)
    assert res.returncode == 2 and says in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("option,kwargs,says", [
    ("C", {"C": float("nan")}, "--C"), ("C", {"C": 0.0}, "--C"), ("C", {"C": float("inf")}, "--C"),
    ("cv", {"cv": 1}, "--cv"), ("cv", {"cv": -3}, "--cv"), ("seed", {"seed": -1}, "--seed"),
])
def test_training_options_out_of_range_are_refused_before_any_work(tmp_path, option, kwargs, says):
    """Hostile pass: --C nan failed in the classifier's fit with a ValueError traceback after embedding every
    firm; --cv 1 and --cv -3 silently skipped cross-validation."""
    from rtic.model.training import train

    with pytest.raises(RticError, match=says):
        train(Settings(home=tmp_path / "home"), labels_path=tmp_path / "never-read.csv", **kwargs)
    assert not (tmp_path / "home").exists()  # refused before the registry was touched


def test_the_mlflow_ui_port_must_be_a_port(tmp_path):
    from rtic.mlops.lifecycle import ui_command

    for port in (0, -1, 70000):
        with pytest.raises(RticError, match="--port must be between 1 and 65535"):
            ui_command(Settings(home=tmp_path), port)
    (tmp_path / "mlflow.db").touch()  # a registry to serve
    assert "5000" in ui_command(Settings(home=tmp_path), 5000)
