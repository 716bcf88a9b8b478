"""Supervised end-to-end fine-tuning of the bundled MiniLM for multi-label sector classification.

The encoder (all-MiniLM-L6-v2, mean pooling, loaded offline from the model package with its weights'
sha256 checked) gets one linear layer with a logit per sector on top of the pooled output, and the
whole stack is trained with binary cross-entropy (AdamW, linear warm-up then decay, a few epochs).

Scores of texts the encoder was fine-tuned on are over-confident, so calibration (a Platt sigmoid per
sector) and decision thresholds are never chosen on them: `fit` holds out an inner slice of its
training texts (stratified over sectors), fine-tunes on the rest, and calibrates and picks thresholds on
the held-out slice only. The same slice recalibrates the "combination" — the fine-tuned encoder's
embedding fed to the project's SectorClassifier (`tuned_sector_classifier`).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from rtic.model.classifier import SectorClassifier, fit_calibration
from rtic.embed.encoder import MINILM, cpu_has_bf16, verify_model_files
from rtic.model.evaluation import stratified_folds


@dataclass(frozen=True)
class FineTuneConfig:
    epochs: int = 3
    lr: float = 5e-5  # encoder
    head_lr: float = 2e-3  # the new sector layer starts from scratch, so it learns faster
    batch_size: int = 32
    max_seq_length: int = 128  # Techstars descriptions are ~100 characters; websites are chunked elsewhere
    warmup: float = 0.1  # share of steps with a rising learning rate
    holdout: float = 0.15  # inner slice for calibration and thresholds, never fine-tuned on
    threads: int = 2
    bf16: bool | None = None  # None: bf16 autocast where the CPU has native bf16
    min_positives: int = 5  # fewer positives in the held-out slice: fixed threshold 0.5
    seed: int = 0


def load_base_model(max_seq_length: int = 128, model_dir=None):
    """The bundled MiniLM without its final L2-normalisation (the sector layer sees the mean-pooled output)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    model_dir = model_dir or MINILM.model_dir()
    verify_model_files(model_dir)
    full = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    model = SentenceTransformer(modules=[full[0], full[1]], device="cpu")  # Transformer + Pooling
    model.max_seq_length = max_seq_length
    return model


class FineTunedClassifier:
    """fit(texts, Y) / predict_proba(texts) / predict(texts) / embed(texts), like SectorClassifier."""

    def __init__(self, sector_ids: Sequence[str], config: FineTuneConfig = FineTuneConfig(), progress: Callable[[str], None] = print):
        self.sector_ids = list(sector_ids)
        self.config = config
        self.progress = progress

    # -- torch helpers ----------------------------------------------------------------------
    def _autocast(self):
        import contextlib

        import torch

        use = cpu_has_bf16() if self.config.bf16 is None else self.config.bf16
        return torch.autocast("cpu", dtype=torch.bfloat16) if use else contextlib.nullcontext()

    def _pooled(self, texts: Sequence[str]):
        features = (self.model_.preprocess if hasattr(self.model_, "preprocess") else self.model_.tokenize)(list(texts))
        with self._autocast():
            return self.model_(features)["sentence_embedding"].float()

    def _batches(self, texts: Sequence[str], fn, batch_size: int = 128) -> np.ndarray:
        import torch

        self.model_.eval()
        out = []
        with torch.inference_mode():
            # Similar lengths together: less padding.
            order = np.argsort([len(t) for t in texts], kind="stable")
            for start in range(0, len(order), batch_size):
                part = order[start : start + batch_size]
                out.append((part, fn(self._pooled([texts[i] for i in part])).numpy()))
        result = np.zeros((len(texts), out[0][1].shape[1]) if out else (0, 0), dtype=np.float32)
        for part, values in out:
            result[part] = values
        return result

    # -- estimator API ------------------------------------------------------------------------
    def fit(self, texts: Sequence[str], Y: np.ndarray) -> "FineTunedClassifier":
        cfg = self.config
        texts = [str(t) for t in texts]
        Y = np.asarray(Y, dtype=int)
        if Y.shape != (len(texts), len(self.sector_ids)):
            raise ValueError(f"Y must have shape ({len(texts)}, {len(self.sector_ids)})")
        inner = stratified_folds(Y, max(2, round(1 / cfg.holdout)), seed=cfg.seed)
        held, tune = np.flatnonzero(inner == 0), np.flatnonzero(inner != 0)
        self.held_out_ = held
        start = time.perf_counter()
        self._train([texts[i] for i in tune], Y[tune])
        self.fit_seconds_ = time.perf_counter() - start
        self.calibrate([texts[i] for i in held], Y[held])
        return self

    def _train(self, texts: list[str], Y: np.ndarray) -> None:
        import torch

        cfg = self.config
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        self.model_ = load_base_model(cfg.max_seq_length)
        dim = self.model_.get_embedding_dimension() if hasattr(self.model_, "get_embedding_dimension") else self.model_.get_sentence_embedding_dimension()
        # The 30k-row word-embedding table stays as it is: updating it costs a step's time and helps little.
        self.model_[0].auto_model.embeddings.word_embeddings.weight.requires_grad_(False)
        self.head_ = torch.nn.Linear(dim, len(self.sector_ids))
        torch.nn.init.zeros_(self.head_.weight)
        # Balance positives per sector, softened (sqrt) so that rare sectors do not dominate the loss.
        pos = Y.sum(0).clip(min=1)
        pos_weight = torch.tensor(np.sqrt((len(Y) - pos) / pos).clip(1.0, 20.0), dtype=torch.float32)
        with torch.no_grad():  # start each sector at its base rate
            self.head_.bias.copy_(torch.tensor(np.log(pos / np.maximum(len(Y) - pos, 1)), dtype=torch.float32))
        loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        optimiser = torch.optim.AdamW([
            {"params": [p for p in self.model_.parameters() if p.requires_grad], "lr": cfg.lr},
            {"params": self.head_.parameters(), "lr": cfg.head_lr},
        ], weight_decay=0.01)
        steps_per_epoch = math.ceil(len(texts) / cfg.batch_size)
        total = steps_per_epoch * cfg.epochs
        warm = max(1, int(cfg.warmup * total))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))
        target = torch.tensor(Y, dtype=torch.float32)
        step = 0
        for epoch in range(cfg.epochs):
            self.model_.train()
            batches = length_batches([len(t) for t in texts], cfg.batch_size, rng)
            running, started = 0.0, time.perf_counter()
            for b, part in enumerate(batches):
                logits = self.head_(self._pooled([texts[i] for i in part]))
                loss = loss_fn(logits, target[part])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(list(self.model_.parameters()) + list(self.head_.parameters()), 1.0)
                optimiser.step()
                schedule.step()
                optimiser.zero_grad()
                running += float(loss.detach())
                step += 1
                if (b + 1) % 20 == 0 or b + 1 == steps_per_epoch:
                    rate = (b + 1) / (time.perf_counter() - started)
                    self.progress(f"    epoch {epoch + 1}/{cfg.epochs} step {b + 1}/{steps_per_epoch} loss {running / (b + 1):.4f} "
                                  f"({rate:.2f} steps/s, epoch ETA {(steps_per_epoch - b - 1) / rate:.0f}s)")
        self.model_.eval()

    def calibrate(self, texts: Sequence[str], Y: np.ndarray) -> None:
        """Platt sigmoid and F1 threshold per sector from texts the encoder was not fine-tuned on."""
        logits = self.decision_function(texts)
        self.calibrators_, self.thresholds_ = fit_calibration(logits, np.asarray(Y, dtype=int), self.config.min_positives)

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        return self._batches([str(t) for t in texts], self.head_)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        logits = self.decision_function(texts)
        return np.column_stack([cal(logits[:, j]) for j, cal in enumerate(self.calibrators_)])

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.predict_proba(texts) >= self.thresholds_

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised fine-tuned embeddings (what rtic.embed.encoder.Encoder returns for the frozen model)."""
        import torch

        return self._batches([str(t) for t in texts], lambda v: torch.nn.functional.normalize(v, dim=1))

    def as_encoder(self) -> "TunedEncoder":
        return TunedEncoder(self)


def length_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator, pool: int = 50) -> list[np.ndarray]:
    """Shuffled batches of similar-length texts (less padding, ~2.5x faster on Techstars): shuffle, sort
    each run of `pool` batches by length, cut into batches, shuffle the batch order."""
    order = rng.permutation(len(lengths))
    lengths = np.asarray(lengths)
    batches = []
    for start in range(0, len(order), batch_size * pool):
        chunk = order[start : start + batch_size * pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


class TunedEncoder:
    """`encode(texts)` over a fine-tuned model, memoised in memory (a SectorClassifier embeds each text once per call)."""

    def __init__(self, tuned: FineTunedClassifier):
        self.tuned = tuned
        self._memo: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = [str(t) for t in texts]
        missing = list(dict.fromkeys(t for t in texts if t not in self._memo))
        if missing:
            self._memo.update(zip(missing, self.tuned.embed(missing)))
        return np.stack([self._memo[t] for t in texts]) if texts else np.zeros((0, 384), dtype=np.float32)


def tuned_sector_classifier(tuned: FineTunedClassifier, texts: Sequence[str], Y: np.ndarray, **kwargs) -> SectorClassifier:
    """The project's SectorClassifier on the fine-tuned embedding, fitted on the texts the encoder was tuned on
    and recalibrated (Platt + thresholds) on the tuned model's held-out slice, which neither has seen."""
    texts, Y = [str(t) for t in texts], np.asarray(Y, dtype=int)
    held = np.zeros(len(texts), dtype=bool)
    held[tuned.held_out_] = True
    clf = SectorClassifier(tuned.sector_ids, encoder=tuned.as_encoder(), **kwargs)
    clf.fit([t for t, h in zip(texts, held) if not h], Y[~held])
    scores = clf.decision_function([t for t, h in zip(texts, held) if h])
    clf.calibrators_, clf.thresholds_ = fit_calibration(scores, Y[held], tuned.config.min_positives)
    return clf
