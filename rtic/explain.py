"""Why does a firm carry its labels? Probabilities against thresholds, provenance, and evidence.

Evidence for each assigned or near-miss sector comes from the same registered model that made the
labels: every content sentence of the firm's text is scored on its own (the sentences that most
support the sector), the TF-IDF words and phrases of those sentences weighted by the sector's
coefficients (where the model has TF-IDF features), and the labelled training firms nearest to the
firm in embedding space, with their labels and the first words of their text.

Evidence is content: page titles, headings and menus (title-like lines) and legal or registration
lines ("Registered in England and Wales", "company number", "All rights reserved") are left out of
the sentences and terms, since they say nothing about what the firm does.
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
from rtic.firm_labels import exceptions_path, find_exception, read_firm_labels
from rtic.text import FirmText, firm_text

NEAR_MARGIN = 0.1  # a sector within this much probability below its threshold is a near miss
MAX_SENTENCES = 300  # sentences scored per firm; long crawled text is cut here (and says so)
SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")
# Legal, registration and site-furniture lines: true of almost every UK firm, evidence of no sector.
BOILERPLATE = re.compile(
    r"\bregistered\s+(?:in\s+(?:england|scotland|wales|northern\s+ireland)|office|address|company|number|no\b)"
    r"|\bcompany\s+(?:registration\s+)?(?:number|no\b)|\bregistration\s+(?:number|no\b)|\bvat\s+(?:registration\s+)?(?:number|no\b)"
    r"|\ball\s+rights\s+reserved|\bcopyright\b|©|\bprivacy\s+(?:policy|notice)|\bcookies?\b|\bterms\s+(?:and|&)\s+conditions",
    re.IGNORECASE)
MINOR_WORDS = frozenset("a an and & at by for from in of on or the to with".split())
TITLE_MAX_WORDS = 6  # a line this short without a full stop is a heading, title or menu entry
SNIPPET_WORDS = 15  # first words of a training firm's text shown beside it


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


def is_title_like(piece: str) -> bool:
    """A line that is not a sentence: no closing . ! or ?, and short or in Title Case ("Contact ChargeGrid Mobility")."""
    if piece.rstrip()[-1:] in (".", "!", "?"):
        return False
    words = re.findall(r"[^\W\d_][\w'’&-]*", piece)
    if len(words) <= TITLE_MAX_WORDS:
        return True
    significant = [w for w in words if w.lower() not in MINOR_WORDS]
    return sum(w[0].isupper() for w in significant) >= 0.7 * len(significant)


def is_content(piece: str) -> bool:
    """Whether a sentence can be evidence: at least three words, not a title-like line, not legal boilerplate."""
    return len(piece.split()) >= 3 and not is_title_like(piece) and not BOILERPLATE.search(piece)


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the content sentences of a text, trimmed (see `is_content`)."""
    spans = []
    for m in SENTENCE.finditer(text):
        start, end = m.start(), m.end()
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if is_content(text[start:end]):
            spans.append((start, end))
    return spans


def content_text(text: str) -> str:
    """The text's content sentences only, one a line: what the evidence terms are taken from."""
    return "\n".join(text[a:b] for a, b in split_sentences(text))


def snippet(text: str, n_words: int = SNIPPET_WORDS) -> str:
    words = str(text).split()
    return " ".join(words[:n_words]) + (" …" if len(words) > n_words else "")


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
        self._train_snippets: list[str] = []
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
        self._train_snippets = [snippet(t) for t in df["text"].astype(str)]
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
        """The words and phrases of the firm's content sentences by TF-IDF value × the sector's coefficient."""
        weights = self.term_weights(sector_id)
        content = content_text(text)
        if not weights or not content:
            return []
        vec = self.classifier.vectorizer_.transform([content])
        names = self.classifier.vectorizer_.get_feature_names_out()
        scored = [(str(names[j]), float(v) * weights[str(names[j])]) for j, v in zip(vec.indices, vec.data) if str(names[j]) in weights]
        return sorted(scored, key=lambda t: -t[1])[:n]

    def neighbours(self, text: str, k: int = 5) -> list[dict]:
        if self._train_emb is None or not len(self._train_ids):
            return []
        v = self.classifier.encoder.encode([text])[0]
        sims = self._train_emb @ v
        top = np.argsort(-sims)[:k]
        return [{"firm_id": self._train_ids[i], "similarity": round(float(sims[i]), 3), "sectors": self._train_sectors[i],
                 "text": self._train_snippets[i]} for i in top]

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


def not_in_labels(labels: str | Path, firm_id: str) -> RticError:
    """Why a firm has no rows in a labels file: the reason it was not classified, or that it is in neither file."""
    found = find_exception(labels, firm_id)
    if found is None:
        return RticError(f"firm {firm_id} is not in labels file {labels} nor in its exceptions file {exceptions_path(labels)}:"
                         " was it in the register that was classified?")
    detail = f" ({found['detail']})" if found["detail"] and found["detail"] != found["reason"] else ""
    return RticError(f"firm {firm_id} was not classified: {found['reason']}{detail} (listed in {found['file']}; not in labels file {labels})")


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
        raise not_in_labels(labels, firm_id)
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
            if nb.get("text"):
                lines.append(f"  {'':<20} {nb['text']}")
    for w in ex.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines)
