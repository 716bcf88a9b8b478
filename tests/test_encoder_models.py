"""The opt-in encoder all-mpnet-base-v2 end to end: reassembled from its packages and checked, trained with, and
then used by everything that scores with the model (classify, the fast path, explain) without being asked again.
Real weights, real MLflow SQLite registry, the real CLI."""

import dataclasses
import hashlib
import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from rtic.config import DEFAULT_SEED_LABELS, Settings
from rtic.embed.encoder import (MINILM, MPNET, WEIGHTS_FILE, Encoder, EncoderModel, assembled_model_dir, encoder_model,
                                encoder_of_record)
from rtic.errors import RticError
from conftest import needs_mpnet, run_cli
from test_spark import SPARK_ENV

SEED = pd.read_csv(DEFAULT_SEED_LABELS, dtype=str, keep_default_na=False)


def test_encoders_are_named_by_short_name_or_upstream_id_and_old_models_mean_minilm():
    assert encoder_model("all-mpnet-base-v2") is MPNET and encoder_model("sentence-transformers/all-MiniLM-L6-v2") is MINILM
    assert encoder_model(None) is MINILM  # the default
    with pytest.raises(RticError, match="unknown encoder model 'bert'.*all-MiniLM-L6-v2, all-mpnet-base-v2"):
        encoder_model("bert")
    # meta.json of a model: the record, else the cache key's model id (models made before there was a choice)
    assert encoder_of_record({"encoder_model": "all-mpnet-base-v2", "embedding_model": "x"}) is MPNET
    assert encoder_of_record({"embedding_model": "sentence-transformers/all-MiniLM-L6-v2|bf16|chunks8"}) is MINILM
    assert encoder_of_record({}) is MINILM
    with pytest.raises(RticError, match="trained with the encoder 'someone/else', which this rtic does not know"):
        encoder_of_record({"embedding_model": "someone/else|fp32|chunks8"})


def test_a_missing_encoder_package_says_how_to_install_it():
    absent = EncoderModel("rtic-no-such-encoder", "nobody/none", ((WEIGHTS_FILE, 1, "0" * 64),), 8, 16, "run `make setup-nothing`",
                          split_zip_parts=5)
    with pytest.raises(RticError, match=r"rtic-no-such-encoder is not installed \(part 001 of 5 is missing\): run `make setup-nothing`"):
        absent.model_dir()


def test_train_refuses_an_unknown_encoder_before_any_work(tmp_path):
    res = run_cli("train", "--encoder-model", "bert-base", home=tmp_path)
    assert res.returncode == 2 and "invalid choice: 'bert-base'" in res.stderr
    assert not (tmp_path / "mlflow.db").exists()


@needs_mpnet
def test_mpnet_vectors_are_its_own_and_cached_apart(tmp_path):
    cache = tmp_path / "cache.sqlite"
    mpnet, minilm = Encoder(cache_path=cache, model="all-mpnet-base-v2"), Encoder(cache_path=cache)
    texts = ["We install solar panels and heat pumps.", "Solar PV and heat-pump installers.", "Wedding cakes baked to order."]
    v = mpnet.encode(texts)
    assert v.shape == (3, 768) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2]
    assert mpnet.model_key.startswith("sentence-transformers/all-mpnet-base-v2|") and mpnet.model_key != minilm.model_key
    assert minilm.encode(texts).shape == (3, 384) and minilm.texts_embedded == 3  # nothing read from the other model's rows
    assert mpnet.encode([]).shape == (0, 768)


@needs_mpnet
def test_a_reassembly_whose_weights_are_not_upstreams_leaves_nothing(tmp_path):
    # as if the packages held other weights
    forged = dataclasses.replace(MPNET, files=tuple((p, n, "0" * 64 if p == WEIGHTS_FILE else d) for p, n, d in MPNET.files))
    with pytest.raises(RticError, match="do not match upstream all-mpnet-base-v2"):
        assembled_model_dir(forged, root=tmp_path)
    assert list(tmp_path.iterdir()) == []  # no half-built folder for the next run to trust


TINY_FILES = {"config.json": b'{"hidden_size": 8}', WEIGHTS_FILE: b"weights!"}
TINY = EncoderModel("tiny", "nobody/tiny", tuple((p, len(b), hashlib.sha256(b).hexdigest()) for p, b in TINY_FILES.items()), 8, 16,
                    "reinstall tiny", split_zip_parts=3)


def zip_parts(tmp_path, members: dict[str, bytes], parts: int = 3) -> list:
    """`members` zipped (deflated) and split into `parts` files, as the split-zip packages ship a model."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    data, paths = buffer.getvalue(), []
    step = -(-len(data) // parts)
    for n in range(parts):
        paths.append(tmp_path / f"tiny.zip.{n + 1:03d}")
        paths[-1].write_bytes(data[n * step:(n + 1) * step])
    return paths


def test_reassembly_extracts_only_the_pinned_files_of_the_models_folder(tmp_path):
    root = tmp_path / "encoders"
    hostile = {"tiny/../../escaped.txt": b"x", "/etc/tiny": b"x", "other/config.json": b"x", "tiny/README.md": b"x",
               **{f"tiny/{p}": b for p, b in TINY_FILES.items()}}
    folder = assembled_model_dir(TINY, root=root, parts=zip_parts(tmp_path, hostile))
    assert folder == root / "tiny"
    assert sorted(p.name for p in folder.rglob("*")) == sorted(TINY_FILES)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file() and "zip" not in p.name) == sorted(TINY_FILES)  # nothing escaped


def test_a_hostile_or_broken_split_zip_leaves_nothing(tmp_path):
    root = tmp_path / "encoders"
    bomb = {"tiny/config.json": b"\0" * (16 << 20), f"tiny/{WEIGHTS_FILE}": TINY_FILES[WEIGHTS_FILE]}  # 16 MiB from ~16 KiB
    cases = [(bomb, r"tiny file .*config.json does not match the packaged tiny \(19 bytes, not 18\)"),
             ({"tiny/config.json": TINY_FILES["config.json"]}, "the package parts lack model.safetensors: reinstall them"),
             ({f"tiny/{p}": b.upper() for p, b in TINY_FILES.items()}, "does not match the packaged tiny .sha256"),
             ({"tiny/config.json": TINY_FILES["config.json"], f"tiny/{WEIGHTS_FILE}": b"WEIGHTS!"}, "embedding weights .* do not match upstream tiny")]
    for members, message in cases:
        with pytest.raises(RticError, match=message):
            assembled_model_dir(TINY, root=root, parts=zip_parts(tmp_path, members))
        assert list(root.iterdir()) == []  # no half-built folder for the next run to trust
    garbage = tmp_path / "garbage.001"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(RticError, match="the package parts do not make a zip"):
        assembled_model_dir(TINY, root=root, parts=[garbage])
    assert list(root.iterdir()) == []


@pytest.fixture(scope="module")
def mpnet_home(tmp_path_factory, mini_labels):
    """A registry whose champion was trained with all-mpnet-base-v2 through the CLI."""
    home = tmp_path_factory.mktemp("mpnet_home")
    res = run_cli("train", "--labels", str(mini_labels), "--cv", "0", "--encoder-model", "all-mpnet-base-v2", home=home)
    assert res.returncode == 0, res.stderr
    return home


@needs_mpnet
def test_a_model_trained_with_mpnet_scores_with_mpnet(mpnet_home, tmp_path):
    from rtic.mlops import registry

    model = registry.open_model(None, Settings(home=mpnet_home))
    assert model.classifier.encoder.model is MPNET  # from the model's record, not from any option
    meta = json.loads(next((mpnet_home / "artifacts").rglob("meta.json")).read_text())
    assert meta["encoder_model"] == "all-mpnet-base-v2" and meta["embedding_model"].startswith("sentence-transformers/all-mpnet-base-v2|")
    texts = SEED["text"].iloc[500:530].tolist()
    register = tmp_path / "register.csv"
    pd.DataFrame({"firm_id": [f"M{i}" for i in range(len(texts))], "text": texts}).to_csv(register, index=False)
    out = tmp_path / "labels.parquet"
    res = run_cli("classify", str(register), "--out", str(out), home=mpnet_home)
    assert res.returncode == 0, res.stderr
    got = pd.read_parquet(out).pivot(index="firm_id", columns="sector_id", values="probability")
    # the same probabilities as the classifier run directly on mpnet's vectors
    expected = pd.DataFrame(model.classifier.predict_proba(texts), index=[f"M{i}" for i in range(len(texts))], columns=model.classifier.sector_ids)
    np.testing.assert_allclose(got.loc[expected.index, expected.columns].to_numpy(), expected.to_numpy(), atol=1e-5)
    # Spark runs the same registered pyfunc on its executors: the model brings its encoder there too
    spark_out = tmp_path / "spark.parquet"
    res = run_cli("classify", str(register), "--out", str(spark_out), "--engine", "spark", "--spark-master", "local[2]", home=mpnet_home, env=SPARK_ENV)
    assert res.returncode == 0, res.stderr
    spark = pd.read_parquet(spark_out).pivot(index="firm_id", columns="sector_id", values="probability")
    np.testing.assert_allclose(spark.loc[expected.index, expected.columns].to_numpy(), expected.to_numpy(), atol=1e-5)
    # explain's neighbours are found with the model's own encoder (its training texts embedded by mpnet)
    res = run_cli("explain", "M3", "--labels", str(out), "--register", str(register), "--json", home=mpnet_home)
    assert res.returncode == 0, res.stderr
    ex = json.loads(res.stdout)
    assert ex["text_matches_labels"] is True
    assert {s["sector_id"]: s["probability"] for s in ex["sectors"]} == pytest.approx(expected.loc["M3"].to_dict(), abs=1e-4)


@needs_mpnet
def test_train_if_missing_says_when_the_champion_has_another_encoder(mpnet_home):
    """`make demo` on a registry whose champion is an mpnet model keeps it, and says it is not the encoder asked for."""
    res = run_cli("train", "--if-missing", home=mpnet_home)
    assert res.returncode == 0, res.stderr
    assert "it was trained with all-mpnet-base-v2, not all-MiniLM-L6-v2; not retraining" in res.stdout
    res = run_cli("train", "--if-missing", "--encoder-model", "all-mpnet-base-v2", home=mpnet_home)
    assert res.returncode == 0 and "not retraining" in res.stdout and "trained with" not in res.stdout


@needs_mpnet
def test_the_fast_path_of_an_mpnet_model_is_distilled_from_mpnet(mpnet_home, tmp_path):
    from rtic.score.fastpath import load_head

    texts = SEED["text"].iloc[600:660].tolist()
    register = tmp_path / "register.csv"
    pd.DataFrame({"firm_id": [f"R{i}" for i in range(len(texts))], "text": texts}).to_csv(register, index=False)
    res = run_cli("fastpath", "build", "--register", str(register), "--sample", "60", home=mpnet_home)
    assert res.returncode == 0, res.stderr
    assert (mpnet_home / "static" / "all-mpnet-base-v2-static-v1.npy").is_file()
    assert not (mpnet_home / "static" / "all-MiniLM-L6-v2-static-v1.npy").exists()
    heads = list((mpnet_home / "static").glob("head-*.joblib"))
    assert len(heads) == 1 and load_head(heads[0]).table.shape == (30527, 768)  # mpnet's vocabulary and dimensions
    exact = tmp_path / "exact.parquet"
    assert run_cli("classify", str(register), "--out", str(exact), home=mpnet_home).returncode == 0
    exact = pd.read_parquet(exact).set_index(["firm_id", "sector_id"]).sort_index()
    runs = {}
    for risk in ("0", "1"):  # 0: every firm re-scored by the transformer; 1: none, the static pass alone
        out = tmp_path / f"fast{risk}.parquet"
        res = run_cli("classify", str(register), "--fast", "--fast-risk", risk, "--out", str(out), home=mpnet_home)
        assert res.returncode == 0, res.stderr
        runs[risk] = pd.read_parquet(out).set_index(["firm_id", "sector_id"]).sort_index()
    assert (runs["0"]["scored_by"] == "transformer").all() and (runs["1"]["scored_by"] == "static").all()
    pd.testing.assert_series_equal(runs["0"]["assigned"], exact["assigned"])
    # the static pass approximates mpnet's scores (read with mpnet's tokenizer and table), not some other model's
    assert np.corrcoef(runs["1"]["probability"], exact["probability"])[0, 1] > 0.9
    # static-pass workers get the model and head once and read with mpnet's tokenizer and table too
    out = tmp_path / "workers.parquet"
    res = run_cli("classify", str(register), "--fast", "--fast-risk", "1", "--fast-workers", "2", "--out", str(out), home=mpnet_home)
    assert res.returncode == 0, res.stderr
    workers = pd.read_parquet(out).set_index(["firm_id", "sector_id"]).sort_index()
    pd.testing.assert_frame_equal(workers[["assigned", "probability", "scored_by"]], runs["1"][["assigned", "probability", "scored_by"]])


@needs_mpnet
def test_an_environment_that_cannot_be_written_is_one_line(tmp_path):
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("a file where the encoders folder would go")
    with pytest.raises(RticError, match=r"must be reassembled once into .*cannot be written.*rtic encoder check --model all-mpnet-base-v2"):
        assembled_model_dir(MPNET, root=blocked)
