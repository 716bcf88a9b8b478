"""Supervised fine-tuning of the bundled MiniLM (scripts/finetune.py, research code): a real, tiny fine-tune on the mini labels."""

import sys

import numpy as np
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
from finetune import FineTuneConfig, FineTunedClassifier, fit_calibration, length_batches, tuned_sector_classifier  # noqa: E402
from rtic.labels import read_labels  # noqa: E402
from rtic.taxonomy import load_taxonomy  # noqa: E402


def test_length_batches_cover_every_row_once_and_group_similar_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 500, size=1000)
    batches = length_batches(lengths, 32, np.random.default_rng(1))
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(1000))
    assert max(len(b) for b in batches) == 32
    # Within a batch lengths are close: far less spread than a random batch.
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 0.5 * np.mean([np.ptp(lengths[rng.permutation(1000)[:32]]) for _ in range(20)])
    again = length_batches(lengths, 32, np.random.default_rng(1))
    assert all((a == b).all() for a, b in zip(batches, again))


def test_calibration_keeps_default_threshold_for_rare_sectors():
    rng = np.random.default_rng(0)
    Y = np.zeros((200, 2), dtype=int)
    Y[:60, 0] = 1
    Y[:3, 1] = 1
    scores = rng.normal(size=(200, 2)) + 2.0 * Y
    calibrators, thresholds = fit_calibration(scores, Y, min_positives=5)
    assert thresholds[1] == 0.5 and thresholds[0] != 0.5
    p = calibrators[0](np.sort(scores[:, 0]))
    assert (np.diff(p) >= 0).all()


@pytest.fixture(scope="module")
def mini(mini_labels):
    return read_labels(mini_labels, load_taxonomy())


@pytest.fixture(scope="module")
def tiny_config():
    return FineTuneConfig(epochs=2, batch_size=16, max_seq_length=48, head_lr=5e-3, lr=1e-4, holdout=0.25, min_positives=2)


@pytest.fixture(scope="module")
def tuned(mini, tiny_config):
    return FineTunedClassifier(mini.sector_ids, tiny_config, progress=lambda *_: None).fit(mini.texts, mini.Y)


def test_fine_tune_learns_sectors_and_calibrates_on_held_out_slice(tuned, mini):
    n = len(mini.texts)
    held = tuned.held_out_
    assert 0.15 * n < len(held) < 0.35 * n
    proba = tuned.predict_proba(mini.texts)
    assert proba.shape == (n, len(mini.sector_ids)) and ((proba >= 0) & (proba <= 1)).all()
    # Training rows' own sectors score above the others (the head and encoder learnt something).
    train = np.setdiff1d(np.arange(n), held)
    logits = tuned.decision_function([mini.texts[i] for i in train])
    Y = mini.Y[train]
    assert logits[Y == 1].mean() > logits[Y == 0].mean() + 0.5
    # Thresholds are exactly those chosen on the held-out slice.
    _, expected = fit_calibration(tuned.decision_function([mini.texts[i] for i in held]), mini.Y[held], tuned.config.min_positives)
    assert np.allclose(tuned.thresholds_, expected)
    emb = tuned.embed(mini.texts[:3])
    assert emb.shape == (3, 384) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)


def test_fine_tune_is_deterministic(tuned, mini, tiny_config):
    again = FineTunedClassifier(mini.sector_ids, tiny_config, progress=lambda *_: None).fit(mini.texts, mini.Y)
    assert np.allclose(again.decision_function(mini.texts[:20]), tuned.decision_function(mini.texts[:20]), atol=1e-5)


def test_sector_classifier_on_tuned_embedding_is_recalibrated_on_held_out_slice(tuned, mini):
    clf = tuned_sector_classifier(tuned, mini.texts, mini.Y, cv=3, lead_sentences=())
    held = [mini.texts[i] for i in tuned.held_out_]
    _, expected = fit_calibration(clf.decision_function(held), mini.Y[tuned.held_out_], tuned.config.min_positives)
    assert np.allclose(clf.thresholds_, expected)
    assert clf.predict_proba(mini.texts[:5]).shape == (5, len(mini.sector_ids))
