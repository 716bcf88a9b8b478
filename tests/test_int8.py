"""The int8 ONNX encoder: built here from the installed weights, close to the torch encoder in vectors and labels,
refused by digest when its file is damaged or swapped, its vectors cached apart, and usable by classify."""

import copy
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from rtic.config import DEFAULT_SEED_LABELS
from rtic.embed.encoder import Encoder
from rtic.embed.int8 import Int8SentenceModel, build_int8, int8_path
from rtic.errors import RticError
from rtic.mlops import registry
from rtic.score.batch import classify_register

SEED = pd.read_csv(DEFAULT_SEED_LABELS, dtype=str, keep_default_na=False)
TEXTS = ["We build welding robots for car plants.", "Family bakery and tea room in the high street.",
         "An AI platform that reads invoices for accountants. " * 120]  # the last spans several windows


@pytest.fixture(scope="module")
def int8_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    build_int8(folder)
    return folder


def cosine(a, b):
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_int8_vectors_are_close_to_fp32_and_the_build_is_reused(int8_dir):
    path = int8_path(int8_dir)
    before = path.stat().st_mtime_ns
    assert build_int8(int8_dir) == path and path.stat().st_mtime_ns == before  # built once
    fp32 = Encoder(use_bf16=False).encode(TEXTS)
    int8 = Encoder(engine="onnx-int8", int8_dir=int8_dir).encode(TEXTS)
    assert int8.shape == fp32.shape
    np.testing.assert_allclose(np.linalg.norm(int8, axis=1), 1.0, rtol=1e-5)
    assert cosine(fp32, int8).min() > 0.98, cosine(fp32, int8)
    # a different text is far: closeness is not an artefact of the pooling
    assert cosine(fp32[:1], int8[1:2])[0] < 0.9


def test_int8_labels_agree_with_the_torch_encoder_on_most_firms(trained, settings, int8_dir):
    clf = registry.open_model(None, settings).classifier
    texts = SEED["text"].iloc[600:640].tolist()
    torch_labels = clf.predict_proba(texts) >= clf.thresholds_
    scorer = copy.copy(clf)  # shares the fitted models; only its encoder differs
    scorer.encoder = clf.encoder.with_engine("onnx-int8", int8_dir=int8_dir)
    int8_labels = scorer.predict_proba(texts) >= clf.thresholds_
    assert (int8_labels == torch_labels).all(axis=1).mean() >= 0.9


@pytest.mark.parametrize("damage", ["corrupt", "swap", "other_weights", "no_record"])
def test_a_damaged_or_swapped_int8_file_is_refused_by_digest(int8_dir, tmp_path, damage):
    folder = tmp_path / "onnx"
    shutil.copytree(int8_dir, folder)
    path = int8_path(folder)
    record = path.with_suffix(".json")
    if damage == "corrupt":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        message = "does not match the digest recorded"
    elif damage == "swap":  # another file in its place (here: the ONNX file with bytes appended, still loadable)
        path.write_bytes(path.read_bytes() + b"\0" * 16)
        message = "does not match the digest recorded"
    elif damage == "other_weights":
        meta = json.loads(record.read_text())
        record.write_text(json.dumps({**meta, "source_weights_sha256": "0" * 64}))
        message = "made from other weights"
    else:
        record.unlink()
        message = "record .* is missing or damaged"
    with pytest.raises(RticError, match=message):
        Int8SentenceModel(path)
    if damage == "no_record":  # nothing says what the file should be: the encoder rebuilds it from the checked weights
        assert Encoder(engine="onnx-int8", int8_dir=folder).encode(["a firm"]).shape[0] == 1 and record.exists()
        return
    with pytest.raises(RticError, match=message):  # a file that does not match its record is never rebuilt over or used
        Encoder(engine="onnx-int8", int8_dir=folder).encode(["a firm"])


def test_engines_are_cached_apart(int8_dir, tmp_path):
    cache = tmp_path / "cache.sqlite"
    fp32 = Encoder(cache_path=cache, use_bf16=False)
    int8 = fp32.with_engine("onnx-int8", int8_dir=int8_dir)
    assert fp32.model_key != int8.model_key and "int8:" in int8.model_key
    a, b = fp32.encode(TEXTS[:1]), int8.encode(TEXTS[:1])
    assert not np.array_equal(a, b)  # the int8 encoder did not read the fp32 vector from the cache
    with pytest.raises(RticError, match="unknown encoder engine"):
        Encoder(engine="tensorrt")


def test_classify_with_the_int8_encoder(trained, settings, int8_dir, tmp_path, monkeypatch):
    register = tmp_path / "r.csv"
    pd.DataFrame({"firm_id": [f"F{i}" for i in range(12)], "text": SEED["text"].iloc[640:652].tolist()}).to_csv(register, index=False)
    monkeypatch.setattr(type(settings), "int8_dir", property(lambda self: int8_dir))
    exact = pd.read_parquet(classify_register(register, tmp_path / "t.parquet", settings).labels_path)
    result = classify_register(register, tmp_path / "i.parquet", settings, encoder="onnx-int8")
    int8 = pd.read_parquet(result.labels_path)
    assert result.n_classified == 12 and len(int8) == len(exact)
    assert (int8["assigned"] == exact["assigned"]).mean() >= 0.95
    assert json.loads(result.manifest_path.read_text())["identity"]["scorer"]["encoder"] == "onnx-int8"
    with pytest.raises(RticError, match="the fast head is distilled from the torch encoder"):
        classify_register(register, tmp_path / "f.parquet", settings, encoder="onnx-int8", fast=True)
    with pytest.raises(RticError, match="--encoder must be one of"):
        classify_register(register, tmp_path / "f.parquet", settings, encoder="gpu")
