"""How noisy are the Techstars labels? An estimate of the F1 ceiling that label noise puts on any text classifier.

Techstars' `sectors` column is a mechanical mapping of the directory's self-assigned `source_tags`. This script
1. recovers that mapping from the file itself (a tag maps to the sectors every firm carrying it has) and checks
   that it reproduces every row's `sectors`;
2. applies stated evidence rules (one regular expression per sector, below) to the description: a firm whose
   text matches "names" the sector. Per sector it counts labelled firms whose text names it, labelled firms
   whose text names it nowhere (silent positives: the label comes from a tag the text does not support, e.g.
   "Internet of Things" -> smart_cities_mobility for a firm making smart-home sensors), and unlabelled firms
   whose text names it (named negatives: e.g. a payments start-up that tagged itself "Mobile" only);
3. bounds what a classifier that labels firms by what their text says can score against these labels:
   - pessimistic: it finds exactly the named firms (TP = named positives, FN = silent positives, FP = named
     negatives) -- the rule's own F1;
   - optimistic: it also finds every silent positive (FN = 0) but still "errs" on the named negatives, since
     their text says the sector and the label does not: F1 = 2P / (2P + named negatives);
4. counts near-duplicate descriptions (cosine >= --dup-cosine between MiniLM embeddings, from the embedding
   cache) whose sector sets differ: label disagreements no text model can resolve.

The rules are keyword evidence, not an annotator: they miss paraphrases (inflating silent positives) and fire
on incidental words (inflating named negatives), so read the bounds as a rough band, not a measurement.
Reads ../shared/data at run time (exit 2 when absent).

Usage:  .venv/bin/python scripts/label_noise_techstars.py [--data PATH] [--dup-cosine 0.95] [--examples 3]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from rtic.config import Settings
from rtic.taxonomy import load_taxonomy
from techstars import DEFAULT_DATA, load_embedded

MIN_SUPPORT = 50
# Evidence rules: case-insensitive phrases, plus case-sensitive acronyms (so "AI" is not "ai" inside a word).
RULES = {
    "ai_data": (r"artificial intelligence|machine[- ]learning|deep[- ]learning|neural net|computer vision|natural language"
                r"|large language model|generative ai|data science|predictive analytics|big data|data analytics|analytics platform",
                r"\b(AI|NLP|LLMs?|ML)\b"),
    "clean_growth": (r"carbon|climate|renewable|solar|wind (power|energy|turbine|farm)|net[- ]zero|decarboni[sz]|emission"
                     r"|clean ?(energy|tech)|energy (storage|efficien)|batter(y|ies)|hydrogen|recycl|circular economy|heat pump"
                     r"|greenhouse|sustainable energy|waste", None),
    "smart_cities_mobility": (r"mobility|transport|traffic|parking|electric vehicle|autonomous (vehicle|driving|car)|ride[- ]?(shar|hail)"
                              r"|car[- ]?shar|scooter|smart cit|internet of things|connected (car|vehicle|device)|fleet|commut|transit",
                              r"\b(IoT|EVs?)\b"),
    "ageing_society": (r"health|patient|clinic|medical|elderly|older adult|senior|ageing|aging|care home|caregiver|carer|telemedicine"
                       r"|wellbeing|well-being|wellness|women's health|fertility|menopause|pregnan|physiotherap|therap|hospital|doctor",
                       None),
    "advanced_manufacturing": (r"manufactur|3d print|additive|robot|drone|industrial|factory|factories|automation|nanotech|semiconductor"
                               r"|machining|materials", r"\bCNC\b"),
    "fintech": (r"fintech|payment|banking|\bbanks?\b|lending|\bloans?\b|credit|insurance|insurtech|invest|wealth|trading|crypto"
                r"|blockchain|bitcoin|\bdefi\b|wallet|financ|accounting|mortgage|money", None),
    "cybersecurity": (r"cyber|security|encrypt|threat|malware|phishing|authenticat|zero[- ]trust|penetration test|vulnerabilit"
                      r"|ransomware|fraud", None),
    "life_sciences": (r"biotech|drug|therapeutic|genom|antibod|pharma|clinical trial|oncolog|cancer|molecul|protein|cell therapy"
                      r"|gene therapy|diagnostic", None),
    "space": (r"\bspace (tech|industry|economy|station|debris|launch|situational)|outer space|in space|satellite|orbit|spacecraft"
              r"|launch vehicle|rocket|earth observation|aerospace|lunar|astronaut", None),
}


def names_sector(texts: pd.Series, sector: str) -> np.ndarray:
    phrases, acronyms = (re.sub(r"\((?!\?)", "(?:", p) if p else p for p in RULES[sector])  # groups only group
    hit = texts.str.contains(phrases, flags=re.IGNORECASE, regex=True)
    if acronyms:
        hit |= texts.str.contains(acronyms, regex=True)
    return hit.to_numpy()


def tag_mapping(frame: pd.DataFrame) -> dict[str, set[str]]:
    """Each tag -> the sectors that every firm carrying it has (the mechanical mapping, recovered)."""
    tags = frame["source_tags"].str.split("|")
    sectors = frame["sectors"].apply(lambda s: {x for x in s.split("|") if x})
    mapping = {}
    for tag in sorted({t for ts in tags for t in ts if t}):
        carrying = sectors[tags.apply(lambda ts, tag=tag: tag in ts)]
        mapping[tag] = set.intersection(*carrying) if len(carrying) else set()
    rebuilt = tags.apply(lambda ts: set().union(*(mapping.get(t, set()) for t in ts)))
    mismatched = int((rebuilt != sectors).sum())
    print(f"tag -> sector mapping recovered from the file: {sum(bool(v) for v in mapping.values())} of {len(mapping)} tags map to "
          f"a sector; it reproduces the `sectors` of {len(frame) - mismatched} of {len(frame)} firms")
    for tag, mapped in sorted(mapping.items(), key=lambda kv: (sorted(kv[1]), kv[0])):
        if mapped:
            print(f"  {tag!r} -> {', '.join(sorted(mapped))}")
    return mapping


def f1(tp: float, fp: float, fn: float) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--dup-cosine", type=float, default=0.95, help="near-duplicate descriptions: cosine at least this (default 0.95)")
    parser.add_argument("--examples", type=int, default=2, help="example descriptions to print per sector and kind (default 2)")
    args = parser.parse_args()
    taxonomy = load_taxonomy()
    firms, encoder = load_embedded(args.data, taxonomy, Settings.from_env())
    frame = pd.read_csv(args.data, dtype=str, keep_default_na=False)
    frame = frame.set_index("firm_id").loc[firms.firm_ids].reset_index()  # the rows read_labels kept, in its order
    mapping = tag_mapping(frame)
    texts = frame["text"]
    tags = frame["source_tags"].str.split("|")
    rows = []
    for j, sector in enumerate(firms.sector_ids):
        labelled, named = firms.Y[:, j].astype(bool), names_sector(texts, sector)
        pos_named, silent, neg_named = int((labelled & named).sum()), int((labelled & ~named).sum()), int((~labelled & named).sum())
        support = int(labelled.sum())
        rows.append({"sector_id": sector, "support": support, "named_positives": pos_named, "silent_positives": silent,
                     "silent_share": silent / support if support else np.nan, "named_negatives": neg_named,
                     "named_negatives_in_no_sector": int((~labelled & named & (firms.Y.sum(1) == 0)).sum()),
                     "ceiling_pessimistic": f1(pos_named, neg_named, silent), "ceiling_optimistic": f1(support, neg_named, 0)})
        for kind, mask in (("silent positive", labelled & ~named), ("named negative", ~labelled & named)):
            for i in np.flatnonzero(mask)[: args.examples]:
                print(f"  {sector} {kind}: [{frame['source_tags'][i]}] {texts[i][:140]}")
    print("\nper mapped tag: firms carrying it, and the share whose text names none of the tag's sectors")
    for tag, mapped in sorted(mapping.items(), key=lambda kv: (sorted(kv[1]), kv[0])):
        carrying = tags.apply(lambda ts, tag=tag: tag in ts).to_numpy()
        if mapped and carrying.sum() >= 10:
            named_any = np.logical_or.reduce([names_sector(texts, s) for s in mapped])
            print(f"  {tag!r} -> {', '.join(sorted(mapped))}: {int(carrying.sum())} firms, {1 - named_any[carrying].mean():.0%} silent")
    table = pd.DataFrame(rows).set_index("sector_id")
    big = table["support"] >= MIN_SUPPORT
    print(f"\nper sector, against the stated evidence rules ({len(firms.texts)} firms)")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"\nmacro over the {int(big.sum())} sectors with >= {MIN_SUPPORT} examples: ceiling band "
          f"{table.loc[big, 'ceiling_pessimistic'].mean():.3f} (rule F1: silent positives missed) to "
          f"{table.loc[big, 'ceiling_optimistic'].mean():.3f} (every silent positive found, named negatives still count against)")

    emb = encoder.encode(firms.texts)
    keys = ["|".join(s for s, y in zip(firms.sector_ids, row) if y) for row in firms.Y]
    pairs = conflicts = 0
    for start in range(0, len(emb), 1024):
        sims = emb[start : start + 1024] @ emb.T
        for a, b in zip(*np.nonzero(sims >= args.dup_cosine)):
            a += start
            if a < b:
                pairs += 1
                conflicts += keys[a] != keys[b]
    print(f"\nnear-duplicate descriptions (cosine >= {args.dup_cosine}): {pairs} pairs, {conflicts} with different sector sets "
          f"({conflicts / pairs:.0%})" if pairs else f"\nno near-duplicate descriptions at cosine >= {args.dup_cosine}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
