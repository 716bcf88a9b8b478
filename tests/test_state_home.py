"""Issue 14 item 5: rtic's state does not depend on the folder it is run from, and a read never creates a registry."""

import pytest

from rtic.cli.main import main
from rtic.config import REPO_ROOT, Settings, default_home
from rtic.errors import RticError
from rtic.mlops import registry
from rtic.mlops.lifecycle import list_versions


def test_default_home_is_the_checkouts_models_folder_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("RTIC_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    # This checkout has training/ beside rtic/ (an editable install): its models/ folder, wherever rtic runs.
    assert default_home() == REPO_ROOT / "models"
    assert Settings.from_env().home == REPO_ROOT / "models"
    assert Settings().home == REPO_ROOT / "models"


def test_relative_rtic_home_is_fixed_when_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RTIC_HOME", "state")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # mlflow.set_tracking_uri in an earlier test sets it
    settings = Settings.from_env()
    monkeypatch.chdir(REPO_ROOT)
    assert settings.home == tmp_path / "state"
    assert settings.resolved_tracking_uri == f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}"


def test_reading_a_missing_registry_names_rtic_home_and_creates_nothing(tmp_path):
    settings = Settings(home=tmp_path / "empty")
    for read in (lambda: registry.resolve(None, settings), lambda: list_versions(settings)):
        with pytest.raises(RticError, match="RTIC_HOME=") as err:
            read()
        assert str(tmp_path / "empty") in str(err.value)
    assert not registry.has_champion(settings)
    assert not (tmp_path / "empty" / "mlflow.db").exists()


def test_classify_from_another_folder_fails_in_one_line_without_leaving_a_registry(tmp_path, monkeypatch, capsys):
    register = tmp_path / "register.csv"
    register.write_text("firm_id,text\nF1,we build batteries\n")
    monkeypatch.setenv("RTIC_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["classify", str(register), "--out", str(tmp_path / "labels.parquet")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RTIC_HOME=" in err[0] and "rtic train" in err[0]
    assert not (tmp_path / "home" / "mlflow.db").exists() and not (tmp_path / "models").exists()


def test_champion_not_found_names_rtic_home(trained, settings):
    with pytest.raises(RticError, match=r"not found in registry .*RTIC_HOME="):
        registry.resolve("models:/no-such-model@champion", settings)
