"""The fast path: a cheap static pass over every firm, the transformer only where it could change a label.

Static model (model2vec-style distillation, made here, never downloaded): every token of the vocabulary of
the encoder the model was trained with (all-MiniLM-L6-v2 by default; one table per encoder) is run through
that transformer once as `[CLS] token [SEP]`, mean-pooled like the sentence model, and the vocabulary's mean vector is subtracted (the component every token shares).
A text's static embedding is the mean of its tokens' vectors — a table look-up, no transformer.

Head (distilled *scores*, not labels): the registered model is, per sector, a logistic regression on
[transformer embedding, TF-IDF] → Platt → threshold. Everything but the embedding is computed exactly.
The embedding is approximated from a distillation corpus (a random sample of the register with
`rtic fastpath build --register`, plus the model's training texts and their lead sentences), read once by
the transformer:
1. a contextual token table: the sentence model mean-pools its contextual token vectors, so each token's
   average contextual vector over the corpus (shrunk toward its out-of-context vector when seen rarely)
   approximates that pooling far better than the out-of-context vector (measured in scripts/bench_batch.py);
2. a ridge map from the static embedding to the transformer's own vectors, L2-normalised like them.
So the fast pass runs the registered classifier itself, with only the embedding approximated. Cross-fitted
residuals (tables and map made without the text's own fold) of each sector's calibrated logit give sigma per
sector; built once per (model version, corpus), cached under models/static/.

Scoring is per firm, because a register user reads a firm's whole label set: each firm's risk of any label
change is estimated from its fast logits, each sector's distance to its threshold in sigmas (a Gaussian
residual per sector, independent across sectors: risk = 1 - prod(1 - Phi(-|fast - cut| / sigma))). Firms at
or above a risk threshold are re-scored by the registered pyfunc (transformer); every other firm keeps the
fast labels. The threshold comes from the head's cross-fitted table (risk threshold -> share re-scored, share
of firms whose whole label set equals the transformer's), so `--fast-agreement` is a share of firms. The risk
only orders firms; what the table promises is measured, not derived from the Gaussian. Rows say which scorer
made them (`scored_by`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import multiprocessing
import os
import pickle
import re
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from rtic.model.classifier import lead_snippet
from rtic.config import DEFAULT_SEED_LABELS, Settings
from rtic.embed.encoder import MINILM, EncoderModel, encoder_model
from rtic.errors import RticError
from rtic.progress import rate_eta
from rtic.contracts import assigned_column, probability_column
from rtic.tables import atomic_path, read_table, require_columns
from rtic import config

log = logging.getLogger(__name__)

STATIC_METHOD = "static-v1"  # change when the distillation recipe changes
HEAD_METHOD = "contextual-table-v5"  # change when the head recipe changes: cached heads are then rebuilt
# By default the risk threshold is the one re-scoring fewest firms whose cross-fitted share of identical label
# sets on the head's own corpus (the register sample) reaches DEFAULT_AGREEMENT at its 95% lower bound:
# the trade-off follows the register's text. scripts/bench_batch.py prints the table against held-out firms.
DEFAULT_AGREEMENT = config.FAST_AGREEMENT
# Shares of the corpus re-scored at which the table is measured (each row's risk threshold is that quantile).
RESCORED_SHARES = (0.0, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
WILSON_Z = 1.96  # 95% lower bound of the cross-fitted share of identical firms
DEFAULT_SAMPLE = config.FASTPATH_SAMPLE
MIN_CORPUS = 50
RIDGE_LAMBDAS = (0.01, 0.1, 1.0)  # picked by cross-fitted error of the approximated embedding
FOLDS = 5
SIGMA_BAND = 3.0  # logits either side of a threshold where the residual is measured
WINDOWS = 8  # the transformer reads at most 8 windows of its sequence length (Encoder.max_chunks); read the same text
LONGEST_WORD = 100  # WordPiece's max_input_chars_per_word: a word cut at the prefix's end yields at most this many tokens
CONTEXT_PSEUDOCOUNT = 8.0  # a token seen n times: (n x its contextual average + 8 x its prior) / (n + 8)
PRIOR_MIN_COUNT = 20  # tokens seen this often fit the out-of-context -> contextual map that makes the prior
# Re-scoring half the firms or more, the fast path was measured no faster than the transformer alone (directory
# one-liners, scripts/bench_batch.py): classify warns that the default engine is the better choice for such text.
RESCORED_NOT_WORTH_IT = 0.5
MIN_ROWS_PER_WORKER = 64  # smaller batches are scored in-process: handing them to workers costs more than it saves


def static_dir(settings: Settings) -> Path:
    return settings.home / "static"


def static_model_path(settings: Settings, model: EncoderModel = MINILM) -> Path:
    return static_dir(settings) / f"{model.name}-{STATIC_METHOD}.npy"


def build_static_model(settings: Settings, force: bool = False, batch: int = 1024, model: EncoderModel = MINILM) -> Path:
    """Distil the token table from the encoder `model` into models/static/ (offline; about a minute for MiniLM)."""
    path = static_model_path(settings, model)
    if path.exists() and not force:
        return path
    import torch
    import transformers
    from transformers import AutoModel, AutoTokenizer

    transformers.utils.logging.disable_progress_bar()

    model_dir = model.verified_dir()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    transformer = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()
    vocab = len(tokenizer)
    table = np.zeros((vocab, transformer.config.hidden_size), dtype=np.float32)
    log.info(f"distilling {vocab:,} token vectors from {model_dir.name} into {path} …")
    started = time.monotonic()
    with torch.inference_mode():
        for n, start in enumerate(range(0, vocab, batch), 1):
            ids = torch.arange(start, min(start + batch, vocab))
            inputs = torch.stack([torch.full_like(ids, tokenizer.cls_token_id), ids, torch.full_like(ids, tokenizer.sep_token_id)], dim=1)
            hidden = transformer(input_ids=inputs, attention_mask=torch.ones_like(inputs)).last_hidden_state
            table[start : start + len(ids)] = hidden.mean(dim=1).numpy()  # the sentence model's mean pooling
            if n % 8 == 0:
                done = start + len(ids)
                log.info(f"  tokens: {done:,}/{vocab:,}, {rate_eta(done, time.monotonic() - started, vocab - done, 'tokens')}")
    table -= table.mean(axis=0, keepdims=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a file object: np.save would add ".npy" to a name
        np.save(fh, table)
    meta = {"method": STATIC_METHOD, "encoder_model": model.name, "source_weights_sha256": model.weights_sha256, "vocab": vocab,
            "dims": int(table.shape[1])}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    return path


@lru_cache(maxsize=4)
def _tokenizer(model_name: str):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(encoder_model(model_name).verified_dir() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def mean_of_tokens(table: np.ndarray, ids: Sequence[Sequence[int]]) -> np.ndarray:
    """L2-normalised mean of each text's token vectors (zeros for a text without tokens)."""
    out = np.zeros((len(ids), table.shape[1]), dtype=np.float32)
    for i, row in enumerate(ids):
        if len(row):
            out[i] = table[row].mean(axis=0)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


class StaticEncoder:
    """Texts → L2-normalised mean of static token vectors (same tokenizer as the transformer `model`)."""

    def __init__(self, vectors: np.ndarray, model: EncoderModel = MINILM):
        self.vectors = np.asarray(vectors, dtype=np.float32)
        self.model = model
        self.tokenizer = _tokenizer(model.name)
        self.max_tokens = WINDOWS * (model.max_seq_length - 2)  # the windows' tokens, special tokens apart
        self.prefix_chars = 8 * self.max_tokens  # long texts: tokenize a prefix first (exact: see token_ids)

    @cached_property
    def model_key(self) -> str:  # hashed on first use only: the head's contextual table never needs a key
        return f"{STATIC_METHOD}|{hashlib.sha256(np.ascontiguousarray(self.vectors).data).hexdigest()[:12]}"

    @classmethod
    def load(cls, path: str | Path, model: EncoderModel = MINILM) -> "StaticEncoder":
        return cls(np.load(path), model)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's first `max_tokens` token ids, as the transformer reads them.

        A long text is tokenized from a prefix; only when the prefix gives too few tokens to be sure that a word
        cut at its end cannot reach the first `max_tokens` is the whole text tokenized (same ids either way).
        """
        texts = ["" if t is None else str(t) for t in texts]
        encodings = self.tokenizer.encode_batch([t[: self.prefix_chars] for t in texts], add_special_tokens=False)
        ids = [e.ids for e in encodings]
        redo = [i for i, t in enumerate(texts) if len(t) > self.prefix_chars and len(ids[i]) < self.max_tokens + LONGEST_WORD]
        for i, e in zip(redo, self.tokenizer.encode_batch([texts[i] for i in redo], add_special_tokens=False)):
            ids[i] = e.ids
        return [row[: self.max_tokens] for row in ids]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return mean_of_tokens(self.vectors, self.token_ids(texts))

    def __getstate__(self):  # the tokenizer is reloaded from the model package, never pickled
        return {"vectors": self.vectors, "model": self.model.name}

    def __setstate__(self, state):
        self.__init__(state["vectors"], encoder_model(state.get("model") or MINILM.name))


class TokenMeans:
    """Each vocabulary token's contextual vectors as the transformer read a corpus: sums and counts per fold."""

    def __init__(self, vocab: int, dims: int, folds: int):
        self.sums = np.zeros((folds, vocab, dims), dtype=np.float32)
        self.counts = np.zeros((folds, vocab), dtype=np.int64)
        self.prior: np.ndarray | None = None

    def add(self, fold: int, ids: np.ndarray, vectors: np.ndarray) -> None:
        np.add.at(self.sums[fold], ids, vectors)
        np.add.at(self.counts[fold], ids, 1)

    def fit_prior(self, base: np.ndarray) -> None:
        """Ridge map from out-of-context vectors to contextual averages over frequent tokens: the vector for unseen ones."""
        counts = self.counts.sum(axis=0)
        frequent = counts >= PRIOR_MIN_COUNT
        if frequent.sum() < base.shape[1]:  # too small a corpus to fit a map: fall back on the out-of-context vectors
            self.prior = base.astype(np.float32)
            return
        average = self.sums.sum(axis=0)[frequent] / counts[frequent, None]
        self.prior = (np.hstack([base, np.ones((len(base), 1), np.float32)]) @ _ridge(base[frequent], average, 1.0)).astype(np.float32)

    def table(self, leave_out: int | None = None) -> np.ndarray:
        """Contextual averages shrunk toward the prior, from every fold but `leave_out`."""
        sums, counts = self.sums.sum(axis=0), self.counts.sum(axis=0)
        if leave_out is not None:
            sums, counts = sums - self.sums[leave_out], counts - self.counts[leave_out]
        return ((sums + CONTEXT_PSEUDOCOUNT * self.prior) / (counts[:, None] + CONTEXT_PSEUDOCOUNT)).astype(np.float32)


def teacher_texts(model) -> list[str]:
    """The model's training texts (a rtic.mlops.registry.LoadedModel: from its MLflow run) or the bundled seed
    labels, with their leads."""
    path = model.training_labels
    if not path or not path.is_file():
        log.info(f"fast path: the model's training labels are not on this machine; distilling on {DEFAULT_SEED_LABELS.name}")
        path = DEFAULT_SEED_LABELS
    texts = [t for t in read_table(path, "labels")["text"].astype(str) if t.strip()]
    # Short texts matter (directory one-liners, sparse home pages): distil on lead sentences too.
    leads = [lead_snippet(t, k) for t in texts for k in (1, 2)]
    return list(dict.fromkeys(texts + [l for l in leads if l.strip()]))


def sample_register(register: str | Path, sample: int = DEFAULT_SAMPLE, source=None, seed: int = 0) -> list[str]:
    """A uniform random sample of `sample` firm texts from a register of any size (reservoir sampling, one pass).

    `source` is a rtic.text.TextSource (default: the register's `text` column); firms without text are skipped.
    """
    from rtic.text import RegisterText
    from rtic.register import Register

    if sample < MIN_CORPUS:
        raise RticError(f"--sample must be at least {MIN_CORPUS}, got {sample}")
    source = source or RegisterText()
    opened = Register.open(register)
    require_columns(opened.columns, source.required_columns, register, "register")  # whole-file checks first, as classify
    rng = np.random.default_rng(seed)
    kept: list[str] = []
    seen = 0
    for chunk in opened.chunks(8192):
        texts, _ = source.texts(chunk.rows)
        for text in texts["text"]:
            seen += 1
            if len(kept) < sample:
                kept.append(text)
            else:
                k = int(rng.integers(seen))
                if k < sample:
                    kept[k] = text
        log.info(f"  sampling {register}: {seen:,} firms with text read ({chunk.fraction_read:.0%} of file)")
    if seen < MIN_CORPUS:
        raise RticError(f"register {register} has only {seen} firms with text; the fast head needs at least {MIN_CORPUS}")
    return kept


class MappedEncoder:
    """Static embedding → ridge map → an approximation of the transformer's sentence vector."""

    def __init__(self, static: StaticEncoder, matrix: np.ndarray):
        self.static = static
        self.matrix = matrix  # (dims + 1, dims): the last row is the intercept

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return apply_map(self.static.encode(texts), self.matrix)


def apply_map(static: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Mapped vectors, L2-normalised like the transformer's (ridge shrinks them; the classifier saw unit vectors)."""
    out = static @ matrix[:-1] + matrix[-1]
    return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class _Known:
    """An encoder that returns vectors already computed for these texts."""

    def __init__(self, texts: Sequence[str], vectors: np.ndarray):
        self.lookup = dict(zip(texts, vectors))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.lookup[t] for t in texts]) if len(texts) else np.zeros((0, 0), dtype=np.float32)


def calibrated_logits(clf, encoder, texts: Sequence[str]) -> np.ndarray:
    """Each sector's calibrated logit, log(p / (1 - p)), of the classifier run with `encoder` for its embeddings."""
    scorer = copy.copy(clf)  # shallow: shares the fitted models, never touches the registered classifier's encoder
    scorer.encoder = encoder
    proba = scorer.predict_proba(list(texts))
    proba = np.clip(proba, 1e-9, 1 - 1e-9)
    return np.log(proba / (1 - proba))


def threshold_logits(clf) -> np.ndarray:
    t = np.clip(np.asarray(clf.thresholds_, dtype=float), 1e-9, 1 - 1e-9)
    return np.log(t / (1 - t))


def _ridge(X: np.ndarray, Y: np.ndarray, lam: float) -> np.ndarray:
    """Ridge regression with an unpenalised intercept: returns (dims + 1, outputs), intercept last."""
    X1 = np.hstack([X, np.ones((len(X), 1))]).astype(np.float64)
    A = X1.T @ X1 + lam * np.diag(np.r_[np.ones(X.shape[1]), 0.0])
    return np.linalg.solve(A, X1.T @ Y.astype(np.float64)).astype(np.float32)


def _read_corpus(encoder, texts: list[str], folds: np.ndarray, table_shape: tuple[int, int],
                 step: int = 128) -> tuple[np.ndarray, TokenMeans]:
    """One transformer pass over the corpus: its sentence vectors (cached) and its tokens' contextual vectors per fold."""
    means = TokenMeans(*table_shape, int(folds.max()) + 1)
    started, parts = time.monotonic(), []
    for start in range(0, len(texts), step):
        parts.append(encoder.encode(texts[start : start + step], on_tokens=lambda i, ids, vectors, start=start: means.add(folds[start + i], ids, vectors)))
        done, elapsed = start + len(parts[-1]), time.monotonic() - started
        log.info(f"  transformer: {done:,}/{len(texts):,} texts, {rate_eta(done, elapsed, len(texts) - done, 'texts')}")
    return np.vstack(parts), means


@dataclass
class FastHead:
    """The map from static to transformer embeddings and each sector's residual sigma (calibrated logit)."""

    model_uri: str
    model_version: str
    static_key: str
    sector_ids: list[str]
    matrix: np.ndarray | None  # None: the model uses no embedding, so the fast pass is exact
    table: np.ndarray | None  # the contextual token table (vocabulary x dims) the map reads
    sigma: np.ndarray
    ridge_lambda: float
    corpus: str
    n_texts: int
    validation: list[dict] = field(default_factory=list)  # risk threshold → re-scored share and agreement, cross-fitted
    method: str = HEAD_METHOD
    built_at: str = ""

    @property
    def digest(self) -> str:
        h = hashlib.sha256(np.ascontiguousarray(self.sigma, dtype=np.float64).tobytes())
        for part in (self.matrix, self.table):
            if part is not None:
                h.update(np.ascontiguousarray(part).tobytes())
        return h.hexdigest()[:12]

    def risk_for(self, agreement: float) -> dict:
        """The validation row re-scoring fewest firms whose cross-fitted share of identical firms reaches `agreement`
        at its 95% lower bound (the last row, everyone re-scored, reaches any target)."""
        if self.matrix is None or not self.validation:  # no embedding to approximate: the fast pass is exact
            return {"risk": NOBODY, "rescored": 0.0, "cell_agreement": 1.0, "firm_agreement": 1.0, "firm_agreement_low": 1.0}
        return next(row for row in self.validation if row["firm_agreement_low"] >= agreement or row["rescored"] >= 1.0)

    def summary(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k not in ("matrix", "table", "sigma")}
        out["sigma"] = dict(zip(self.sector_ids, np.round(self.sigma, 4).tolist()))
        out["digest"] = self.digest
        return out


def build_head(model, base: StaticEncoder, texts: Sequence[str], corpus: str,
               measure_on: Sequence[str] | None = None) -> FastHead:
    """Fit the static→transformer embedding map on `texts` and measure each sector's residual by cross-fitting.

    `measure_on` (a subset of `texts`, e.g. the register sample): sigma and the z table come from those texts
    only, so they describe the text being classified rather than the training texts also used to fit the map.
    `base` is the out-of-context table: the prior of rarely seen tokens.
    """
    clf, ref = model.classifier, model.ref
    texts = list(dict.fromkeys(str(t) for t in texts if t is not None and str(t).strip()))
    if len(texts) < MIN_CORPUS:
        raise RticError(f"the fast head needs at least {MIN_CORPUS} distinct non-empty texts to distil on, got {len(texts)}")
    sector_ids = list(clf.sector_ids)
    head = FastHead(ref.uri, str(ref.version), base.model_key, sector_ids, None, None, np.zeros(len(sector_ids)), 0.0, corpus, len(texts),
                    built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if "embedding" not in str(getattr(clf, "features", "embedding")).split("+"):
        log.info("fast path: the model uses no embedding, so the fast pass is exact; no map to fit")
        return head
    log.info(f"fast path: distilling on {len(texts):,} texts ({corpus}); the transformer reads each once …")
    folds = np.random.default_rng(0).permutation(len(texts)) % FOLDS
    E, means = _read_corpus(clf.encoder, texts, folds, base.vectors.shape)
    means.fit_prior(base.vectors)
    ids = base.token_ids(texts)
    S = np.zeros_like(E)
    for k in range(FOLDS):  # each text's static vector from a table its own words did not help make: honest residuals
        rows = np.flatnonzero(folds == k)
        S[rows] = mean_of_tokens(means.table(leave_out=k), [ids[i] for i in rows])

    def cross_fit(lam: float) -> np.ndarray:
        out = np.zeros_like(E)
        for k in range(FOLDS):
            test = folds == k
            out[test] = apply_map(S[test], _ridge(S[~test], E[~test], lam))
        return out

    fits = {lam: cross_fit(lam) for lam in RIDGE_LAMBDAS}
    head.ridge_lambda = min(fits, key=lambda lam: float(((fits[lam] - E) ** 2).sum(axis=1).mean()))
    approx = fits[head.ridge_lambda]
    true, fast = calibrated_logits(clf, _Known(texts, E), texts), calibrated_logits(clf, _Known(texts, approx), texts)
    if measure_on is not None:
        keep = np.isin(np.array(texts, dtype=object), np.array(list(set(measure_on)), dtype=object))
        if keep.sum() >= MIN_CORPUS:
            true, fast = true[keep], fast[keep]
            head.corpus += f"; residuals measured on the {int(keep.sum()):,} sampled texts only"
    head.sigma = residual_sigma(true, fast, threshold_logits(clf))
    head.validation = escalation_table(true, fast, head.sigma, threshold_logits(clf))
    head.matrix = _ridge(S, E, head.ridge_lambda)
    head.table = means.table()
    return head


def residual_sigma(true: np.ndarray, fast: np.ndarray, cut: np.ndarray, band: float = SIGMA_BAND, least: int = 20) -> np.ndarray:
    """Per sector, the spread of (true - fast) logits among texts whose true logit is within `band` of the threshold.

    Residuals grow with the logit (saturated scores are far off but far from any decision), so the spread
    that matters is the one near the threshold; all texts are used for a sector with fewer than `least` there.
    """
    sigma = np.zeros(true.shape[1])
    for j in range(true.shape[1]):
        near = np.abs(true[:, j] - cut[j]) < band
        residual = (true - fast)[near if near.sum() >= least else slice(None), j]
        sigma[j] = max(float(np.sqrt(np.mean(residual**2))), 1e-6)
    return sigma


NOBODY = 1.0  # a risk threshold of 1 re-scores no firm (risk < 1 whenever a sigma is finite)


def change_risk(logits: np.ndarray, cut: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Each firm's estimated chance that any of its labels differs from the transformer's.

    Per sector, the chance that the true logit lies on the other side of the threshold, the residual taken as
    Gaussian with that sector's sigma; sectors taken as independent. Used to order firms, not as a promise.
    """
    from scipy.special import log_ndtr

    log_keep = np.log1p(-np.exp(log_ndtr(-np.abs(logits - cut) / sigma)))  # log(1 - P(flip)) per decision
    return -np.expm1(log_keep.sum(axis=1))


def rescore_mask(risk: np.ndarray, threshold: float) -> np.ndarray:
    """Firms to re-score: risk at or above the threshold (0: every firm; NOBODY: none)."""
    return risk >= threshold if threshold < NOBODY else np.zeros(len(risk), dtype=bool)


def wilson_low(share: float, n: int, z: float = WILSON_Z) -> float:
    """Lower end of the Wilson score interval of a share measured on n items."""
    if n == 0:
        return 0.0
    centre = share + z * z / (2 * n)
    spread = z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return float(max((centre - spread) / (1 + z * z / n), 0.0))


def label_agreement(truth: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """(share of (firm, sector) decisions, share of firms whose whole label set) equal between two label matrices."""
    same = np.asarray(truth, dtype=bool) == np.asarray(other, dtype=bool)
    return (float(same.mean()), float(same.all(axis=1).mean())) if same.size else (1.0, 1.0)


def escalation_table(true: np.ndarray, fast: np.ndarray, sigma: np.ndarray, cut: np.ndarray,
                     shares: Sequence[float] = RESCORED_SHARES) -> list[dict]:
    """Risk thresholds at the given re-scored shares of these firms, each with what re-scoring above it gives:
    share re-scored, agreement per decision and per firm (whole label set) with the transformer, and the
    Wilson 95% lower bound of the per-firm share. Rows run from fewest re-scored to all."""
    y_true, y_fast = true >= cut, fast >= cut
    risk = change_risk(fast, cut, sigma)
    rows: list[dict] = []
    for share in shares:
        threshold = NOBODY if share <= 0 else 0.0 if share >= 1 else float(np.quantile(risk, 1 - share))
        if rows and threshold >= rows[-1]["risk"]:  # ties: the same firms as the row before
            continue
        near = rescore_mask(risk, threshold)
        cells, firms = label_agreement(y_true, np.where(near[:, None], y_true, y_fast))
        rows.append({"risk": threshold, "rescored": float(near.mean()), "cell_agreement": cells, "firm_agreement": firms,
                     "firm_agreement_low": wilson_low(firms, len(risk))})
    return rows


def head_path(settings: Settings, ref, static: StaticEncoder) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{ref.name}-v{ref.version}")
    return static_dir(settings) / f"head-{safe}-{static.model_key.split('|')[1]}.joblib"


def save_head(head: FastHead, path: Path) -> None:
    import joblib

    with atomic_path(path) as tmp:
        joblib.dump(head, tmp)
    path.with_suffix(".json").write_text(json.dumps(head.summary(), indent=2))


def load_head(path: Path) -> FastHead | None:
    """A cached head, or None when missing or made by an older recipe."""
    import joblib

    if not path.exists():
        return None
    head = joblib.load(path)
    return head if isinstance(head, FastHead) and head.method == HEAD_METHOD else None


def ensure_head(model, settings: Settings, texts: Sequence[str] | None = None, corpus: str = "", force: bool = False,
                measure_on: Sequence[str] | None = None) -> tuple[FastHead, Path]:
    """The cached head for this model version, built when missing (or when `force`, or new `texts` are given)."""
    encoder = model.classifier.encoder.model  # the transformer the model was trained with: the static table's teacher
    base = StaticEncoder.load(build_static_model(settings, model=encoder), encoder)
    path = head_path(settings, model.ref, base)
    head = None if (force or texts is not None) else load_head(path)
    if head is None:
        if texts is None:
            log.info("fast path: no head for this model yet; distilling on its training texts "
                     "(for register-like text, build it on a sample of your register: `rtic fastpath build --register FILE`)")
            texts, corpus = teacher_texts(model), "the model's training texts and their lead sentences"
        head = build_head(model, base, texts, corpus, measure_on=measure_on)
        save_head(head, path)
    return head, path


def mapped_encoder(table: np.ndarray | None, matrix: np.ndarray | None, model: EncoderModel) -> "MappedEncoder | None":
    """The fast pass's encoder from a head's table and map (None: the model uses no embedding); `model` is the
    transformer it approximates, whose tokenizer it reads text with."""
    return MappedEncoder(StaticEncoder(table, model), matrix) if matrix is not None else None


_WORKER: tuple | None = None  # in a static-pass worker process: (classifier, mapped encoder)


def _start_worker(payload: bytes) -> None:
    """A static-pass worker's start-up: the classifier and head arrive once, pickled; BLAS gets one thread, the process
    is one of several sharing the cores."""
    global _WORKER
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    clf, table, matrix, model = pickle.loads(payload)
    _WORKER = (clf, mapped_encoder(table, matrix, encoder_model(model)))


def _worker_logits(texts: list[str]) -> np.ndarray:
    clf, encoder = _WORKER
    return calibrated_logits(clf, encoder, texts)


class FastScorer:
    """Callable like the transformer scorer: DataFrame(firm_id, text) → wide predictions + `scored_by`.

    The static pass (tokens, TF-IDF, the classifier's linear parts) is mostly single-threaded Python, so with
    `workers` > 1 a batch is split across up to that many processes, at least MIN_ROWS_PER_WORKER rows each
    (started on first use, each sent the classifier and head once); the firms re-scored by the transformer run here,
    where torch uses every core itself. Each firm's logits are computed on its own, so the split changes no label.
    The workers are spawned (never forked), so a script that calls this must guard its entry point
    (`if __name__ == "__main__":`), as with any spawned multiprocessing; `rtic` and `python -m rtic.cli` do.
    """

    def __init__(self, clf, head: FastHead, transformer: Callable[[pd.DataFrame], pd.DataFrame], risk: float, head_path: Path,
                 workers: int = config.FAST_WORKERS):
        self.clf = clf
        self.head = head
        self.encoder = mapped_encoder(head.table, head.matrix, clf.encoder.model)
        self.cut = threshold_logits(clf)
        self.transformer = transformer
        self.risk = float(risk)
        self.head_path = head_path
        self.workers = int(workers)
        self._pool = None

    def _static_pool(self):
        if self._pool is None:
            # spawn, not fork: the parent may have torch's thread pools running (forking those can deadlock).
            payload = pickle.dumps((self.clf, self.head.table, self.head.matrix, self.clf.encoder.model.name), protocol=pickle.HIGHEST_PROTOCOL)
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_start_worker, initargs=(payload,))
        return self._pool

    def start(self, batch_rows: int) -> None:
        """Start the static-pass workers now if batches of `batch_rows` will use them: their start-up (each imports the
        classifier and receives it with the head, a few seconds) is then part of loading, not of the first batch."""
        if min(self.workers, batch_rows // MIN_ROWS_PER_WORKER) >= 2:
            pool = self._static_pool()
            try:
                for started in [pool.submit(os.getpid) for _ in range(self.workers)]:  # each submit starts a process
                    started.result()
            except BrokenProcessPool as exc:
                self._in_process(exc)

    def _in_process(self, exc: BaseException) -> None:
        log.warning(f"fast path: a static-pass worker stopped ({exc}); scoring in this process from now on")
        self.close()
        self.workers = 1

    def close(self) -> None:
        """Stop the static-pass workers (if any were started)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def identity(self) -> dict:
        return {"kind": "fast", "risk": self.risk, "head": self.head_path.name, "head_digest": self.head.digest}

    @classmethod
    def for_model(cls, model, settings: Settings, transformer, risk: float | None = None, agreement: float | None = None,
                  workers: int = config.FAST_WORKERS) -> "FastScorer":
        """The fast scorer of a model (a rtic.mlops.registry.LoadedModel): `risk` threshold given, or chosen for `agreement`
        (share of firms with the transformer's label set; default DEFAULT_AGREEMENT); `workers` processes share the static pass."""
        if risk is not None and agreement is not None:
            raise RticError("give --fast-risk or --fast-agreement, not both")
        if risk is not None and not 0 <= risk <= NOBODY:  # also refuses NaN
            raise RticError(f"--fast-risk is a firm's chance of any label change, between 0 (re-score every firm) and 1 (none), got {risk}")
        if int(workers) < 1:
            raise RticError(f"--fast-workers must be at least 1, got {workers}")
        if agreement is not None and not 0 < agreement <= 1:
            raise RticError(f"--fast-agreement is a share of firms (whole label set identical to the transformer's), between 0 and 1, got {agreement}")
        clf = model.classifier
        head, path = ensure_head(model, settings)
        if head.sector_ids != list(clf.sector_ids):
            raise RticError(f"fast head {path} was built for other sectors: rebuild it with `rtic fastpath build --force`")
        if risk is None:
            target = DEFAULT_AGREEMENT if agreement is None else agreement
            row = head.risk_for(target)
            risk = row["risk"]
            log.info(f"fast path: re-scoring firms whose risk of any label change is at least {risk:.3g}, for {target:.1%} of firms "
                     f"identical to the transformer (cross-fitted on the head's corpus, {head.corpus}: {row['rescored']:.1%} re-scored, "
                     f"{row['firm_agreement']:.2%} of firms identical, 95% lower bound {row['firm_agreement_low']:.2%}; "
                     f"{row['cell_agreement']:.2%} of decisions)")
            if row["rescored"] >= RESCORED_NOT_WORTH_IT:
                log.warning(f"fast path: {target:.1%} of firms identical needs {row['rescored']:.0%} of firms re-scored by the transformer "
                            "on this kind of text; at that share --fast is no faster than classify without --fast "
                            "(short text: the transformer is cheap and the static pass errs on more firms)")
        return cls(clf, head, transformer, risk, path, workers=workers)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Each sector's calibrated logit from the fast pass (exact but for the approximated embedding)."""
        texts = list(texts)
        n_slices = min(self.workers, len(texts) // MIN_ROWS_PER_WORKER)
        if n_slices < 2:
            return calibrated_logits(self.clf, self.encoder, texts)
        # Slices by characters, not rows, so that one worker does not get all the long pages.
        ends = np.searchsorted(np.cumsum([len(t) for t in texts]), np.linspace(0, sum(map(len, texts)), n_slices + 1)[1:-1])
        slices = [part.tolist() for part in np.split(np.array(texts, dtype=object), ends) if len(part)]
        try:
            return np.vstack(list(self._static_pool().map(_worker_logits, slices)))
        except BrokenProcessPool as exc:  # a worker died (killed, out of memory): carry on in this process, losing nothing
            self._in_process(exc)
            return calibrated_logits(self.clf, self.encoder, texts)

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.reset_index(drop=True)
        logits = self.logits(frame["text"].fillna("").astype(str).tolist())
        proba = 1.0 / (1.0 + np.exp(-logits))
        out = pd.DataFrame({"firm_id": frame["firm_id"].astype(str)})
        for j, sector in enumerate(self.head.sector_ids):
            out[probability_column(sector)] = proba[:, j].astype(float)
            out[assigned_column(sector)] = logits[:, j] >= self.cut[j]
        out["scored_by"] = "static"
        near = rescore_mask(change_risk(logits, self.cut, self.head.sigma), self.risk)
        if near.any():
            rescored = self.transformer(frame[near]).reset_index(drop=True)
            out.loc[near, rescored.columns] = rescored.set_axis(out.index[near]).to_numpy()
        return out


def build_fast_path(settings: Settings, model_uri: str | None = None, register: str | Path | None = None, sample: int = DEFAULT_SAMPLE,
                    source=None, force: bool = False) -> tuple[Path, FastHead | None, Path | None]:
    """`rtic fastpath build`: the static table, then the fast head of a registered model (when one exists or is named)."""
    from rtic.mlops import registry

    if source is not None and register is None:
        raise RticError("--store needs --register (the firms to sample)")
    if model_uri is None and register is None and not registry.has_champion(settings):
        return build_static_model(settings, force=force), None, None  # no model yet: the default encoder's table
    model = registry.open_model(model_uri, settings)  # a missing or damaged model is reported before any long work
    texts, corpus, sampled = None, "", None
    if register is not None:
        texts = sampled = sample_register(register, sample, source)
        corpus = f"random sample of {len(texts):,} firms from {Path(register).name}"
        # The model's training texts too: more texts give better token averages and map (measured on held-out
        # website text: scripts/bench_batch.py); sigma and the z table still come from the sample alone.
        extra = teacher_texts(model)
        texts, corpus = texts + extra, f"{corpus}, and the model's {len(extra):,} training texts and lead sentences"
    table = build_static_model(settings, force=force, model=model.classifier.encoder.model)
    head, path = ensure_head(model, settings, texts, corpus, force=force, measure_on=sampled)
    return table, head, path
