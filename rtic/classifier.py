"""The sector classifier: a small scikit-learn-style multi-label estimator over text.

Features are the firm text's sentence embedding and, optionally, word/bigram TF-IDF. Each sector
gets a logistic regression; its scores are calibrated with a Platt sigmoid fitted on out-of-fold
scores, and its decision threshold is the one that maximises F1 on those out-of-fold probabilities.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold

FEATURE_SETS = ("embedding", "tfidf", "embedding+tfidf")


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


class SectorClassifier:
    """Multi-label sector classifier: fit(texts, Y) / predict_proba(texts) / predict(texts).

    `encoder` is anything with `encode(texts) -> ndarray` (rtic.encoder.Encoder); it is not pickled
    with the classifier and is attached again at load time.
    """

    def __init__(
        self,
        sector_ids: Sequence[str],
        encoder=None,
        features: str = "embedding+tfidf",
        C: float = 1.0,
        tfidf_weight: float = 1.0,
        cv: int = 5,
        min_positives: int = 5,
        lead_sentences: Sequence[int] = (1, 2),
        random_state: int = 0,
    ):
        if features not in FEATURE_SETS:
            raise ValueError(f"features must be one of {FEATURE_SETS}")
        self.sector_ids = list(sector_ids)
        self.encoder = encoder
        self.features = features
        self.C = C
        self.tfidf_weight = tfidf_weight
        self.cv = cv
        self.min_positives = min_positives
        # Each training text is also learnt from its first sentence(s), so that short texts (a
        # one-line description, a sparse home page) are scored on the same scale as long ones.
        self.lead_sentences = tuple(lead_sentences)
        self.random_state = random_state

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

    def _fit_scores(self, emb, texts, Y, train, test) -> np.ndarray:
        """Train on rows `train`, return raw decision scores for rows `test` (all sectors)."""
        vec = self._new_vectorizer().fit([texts[i] for i in train]) if self._uses("tfidf") else None
        X_tr = self._matrix(None if emb is None else emb[train], [texts[i] for i in train], vec)
        X_te = self._matrix(None if emb is None else emb[test], [texts[i] for i in test], vec)
        scores = np.zeros((len(test), Y.shape[1]))
        for j in range(Y.shape[1]):
            y = Y[train, j]
            if y.min() == y.max():
                scores[:, j] = -10.0 if y.max() == 0 else 10.0
            else:
                scores[:, j] = self._new_model().fit(X_tr, y).decision_function(X_te)
        return scores

    # -- estimator API -----------------------------------------------------------------------
    def fit(self, texts: Sequence[str], Y: np.ndarray, groups: Sequence | None = None) -> "SectorClassifier":
        """Fit on texts and their 0/1 label matrix Y (n_texts, n_sectors).

        `groups` keeps rows of one firm (e.g. a text and its lead snippet) in the same fold, so
        out-of-fold scores never see a near-copy of the row being scored.
        """
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
        n = len(texts)
        self.warnings_ = [
            f"sector '{s}' has {int(p)} positive examples (< {self.min_positives}): fixed threshold 0.5, no tuning"
            for s, p in zip(self.sector_ids, positives)
            if p < self.min_positives
        ]
        # Out-of-fold scores -> calibration and thresholds that were not fitted on the same rows.
        oof = np.zeros(Y.shape)
        group_ids = np.unique(groups, return_inverse=True)[1]
        folds = KFold(n_splits=min(self.cv, group_ids.max() + 1), shuffle=True, random_state=self.random_state)
        for train_groups, test_groups in folds.split(np.arange(group_ids.max() + 1)):
            train, test = np.flatnonzero(np.isin(group_ids, train_groups)), np.flatnonzero(np.isin(group_ids, test_groups))
            oof[test] = self._fit_scores(emb, texts, Y, train, test)
        self.calibrators_, self.thresholds_ = [], np.full(len(self.sector_ids), 0.5)
        oof_proba = np.zeros(Y.shape)
        for j in range(Y.shape[1]):
            y = Y[:, j]
            cal = Platt.fit(oof[:, j], y) if 0 < y.sum() < n else Platt(a=1.0, b=0.0)
            self.calibrators_.append(cal)
            oof_proba[:, j] = cal(oof[:, j])
            if positives[j] >= self.min_positives:
                self.thresholds_[j] = best_f1_threshold(y, oof_proba[:, j])
        self.oof_proba_ = oof_proba[:n_original]  # scores of the texts as given, for reports
        # Final models on everything.
        self.vectorizer_ = self._new_vectorizer().fit(texts) if self._uses("tfidf") else None
        X = self._matrix(emb, texts, self.vectorizer_)
        self.models_ = []
        for j in range(Y.shape[1]):
            y = Y[:, j]
            self.models_.append(self._new_model().fit(X, y) if 0 < y.sum() < n else float(y.max()))
        return self

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        texts = [str(t) for t in texts]
        X = self._matrix(self._embed(texts), texts, self.vectorizer_)
        scores = np.zeros((len(texts), len(self.sector_ids)))
        for j, model in enumerate(self.models_):
            scores[:, j] = model.decision_function(X) if hasattr(model, "decision_function") else (10.0 if model else -10.0)
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
        offset = 384 if self._uses("embedding") else 0
        weights = model.coef_[0, offset:]
        names = self.vectorizer_.get_feature_names_out()
        top = np.argsort(-weights)[:n]
        return [(str(names[i]), float(weights[i])) for i in top if weights[i] > 0]

    def __getstate__(self):
        state = self.__dict__.copy()
        state["encoder"] = None
        return state
