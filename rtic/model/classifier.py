"""The sector classifier: a small scikit-learn-style multi-label estimator over text.

Features are the firm text's sentence embedding and, optionally, word/bigram TF-IDF. Each sector
gets a logistic regression (first stage). A second stage per sector combines its first-stage score
with the similarity-weighted labels of the text's nearest training firms, both computed out of fold.
Final scores are calibrated with a Platt sigmoid fitted on out-of-fold scores, and each sector's
decision threshold is the one that maximises F1 on those out-of-fold probabilities, raised where it
would label more than 1% of the training texts in no sector (a register is mostly such firms).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from joblib import Parallel, delayed
from scipy import sparse
from sklearn.base import BaseEstimator
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from rtic import config

FEATURE_SETS = config.FEATURE_SETS
STACKS = ("own", "all", "")  # second stage per sector: its own score (+ neighbours), every sector's, none


@dataclass
class Platt:
    """p = 1 / (1 + exp(-(a * score + b)))."""

    a: float = 1.0
    b: float = 0.0

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.a * scores + self.b)))

    @classmethod
    def fit(cls, scores: np.ndarray, y: np.ndarray) -> "Platt":
        lr = LogisticRegression(C=1e4).fit(scores.reshape(-1, 1), y)
        return cls(a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))


def lead_snippet(text: str, sentences: int) -> str:
    """The first `sentences` sentences of a text: what a short directory description looks like."""
    parts = re.split(r"(?<=[.!?])\s+", " ".join(str(text).split()))
    return " ".join(parts[:sentences])


def top_k_columns(scores: np.ndarray, k: int, block: int = 64) -> np.ndarray:
    """Per row, the column indices of its k largest scores (in increasing column order; ties broken arbitrarily).

    Exact, and much cheaper than a partition of every row when rows are long (k = 20 of ~20,000 training texts):
    a row's top k lie in at most k blocks of `block` columns, and those are among the k blocks with the largest
    maxima, so only k x block candidates per row are partitioned.
    """
    n, m = scores.shape
    if m <= 4 * k * block:
        near = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        block_max = np.maximum.reduceat(scores, np.arange(0, m, block), axis=1)
        blocks = np.argpartition(-block_max, k - 1, axis=1)[:, :k]
        columns = (blocks[:, :, None] * block + np.arange(block)).reshape(n, -1)
        outside = columns >= m  # the last block may be short
        candidates = np.take_along_axis(scores, np.minimum(columns, m - 1), axis=1)
        candidates[outside] = -np.inf
        near = np.take_along_axis(columns, np.argpartition(-candidates, k - 1, axis=1)[:, :k], axis=1)
    return np.sort(near, axis=1)


def best_f1_threshold(y: np.ndarray, proba: np.ndarray, low: float = 0.05, high: float = 0.95) -> float:
    """Threshold in [low, high] maximising F1 of proba >= t (midpoint between neighbouring scores)."""
    if y.sum() == 0:
        return high
    order = np.argsort(-proba)
    p_sorted, y_sorted = proba[order], y[order]
    tp = np.cumsum(y_sorted)
    k = np.arange(1, len(y) + 1)
    f1 = 2 * tp / (k + y.sum())
    # A cut is only possible where the next score differs.
    valid = np.r_[p_sorted[1:] < p_sorted[:-1], True]
    f1 = np.where(valid, f1, -1)
    i = int(np.argmax(f1))
    cut = p_sorted[i] if i + 1 == len(p_sorted) else (p_sorted[i] + p_sorted[i + 1]) / 2
    return float(np.clip(cut, low, high))


def fit_calibration(scores: np.ndarray, Y: np.ndarray, min_positives: int, positives: np.ndarray | None = None,
                    ordinary: np.ndarray | None = None, max_ordinary_rate: float | None = None) -> tuple[list[Platt], np.ndarray]:
    """Per sector, a Platt sigmoid on held-out `scores` and the F1-optimal threshold of its probabilities.

    A sector with fewer than `min_positives` positives (`positives`: counted before any augmentation;
    default Y's) keeps the fixed threshold 0.5. With `max_ordinary_rate`, no threshold lets more than
    that share of the `ordinary` rows (texts in no sector) through: F1 on a labelled set rich in
    positives would accept a false-positive rate that swamps a register, where most firms are ordinary.
    """
    positives = Y.sum(axis=0) if positives is None else positives
    calibrators, thresholds = [], np.full(Y.shape[1], 0.5)
    for j in range(Y.shape[1]):
        y = Y[:, j]
        cal = Platt.fit(scores[:, j], y) if 0 < y.sum() < len(y) else Platt(a=1.0, b=0.0)
        calibrators.append(cal)
        if positives[j] >= min_positives:
            thresholds[j] = best_f1_threshold(y, cal(scores[:, j]))
            if max_ordinary_rate is not None and ordinary is not None and ordinary.any():
                floor = float(np.quantile(cal(scores[ordinary, j]), 1 - max_ordinary_rate))
                thresholds[j] = min(max(thresholds[j], floor), 0.95)
    return calibrators, thresholds


class OnColumns:
    """A model that sees only some columns of its input."""

    def __init__(self, model, columns):
        self.model, self.columns = model, list(columns)

    def fit(self, X, y):
        self.model.fit(X[:, self.columns], y)
        return self

    def decision_function(self, X):
        return self.model.decision_function(X[:, self.columns])


class SectorClassifier(BaseEstimator):
    """Multi-label sector classifier: fit(texts, Y) / predict_proba(texts) / predict(texts).

    A scikit-learn estimator: the constructor only stores its parameters (get_params, set_params and
    clone work); they are checked in `fit`. `encoder` is anything with `encode(texts) -> ndarray`
    (rtic.embed.encoder.Encoder); it is not pickled with the classifier and is attached again at load time.

    Each training text is also learnt from its first `lead_sentences` sentence(s), so that short texts
    (a one-line description, a sparse home page) are scored on the same scale as long ones. The second
    stage (`stack`): a sector's final score is a logistic regression over its first-stage score and the
    similarity-weighted share of the `neighbours` nearest training texts in the sector: near neighbours
    carry label evidence a linear model misses. stack="all" gives it every sector's scores and shares
    (sectors co-occur), which measured worse on Techstars (README).

    Each sector's threshold maximises F1 on out-of-fold probabilities, raised where needed so that at
    most `max_ordinary_rate` of the training texts in no sector would be labelled (None: F1 alone).
    `n_jobs` (joblib's meaning: None one, -1 every core) fits the sectors' models side by side.
    """

    def __init__(
        self,
        sector_ids: Sequence[str] = (),
        encoder=None,
        features: str = config.FEATURES,
        C: float = 1.0,
        tfidf_weight: float = 1.0,
        cv: int = 5,
        min_positives: int = 5,
        lead_sentences: Sequence[int] = (1, 2),
        random_state: int = 0,
        stack: str = "own",
        neighbours: int = 20,
        max_ordinary_rate: float | None = 0.01,
        n_jobs: int | None = None,
    ):
        self.sector_ids = sector_ids
        self.encoder = encoder
        self.features = features
        self.C = C
        self.tfidf_weight = tfidf_weight
        self.cv = cv
        self.min_positives = min_positives
        self.lead_sentences = lead_sentences
        self.random_state = random_state
        self.stack = stack
        self.neighbours = neighbours
        self.max_ordinary_rate = max_ordinary_rate
        self.n_jobs = n_jobs

    def _validate_params(self) -> None:
        if self.features not in FEATURE_SETS:
            raise ValueError(f"features must be one of {FEATURE_SETS}")
        if self.stack not in STACKS:
            raise ValueError(f"stack must be one of {STACKS}")
        if not len(self.sector_ids) or len(set(self.sector_ids)) != len(self.sector_ids):
            raise ValueError("sector_ids must be a non-empty list of distinct ids")
        if not (np.isfinite(self.C) and self.C > 0) or not (np.isfinite(self.tfidf_weight) and self.tfidf_weight >= 0):
            raise ValueError("C must be a positive number and tfidf_weight a non-negative one")
        if int(self.cv) < 2 or int(self.neighbours) < 0 or int(self.min_positives) < 1:
            raise ValueError("cv must be at least 2, neighbours at least 0, min_positives at least 1")
        if self.max_ordinary_rate is not None and not 0 < self.max_ordinary_rate < 1:
            raise ValueError("max_ordinary_rate must be None or between 0 and 1")

    # -- features -------------------------------------------------------------------------
    def _uses(self, part: str) -> bool:
        return part in self.features.split("+")

    def _new_vectorizer(self) -> TfidfVectorizer:
        return TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_df=0.5, sublinear_tf=True, stop_words="english", max_features=100_000, dtype=np.float32)

    def _matrix(self, embeddings: np.ndarray | None, texts: Sequence[str], vectorizer: TfidfVectorizer | None):
        blocks = []
        if self._uses("embedding"):
            blocks.append(sparse.csr_matrix(embeddings))
        if self._uses("tfidf"):
            blocks.append(vectorizer.transform(texts) * self.tfidf_weight)
        return sparse.hstack(blocks, format="csr")

    def _embed(self, texts: Sequence[str]) -> np.ndarray | None:
        if not self._uses("embedding"):
            return None
        if self.encoder is None:
            raise RuntimeError("SectorClassifier needs an encoder for embedding features")
        return self.encoder.encode(list(texts))

    def _new_model(self) -> LogisticRegression:
        return LogisticRegression(C=self.C, class_weight="balanced", max_iter=3000, solver="liblinear")

    def _new_stacker(self, j: int):
        model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=3000, solver="liblinear")
        if self.stack == "own":
            n = len(self.sector_ids)
            return OnColumns(model, [j, n + j] if self._uses_neighbours() else [j])
        return model

    def _column_models(self, X, Y: np.ndarray, make_model) -> list:
        """One fitted model per sector column; a column with one class gets that class as a constant.

        Columns are fitted side by side on `n_jobs` threads (liblinear releases the GIL); each column's
        fit is independent, so the models are the same whatever `n_jobs` is.
        """
        def fit_column(j: int):
            return make_model(j).fit(X, Y[:, j]) if Y[:, j].min() != Y[:, j].max() else float(Y[0, j])

        return Parallel(n_jobs=self.n_jobs, prefer="threads")(delayed(fit_column)(j) for j in range(Y.shape[1]))

    @staticmethod
    def _column_scores(models: list, X) -> np.ndarray:
        scores = np.zeros((X.shape[0], len(models)))
        for j, model in enumerate(models):
            scores[:, j] = model.decision_function(X) if hasattr(model, "decision_function") else (10.0 if model else -10.0)
        return scores

    def _neighbour_labels(self, emb_train: np.ndarray, Y_train: np.ndarray, emb_query: np.ndarray) -> np.ndarray:
        """Per sector, the similarity-weighted share of the k nearest training texts in it (cosine, unit vectors)."""
        k = min(self.neighbours, len(emb_train))
        out = np.zeros((len(emb_query), Y_train.shape[1]))
        for start in range(0, len(emb_query), 2048):  # bounded memory on a large batch
            sims = emb_query[start : start + 2048] @ emb_train.T
            near = top_k_columns(sims, k)
            w = np.clip(np.take_along_axis(sims, near, axis=1), 0, None)
            out[start : start + 2048] = np.einsum("qk,qks->qs", w, Y_train[near]) / np.maximum(w.sum(axis=1, keepdims=True), 1e-9)
        return out

    def _uses_neighbours(self) -> bool:
        return self.stack and self.neighbours > 0 and self._uses("embedding")

    def _stack_features(self, scores: np.ndarray, neighbour_labels: np.ndarray | None) -> np.ndarray:
        return scores if neighbour_labels is None else np.hstack([scores, neighbour_labels])

    def _fit_scores(self, emb, texts, Y, train, test) -> np.ndarray:
        """Train on rows `train`, return first-stage decision scores for rows `test` (all sectors)."""
        train_texts = [texts[i] for i in train]
        vec = self._new_vectorizer().fit(train_texts) if self._uses("tfidf") else None
        X_tr = self._matrix(None if emb is None else emb[train], train_texts, vec)
        X_te = self._matrix(None if emb is None else emb[test], [texts[i] for i in test], vec)
        return self._column_scores(self._column_models(X_tr, Y[train], lambda j: self._new_model()), X_te)

    # -- estimator API -----------------------------------------------------------------------
    def fit(self, texts: Sequence[str], Y: np.ndarray, groups: Sequence | None = None) -> "SectorClassifier":
        """Fit on texts and their 0/1 label matrix Y (n_texts, n_sectors).

        `groups` keeps rows of one firm (e.g. a text and its lead snippet) in the same fold, so
        out-of-fold scores never see a near-copy of the row being scored.
        """
        self._validate_params()
        self.sector_ids = list(self.sector_ids)
        texts = [str(t) for t in texts]
        Y = np.asarray(Y, dtype=int)
        if Y.shape != (len(texts), len(self.sector_ids)):
            raise ValueError(f"Y must have shape ({len(texts)}, {len(self.sector_ids)})")
        n_original = len(texts)
        positives = Y.sum(axis=0)
        groups = np.asarray(groups if groups is not None else np.arange(n_original))
        for k in self.lead_sentences:
            leads = [lead_snippet(t, k) for t in texts[:n_original]]
            keep = [i for i, (lead, full) in enumerate(zip(leads, texts[:n_original])) if lead and lead != full]
            texts = texts + [leads[i] for i in keep]
            Y = np.vstack([Y, Y[keep]])
            groups = np.r_[groups, groups[keep]]
        emb = self._embed(texts)
        self.embedding_dims_ = 0 if emb is None else emb.shape[1]
        self.warnings_ = [
            f"sector '{s}' has {int(p)} positive examples (< {self.min_positives}): fixed threshold 0.5, no tuning"
            for s, p in zip(self.sector_ids, positives)
            if p < self.min_positives
        ]
        # Out-of-fold scores -> calibration and thresholds that were not fitted on the same rows.
        oof = np.zeros(Y.shape)
        near = np.zeros(Y.shape) if self._uses_neighbours() else None
        group_ids = np.unique(groups, return_inverse=True)[1]
        folds = KFold(n_splits=min(self.cv, group_ids.max() + 1), shuffle=True, random_state=self.random_state)
        splits = [(np.flatnonzero(np.isin(group_ids, a)), np.flatnonzero(np.isin(group_ids, b)))
                  for a, b in folds.split(np.arange(group_ids.max() + 1))]
        for train, test in splits:
            oof[test] = self._fit_scores(emb, texts, Y, train, test)
            if near is not None:
                near[test] = self._neighbour_labels(emb[train], Y[train], emb[test])
        if self.stack:
            # The second stage learns from first-stage scores that never saw their own row; its own
            # out-of-fold scores (same folds) are what calibration and thresholds see.
            Z = self._stack_features(oof, near)
            oof = np.zeros(Y.shape)
            for train, test in splits:
                oof[test] = self._column_scores(self._column_models(Z[train], Y[train], self._new_stacker), Z[test])
            self.stackers_ = self._column_models(Z, Y, self._new_stacker)
        ordinary = np.zeros(len(Y), dtype=bool)
        ordinary[:n_original] = Y[:n_original].sum(axis=1) == 0  # the texts as given, not their lead-sentence copies
        self.calibrators_, self.thresholds_ = fit_calibration(oof, Y, self.min_positives, positives, ordinary, self.max_ordinary_rate)
        oof_proba = np.column_stack([cal(oof[:, j]) for j, cal in enumerate(self.calibrators_)])
        self.oof_proba_ = oof_proba[:n_original]  # scores of the texts as given, for reports
        # Final models on everything.
        self.vectorizer_ = self._new_vectorizer().fit(texts) if self._uses("tfidf") else None
        X = self._matrix(emb, texts, self.vectorizer_)
        self.models_ = self._column_models(X, Y, lambda j: self._new_model())
        # The neighbour table: training embeddings (float16 halves the pickle) and their labels.
        self.neighbour_emb_ = emb.astype(np.float16) if near is not None else None
        self.neighbour_Y_ = Y.astype(np.int8) if near is not None else None
        return self

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        texts = [str(t) for t in texts]
        emb = self._embed(texts)
        scores = self._column_scores(self.models_, self._matrix(emb, texts, self.vectorizer_))
        if self.stack:
            near = None if self.neighbour_emb_ is None else self._neighbour_labels(self.neighbour_emb_.astype(np.float32), self.neighbour_Y_, emb)
            scores = self._column_scores(self.stackers_, self._stack_features(scores, near))
        return scores

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        scores = self.decision_function(texts)
        return np.column_stack([cal(scores[:, j]) for j, cal in enumerate(self.calibrators_)]) if len(texts) else scores

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.predict_proba(texts) >= self.thresholds_

    def top_terms(self, sector_id: str, n: int = 20) -> list[tuple[str, float]]:
        """The TF-IDF terms with the largest positive weight for a sector (empty without TF-IDF)."""
        if self.vectorizer_ is None:
            return []
        model = self.models_[self.sector_ids.index(sector_id)]
        if not hasattr(model, "coef_"):
            return []
        offset = self.embedding_dims_ if self._uses("embedding") else 0
        names = self.vectorizer_.get_feature_names_out()
        weights = model.coef_[0, offset : offset + len(names)]
        top = np.argsort(-weights)[:n]
        return [(str(names[i]), float(weights[i])) for i in top if weights[i] > 0]

    def __getstate__(self):
        state = self.__dict__.copy()
        state["encoder"] = None
        return state
