"""Training with cross-validation, evaluation runs, the model lifecycle, active learning and new sectors,
against a real SQLite MLflow registry and the real encoder on small labelled sets."""

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from conftest import run_cli
from rtic.mlops import registry
from rtic.active import import_reviews, pick_uncertain_diverse, suggest
from rtic.config import DEFAULT_TAXONOMY, MODEL_NAME, REPO_ROOT
from rtic.errors import RticError
from rtic.model.fewshot import add_sector, bump_version, sample_few_shot
from rtic.labels import read_labels
from rtic.mlops.lifecycle import compare, list_versions, promote, show_version
from rtic.taxonomy import load_taxonomy
from rtic.model.training import evaluate, train



SECOND_PROGRESS = []  # (message, id of the MLflow run active when it was shown) while `second` trained


@pytest.fixture(scope="session")
def second(settings, mini_labels, trained):
    """A second version, trained on the same labels with other settings (no outer CV, to stay quick)."""
    import logging

    import mlflow

    class RunOfEachLine(logging.Handler):
        def emit(self, record):
            active = mlflow.active_run()
            SECOND_PROGRESS.append((record.getMessage(), active.info.run_id if active else None))

    handler = RunOfEachLine(level=logging.INFO)
    logger = logging.getLogger("rtic.model.training")
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.INFO
    try:
        return train(settings, labels_path=mini_labels, features="embedding", C=0.05, cv=0)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_training_run_is_open_while_the_work_is_done(second):
    # Embedding and fitting happen inside the run, so MLflow's duration is the training time, not the logging time.
    during = {m.split(" ")[0]: run_id for m, run_id in SECOND_PROGRESS}
    assert during["embedding"] == during["fitting"] == second.run_id


@pytest.fixture(scope="session")
def evaluated(settings, mini_labels, trained, second):
    return {v: evaluate(settings, mini_labels, model_uri=f"models:/{MODEL_NAME}/{v}", eval_set="mini")
            for v in (trained.version, second.version)}


def test_training_run_logs_cv_metrics_artifacts_and_provenance(trained, settings, mini_labels):
    assert trained.cv_folds == 5
    client = MlflowClient(registry.configure(settings))
    run = client.get_run(trained.run_id)
    for name in ("cv_macro_f1", "cv_micro_f1", "cv_macro_pr_auc", "cv_macro_ece", "cv_f1_fintech", "cv_precision_at_expected_fintech", "macro_f1"):
        assert name in run.data.metrics, name
    artifacts = {a.path for a in client.list_artifacts(trained.run_id)}
    assert {"sector_report.csv", "pr_curves.png", "calibration.png", "sector_cooccurrence.png", "misclassified.csv"} <= artifacts
    tags = run.data.tags
    assert tags["random_seed"] == "0" and tags["taxonomy_version"] == load_taxonomy().version
    assert tags["git_commit"] != "" and "package.scikit-learn" in tags and "package.mlflow" in tags
    from rtic.embed.encoder import file_sha256

    inputs = run.inputs.dataset_inputs
    assert inputs and inputs[0].dataset.digest == file_sha256(mini_labels)[:32]
    report = trained.report.set_index("sector_id")
    assert {"pr_auc", "ece", "precision_at_expected", "threshold"} <= set(report.columns)
    assert report.loc["macro", "f1"] == pytest.approx(run.data.metrics["cv_macro_f1"])


def test_run_metrics_are_the_reported_figures(settings, trained):
    # Repeatability of the cross-validation itself is checked in test_evaluation (a second full
    # training run here would double the suite's time).
    metrics = MlflowClient(registry.configure(settings)).get_run(trained.run_id).data.metrics
    for sector in load_taxonomy().sector_ids:
        assert metrics[f"cv_f1_{sector}"] == pytest.approx(trained.report.set_index("sector_id").loc[sector, "f1"])


def test_evaluate_logs_an_evaluation_run(evaluated, trained, settings):
    result = evaluated[trained.version]
    run = MlflowClient(registry.configure(settings)).get_run(result.run_id)
    assert run.data.tags["rtic.task"] == "evaluate" and run.data.tags["rtic.eval_set"] == "mini"
    assert run.data.tags["rtic.model_version"] == trained.version
    assert run.data.metrics["macro_f1"] == pytest.approx(result.report.set_index("sector_id").loc["macro", "f1"])
    # Trained on these very firms: the model must fit them well.
    assert run.data.metrics["macro_f1"] > 0.8


def test_evaluate_refuses_a_taxonomy_of_another_version(trained, settings, mini_labels, tmp_path):
    data = yaml.safe_load(DEFAULT_TAXONOMY.read_text())
    data["version"] = "1999.1"
    other = tmp_path / "old.yaml"
    other.write_text(yaml.safe_dump(data))
    with pytest.raises(RticError, match="trained on taxonomy"):
        evaluate(settings, mini_labels, taxonomy_path=other)


def test_models_list_show_compare(settings, trained, second, evaluated, mini_labels):
    table = list_versions(settings)
    assert list(table["version"][:2]) == [int(second.version), int(trained.version)]
    assert "champion" in table.set_index("version").loc[int(trained.version), "aliases"]
    assert table["macro_f1"].notna().all()
    # Each headline figure says which labels it is on; evaluations on a named set sit beside them.
    rows = table.set_index("version")
    assert rows.loc[int(trained.version), "figures_on"].startswith(f"cross-validation on {mini_labels.name}")
    assert rows.loc[int(second.version), "figures_on"].startswith(f"out-of-fold (optimistic) on {mini_labels.name}")
    for v in (trained.version, second.version):
        assert rows.loc[int(v), "macro_f1@mini"] == pytest.approx(evaluated[v].report.set_index("sector_id").loc["macro", "f1"])
    # Registered model and versions say what they are and what they were trained on.
    client = MlflowClient(registry.configure(settings))
    assert "sector classifier" in client.get_registered_model(MODEL_NAME).description
    description = client.get_model_version(MODEL_NAME, trained.version).description
    assert mini_labels.name in description and load_taxonomy().version in description and "cross-validation" in description
    info = show_version(settings, trained.version)
    assert info["aliases"] == ["champion"] and info["params"]["cv_folds"] == "5"
    assert [e["eval_set"] for e in info["evaluations"]] == ["mini"]
    side = compare(settings, trained.version, second.version, eval_set="mini").set_index("sector_id")
    assert f"f1_v{trained.version}" in side.columns and f"f1_v{second.version}" in side.columns
    assert list(side.index) == load_taxonomy().sector_ids + ["macro", "micro"]
    assert list(compare(settings, trained.version, second.version)["sector_id"]) == load_taxonomy().sector_ids + ["macro", "micro"]
    assert side.loc["macro", "f1_change"] == pytest.approx(
        evaluated[second.version].report.set_index("sector_id").loc["macro", "f1"]
        - evaluated[trained.version].report.set_index("sector_id").loc["macro", "f1"])
    with pytest.raises(RticError, match="no evaluation on 'elsewhere'"):
        compare(settings, trained.version, second.version, eval_set="elsewhere")
    with pytest.raises(RticError, match="no version 999"):
        show_version(settings, "999")


def test_promote_needs_an_evaluation_and_respects_the_tolerance(settings, trained, second, evaluated):
    client = MlflowClient(registry.configure(settings))
    with pytest.raises(RticError, match="--eval-set"):
        promote(settings, second.version)
    # A tolerance of minus one demands an impossible improvement (both fit these firms): refused, champion unchanged.
    refused = promote(settings, second.version, eval_set="mini", tolerance=-1.0)
    assert not refused.promoted and "not promoted" in refused.message
    assert str(client.get_registered_model(MODEL_NAME).aliases["champion"]) == trained.version
    # Issue 13 item 16: NaN compared false, so `--tolerance nan` promoted a worse model; out of range likewise refused.
    for tolerance in (float("nan"), float("inf"), -1.5, 2.0):
        with pytest.raises(RticError, match="--tolerance .* between -1 and 1"):
            promote(settings, second.version, eval_set="mini", tolerance=tolerance)
    assert str(client.get_registered_model(MODEL_NAME).aliases["champion"]) == trained.version
    with pytest.raises(RticError, match="--reason"):
        promote(settings, second.version, force=True)
    forced = promote(settings, second.version, force=True, reason="test override", who="tester")
    assert forced.promoted
    tags = client.get_model_version(MODEL_NAME, second.version).tags
    assert tags["promoted_by"] == "tester" and tags["promotion_reason"] == "test override" and tags["promotion_forced"] == "true"
    # And back, by comparison: any result passes with a tolerance of one.
    back = promote(settings, trained.version, eval_set="mini", tolerance=1.0, who="tester")
    assert back.promoted and back.previous == second.version
    assert str(client.get_registered_model(MODEL_NAME).aliases["champion"]) == trained.version


def test_cli_models_and_evaluate(rtic_home, trained, second, evaluated, mini_labels):
    listed = run_cli("models", "list", home=rtic_home)
    assert listed.returncode == 0, listed.stderr
    assert "champion" in listed.stdout and "macro_f1" in listed.stdout
    shown = run_cli("models", "compare", trained.version, second.version, home=rtic_home)
    assert shown.returncode == 0 and "f1_change" in shown.stdout
    missing = run_cli("models", "show", "999", home=rtic_home)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    ui = run_cli("ui", "--print-only", "--port", "5055", home=rtic_home)
    assert ui.returncode == 0 and "--host 127.0.0.1" in ui.stdout and "5055" in ui.stdout


# -- bad input -----------------------------------------------------------------------------------------
def write_labels(path, rows):
    pd.DataFrame(rows, columns=["firm_id", "text", "sectors"]).to_csv(path, index=False)
    return path


def test_bad_labels_each_give_one_line_and_exit_2(tmp_path, rtic_home):
    unknown = write_labels(tmp_path / "unknown.csv", [("1", "we build robots", "robots|fintech"), ("2", "payments", "quantum")])
    out = run_cli("train", "--labels", str(unknown), "--cv", "0", home=tmp_path / "home")
    assert out.returncode == 2 and "quantum, robots" in out.stderr and "--ignore-unknown" in out.stderr
    assert out.stderr.strip().count("\n") == 0
    conflict = write_labels(tmp_path / "conflict.csv", [("1", "a", "fintech"), ("1", "a", "space"), ("2", "b", "")])
    out = run_cli("train", "--labels", str(conflict), home=tmp_path / "home")
    assert out.returncode == 2 and "conflicting sectors" in out.stderr and ": 1" in out.stderr
    firms = read_labels(unknown, load_taxonomy(), ignore_unknown=True)
    assert firms.Y.sum() == 1 and any("quantum" in w for w in firms.warnings)


def test_empty_texts_and_rare_sectors_are_reported(tmp_path):
    path = write_labels(tmp_path / "l.csv", [("1", "", "fintech"), ("2", "bank app", "fintech"), ("3", "solar", "clean_growth")])
    firms = read_labels(path, load_taxonomy())
    assert firms.firm_ids == ["2", "3"]
    assert any("empty text" in w and "1" in w for w in firms.warnings)
    assert any("fewer than 5 positive" in w and "fintech" in w and "fixed threshold" in w for w in firms.warnings)
    # Scoring a model on these firms tunes nothing: the warning says what few positives mean for the figures.
    scored = read_labels(path, load_taxonomy(), training=False)
    assert any("fewer than 5 positive" in w and "fintech" in w for w in scored.warnings)
    assert not any("threshold" in w for w in scored.warnings)


# -- active learning ---------------------------------------------------------------------------------
def test_pick_uncertain_diverse_prefers_the_threshold_and_skips_duplicates():
    emb = np.array([[1, 0], [1, 0], [0, 1], [0.7, 0.7], [1, 0]], dtype=float)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    proba = np.array([0.50, 0.51, 0.45, 0.99, 0.01])
    picked = pick_uncertain_diverse(proba, 0.5, emb, n=2)
    assert picked[0] == 0 and picked[1] == 2  # row 1 is a near-copy of row 0; row 2 is uncertain and different
    assert len(set(pick_uncertain_diverse(proba, 0.5, emb, n=10))) == 5


def test_suggest_then_import_with_provenance(settings, trained, mini_labels, tmp_path):
    register = REPO_ROOT / "rtic" / "data" / "example_register.csv"
    review = tmp_path / "review.csv"
    frame = suggest(settings, register, "fintech", review, n=6, exclude_labels=mini_labels)
    assert len(frame) == 6 and frame["firm_id"].is_unique
    assert set(frame["model_version"]) == {trained.version}
    # The reviewer can find each firm: its name and website from the register sit beside its text.
    names = pd.read_csv(register, dtype=str, keep_default_na=False).set_index("firm_id")
    written = pd.read_csv(review, dtype=str, keep_default_na=False)
    assert list(written.columns[:4]) == ["firm_id", "name", "website", "text"]
    assert written["name"].tolist() == names.loc[written["firm_id"], "name"].tolist() and written["name"].str.strip().all()
    labelled = set(pd.read_csv(mini_labels, dtype=str)["firm_id"])
    assert not set(frame["firm_id"]) & labelled
    # A reviewer confirms three rows (one relabelled to fintech|ai_data) and leaves the rest.
    edited = pd.read_csv(review, dtype=str, keep_default_na=False)
    edited.loc[:2, "reviewed"] = "yes"
    edited.loc[0, "sectors"] = "fintech|ai_data"
    edited.to_csv(review, index=False)
    into = tmp_path / "labels.csv"
    pd.read_csv(mini_labels, dtype=str).to_csv(into, index=False)
    summary = import_reviews(review, into, reviewer="alice")
    assert (summary.imported, summary.added, summary.not_reviewed) == (3, 3, 3)
    merged = pd.read_csv(into, dtype=str, keep_default_na=False).set_index("firm_id")
    first = edited.loc[0, "firm_id"]
    assert merged.loc[first, "sectors"] == "ai_data|fintech"
    assert merged.loc[first, "labelled_by"] == "alice" and merged.loc[first, "model_version"] == trained.version
    assert merged.loc[first, "label_source"] == "review" and merged.loc[first, "labelled_at"]
    read_labels(into, load_taxonomy())  # still a valid labels file
    # Importing again relabels nothing and adds nothing.
    again = import_reviews(review, into, reviewer="alice")
    assert (again.added, again.relabelled, again.unchanged) == (0, 0, 3)


def test_import_refuses_unknown_sectors_and_unmarked_files(tmp_path, mini_labels):
    review = tmp_path / "r.csv"
    pd.DataFrame({"firm_id": ["a"], "text": ["t"], "sectors": ["quantum"], "reviewed": ["yes"]}).to_csv(review, index=False)
    with pytest.raises(RticError, match="quantum"):
        import_reviews(review, mini_labels, out=tmp_path / "o.csv")
    pd.DataFrame({"firm_id": ["a"], "text": ["t"], "sectors": ["fintech"], "reviewed": [""]}).to_csv(review, index=False)
    with pytest.raises(RticError, match="marked reviewed"):
        import_reviews(review, mini_labels, out=tmp_path / "o.csv")


# -- new sectors -------------------------------------------------------------------------------------
QUANTUM_SEEDS = [
    "We build trapped-ion quantum computers and sell cloud access to our qubits.",
    "Quantum software: compilers and error-correction tools for superconducting quantum processors.",
    "Quantum key distribution hardware for secure fibre links between data centres.",
    "Cryogenic control electronics for scaling quantum computers beyond a thousand qubits.",
    "Quantum sensing: atom-interferometer gravimeters for surveying and navigation.",
    "Photonic quantum computing chips made in our Bristol foundry.",
    "Quantum algorithms consultancy helping banks and pharma test quantum advantage.",
    "Single-photon detectors and entangled photon sources for quantum networks.",
    "Quantum random number generators certified for cryptographic use.",
    "Neutral-atom quantum processors with optical tweezers and laser control systems.",
]


def test_add_sector_then_train_from_ten_seed_firms(tmp_path, settings, mini_labels):
    seeds = tmp_path / "seeds.csv"
    pd.DataFrame({"firm_id": [f"q{i}" for i in range(len(QUANTUM_SEEDS))], "text": QUANTUM_SEEDS}).to_csv(seeds, index=False)
    labels = tmp_path / "labels.csv"
    pd.read_csv(mini_labels, dtype=str).to_csv(labels, index=False)
    result = add_sector(None, tmp_path / "tax.yaml", "quantum", "Quantum Technologies", "Quantum computing, sensing and communications.",
                        seeds, labels, expected_share=0.001)
    old = load_taxonomy()
    new = load_taxonomy(result.taxonomy_path)
    assert new.version == bump_version(old.version) != old.version and new.sector_ids == old.sector_ids + ["quantum"]
    assert result.seeds_added == len(QUANTUM_SEEDS)
    # Ten seed firms: the hint names the flags the README recommends for few seeds.
    assert result.message.endswith(f"Next: rtic train --labels {labels} --taxonomy {result.taxonomy_path} --description-prior --features embedding")
    with pytest.raises(RticError, match="already has"):
        add_sector(result.taxonomy_path, tmp_path / "t2.yaml", "quantum", "Q", "Q.", seeds, labels)
    # The old taxonomy no longer accepts the labels; the new one trains a model that knows the sector.
    with pytest.raises(RticError, match="quantum"):
        read_labels(labels, old)
    model = train(settings, labels_path=labels, taxonomy_path=result.taxonomy_path, name="rtic-quantum-test", cv=0,
                  description_prior=True)
    assert model.taxonomy_version == new.version
    pyfunc = registry.open_model("models:/rtic-quantum-test/1", settings).pyfunc
    out = pyfunc.predict(pd.DataFrame({"text": ["Our superconducting qubits run quantum error correction.",
                                                "We bake sourdough bread for cafes in Leeds."]}))
    assert out["quantum__probability"][0] > 0.5 > out["quantum__probability"][1]
    # Suggest with that model, then import without --taxonomy: the file records the new taxonomy version, and the
    # suggesting model knows its sectors, so the new sector is accepted (the bundled taxonomy would refuse it).
    register = tmp_path / "register.csv"
    pd.DataFrame({"firm_id": ["r1", "r2", "r3"], "name": ["Qubit Works", "Loaf Ltd", "Ion Trap Co"], "website": ["q.example", "", "i.example"],
                  "text": ["Trapped-ion quantum computers for research labs.", "We bake sourdough bread for cafes in Leeds.",
                           "Quantum key distribution systems for banks."]}).to_csv(register, index=False)
    review = tmp_path / "review.csv"
    suggest(settings, register, "quantum", review, n=2, model_uri="models:/rtic-quantum-test/1")
    edited = pd.read_csv(review, dtype=str, keep_default_na=False)
    assert set(edited["taxonomy_version"]) == {new.version}
    edited["reviewed"], edited["sectors"] = "yes", "quantum"
    edited.to_csv(review, index=False)
    with pytest.raises(RticError, match=f"records taxonomy {new.version}.*--taxonomy"):
        import_reviews(review, labels, out=tmp_path / "none.csv")  # no registry to ask: one line saying what to pass
    summary = import_reviews(review, labels, out=tmp_path / "merged.csv", reviewer="alice", settings=settings)
    assert summary.added == 2
    assert read_labels(tmp_path / "merged.csv", new).Y[:, new.sector_ids.index("quantum")].sum() == len(QUANTUM_SEEDS) + 2


def test_sample_few_shot_gives_each_sector_k_positives():
    rng = np.random.default_rng(0)
    Y = (rng.random((400, 4)) < [0.3, 0.2, 0.1, 0.05]).astype(int)
    rows = sample_few_shot(Y, np.arange(400), k=8, n_none=10, seed=0)
    assert (Y[rows].sum(axis=0) >= 8).all()
    assert (Y[rows].sum(axis=1) == 0).sum() == 10
    assert len(rows) == len(set(rows))


def test_cli_promote_refusal_is_one_line_and_exit_3(rtic_home, settings, trained, second, evaluated):
    client = MlflowClient(registry.configure(settings))
    before = str(client.get_registered_model(MODEL_NAME).aliases["champion"])
    candidate = second.version if before != second.version else trained.version
    out = run_cli("models", "promote", candidate, "--eval-set", "mini", "--tolerance", "-1", home=rtic_home)
    assert out.returncode == 3, out.stderr
    assert out.stderr.startswith("rtic: not promoted: macro f1 on mini") and out.stderr.strip().count("\n") == 0
    assert str(client.get_registered_model(MODEL_NAME).aliases["champion"]) == before


def test_add_sector_keeps_the_taxonomy_files_comments(tmp_path, mini_labels):
    seeds = tmp_path / "seeds.csv"
    pd.DataFrame({"firm_id": ["q1", "q2"], "text": QUANTUM_SEEDS[:2]}).to_csv(seeds, index=False)
    labels = tmp_path / "labels.csv"
    pd.read_csv(mini_labels, dtype=str).to_csv(labels, index=False)
    result = add_sector(None, tmp_path / "tax.yaml", "quantum", "Quantum", "Quantum computing: qubits, sensing.", seeds, labels,
                        include=["qubit", "quantum sensing"])
    old_text, new_text = DEFAULT_TAXONOMY.read_text(), result.taxonomy_path.read_text()
    comments = [line for line in old_text.splitlines() if line.lstrip().startswith("#")]
    assert comments and all(line in new_text.splitlines() for line in comments)
    # The old file's text is kept line for line, apart from the version; the new sector is a sector, not a vertical.
    assert len(new_text.splitlines()) > len(old_text.splitlines())
    new = load_taxonomy(result.taxonomy_path)
    assert new.sector_ids[-1] == "quantum" and new.version == result.version
    assert "quantum" not in {v.id for v in new.verticals}
    assert yaml.safe_load(new_text)["sectors"][-1]["include"] == ["qubit", "quantum sensing"]


def test_two_full_training_runs_log_identical_metrics_quietly(tmp_path, mini_labels, settings):
    """Same inputs -> same metrics, end to end: two `rtic train` runs (CV, final fit, MLflow logging)."""
    from rtic.config import Settings

    home = tmp_path / "home"
    shared_cache = {"RTIC_EMBEDDING_CACHE": str(settings.resolved_embedding_cache)}
    outs = [run_cli("train", "--labels", str(mini_labels), "--cv", "2", home=home, env=shared_cache) for _ in range(2)]
    for out in outs:
        assert out.returncode == 0, out.stderr
        assert "Downloading artifacts" not in out.stdout + out.stderr
    client = MlflowClient(tracking_uri=Settings(home=home).resolved_tracking_uri)
    experiment = client.get_experiment_by_name("rtic")
    runs = client.search_runs([experiment.experiment_id], "tags.`rtic.task` = 'train'", order_by=["attributes.start_time ASC"])
    assert len(runs) == 2
    first, second_run = (r.data.metrics for r in runs)
    assert len(first) > 50 and first == second_run
    assert runs[0].data.params["labels_sha256"] == runs[1].data.params["labels_sha256"]


def test_train_if_missing_replaces_a_champion_of_another_taxonomy(tmp_path, mini_labels, settings):
    """`make demo` after a taxonomy change: the old champion cannot score, so --if-missing trains and promotes a new one."""
    from rtic.config import Settings

    home = tmp_path / "home"
    shared_cache = {"RTIC_EMBEDDING_CACHE": str(settings.resolved_embedding_cache)}
    data = yaml.safe_load(DEFAULT_TAXONOMY.read_text())
    data["version"] = "1999.1"
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump(data))
    first = run_cli("train", "--labels", str(mini_labels), "--cv", "0", "--taxonomy", str(old), home=home, env=shared_cache)
    assert first.returncode == 0, first.stderr
    again = run_cli("train", "--if-missing", "--labels", str(mini_labels), "--cv", "0", "--taxonomy", str(old), home=home, env=shared_cache)
    assert again.returncode == 0 and "not retraining" in again.stdout
    now = run_cli("train", "--if-missing", "--labels", str(mini_labels), "--cv", "0", home=home, env=shared_cache)
    assert now.returncode == 0, now.stderr
    assert "trained on taxonomy 1999.1" in now.stdout and "set as champion" in now.stdout
    uri = Settings(home=home).resolved_tracking_uri  # the registry too: an earlier test's mlflow.set_registry_uri would win
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("rtic-sector-classifier", "champion")
    assert str(champion.version) == "2" and champion.tags["taxonomy_version"] == load_taxonomy().version
    assert champion.tags["encoder_model"] == "all-MiniLM-L6-v2"
    assert champion.tags["promotion_forced"] == "true"
