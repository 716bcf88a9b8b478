"""The sector taxonomy: a versioned YAML file of sectors and their verticals."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rtic.config import DEFAULT_TAXONOMY
from rtic.errors import RticError


# Sector ids name files (cluster maps), columns and URLs: lower-case slugs only, with ".", "_" or "-" between
# letters and digits, so no id can hold a path separator, "..", a leading dot or dash, spaces or markup.
SECTOR_ID = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
MAX_SECTOR_ID = 64


def sector_id_problem(sector_id: str) -> str | None:
    """Why a sector id is not a safe slug, or None."""
    if len(sector_id) > MAX_SECTOR_ID:
        return f"sector id {sector_id[:40]!r}… is longer than {MAX_SECTOR_ID} characters"
    if not SECTOR_ID.fullmatch(sector_id):
        return (f"sector id {sector_id!r} is not a safe id: use lower-case letters and digits, "
                "with '.', '_' or '-' only between them")
    return None


@dataclass(frozen=True)
class Sector:
    id: str
    name: str
    description: str
    parent: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    expected_share: float | None = None


@dataclass(frozen=True)
class Taxonomy:
    version: str
    sectors: tuple[Sector, ...]  # the top-level sectors models are trained on
    verticals: tuple[Sector, ...] = field(default=())
    name: str = ""

    @property
    def sector_ids(self) -> list[str]:
        return [s.id for s in self.sectors]

    def sector(self, sector_id: str) -> Sector:
        for s in self.sectors + self.verticals:
            if s.id == sector_id:
                return s
        raise RticError(f"unknown sector '{sector_id}' (known: {', '.join(self.sector_ids)})")

    def verticals_of(self, sector_id: str) -> list[Sector]:
        return [v for v in self.verticals if v.parent == sector_id]


# The keys a taxonomy may have; anything else is a typo or, in a one-line {…} entry, the tail of a value cut at
# an unquoted comma ("description: NLP, speech and …" parses as description "NLP" plus a key "speech and …").
TOP_KEYS = ("version", "name", "sectors", "verticals")
SECTOR_KEYS = ("id", "name", "description", "parent", "include", "exclude", "expected_share")
TEXT_KEYS = ("id", "name", "description", "parent")
PHRASE_KEYS = ("include", "exclude")


def _shown(key: object) -> str:
    text = str(key)
    return repr(text if len(text) <= 40 else text[:40] + "…")


def _unknown_keys(mapping: dict, allowed: tuple[str, ...], where: str) -> list[str]:
    unknown = [k for k in mapping if k not in allowed]
    if not unknown:
        return []
    hint = " (in a one-line {…} entry, quote text that has a comma)" if any(mapping[k] is None for k in unknown) else ""
    return [f"{where}: unknown key(s) {', '.join(_shown(k) for k in unknown)}{hint}; allowed: {', '.join(allowed)}"]


def _entry_problems(entry: dict, where: str) -> list[str]:
    """Unknown keys and values of the wrong type in one sector or vertical entry."""
    problems = _unknown_keys(entry, SECTOR_KEYS, where)
    for key in TEXT_KEYS:
        if entry.get(key) is not None and not isinstance(entry[key], str):
            problems.append(f"{where}: {key} must be text, got {type(entry[key]).__name__} {_shown(entry[key])} (quote it)")
    for key in PHRASE_KEYS:
        value = entry.get(key)
        if value is None:
            continue
        if not isinstance(value, list):
            problems.append(f"{where}: {key} must be a list of phrases, got {type(value).__name__}")
        elif bad := [p for p in value if not isinstance(p, str)]:
            problems.append(f"{where}: {key} phrases must be text, got {', '.join(_shown(p) for p in bad[:3])} (quote them)")
    share = entry.get("expected_share")
    if share is not None and (isinstance(share, bool) or not isinstance(share, (int, float))):
        problems.append(f"{where}: expected_share must be a number, got {_shown(share)}")
    return problems


def _sector_from(entry: dict) -> Sector:
    share = entry.get("expected_share")
    return Sector(
        id=str(entry.get("id") or "").strip(),
        name=str(entry.get("name") or "").strip(),
        description=" ".join(str(entry.get("description") or "").split()),
        parent=(str(entry["parent"]).strip() if entry.get("parent") else None),
        include=tuple(entry.get("include") or ()),
        exclude=tuple(entry.get("exclude") or ()),
        expected_share=float(share) if share is not None else None,
    )


def parse_taxonomy(data: object, source: str = "taxonomy") -> Taxonomy:
    """Build a Taxonomy from parsed YAML, raising RticError with every problem found."""
    if not isinstance(data, dict):
        raise RticError(f"{source}: expected a mapping with 'version' and 'sectors'")
    problems: list[str] = []
    shape = _unknown_keys(data, TOP_KEYS, "top level")  # unknown keys and wrong types
    version = data.get("version")
    if version is not None and not isinstance(version, str):
        # YAML reads 2026.10 as the number 2026.1: a version is only safe as text.
        shape.append(f"'version' must be text in quotes, got the {type(version).__name__} {version!r}")
        version = "?"
    version = (version or "").strip()
    if not version:
        problems.append("no 'version'")
    if data.get("name") is not None and not isinstance(data["name"], str):
        shape.append("'name' must be text")
    raw_sectors = data.get("sectors") or []
    raw_verticals = data.get("verticals") or []
    if not isinstance(raw_sectors, list) or not raw_sectors:
        raise RticError(f"{source}: 'sectors' must be a non-empty list")
    if not isinstance(raw_verticals, list):
        raise RticError(f"{source}: 'verticals' must be a list")
    entries = [(e, f"sectors[{i}]") for i, e in enumerate(raw_sectors)] + [(e, f"verticals[{i}]") for i, e in enumerate(raw_verticals)]
    for entry, where in entries:
        if not isinstance(entry, dict):
            raise RticError(f"{source}: {where}: expected a mapping with id, name and description")
        if not str(entry.get("id") or "").strip():
            raise RticError(f"{source}: {where}: sector without an id")
        shape += _entry_problems(entry, _shown(entry["id"]) if isinstance(entry["id"], str) else where)
    if shape:  # wrong types would be turned into text below: stop here, with every problem found so far
        raise RticError(f"{source}: " + "; ".join(problems + shape))
    sectors = [_sector_from(e) for e in raw_sectors]
    verticals = [_sector_from(e) for e in raw_verticals]
    # A top-level entry with a parent is a vertical too.
    verticals += [s for s in sectors if s.parent]
    sectors = [s for s in sectors if not s.parent]

    seen: set[str] = set()
    for s in sectors + verticals:
        if s.id in seen:
            problems.append(f"duplicate id '{s.id}'")
        seen.add(s.id)
        bad_id = sector_id_problem(s.id)
        if bad_id:
            problems.append(bad_id)
        if not s.name:
            problems.append(f"'{s.id}' has no name")
        if not s.description:
            problems.append(f"'{s.id}' has an empty description")
        if s.expected_share is not None and not 0 < s.expected_share < 1:
            problems.append(f"'{s.id}' expected_share must be between 0 and 1")
    top_ids = {s.id for s in sectors}
    for v in verticals:
        if v.parent not in top_ids:
            problems.append(f"'{v.id}' has unknown parent '{v.parent}'")
    if problems:
        raise RticError(f"{source}: " + "; ".join(problems))
    return Taxonomy(version=version, sectors=tuple(sectors), verticals=tuple(verticals), name=str(data.get("name") or ""))


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """Read and validate a taxonomy file (the default one when path is None)."""
    path = Path(path) if path else DEFAULT_TAXONOMY
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RticError(f"taxonomy file not found: {path}") from None
    except UnicodeDecodeError:
        raise RticError(f"{path}: not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise RticError(f"{path}: invalid YAML{where}") from None
    return parse_taxonomy(data, source=str(path))
