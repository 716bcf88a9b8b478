"""New sectors from a few seed firms: extend the taxonomy (new version) and the labels in one step, and
the few-shot sampling used to measure how many seeds a sector needs."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from rtic.config import DEFAULT_TAXONOMY
from rtic.errors import RticError
from rtic.labels import split_sectors
from rtic.tables import read_table, require_columns, write_atomically
from rtic.taxonomy import parse_taxonomy

RECOMMENDED_SEEDS = 8
ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


def bump_version(version: str) -> str:
    """'2026.11.1' -> '2026.11.2'; a version without a trailing number gets '.1'."""
    match = re.search(r"(\d+)$", version)
    return version[: match.start()] + str(int(match.group(1)) + 1) if match else f"{version}.1"


# With fewer firms than this in a sector, --description-prior --features embedding scored best (README, Techstars k = 8-32).
FEW_SEEDS = 64


@dataclass
class AddSectorResult:
    taxonomy_path: Path
    labels_path: Path
    version: str
    seeds_added: int
    seeds_merged: int
    warnings: list[str] = field(default_factory=list)

    @property
    def train_command(self) -> str:
        """The next command. Below FEW_SEEDS firms in the sector, the flags the README measured as best for few seeds."""
        flags = " --description-prior --features embedding" if self.seeds_added + self.seeds_merged < FEW_SEEDS else ""
        return f"rtic train --labels {self.labels_path} --taxonomy {self.taxonomy_path}{flags}"

    @property
    def message(self) -> str:
        return (f"taxonomy version {self.version} written to {self.taxonomy_path}; {self.seeds_added} seed firm(s) added and "
                f"{self.seeds_merged} existing firm(s) given the sector in {self.labels_path}. Next: {self.train_command}")


def add_sector(taxonomy_path, out, sector_id: str, name: str, description: str, seeds_path, labels_path, labels_out=None,
               expected_share: float | None = None, include=(), version: str | None = None) -> AddSectorResult:
    """Append a sector to a taxonomy (written to `out` with a new version) and label its seed firms."""
    source = Path(taxonomy_path) if taxonomy_path else DEFAULT_TAXONOMY
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RticError(f"taxonomy file not found: {source}") from None
    old = parse_taxonomy(data, str(source))
    if not ID_PATTERN.match(sector_id):
        raise RticError(f"sector id '{sector_id}' must be lower-case letters, digits and underscores, starting with a letter")
    if sector_id in {s.id for s in old.sectors + old.verticals}:
        raise RticError(f"taxonomy {source} already has a sector '{sector_id}'")
    entry = {"id": sector_id, "name": name, "description": description}
    if expected_share is not None:
        entry["expected_share"] = expected_share
    if include:
        entry["include"] = list(include)
    data["sectors"] = list(data["sectors"]) + [entry]
    data["version"] = version or bump_version(old.version)
    if data["version"] == old.version:
        raise RticError(f"the new taxonomy needs a version other than {old.version}")
    new = parse_taxonomy(data, "new taxonomy")  # validates the new entry (empty description, share range …)

    seeds = read_table(seeds_path, "seed firms file").fillna("")
    require_columns(seeds, ["firm_id", "text"], seeds_path, "seed firms file")
    seeds["firm_id"] = seeds["firm_id"].astype(str).str.strip()
    seeds = seeds[(seeds["firm_id"] != "") & (seeds["text"].astype(str).str.strip() != "")].drop_duplicates("firm_id")
    if seeds.empty:
        raise RticError(f"seed firms file {seeds_path} has no firm with an id and text")
    warnings = []
    if len(seeds) < RECOMMENDED_SEEDS:
        warnings.append(f"{len(seeds)} seed firm(s) for '{sector_id}'; at least {RECOMMENDED_SEEDS} are recommended "
                        f"(fewer than 5 and the sector gets no threshold tuning)")
    labels = read_table(labels_path, "labels file").fillna("")
    require_columns(labels, ["firm_id", "text", "sectors"], labels_path, "labels file")
    labels["firm_id"] = labels["firm_id"].astype(str).str.strip()
    known = dict(zip(labels["firm_id"], labels.index))
    merged = 0
    new_rows = []
    for row in seeds.to_dict("records"):
        if row["firm_id"] in known:
            i = known[row["firm_id"]]
            labels.at[i, "sectors"] = "|".join(dict.fromkeys(split_sectors(labels.at[i, "sectors"]) + [sector_id]))
            merged += 1
        else:
            new_rows.append({"firm_id": row["firm_id"], "text": row["text"], "sectors": sector_id})
    if "label_source" in labels.columns:
        for r in new_rows:
            r["label_source"] = f"seed:{sector_id}"
    labels = pd.concat([labels, pd.DataFrame(new_rows)], ignore_index=True).fillna("")

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(append_sector_text(source.read_text(encoding="utf-8"), entry, data), encoding="utf-8")
    labels_out = Path(labels_out or labels_path)
    write_atomically(labels, labels_out)
    return AddSectorResult(out, labels_out, new.version, len(new_rows), merged, warnings)


def append_sector_text(text: str, entry: dict, data: dict) -> str:
    """The taxonomy file's own text with `entry` appended to its `sectors:` list and the version line
    replaced, so that its comments and layout survive. Falls back to a plain dump (comments lost) only
    when the file's layout is one this edit cannot follow (e.g. a flow-style list); the result is
    checked to load as exactly `data` either way."""
    lines = text.splitlines(keepends=True)
    top = [i for i, line in enumerate(lines) if re.match(r"[A-Za-z_][\w-]*\s*:", line)]
    start = next((i for i in top if re.match(r"sectors\s*:\s*(#.*)?$", lines[i].rstrip())), None)
    version_at = next((i for i in top if lines[i].startswith("version")), None)
    if start is not None and version_at is not None:
        end = next((i for i in top if i > start), len(lines))
        while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
            end -= 1  # blank lines and comments before the next key belong to that key
        item = next((line for line in lines[start + 1 : end] if line.lstrip().startswith("- ")), "  - ")
        indent = item[: len(item) - len(item.lstrip())]
        block = "".join(indent + line for line in yaml.safe_dump([entry], sort_keys=False, allow_unicode=True, width=100).splitlines(keepends=True))
        if not lines[end - 1].endswith("\n"):
            lines[end - 1] += "\n"
        blank = "\n" if any(not line.strip() for line in lines[start + 1 : end]) else ""  # keep blank lines between sectors
        lines[version_at] = f"version: {json.dumps(data['version'])}\n"
        edited = "".join(lines[:end] + [blank + block] + lines[end:])
        if yaml.safe_load(edited) == data:
            return edited
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def sample_few_shot(Y: np.ndarray, candidates: np.ndarray, k: int, n_none: int, seed: int) -> np.ndarray:
    """Row indices (from `candidates`) giving every sector up to k positives, plus n_none rows in no sector.

    Mimics a data scientist who has k seed firms per sector and a handful of clear negatives. Sectors
    are filled rarest first so that multi-label firms do not starve the rare ones.
    """
    rng = np.random.default_rng(seed)
    Y = np.asarray(Y, dtype=int)
    chosen: list[int] = []
    have = np.zeros(Y.shape[1], dtype=int)
    for j in np.argsort(Y[candidates].sum(axis=0)):
        pool = [i for i in rng.permutation(candidates[Y[candidates, j] == 1]) if i not in chosen]
        take = pool[: max(k - have[j], 0)]
        chosen += take
        for i in take:
            have += Y[i]
    none = candidates[Y[candidates].sum(axis=1) == 0]
    chosen += list(rng.permutation(none)[:n_none])
    return np.array(sorted(set(chosen)))


def description_rows(taxonomy) -> tuple[list[str], np.ndarray]:
    """Each sector's description and its key phrases as extra positive examples."""
    texts, rows = [], []
    for j, s in enumerate(taxonomy.sectors):
        for text in [s.description, f"{s.name}: " + ", ".join(s.include)] if s.include else [s.description]:
            texts.append(text)
            rows.append(np.eye(len(taxonomy.sectors), dtype=int)[j])
    return texts, np.array(rows)
