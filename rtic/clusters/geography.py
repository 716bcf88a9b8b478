"""Where firms are: register postcodes → British National Grid metres and statistical areas.

Two kinds of lookup are read, told apart by their rows:
- the ONS Postcode Directory (ONSPD; full postcodes, `oseast1m`/`osnrth1m`, `lat`/`long`, area codes such as
  `oslaua`, `ttwa`, `rgn`), in its published column layout, older or newer vintages;
- postcode-district (outcode) centroids: an outcode column plus easting/northing or latitude/longitude.
A firm is placed by, in order: its own `lat`/`lon` in the register, its full postcode in an ONSPD lookup, its
postcode district in a centroid lookup (or, failing that, the mean of the ONSPD postcodes of that district).
Every firm comes back with `geo_source` saying which, or why it could not be placed; none is dropped. Areas (LAD,
TTWA, …) come from the full postcode, else from the district: the most common area of its ONSPD postcodes, or the
centroid file's own columns, whichever file first has one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rtic.errors import RticError
from rtic.tables import PARQUET_SUFFIXES

# Area levels a user can name; each maps to the first matching lookup column (ONSPD names across vintages).
AREA_LEVELS = {
    "lad": ["oslaua", "lad", r"lad\d\dcd"],
    "ttwa": ["ttwa", r"ttwa\d\dcd"],
    "region": ["rgn", "region", "region_code", r"rgn\d\dcd"],
    "itl": ["itl", r"itl\d\dcd"],
    "lep": ["lep1", "lep"],
    "country": ["ctry", r"ctry\d\dcd"],
    "district": ["outcode"],
}
_POSTCODE_COLUMNS = ["pcds", "pcd", "pcd7", "pcd8", "postcode", "outcode", "postcode_district"]
_EAST = ["oseast1m", "east1m", "easting", "x"]
_NORTH = ["osnrth1m", "north1m", "northing", "y"]
_LAT = ["lat", "latitude"]
_LON = ["long", "lon", "longitude", "lng"]

FULL_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)([0-9][A-Z]{2})$")
OUTCODE = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]?$")
# Rough bounding box of the British National Grid in metres: anything outside is a placeholder or a typo.
BNG_BOUNDS = (0.0, 0.0, 700_000.0, 1_300_000.0)

# Outcomes of `locate_firms`, one per firm in `geo_source`.
FROM_REGISTER = "register lat/lon"
FROM_POSTCODE = "postcode"
FROM_DISTRICT = "postcode district centroid"
NO_POSTCODE = "no postcode"
INVALID_POSTCODE = "invalid postcode"
UNKNOWN_POSTCODE = "unknown postcode"
NO_GRID_REFERENCE = "postcode has no grid reference"
PLACED = {FROM_REGISTER, FROM_POSTCODE, FROM_DISTRICT}


def normalise_postcode(value) -> tuple[str, str]:
    """'ab10  1aa' → ('AB10 1AA', 'AB10'); an outcode alone → ('', 'AB10'); anything else → ('', '')."""
    text = re.sub(r"[^A-Za-z0-9]", "", str(value or "")).upper()
    match = FULL_POSTCODE.match(text)
    if match:
        return f"{match.group(1)} {match.group(2)}", match.group(1)
    if OUTCODE.match(text):
        return "", text
    return "", ""


def _normalise_many(values: pd.Series) -> pd.DataFrame:
    """Vectorised normalise_postcode (in Arrow: a million postcodes in about a second): `postcode`, `outcode`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pa.array(values.fillna("").astype(str).to_numpy(dtype=object), type=pa.string())
    text = pc.replace_substring_regex(pc.utf8_upper(arr), r"[^A-Z0-9]", "")
    parts = pc.extract_regex(text, r"^(?P<out>[A-Z]{1,2}[0-9][A-Z0-9]?)(?P<inward>[0-9][A-Z]{2})$")
    out, inward = pc.struct_field(parts, "out"), pc.struct_field(parts, "inward")
    full = pc.fill_null(pc.binary_join_element_wise(out, inward, " "), "")
    only_out = pc.if_else(pc.match_substring_regex(text, OUTCODE.pattern), text, "")
    outcode = pc.fill_null(pc.coalesce(out, only_out), "")
    return pd.DataFrame({"postcode": full.to_numpy(zero_copy_only=False), "outcode": outcode.to_numpy(zero_copy_only=False)},
                        index=values.index)


def member_of(values, pool) -> np.ndarray:
    """values.isin(pool) for strings, hashed in Arrow: pandas' isin on Arrow strings loops in Python (11 s per 1M)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    as_arrow = lambda v: pa.array(np.asarray(v, dtype=object), type=pa.string(), from_pandas=True)
    return pc.is_in(as_arrow(values), value_set=as_arrow(pd.unique(np.asarray(pool, dtype=object)))).to_numpy(zero_copy_only=False)


def _pick(columns: list[str], candidates: list[str]) -> str | None:
    lower = {c.lower().strip(): c for c in columns}
    for cand in candidates:
        for low, original in lower.items():
            if re.fullmatch(cand, low):
                return original
    return None


@dataclass
class PostcodeLookup:
    """Normalised lookup rows: `postcode` (full, '' for district rows), `outcode`, `easting`, `northing`, area columns."""

    postcodes: pd.DataFrame  # indexed by full postcode
    districts: pd.DataFrame  # indexed by outcode
    area_columns: dict[str, str]  # level ("lad", …) → column in the frames
    sources: list[str]


def _to_float(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series.replace("", np.nan), errors="coerce").to_numpy(dtype=float)


def read_postcode_lookup(path: str | Path) -> pd.DataFrame:
    """Read one ONSPD-layout or outcode-centroid file into normalised rows (see PostcodeLookup)."""
    path = Path(path)
    if not path.is_file():
        raise RticError(f"postcode lookup not found: {path}")
    try:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            raw = pd.read_parquet(path)
            raw = raw.astype({c: str for c in raw.columns if raw[c].dtype == object})
        else:
            header = pd.read_csv(path, nrows=0, encoding="utf-8-sig").columns.tolist()
            wanted = {c for c in [_pick(header, _POSTCODE_COLUMNS), _pick(header, _EAST), _pick(header, _NORTH),
                                  _pick(header, _LAT), _pick(header, _LON), _pick(header, ["osgrdind"])] if c}
            wanted |= {c for level in AREA_LEVELS.values() if (c := _pick(header, level))}
            # Only the columns used: the full ONSPD is 2.7M rows × 50+ columns.
            raw = pd.read_csv(path, dtype=str, keep_default_na=False, usecols=sorted(wanted), encoding="utf-8-sig")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise RticError(f"cannot read postcode lookup {path}: {str(exc).strip().splitlines()[0]}") from None
    cols = list(raw.columns)
    pc_col = _pick(cols, _POSTCODE_COLUMNS)
    if pc_col is None:
        raise RticError(f"postcode lookup {path} has no postcode column (one of {', '.join(_POSTCODE_COLUMNS)}); columns: {', '.join(cols[:12])}")
    east, north, lat, lon = (_pick(cols, c) for c in (_EAST, _NORTH, _LAT, _LON))
    if not (east and north) and not (lat and lon):
        raise RticError(f"postcode lookup {path} has neither easting/northing (oseast1m/osnrth1m) nor lat/long columns")
    out = _normalise_many(raw[pc_col])
    if east and north:
        out["easting"], out["northing"] = _to_float(raw[east]), _to_float(raw[north])
    else:
        out["easting"], out["northing"] = to_bng(_to_float(raw[lat]), _to_float(raw[lon]))
    # ONSPD marks postcodes without a grid reference with osgrdind 9 and placeholder coordinates.
    grid = _pick(cols, ["osgrdind"])
    bad = ~_inside_bng(out["easting"].to_numpy(), out["northing"].to_numpy())
    if grid:
        bad |= raw[grid].astype(str).str.strip().eq("9").to_numpy()
    out.loc[bad, ["easting", "northing"]] = np.nan
    for level, candidates in AREA_LEVELS.items():
        col = _pick(cols, candidates)
        if col and level != "district":
            out[level] = raw[col].astype(str).str.strip().to_numpy()
    out = out[(out["postcode"] != "") | (out["outcode"] != "")]
    if out.empty:
        raise RticError(f"postcode lookup {path} has no valid postcodes in column {pc_col!r}")
    return out


def _district_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """One file's districts: its explicit outcode rows, else the mean position and most common areas of its postcodes."""
    explicit = rows[rows["postcode"] == ""].drop_duplicates("outcode").set_index("outcode").drop(columns=["postcode"])
    full = rows[(rows["postcode"] != "") & rows["easting"].notna() & ~member_of(rows["outcode"], explicit.index)]
    derived = full.groupby("outcode")[["easting", "northing"]].mean()
    for level in [c for c in rows.columns if c in AREA_LEVELS]:
        # The most common non-blank area of the district's postcodes; a tie goes to the smaller code.
        counts = full[full[level] != ""].groupby(["outcode", level]).size().reset_index(name="n")
        counts = counts.sort_values(["outcode", "n", level], ascending=[True, False, True], kind="stable")
        derived[level] = counts.drop_duplicates("outcode").set_index("outcode")[level]
    return pd.concat([explicit, derived])


def load_lookup(paths: list[str | Path]) -> PostcodeLookup:
    """Combine lookups: the first file that knows a postcode wins; a district's position comes from the first file that
    places it and each of its areas from the first file that gives it one."""
    frames = [read_postcode_lookup(p) for p in paths]
    if not frames:
        raise RticError("no postcode lookup given")
    rows = pd.concat(frames, ignore_index=True)
    full = rows[rows["postcode"] != ""].drop_duplicates("postcode").set_index("postcode")
    areas = [c for c in rows.columns if c in AREA_LEVELS]
    return PostcodeLookup(full, _combine_districts([_district_rows(f) for f in frames], areas), {a: a for a in areas},
                          [str(p) for p in paths])


def _combine_districts(per_file: list[pd.DataFrame], areas: list[str]) -> pd.DataFrame:
    """One row per district: the position from the first file that places it, each area from the first file that
    gives the district one (a centroid file with no LADs, then an ONSPD: the centroid's position, ONSPD's LAD)."""
    rows = pd.concat(per_file)
    placed = rows.dropna(subset=["easting", "northing"])
    position = placed.loc[~placed.index.duplicated(keep="first"), ["easting", "northing"]]
    position = position.reindex(rows.index.unique())
    if not areas:
        return position
    known = rows.reindex(columns=areas).replace({"": np.nan})
    return position.join(known.groupby(level=0, sort=False).first())


def _inside_bng(easting: np.ndarray, northing: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = BNG_BOUNDS
    with np.errstate(invalid="ignore"):
        return (easting >= x0) & (easting <= x1) & (northing >= y0) & (northing <= y1)


def _transformer(inverse: bool = False):
    from pyproj import Transformer

    src, dst = ("EPSG:27700", "EPSG:4326") if inverse else ("EPSG:4326", "EPSG:27700")
    return Transformer.from_crs(src, dst, always_xy=True)


def to_bng(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 degrees → British National Grid (EPSG:27700) metres; NaN in, NaN out."""
    lat, lon = np.asarray(lat, dtype=float), np.asarray(lon, dtype=float)
    x, y = _transformer().transform(lon, lat)
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    bad = ~np.isfinite(x) | ~np.isfinite(y) | ~np.isfinite(lat) | ~np.isfinite(lon)
    x[bad], y[bad] = np.nan, np.nan
    return x, y


def to_latlon(easting: np.ndarray, northing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """British National Grid metres → WGS84 (lat, lon) degrees."""
    lon, lat = _transformer(inverse=True).transform(np.asarray(easting, dtype=float), np.asarray(northing, dtype=float))
    return np.asarray(lat, dtype=float), np.asarray(lon, dtype=float)


def locate_firms(register: pd.DataFrame, lookup: PostcodeLookup | None) -> pd.DataFrame:
    """Register rows → firm_id, postcode, outcode, easting, northing, area columns, geo_source (one row per firm).

    Areas come from the postcode (or district) whatever gave the coordinates, so a firm with its own lat/lon and a
    known postcode still gets its local authority. Firms that cannot be placed keep NaN coordinates and a reason.
    """
    firms = pd.DataFrame({"firm_id": register["firm_id"].astype(str).to_numpy()})
    raw_pc = register["postcode"] if "postcode" in register.columns else pd.Series("", index=register.index)
    norm = _normalise_many(raw_pc.reset_index(drop=True))
    firms["postcode"], firms["outcode"] = norm["postcode"].to_numpy(), norm["outcode"].to_numpy()
    n = len(firms)
    east, north = np.full(n, np.nan), np.full(n, np.nan)
    source = np.full(n, "", dtype=object)
    has_text = raw_pc.fillna("").astype(str).str.strip().ne("").to_numpy()
    source[~has_text] = NO_POSTCODE
    source[has_text & (firms["outcode"] == "").to_numpy()] = INVALID_POSTCODE

    areas: dict[str, np.ndarray] = {}
    if lookup is not None:
        full = lookup.postcodes.reindex(firms["postcode"])
        dist = lookup.districts.reindex(firms["outcode"])
        in_full = full["easting"].notna().to_numpy()
        in_dist = dist["easting"].notna().to_numpy() & ~in_full
        # Listed, but with no usable grid reference (ONSPD osgrdind 9; off the grid, e.g. the Channel Islands).
        known_no_grid = (member_of(firms["postcode"], lookup.postcodes.index) | member_of(firms["outcode"], lookup.districts.index)) & ~in_full & ~in_dist
        east[in_full], north[in_full] = full["easting"].to_numpy()[in_full], full["northing"].to_numpy()[in_full]
        east[in_dist], north[in_dist] = dist["easting"].to_numpy()[in_dist], dist["northing"].to_numpy()[in_dist]
        source[in_full] = FROM_POSTCODE
        source[in_dist] = FROM_DISTRICT
        unplaced = (source == "") & ~in_full & ~in_dist
        source[unplaced & known_no_grid] = NO_GRID_REFERENCE
        for level in lookup.area_columns:
            value = full[level].to_numpy(dtype=object) if level in full.columns else np.full(n, None, dtype=object)
            if level in dist.columns:  # postcodes only known by district still get the district's area
                fill = pd.isna(value) | (value == "")
                value = np.where(fill, dist[level].to_numpy(dtype=object), value)
            areas[level] = value
    source[source == ""] = UNKNOWN_POSTCODE

    if {"lat", "lon"} <= set(register.columns):
        lat = pd.to_numeric(register["lat"], errors="coerce").to_numpy(dtype=float)
        lon = pd.to_numeric(register["lon"], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(lat) & np.isfinite(lon)
        if ok.any():
            x, y = to_bng(lat[ok], lon[ok])
            good = _inside_bng(x, y)
            idx = np.flatnonzero(ok)[good]
            east[idx], north[idx] = x[good], y[good]
            source[idx] = FROM_REGISTER
    firms["easting"], firms["northing"] = east, north
    for level, values in areas.items():
        firms[level] = pd.Series(values).replace({"": None}).to_numpy(dtype=object)
    firms["geo_source"] = source
    # The postcode district as an area: only districts the lookup knows (a typo's outcode is no area).
    known = (firms["outcode"] != "").to_numpy().copy()
    if lookup is not None:
        known &= member_of(firms["outcode"], lookup.districts.index) | member_of(firms["postcode"], lookup.postcodes.index)
    firms["district"] = np.where(known, firms["outcode"].to_numpy(dtype=object), None)
    return firms


def load_area_names(path: str | Path) -> dict[str, str]:
    """A GSS code → name mapping (JSON object, or a CSV with code,name as its first two columns)."""
    import json

    path = Path(path)
    if not path.is_file():
        raise RticError(f"area names file not found: {path}")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise RticError(f"area names {path} must be a JSON object of code → name")
            return {str(k): str(v) for k, v in data.items()}
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, OSError) as exc:
        raise RticError(f"cannot read area names {path}: {str(exc).strip().splitlines()[0]}") from None
    if df.shape[1] < 2:
        raise RticError(f"area names {path} needs two columns: code,name")
    return dict(zip(df.iloc[:, 0], df.iloc[:, 1]))
