"""The shared Techstars evaluation set (../shared/data/techstars/companies.csv), loaded and embedded once.

Read at run time only, never copied into the project; scripts exit with status 2 when it is absent.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rtic.config import Settings
from rtic.embed.encoder import Encoder
from rtic.labels import LabelledFirms, read_labels
from rtic.taxonomy import Taxonomy

REPO = Path(__file__).resolve().parents[1]
_CANDIDATES = (REPO.parent / "shared" / "data" / "techstars" / "companies.csv", Path("/work/shared/data/techstars/companies.csv"))
DEFAULT_DATA = next((p for p in _CANDIDATES if p.exists()), _CANDIDATES[0])


def load_embedded(path: Path, taxonomy: Taxonomy, settings: Settings, limit: int | None = None) -> tuple[LabelledFirms, Encoder]:
    """Techstars as labelled firms, with every text embedded into the on-disk cache up front."""
    if not path.exists():
        print(f"shared data not found: {path}", file=sys.stderr)
        raise SystemExit(2)
    firms = read_labels(path, taxonomy)
    if limit:
        firms = LabelledFirms(firms.firm_ids[:limit], firms.texts[:limit], firms.Y[:limit], firms.sector_ids)
    print(f"{len(firms.texts)} Techstars firms; positives per sector: "
          + ", ".join(f"{s} {int(n)}" for s, n in zip(firms.sector_ids, firms.Y.sum(0))))
    encoder = Encoder(cache_path=settings.resolved_embedding_cache, use_bf16=settings.use_bf16)
    start = time.perf_counter()
    encoder.encode(firms.texts)
    print(f"embedded {encoder.texts_embedded} new texts in {time.perf_counter() - start:.0f}s (rest from cache)", flush=True)
    return firms, encoder
