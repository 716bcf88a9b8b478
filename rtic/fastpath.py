"""The fast path: a cheap static-embedding pass over every firm, the transformer only near a threshold.

Static model (model2vec-style distillation, made here, never downloaded): every token of the bundled
all-MiniLM-L6-v2 vocabulary is run through the transformer once as `[CLS] token [SEP]`, mean-pooled like
the sentence model, and the vocabulary's mean vector is subtracted (the component every token shares).
A text's static embedding is the mean of its tokens' vectors — a table look-up, no transformer.

Head: a SectorClassifier (static embedding + TF-IDF features, the project's usual calibrated
per-sector logistic regressions) distilled from the registered model: it is fitted on the model's own
training texts (and their lead sentences) with the *registered model's* labels as targets, so it learns
to agree with the transformer rather than with the hand labels. It is built once per model version and
cached under models/static/.

Scoring: a firm whose static-head probability is within `margin` of that sector's threshold, for any
sector, is re-scored by the registered pyfunc (transformer); every other firm keeps the static labels.
Rows say which scorer made them (`scored_by`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from rtic.classifier import SectorClassifier, lead_snippet
from rtic.config import DEFAULT_SEED_LABELS, Settings
from rtic.encoder import WEIGHTS_SHA256, bundled_model_dir, verify_weights
from rtic.errors import RticError
from rtic.pyfunc_model import assigned_column, probability_column

STATIC_METHOD = "minilm-static-v1"  # change when the distillation recipe changes
DEFAULT_MARGIN = 0.1  # scripts/bench_batch.py prints agreement and speed for other margins
MAX_TOKENS = 8 * 254  # the transformer reads at most 8 windows of 254 tokens; read the same text


def static_dir(settings: Settings) -> Path:
    return settings.home / "static"


def static_model_path(settings: Settings) -> Path:
    return static_dir(settings) / f"{STATIC_METHOD}.npy"


def build_static_model(settings: Settings, force: bool = False, batch: int = 1024, progress: Callable[[str], None] = print) -> Path:
    """Distil the token table from the bundled MiniLM into models/static/ (offline; about a minute)."""
    path = static_model_path(settings)
    if path.exists() and not force:
        return path
    import torch
    from transformers import AutoModel, AutoTokenizer

    model_dir = bundled_model_dir()
    verify_weights(model_dir)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()
    vocab = len(tokenizer)
    table = np.zeros((vocab, model.config.hidden_size), dtype=np.float32)
    progress(f"distilling {vocab:,} token vectors from {model_dir.name} into {path} …")
    with torch.inference_mode():
        for start in range(0, vocab, batch):
            ids = torch.arange(start, min(start + batch, vocab))
            inputs = torch.stack([torch.full_like(ids, tokenizer.cls_token_id), ids, torch.full_like(ids, tokenizer.sep_token_id)], dim=1)
            hidden = model(input_ids=inputs, attention_mask=torch.ones_like(inputs)).last_hidden_state
            table[start : start + len(ids)] = hidden.mean(dim=1).numpy()  # the sentence model's mean pooling
    table -= table.mean(axis=0, keepdims=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npy")
    np.save(tmp, table)
    os.replace(tmp, path)
    meta = {"method": STATIC_METHOD, "source_weights_sha256": WEIGHTS_SHA256, "vocab": vocab, "dims": int(table.shape[1])}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    return path


class StaticEncoder:
    """Texts → L2-normalised mean of static token vectors (same tokenizer as the transformer)."""

    def __init__(self, table_path: str | Path):
        from tokenizers import Tokenizer

        self.table_path = Path(table_path)
        self.vectors = np.load(self.table_path)
        self.tokenizer = Tokenizer.from_file(str(bundled_model_dir() / "tokenizer.json"))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        # Key cached vectors by the table itself (already in memory), not by a second read of the file.
        digest = hashlib.sha256(np.ascontiguousarray(self.vectors).data).hexdigest()[:12]
        self.model_key = f"{STATIC_METHOD}|{digest}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = ["" if t is None else str(t) for t in texts]
        out = np.zeros((len(texts), self.vectors.shape[1]), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        for i, enc in enumerate(encodings):
            ids = enc.ids[:MAX_TOKENS]
            if ids:
                out[i] = self.vectors[ids].mean(axis=0)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def __getstate__(self):  # the table is reloaded from its file, never pickled into the head
        return {"table_path": str(self.table_path)}

    def __setstate__(self, state):
        self.__init__(state["table_path"])


def teacher_texts(ref, settings: Settings, progress: Callable[[str], None]) -> list[str]:
    """The registered model's training texts (from its MLflow run), or the bundled seed labels."""
    from mlflow import MlflowClient

    path = None
    try:
        client = MlflowClient()
        run_id = client.get_model_version(ref.name, ref.version).run_id
        path = Path(client.get_run(run_id).data.params.get("labels_file", ""))
    except Exception:  # noqa: BLE001 - a model outside the registry has no run to ask
        path = None
    if not path or not path.is_file():
        progress(f"fast path: the model's training labels are not on this machine; distilling on {DEFAULT_SEED_LABELS.name}")
        path = DEFAULT_SEED_LABELS
    texts = pd.read_csv(path, dtype=str, keep_default_na=False)["text"] if path.suffix.lower() == ".csv" else pd.read_parquet(path)["text"]
    texts = [t for t in texts.astype(str) if t.strip()]
    # Short texts matter (directory one-liners, sparse home pages): learn the teacher on lead sentences too.
    leads = [lead_snippet(t, k) for t in texts for k in (1, 2)]
    return list(dict.fromkeys(texts + [l for l in leads if l.strip()]))


class FastScorer:
    """Callable like the transformer scorer: DataFrame(firm_id, text) → wide predictions + `scored_by`."""

    def __init__(self, head: SectorClassifier, transformer: Callable[[pd.DataFrame], pd.DataFrame], margin: float, head_path: Path):
        self.head = head
        self.transformer = transformer
        self.margin = float(margin)
        self.head_path = head_path

    def identity(self) -> dict:
        return {"kind": "fast", "margin": self.margin, "head": self.head_path.name}

    @classmethod
    def for_model(cls, ref, model, settings: Settings, transformer, margin: float = DEFAULT_MARGIN, progress: Callable[[str], None] = print) -> "FastScorer":
        if not 0 <= margin <= 1:
            raise RticError(f"--fast-margin must be between 0 and 1, got {margin}")
        table = build_static_model(settings, progress=progress)
        encoder = StaticEncoder(table)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{ref.name}-v{ref.version}")
        head_path = static_dir(settings) / f"head-{safe}-{encoder.model_key.split('|')[1]}.joblib"
        import joblib

        if head_path.exists():
            head = joblib.load(head_path)
            head.encoder = encoder
        else:
            head = distil_head(model, encoder, teacher_texts(ref, settings, progress), progress)
            tmp = head_path.with_name(f".{head_path.name}.tmp")
            joblib.dump(head, tmp)
            os.replace(tmp, head_path)
        return cls(head, transformer, margin, head_path)

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.reset_index(drop=True)
        proba = self.head.predict_proba(frame["text"].tolist())
        thresholds = self.head.thresholds_
        out = pd.DataFrame({"firm_id": frame["firm_id"].astype(str)})
        for j, sector in enumerate(self.head.sector_ids):
            out[probability_column(sector)] = proba[:, j].astype(float)
            out[assigned_column(sector)] = proba[:, j] >= thresholds[j]
        out["scored_by"] = "static"
        near = (np.abs(proba - thresholds) < self.margin).any(axis=1)
        if near.any():
            rescored = self.transformer(frame[near]).reset_index(drop=True)
            out.loc[near, rescored.columns] = rescored.set_axis(out.index[near]).to_numpy()
        return out


def distil_head(model, encoder: StaticEncoder, texts: list[str], progress: Callable[[str], None]) -> SectorClassifier:
    """Fit the static head on `texts` with the registered model's labels as targets."""
    progress(f"fast path: labelling {len(texts):,} training texts with the registered model (the teacher) …")
    sector_ids = list((model.metadata.metadata or {}).get("sector_ids") or [])
    teacher = model.predict(pd.DataFrame({"text": texts}))
    Y = np.column_stack([teacher[assigned_column(s)].astype(bool).to_numpy() for s in sector_ids]).astype(int)
    progress(f"fast path: fitting the static head on {len(texts):,} texts …")
    head = SectorClassifier(sector_ids, encoder=encoder, features="embedding+tfidf", lead_sentences=())
    head.fit(texts, Y)
    return head
