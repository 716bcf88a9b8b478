import numpy as np
import pytest

from rtic.embed.encoder import MINILM, WEIGHTS_FILE, Encoder, EmbeddingCache, verify_model_files
from rtic.errors import RticError


def test_vectors_are_normalised_and_meaningful(tmp_path):
    enc = Encoder(cache_path=tmp_path / "cache.sqlite")
    v = enc.encode(["We install solar panels and heat pumps.", "Solar PV and heat-pump installers.", "Wedding cakes baked to order."])
    assert v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2]


def test_second_call_does_no_model_work(tmp_path):
    texts = ["Open banking payments for merchants.", "A family bakery in Bath.", "Open banking payments for merchants."]
    first = Encoder(cache_path=tmp_path / "cache.sqlite")
    a = first.encode(texts)
    assert first.texts_embedded == 2  # the repeated text is embedded once
    again = Encoder(cache_path=tmp_path / "cache.sqlite")  # a new process would look like this
    b = again.encode(texts)
    assert again.texts_embedded == 0
    assert again._model is None  # the model was never even loaded
    np.testing.assert_array_equal(a, b)


def test_precision_is_part_of_the_cache_key(tmp_path):
    fp32 = Encoder(cache_path=tmp_path / "c.sqlite", use_bf16=False)
    bf16 = Encoder(cache_path=tmp_path / "c.sqlite", use_bf16=True)
    assert fp32.model_key != bf16.model_key
    a, b = fp32.encode(["Satellite propulsion for CubeSats."]), bf16.encode(["Satellite propulsion for CubeSats."])
    assert bf16.texts_embedded == 1
    assert float(a[0] @ b[0]) > 0.99


def test_long_text_is_split_into_chunks_and_pooled(tmp_path):
    enc = Encoder(cache_path=None)
    long_text = "We design robots for factories. " * 200
    assert len(enc._chunks(long_text)) > 1
    assert len(enc._chunks("short text")) == 1
    v = enc.encode([long_text, ""])
    assert np.isfinite(v).all()


@pytest.fixture
def minilm_copy(tmp_path):
    """A copy of the installed MiniLM folder's pinned files (the weights linked, not copied)."""
    source = MINILM.model_dir()
    for path, _, _ in MINILM.files:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        if path == WEIGHTS_FILE:
            (tmp_path / path).symlink_to(source / path)
        else:
            (tmp_path / path).write_bytes((source / path).read_bytes())
    return tmp_path


def test_every_file_the_model_is_read_from_is_checked(minilm_copy):
    verify_model_files(minilm_copy)  # the installed files are the pinned ones
    tokenizer = minilm_copy / "tokenizer.json"
    data = tokenizer.read_bytes()
    tokenizer.write_bytes(data.replace(b'"[UNK]"', b'"[UNX]"', 1))  # same size, one token renamed
    with pytest.raises(RticError, match=r"all-MiniLM-L6-v2 file .*tokenizer.json does not match the packaged all-MiniLM-L6-v2 \(sha256 "):
        verify_model_files(minilm_copy)
    with pytest.raises(RticError, match="tokenizer.json does not match"):
        Encoder(model_dir=minilm_copy).encode(["refused before the model is built"])
    tokenizer.write_bytes(data + b" ")
    with pytest.raises(RticError, match=f"tokenizer.json does not match the packaged all-MiniLM-L6-v2 \\({len(data) + 1} bytes, not {len(data)}\\)"):
        verify_model_files(minilm_copy)
    tokenizer.write_bytes(data)
    (minilm_copy / "1_Pooling" / "config.json").unlink()
    with pytest.raises(RticError, match=r"all-MiniLM-L6-v2 file .*1_Pooling/config.json not found"):
        verify_model_files(minilm_copy)


def test_tampered_weights_are_refused(tmp_path, minilm_copy):
    weights = minilm_copy / WEIGHTS_FILE
    forged = tmp_path / "forged.safetensors"
    with open(forged, "wb") as fh:
        fh.truncate(weights.stat().st_size)  # the right size, not the right bytes
    weights.unlink()
    weights.symlink_to(forged)
    with pytest.raises(RticError, match="embedding weights .* do not match upstream all-MiniLM-L6-v2 \\(sha256 "):
        verify_model_files(minilm_copy)
    with pytest.raises(RticError, match="not found"):
        verify_model_files(minilm_copy / "missing")


def test_cache_roundtrip(tmp_path):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    cache.put_many("m", [("h1", np.ones(4, dtype=np.float32))])
    assert set(cache.get_many("m", ["h1", "h2"])) == {"h1"}
    assert cache.get_many("other", ["h1"]) == {}


def test_token_hook_reports_every_window_and_changes_no_vector(tmp_path):
    texts = ["Heat pumps for social housing.", "Payments for merchants across Europe. " * 120, ""]
    enc = Encoder(cache_path=tmp_path / "c.sqlite", use_bf16=False)
    plain = enc.encode(texts)
    windows = []
    hooked = Encoder(cache_path=tmp_path / "c.sqlite", use_bf16=False).encode(texts, on_tokens=lambda i, ids, vectors: windows.append((i, ids, vectors)))
    np.testing.assert_allclose(hooked, plain, atol=1e-6)  # same forward pass, same pooling
    assert [i for i, _, _ in windows].count(1) == len(enc._chunks(texts[1])) > 1  # every window of the long text
    for _, ids, vectors in windows:
        assert ids[0] == 101 and ids[-1] == 102 and vectors.shape == (len(ids), 384)  # [CLS] ... [SEP], one vector per token
    first = [ids for i, ids, _ in windows if i == 0][0]
    assert list(first[1:-1]) == enc._load().tokenizer(texts[0], add_special_tokens=False)["input_ids"]


def test_long_embedding_work_reports_progress_with_an_eta(caplog, tmp_path):
    """More than one batch to embed: a line per batch with the count, the rate and an ETA (cache hits need none)."""
    import logging

    from rtic.embed.encoder import Encoder

    class Stub(Encoder):
        def _embed(self, texts, on_tokens=None):
            return np.ones((len(texts), 4), dtype=np.float32)

    encoder = Stub(cache_path=tmp_path / "cache.sqlite")
    with caplog.at_level(logging.INFO, logger="rtic.embed.encoder"):
        encoder.encode([f"text {i}" for i in range(600)])
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and "embedded 600/600 texts" in lines[-1] and all("ETA" in line for line in lines)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="rtic.embed.encoder"):
        encoder.encode([f"text {i}" for i in range(600)])
    assert not caplog.records
