"""Metrics, folds and cross-validation on small synthetic data (no MLflow, no real encoder)."""

import numpy as np
import pandas as pd
import pytest

from conftest import HashEncoder
from rtic.model.classifier import SectorClassifier
from rtic.model.evaluation import (
    calibration_error,
    cooccurrence,
    macro_over,
    misclassified,
    precision_at_share,
    sector_report,
    stratified_folds,
)
from rtic.labels import LabelledFirms
from rtic.model.training import cross_validate
from test_classifier import make_data


def test_calibration_error_is_zero_when_rates_match_and_large_when_not():
    y = np.array([0] * 8 + [1] * 2)
    assert calibration_error(y, np.full(10, 0.2)) == pytest.approx(0.0)
    assert calibration_error(y, np.full(10, 0.9)) == pytest.approx(0.7)


def test_precision_at_share_follows_bayes_rule():
    # recall 0.8, false-positive rate 0.01: at 1% prevalence, 0.008 true hits vs 0.0099 false ones.
    assert precision_at_share(0.8, 0.01, 0.01) == pytest.approx(0.008 / (0.008 + 0.0099))
    assert precision_at_share(0.8, 0.0, 0.01) == 1.0
    assert np.isnan(precision_at_share(0.8, 0.1, None))


def test_sector_report_counts_and_averages():
    Y = np.array([[1, 0], [1, 0], [0, 1], [0, 0]])
    assigned = np.array([[1, 0], [0, 0], [0, 1], [1, 0]])
    proba = np.array([[0.9, 0.1], [0.4, 0.2], [0.3, 0.8], [0.6, 0.1]])
    report = sector_report(Y, assigned, proba, ["a", "b"], {"a": 0.01, "b": None}).set_index("sector_id")
    assert report.loc["a", ["tp", "fp", "fn"]].tolist() == [1, 1, 1]
    assert report.loc["a", "f1"] == pytest.approx(0.5)
    assert report.loc["b", "f1"] == pytest.approx(1.0)
    assert report.loc["macro", "f1"] == pytest.approx(0.75)
    assert report.loc["micro", "precision"] == pytest.approx(2 / 3)
    # a: recall 0.5, FPR 1/2 -> at 1% prevalence precision collapses; b has no expected share.
    assert report.loc["a", "precision_at_expected"] == pytest.approx(0.005 / (0.005 + 0.5 * 0.99))
    assert np.isnan(report.loc["b", "precision_at_expected"])
    assert macro_over(report.reset_index(), min_support=2) == pytest.approx(0.5)


def test_stratified_folds_balance_every_sector_and_keep_groups_together():
    rng = np.random.default_rng(3)
    Y = (rng.random((300, 5)) < [0.4, 0.2, 0.1, 0.05, 0.03]).astype(int)
    groups = np.repeat(np.arange(150), 2)  # two rows per firm (e.g. a text and its snippet)
    Y[1::2] = Y[::2]
    folds = stratified_folds(Y, 5, seed=1, groups=groups)
    assert set(folds) == set(range(5))
    assert all(len(set(folds[groups == g])) == 1 for g in range(150))
    for j in range(Y.shape[1]):
        per_fold = np.bincount(folds[Y[:, j] == 1], minlength=5)
        # Rows come in pairs, so a fold can be off by one firm (two rows) from an even split.
        assert per_fold.max() - per_fold.min() <= 4, (j, per_fold)
    np.testing.assert_array_equal(folds, stratified_folds(Y, 5, seed=1, groups=groups))


def test_stratified_folds_with_more_folds_than_firms():
    folds = stratified_folds(np.array([[1], [0], [1]]), 5)
    assert sorted(folds) == [0, 1, 2]


def test_cross_validation_is_honest_and_repeatable():
    texts, Y, topics = make_data(n_per=15)
    firms = LabelledFirms([f"f{i}" for i in range(len(texts))], texts, Y, topics)

    def make():
        return SectorClassifier(topics, encoder=HashEncoder(), features="embedding+tfidf", random_state=0)

    first = cross_validate(firms, make, k=4, seed=0)
    second = cross_validate(firms, make, k=4, seed=0)
    pd.testing.assert_frame_equal(first.report, second.report)
    assert first.report.set_index("sector_id").loc["macro", "f1"] > 0.8
    # Every firm is scored exactly once, by a model that never saw it.
    assert len(first.folds) == len(texts) and set(first.folds) == set(range(4))


def test_misclassified_lists_each_disagreement_once():
    Y = np.array([[1, 0], [0, 1]])
    assigned = np.array([[0, 0], [1, 1]])
    proba = np.array([[0.2, 0.1], [0.9, 0.7]])
    frame = misclassified(["x", "y"], ["tx", "ty"], Y, assigned, proba, ["a", "b"])
    assert sorted(zip(frame["firm_id"], frame["sector_id"], frame["error"])) == [("x", "a", "false_negative"), ("y", "a", "false_positive")]
    assert cooccurrence(np.array([[1, 1], [1, 0]]), ["a", "b"]).loc["a", "b"] == 1
