"""Why does a firm carry its labels? Probabilities against thresholds, provenance, and evidence.

Evidence for each assigned or near-miss sector comes from the same registered model that made the
labels: every sentence of the firm's text is scored on its own (the sentences that most support
the sector), the TF-IDF words and phrases of the text weighted by the sector's coefficients (where
the model has TF-IDF features), and the labelled training firms nearest to the firm in embedding
space, with their labels.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rtic.mlops import registry
from rtic.config import Settings
from rtic.embed.encoder import text_sha256
from rtic.errors import RticError
from rtic.text import FirmText, firm_text

NEAR_MARGIN = 0.1  # a sector within this much probability below its threshold is a near miss
MAX_SENTENCES = 300  # sentences scored per firm; long crawled text is cut here (and says so)
SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")


@dataclass
class Span:
    start: int
    end: int
    text: str
    probability: float


@dataclass
class SectorEvidence:
    sector_id: str
    probability: float
    threshold: float
    assigned: bool
    status: str  # "assigned" or "near miss"
    sentences: list[Span] = field(default_factory=list)
    terms: list[tuple[str, float]] = field(default_factory=list)
    neighbours: list[dict] = field(default_factory=list)


@dataclass
class Explanation:
    firm_id: str
    name: str
    model_name: str
    model_version: str
    taxonomy_version: str
    classified_at: str
    labels_source: str
    text_source: str
    text_sha256: str
    text_matches_labels: bool | None
    pages: list[dict]
    sectors: list[dict]
    evidence: list[SectorEvidence]
    training_data: dict
    warnings: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the sentences of a text, trimmed; blank pieces dropped."""
    spans = []
    for m in SENTENCE.finditer(text):
        start, end = m.start(), m.end()
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if len(text[start:end].split()) >= 3:  # fragments (menus, headings) carry no evidence
            spans.append((start, end))
    return spans


class ModelExplainer:
    """One registered model version, loaded once, with its training data for nearest neighbours."""

    def __init__(self, settings: Settings, model_uri: str):
        model = registry.open_model(model_uri, settings)
        self.ref, self.pyfunc = model.ref, model.pyfunc
        self.classifier = model.classifier
        self.meta = model.meta
        self.sector_ids = list(self.classifier.sector_ids)
        self.thresholds = dict(zip(self.sector_ids, map(float, self.classifier.thresholds_)))
        self.warnings: list[str] = []
        self._weights: dict[str, dict[str, float]] = {}
        self.training = {"labels_file": None, "labels_sha256": self.meta.get("labels_sha256"), "n_firms": 0}
        self._train_ids: list[str] = []
        self._train_sectors: list[str] = []
        self._train_emb = None
        if model.training_labels is not None:
            self._load_training(str(model.training_labels))

    def _load_training(self, labels_file: str | None) -> None:
        from rtic.labels import split_sectors
        from rtic.tables import read_table
        from rtic.embed.encoder import file_sha256

        self.training["labels_file"] = labels_file
        if not labels_file or not Path(labels_file).is_file():
            self.warnings.append(f"training labels {labels_file} not found: no nearest training firms")
            return
        if self.meta.get("labels_sha256") and file_sha256(Path(labels_file)) != self.meta["labels_sha256"]:
            self.warnings.append(f"training labels {labels_file} changed since the model was trained (sha256 differs): no nearest training firms")
            return
        df = read_table(labels_file, "training labels").fillna("")
        df = df[df["text"].astype(str).str.strip() != ""].drop_duplicates("firm_id")
        self._train_ids = df["firm_id"].astype(str).tolist()
        self._train_sectors = ["|".join(split_sectors(s)) for s in df["sectors"]]
        self._train_emb = self.classifier.encoder.encode(df["text"].astype(str).tolist())  # cached by text hash
        self.training["n_firms"] = len(df)

    def score(self, texts: list[str]) -> np.ndarray:
        """Probabilities (len(texts), n_sectors) from the registered pyfunc itself."""
        from rtic.contracts import probability_column

        if not texts:
            return np.zeros((0, len(self.sector_ids)))
        out = self.pyfunc.predict(pd.DataFrame({"text": texts}), params={"taxonomy_version": self.meta["taxonomy_version"]})
        return np.column_stack([out[probability_column(s)].to_numpy(float) for s in self.sector_ids])

    def sentence_scores(self, text: str) -> tuple[list[tuple[int, int]], np.ndarray]:
        spans = split_sentences(text)[:MAX_SENTENCES]
        return spans, self.score([text[a:b] for a, b in spans])

    def term_weights(self, sector_id: str) -> dict[str, float]:
        if sector_id not in self._weights:
            vocab = 0 if self.classifier.vectorizer_ is None else len(self.classifier.vectorizer_.vocabulary_)
            self._weights[sector_id] = dict(self.classifier.top_terms(sector_id, n=vocab)) if vocab else {}
        return self._weights[sector_id]

    def terms(self, text: str, sector_id: str, n: int = 8) -> list[tuple[str, float]]:
        """The firm's own words and phrases by TF-IDF value × the sector's coefficient."""
        weights = self.term_weights(sector_id)
        if not weights:
            return []
        vec = self.classifier.vectorizer_.transform([text])
        names = self.classifier.vectorizer_.get_feature_names_out()
        scored = [(str(names[j]), float(v) * weights[str(names[j])]) for j, v in zip(vec.indices, vec.data) if str(names[j]) in weights]
        return sorted(scored, key=lambda t: -t[1])[:n]

    def neighbours(self, text: str, k: int = 5) -> list[dict]:
        if self._train_emb is None or not len(self._train_ids):
            return []
        v = self.classifier.encoder.encode([text])[0]
        sims = self._train_emb @ v
        top = np.argsort(-sims)[:k]
        return [{"firm_id": self._train_ids[i], "similarity": round(float(sims[i]), 3), "sectors": self._train_sectors[i]} for i in top]

    def evidence(self, text: str, sectors: list[dict], n_sentences: int = 3) -> list[SectorEvidence]:
        """Evidence for the assigned and near-miss sectors among `sectors` (dicts from labels)."""
        wanted = [s for s in sectors if s["assigned"] or s["probability"] >= s["threshold"] - NEAR_MARGIN]
        if not wanted or not text.strip():
            return []
        spans, proba = self.sentence_scores(text)
        neighbours = self.neighbours(text)
        out = []
        for s in wanted:
            j = self.sector_ids.index(s["sector_id"]) if s["sector_id"] in self.sector_ids else None
            best = [] if j is None else sorted(range(len(spans)), key=lambda i: -proba[i, j])[:n_sentences]
            out.append(SectorEvidence(
                s["sector_id"], s["probability"], s["threshold"], s["assigned"], "assigned" if s["assigned"] else "near miss",
                sentences=[Span(spans[i][0], spans[i][1], text[spans[i][0]:spans[i][1]], round(float(proba[i, j]), 4)) for i in best],
                terms=self.terms(text, s["sector_id"]), neighbours=neighbours,
            ))
        return out


def read_firm_labels(labels: str | Path, firm_id: str) -> pd.DataFrame:
    """The firm's rows of a labels Parquet (read with a filter, so a 9M-row file costs little)."""
    import pyarrow.parquet as pq

    path = Path(labels)
    if not path.is_file():
        raise RticError(f"labels file not found: {path}")
    try:
        table = pq.read_table(path, filters=[("firm_id", "=", firm_id)])
    except Exception as exc:  # pyarrow's errors for a file that is not Parquet vary
        raise RticError(f"cannot read labels file {path}: {str(exc).splitlines()[0]}") from None
    return table.to_pandas()


def explain(
    firm_id: str,
    settings: Settings,
    labels: str | Path | None = None,
    register: str | Path | None = None,
    store: str | Path | None = None,
    model_uri: str | None = None,
    explainer: ModelExplainer | None = None,
) -> Explanation:
    """Explain one firm's labels. Without a labels file the firm's text is scored now by `model_uri` (default champion)."""
    if register is None and store is None:
        raise RticError("the firm's text is needed: give --register FILE (with a text column) or --store crawl.db")
    source: FirmText = firm_text(firm_id, register=register, store=store)
    warnings: list[str] = []
    rows = read_firm_labels(labels, firm_id) if labels is not None else None
    if rows is not None and rows.empty:
        raise RticError(f"firm {firm_id} is not in labels file {labels}")
    if rows is not None:
        first = rows.iloc[0]
        uri = model_uri or f"models:/{first['model_name']}/{first['model_version']}"
    else:
        uri = model_uri
    if explainer is None:
        explainer = ModelExplainer(settings, uri)
    warnings += explainer.warnings
    if not source.text.strip():
        where = " or ".join(str(p) for p in (register, store) if p is not None)
        warnings.append(f"no text for firm {firm_id} in {where}: no sentence or term evidence")
    if rows is None:
        if not source.text.strip():
            raise RticError(f"firm {firm_id} has no text in {register or store} and no --labels were given: nothing to explain")
        proba = explainer.score([source.text])[0]
        rows = pd.DataFrame({"sector_id": explainer.sector_ids, "probability": proba,
                             "assigned": [p >= explainer.thresholds[s] for s, p in zip(explainer.sector_ids, proba)]})
        meta = {"model_name": explainer.ref.name, "model_version": explainer.ref.version,
                "taxonomy_version": explainer.meta["taxonomy_version"], "classified_at": "now (no --labels given)", "text_sha256": text_sha256(source.text)}
        labels_source = "scored now"
    else:
        meta = rows.iloc[0][["model_name", "model_version", "taxonomy_version", "classified_at", "text_sha256"]].astype(str).to_dict()
        labels_source = str(labels)
        if str(meta["model_version"]) != explainer.ref.version:
            warnings.append(f"labels were made by version {meta['model_version']}, evidence comes from {explainer.ref.uri}")
    matches = None
    if source.text.strip():
        matches = text_sha256(source.text) == meta["text_sha256"]
        if not matches:
            warnings.append("the firm's text has changed since it was classified (text_sha256 differs): evidence is from today's text")
    sectors = [{"sector_id": str(r.sector_id), "probability": round(float(r.probability), 4),
                "threshold": round(explainer.thresholds.get(str(r.sector_id), float("nan")), 4), "assigned": bool(r.assigned)}
               for r in rows.sort_values("probability", ascending=False).itertuples()]
    return Explanation(
        firm_id=firm_id, name=source.name, model_name=str(meta["model_name"]), model_version=str(meta["model_version"]),
        taxonomy_version=str(meta["taxonomy_version"]), classified_at=str(meta["classified_at"]), labels_source=labels_source,
        text_source=source.source, text_sha256=text_sha256(source.text) if source.text else "", text_matches_labels=matches,
        pages=[{"url": p.url, "fetched_at": p.fetched_at, "kind": p.kind, "chars": len(p.text)} for p in source.pages],
        sectors=sectors, evidence=explainer.evidence(source.text, sectors), training_data=dict(explainer.training), warnings=warnings,
    )


def format_explanation(ex: Explanation) -> str:
    """The explanation as a terminal report."""
    lines = [f"firm {ex.firm_id}" + (f"  {ex.name}" if ex.name else ""),
             f"model {ex.model_name} version {ex.model_version}, taxonomy {ex.taxonomy_version}; labels from {ex.labels_source}, classified {ex.classified_at}",
             f"text from {ex.text_source or 'nowhere'}" + ("" if ex.text_matches_labels in (None, True) else " (changed since classification)")]
    for p in ex.pages:
        lines.append(f"  page {p['kind'] or '?':<9} {p['url']}  fetched {p['fetched_at']}  ({p['chars']} chars)")
    lines.append("\nsector                    probability  threshold  assigned")
    for s in ex.sectors:
        lines.append(f"  {s['sector_id']:<24}{s['probability']:>11.3f}{s['threshold']:>11.3f}  {'yes' if s['assigned'] else ''}")
    for ev in ex.evidence:
        lines.append(f"\n{ev.sector_id} ({ev.status}: {ev.probability:.3f} against {ev.threshold:.3f})")
        for span in ev.sentences:
            lines.append(f"  [{span.probability:.2f}] {span.text}")
        if ev.terms:
            lines.append("  terms: " + ", ".join(f"{t} ({w:.2f})" for t, w in ev.terms))
    if ex.evidence and ex.evidence[0].neighbours:
        lines.append(f"\nnearest labelled training firms ({ex.training_data.get('labels_file')}):")
        for nb in ex.evidence[0].neighbours:
            lines.append(f"  {nb['firm_id']:<20} similarity {nb['similarity']:.3f}  sectors: {nb['sectors'] or '(none)'}")
    for w in ex.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines)
