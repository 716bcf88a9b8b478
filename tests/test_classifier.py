import numpy as np
import pytest

from rtic.model.classifier import Platt, SectorClassifier, best_f1_threshold, fit_calibration, top_k_columns
from conftest import HashEncoder

TOPICS = {
    "energy": "solar wind turbines heat pumps batteries grid carbon renewable",
    "money": "payments banking lending cards wallets ledger compliance fraud",
    "robots": "robot arms automation grippers welding cells factory vision",
}
FILLER = "friendly team based in the uk serving customers since years quality service call us today".split()


def make_data(n_per=20, seed=0):
    rng = np.random.default_rng(seed)
    texts, Y = [], []
    topics = list(TOPICS)
    for topic in topics + ["none"]:
        for _ in range(n_per):
            words = list(rng.choice(FILLER, 8))
            if topic != "none":
                words += list(rng.choice(TOPICS[topic].split(), 5))
            rng.shuffle(words)
            texts.append(" ".join(words))
            Y.append([int(t == topic) for t in topics])
    return texts, np.array(Y), topics


@pytest.mark.parametrize("features", ["embedding", "tfidf", "embedding+tfidf"])
def test_fit_predict_recovers_topics(features):
    texts, Y, topics = make_data()
    clf = SectorClassifier(topics, encoder=HashEncoder(), features=features, C=2.0).fit(texts, Y)
    test_texts, test_Y, _ = make_data(n_per=10, seed=1)
    pred = clf.predict(test_texts)
    assert pred.shape == test_Y.shape
    accuracy = (pred == test_Y.astype(bool)).mean()
    assert accuracy > 0.9
    proba = clf.predict_proba(test_texts)
    assert ((proba >= 0) & (proba <= 1)).all()
    assert all(0.05 <= t <= 0.95 for t in clf.thresholds_)


def test_multilabel_firm_gets_both_sectors():
    texts, Y, topics = make_data()
    clf = SectorClassifier(topics, encoder=HashEncoder(), features="tfidf").fit(texts, Y)
    both = clf.predict(["solar batteries grid payments lending ledger cards renewable"])[0]
    assert both[topics.index("energy")] and both[topics.index("money")]
    assert not both[topics.index("robots")]


def test_sector_with_too_few_positives_warns_and_keeps_default_threshold():
    texts, Y, topics = make_data()
    Y[:, 2] = 0
    Y[:3, 2] = 1  # robots: only three positives
    clf = SectorClassifier(topics, encoder=HashEncoder(), features="tfidf").fit(texts, Y)
    assert any("robots" in w for w in clf.warnings_)
    assert clf.thresholds_[2] == 0.5


def test_classifier_pickles_without_its_encoder():
    import pickle

    texts, Y, topics = make_data(n_per=8)
    clf = SectorClassifier(topics, encoder=HashEncoder(), features="embedding+tfidf").fit(texts, Y)
    clone = pickle.loads(pickle.dumps(clf))
    assert clone.encoder is None
    clone.encoder = HashEncoder()
    np.testing.assert_allclose(clone.predict_proba(texts), clf.predict_proba(texts))


def test_best_f1_threshold_separates_perfectly():
    y = np.array([0, 0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.7, 0.9])
    t = best_f1_threshold(y, p)
    assert 0.3 < t < 0.7


def test_platt_is_monotonic_and_calibrates():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=2000)
    y = (rng.random(2000) < 1 / (1 + np.exp(-2 * scores))).astype(int)
    cal = Platt.fit(scores, y)
    assert cal.a == pytest.approx(2.0, rel=0.2)
    p = cal(np.sort(scores))
    assert (np.diff(p) >= 0).all()


def test_neighbour_labels_are_similarity_weighted_shares():
    clf = SectorClassifier(["a", "b"], neighbours=2)
    train = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=np.float32)
    Y = np.array([[1, 0], [1, 1], [0, 1]])
    shares = clf._neighbour_labels(train, Y, np.array([[1.0, 0.0]], dtype=np.float32))
    # The two nearest are rows 0 (similarity 1.0) and 1 (0.6): a = (1 + 0.6) / 1.6, b = 0.6 / 1.6.
    np.testing.assert_allclose(shares[0], [1.0, 0.6 / 1.6])


def test_out_of_fold_scores_do_not_see_their_own_firm():
    """Labels that are pure noise: honest out-of-fold scores cannot rank them. A neighbour table that let a
    firm (or its lead-sentence copy, same group) be its own neighbour would rank them almost perfectly."""
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(3)
    vocab = [f"w{i}" for i in range(400)]
    texts = [" ".join(rng.choice(vocab, 6)) + ". " + " ".join(rng.choice(vocab, 6)) + "." for _ in range(160)]
    Y = (rng.random((160, 2)) < 0.3).astype(int)
    clf = SectorClassifier(["a", "b"], encoder=HashEncoder(), features="embedding", neighbours=5).fit(texts, Y)
    assert clf.neighbour_emb_.shape[0] > len(texts)  # lead-sentence copies are in the table
    for j in range(2):
        assert average_precision_score(Y[:, j], clf.oof_proba_[:, j]) < Y[:, j].mean() + 0.25


def test_second_stage_options_fit_and_predict():
    texts, Y, topics = make_data()
    for stack in ("own", "all", ""):
        clf = SectorClassifier(topics, encoder=HashEncoder(), stack=stack).fit(texts, Y)
        assert (clf.predict(texts) == Y.astype(bool)).mean() > 0.9
    with pytest.raises(ValueError, match="stack"):
        SectorClassifier(topics, stack="both").fit(texts, Y)


def test_is_a_scikit_learn_estimator():
    """get_params/set_params/clone work; parameters are checked in fit, not in the constructor."""
    from sklearn.base import clone

    texts, Y, topics = make_data()
    clf = SectorClassifier(topics, encoder=HashEncoder(), C=2.0, neighbours=7)
    assert clf.get_params()["C"] == 2.0 and clf.get_params()["neighbours"] == 7
    copy = clone(clf).set_params(features="tfidf")
    assert copy.get_params()["features"] == "tfidf" and clf.features == "embedding+tfidf"
    assert not hasattr(copy, "models_")
    for bad in ({"features": "words"}, {"C": float("nan")}, {"cv": 1}, {"sector_ids": ["a", "a"]}):
        with pytest.raises(ValueError):
            clone(clf).set_params(**bad).fit(texts, Y)
    fitted = clone(copy).fit(texts, Y)
    assert (fitted.predict(texts) == Y.astype(bool)).mean() > 0.9


def test_thresholds_bound_the_share_of_ordinary_texts_labelled():
    """F1 alone would accept many ordinary texts; max_ordinary_rate caps their out-of-fold share per sector."""
    scores = np.r_[np.linspace(-0.5, 3, 200), np.linspace(-3, 1, 400)]  # 200 positives, 400 ordinary texts overlapping them
    Y = np.r_[np.ones(200), np.zeros(400)].astype(int)[:, None]
    ordinary = Y[:, 0] == 0
    cals, loose = fit_calibration(scores[:, None], Y, 5)
    _, capped = fit_calibration(scores[:, None], Y, 5, ordinary=ordinary, max_ordinary_rate=0.01)
    rate = lambda t: (cals[0](scores[ordinary]) >= t).mean()  # noqa: E731
    assert rate(loose[0]) > 0.01 and rate(capped[0]) <= 0.01 and capped[0] > loose[0]


def test_fitting_sectors_side_by_side_gives_the_same_model():
    """n_jobs only spreads the sectors' fits over threads: every probability and threshold is unchanged."""
    texts, Y, topics = make_data()
    test_texts, _, _ = make_data(n_per=5, seed=2)
    one = SectorClassifier(topics, encoder=HashEncoder(), features="embedding+tfidf").fit(texts, Y)
    two = SectorClassifier(topics, encoder=HashEncoder(), features="embedding+tfidf", n_jobs=2).fit(texts, Y)
    assert np.array_equal(one.thresholds_, two.thresholds_)
    assert np.allclose(one.predict_proba(test_texts), two.predict_proba(test_texts), rtol=0, atol=1e-12)
    assert two.get_params()["n_jobs"] == 2


@pytest.mark.parametrize("columns", [30, 5120, 5121, 20_700])
def test_top_k_columns_is_the_exact_top_k_of_every_row(columns):
    rng = np.random.default_rng(columns)
    scores = rng.standard_normal((300, columns)).astype(np.float32)
    scores[0] = 0.5  # a row of ties: any 20 columns, but 20 distinct ones
    scores[1, -3:] = 10.0  # the best columns in the short last block
    k = min(20, columns)
    got = top_k_columns(scores, k)
    assert got.shape == (300, k) and (np.diff(got, axis=1) > 0).all()  # distinct, in column order
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]
    # exact: every chosen score is at least the row's k-th largest, so no better column was missed
    assert (np.take_along_axis(scores, got, axis=1) >= kth).all()
    assert set(got[1, -3:]) == {columns - 3, columns - 2, columns - 1}
