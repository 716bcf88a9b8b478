"""GIS files of the spatial clusters, for QGIS and the like: GeoJSON (RFC 7946) in WGS84 longitude/latitude, with
the British National Grid coordinates kept as attributes.

- OUT.hulls.geojson: one polygon per cluster, the convex hull of its firms; where they lie at fewer than three
  points or on one line (one postcode, a row of them) the hull has no area, so a circle of the cluster's radius
  (at least MIN_RING_M) around its centroid stands in, marked `hull: "circle"`. Properties: the clusters table.
- OUT.centroids.geojson: one point per cluster, same properties.
- OUT.members.geojson: one point per located sector firm (firm_id, sector_id, cluster_id, empty for noise,
  easting, northing).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from rtic.clusters.geography import to_latlon
from rtic.clusters.spatial import SpatialResult
from rtic.tables import atomic_path

MIN_RING_M = 100.0
CIRCLE_VERTICES = 32
DECIMALS = 6  # about 0.1 m of latitude


def _plain(value):
    """A JSON value: numpy scalars as Python ones, NaN and None as null."""
    if value is None:
        return None
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(value) else float(value)
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value) if not isinstance(value, (int, str)) else value


def _lonlat(easting, northing) -> list[list[float]]:
    lat, lon = to_latlon(np.asarray(easting, dtype=float), np.asarray(northing, dtype=float))
    return [[round(float(a), DECIMALS), round(float(b), DECIMALS)] for a, b in zip(lon, lat)]


def hull_ring(x: np.ndarray, y: np.ndarray, centre: tuple[float, float], radius_m: float) -> tuple[np.ndarray, str]:
    """The closed, counter-clockwise exterior ring (BNG metres) of a cluster's firms, and 'convex' or 'circle'."""
    from scipy.spatial import ConvexHull, QhullError

    points = np.unique(np.column_stack([x, y]), axis=0)
    if len(points) >= 3:
        try:
            hull = ConvexHull(points)
            if hull.volume > 0:
                ring = points[hull.vertices]  # counter-clockwise in two dimensions
                return np.vstack([ring, ring[:1]]), "convex"
        except QhullError:  # on one line
            pass
    r = max(radius_m, MIN_RING_M)
    angles = np.linspace(0, 2 * np.pi, CIRCLE_VERTICES, endpoint=False)
    ring = np.column_stack([centre[0] + r * np.cos(angles), centre[1] + r * np.sin(angles)])
    return np.vstack([ring, ring[:1]]), "circle"


def _write(features, path: Path) -> Path:
    """A FeatureCollection written one feature at a time (the members file can hold a register's worth of firms)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write('{"type": "FeatureCollection", "features": [\n')
        for i, feature in enumerate(features):
            fh.write((",\n" if i else "") + json.dumps(feature, ensure_ascii=False, allow_nan=False))
        fh.write("\n]}\n")
    return path


def _properties(row: dict) -> dict:
    return {k: _plain(v) for k, v in row.items()}


def cluster_features(spatial: SpatialResult, clusters: pd.DataFrame) -> tuple[list[dict], list[dict]]:
    """(hull polygons, centroid points) for the rows of `clusters` (the clusters table, typed or not)."""
    members = spatial.members.dropna(subset=["cluster_id"])
    groups = {cid: g for cid, g in members.groupby("cluster_id")}
    hulls, centres = [], []
    for row in clusters.to_dict("records"):
        firms = groups.get(row["cluster_id"])
        if firms is None:
            continue
        centre = (row["centroid_easting"], row["centroid_northing"])
        ring, kind = hull_ring(firms["easting"].to_numpy(), firms["northing"].to_numpy(), centre, row["radius_m"])
        props = _properties(row)
        hulls.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_lonlat(ring[:, 0], ring[:, 1])]},
                      "properties": {**props, "hull": kind}})
        centres.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": _lonlat([centre[0]], [centre[1]])[0]},
                        "properties": props})
    return hulls, centres


def member_features(members: pd.DataFrame, chunk: int = 100_000):
    """One point per member firm, projected a chunk at a time."""
    for start in range(0, len(members), chunk):
        part = members.iloc[start:start + chunk]
        coords = _lonlat(part["easting"], part["northing"])
        for lonlat, row in zip(coords, part[["firm_id", "sector_id", "cluster_id", "easting", "northing"]].to_dict("records")):
            yield {"type": "Feature", "geometry": {"type": "Point", "coordinates": lonlat}, "properties": _properties(row)}


def write_gis(spatial: SpatialResult, clusters: pd.DataFrame, hulls_path: Path, centroids_path: Path, members_path: Path) -> list[Path]:
    hulls, centres = cluster_features(spatial, clusters)
    return [_write(hulls, hulls_path), _write(centres, centroids_path), _write(member_features(spatial.members), members_path)]
