"""Spatial clusters of same-sector firms: density-based clustering on British National Grid metres.

DBSCAN (default): a firm is a core point when at least `min_samples` sector firms (itself included) lie within
`eps_m` metres; clusters are the connected core points plus their border points. Where firms sharing a coordinate
(one postcode, one district centroid) make up at least half the points, each coordinate is clustered once with a
sample weight: the same result, much cheaper. HDBSCAN (`method="hdbscan"`) needs no distance but is ~70× slower on a
140k-firm sector and, clustering relative density, finds "clusters" in evenly spread firms (scripts/bench_clusters.py). Either way, clusters with fewer than `min_cluster_firms` firms are
returned to noise.

Each cluster's *footprint* is the set of `cell_m` × `cell_m` grid squares holding its firms; its sector share is the
sector's firms over all labelled firms in the footprint, and its LQ that share over the sector's national share.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rtic.clusters.inputs import ClusterInputs, sector_firms
from rtic.errors import RticError
from rtic.clusters.geography import to_latlon
from rtic import config

log = logging.getLogger(__name__)

CLUSTER_COLUMNS = [
    "cluster_id", "sector_id", "firms", "centroid_easting", "centroid_northing", "centroid_lat", "centroid_lon",
    "min_easting", "max_easting", "min_northing", "max_northing", "radius_m", "hull_area_km2", "footprint_cells",
    "footprint_firms", "footprint_sector_firms", "sector_share", "national_share", "lq",
]
MEMBER_COLUMNS = ["firm_id", "sector_id", "cluster_id", "easting", "northing"]
METHODS = config.CLUSTER_METHODS


@dataclass(frozen=True)
class SpatialParams:
    method: str = config.CLUSTER_METHOD
    eps_m: float = config.EPS_M
    min_samples: int = config.MIN_SAMPLES
    min_cluster_firms: int = config.MIN_CLUSTER_FIRMS
    cell_m: float = config.EPS_M

    def __post_init__(self):
        if self.method not in METHODS:
            raise RticError(f"unknown clustering method {self.method!r}: use one of {', '.join(METHODS)}")
        if self.eps_m <= 0 or self.cell_m <= 0:
            raise RticError("--eps-m and --cell-m must be positive distances in metres")
        if self.min_samples < 1 or self.min_cluster_firms < 2:
            raise RticError("--min-samples must be at least 1 and --min-cluster-firms at least 2")


@dataclass
class SpatialResult:
    clusters: pd.DataFrame  # one row per cluster (CLUSTER_COLUMNS)
    members: pd.DataFrame  # one row per located sector firm; cluster_id None for noise (MEMBER_COLUMNS)
    notes: list[str]  # sectors skipped and why


def density_labels(xy: np.ndarray, params: SpatialParams) -> np.ndarray:
    """Cluster label per point (−1 noise), before the minimum-size rule."""
    if len(xy) == 0:
        return np.zeros(0, dtype=int)
    unique, inverse, counts = np.unique(xy, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    if len(unique) == 1:  # every firm at one coordinate: one cluster if dense enough, by either method
        return np.zeros(len(xy), dtype=int) if len(xy) >= params.min_samples else np.full(len(xy), -1)
    if params.method == "dbscan":
        from sklearn.cluster import DBSCAN

        model = DBSCAN(eps=params.eps_m, min_samples=params.min_samples, algorithm="kd_tree")
        # Same result either way; sklearn sums weights in a Python loop, so weights only pay when they halve the points.
        if len(unique) * 2 <= len(xy):
            return model.fit(unique, sample_weight=counts).labels_[inverse]
        return model.fit(xy).labels_
    from sklearn.cluster import HDBSCAN

    return HDBSCAN(min_cluster_size=params.min_cluster_firms, min_samples=params.min_samples, copy=True).fit(xy).labels_


def _relabel_by_size(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Drop clusters below min_size to noise (0), then number the rest 1, 2, … from the largest."""
    if len(labels) == 0 or labels.max() < 0:
        return np.zeros(len(labels), dtype=int)
    sizes = np.bincount(labels[labels >= 0], minlength=labels.max() + 1)
    order = np.argsort(-sizes, kind="stable")
    rank = np.zeros(len(sizes), dtype=int)
    kept = order[sizes[order] >= min_size]
    rank[kept] = np.arange(1, len(kept) + 1)
    return np.where(labels >= 0, rank[np.maximum(labels, 0)], 0)


def _cells(x: np.ndarray, y: np.ndarray, cell_m: float) -> np.ndarray:
    return np.floor(x / cell_m).astype(np.int64) * 10_000_000 + np.floor(y / cell_m).astype(np.int64)


def _hull_area_km2(xy: np.ndarray) -> float:
    from scipy.spatial import ConvexHull, QhullError

    if len(xy) < 3:
        return 0.0
    try:
        return float(ConvexHull(xy).volume) / 1e6  # in 2-D, "volume" is the area
    except QhullError:  # all at one point, or on one line
        return 0.0


def spatial_clusters(inputs: ClusterInputs, params: SpatialParams = SpatialParams(), sectors: list[str] | None = None) -> SpatialResult:
    """Cluster each sector's located firms; see the module docstring for the footprint, share and LQ."""
    located = inputs.located
    if located.empty:
        raise RticError("no labelled firm could be placed: nothing to cluster (see the unplaced-firms report)")
    sectors = sectors or inputs.sector_ids
    unknown = sorted(set(sectors) - set(inputs.sector_ids))
    if unknown:
        raise RticError(f"unknown sector(s) {', '.join(unknown)}: the labels have {', '.join(inputs.sector_ids)}")
    all_cells = _cells(located["easting"].to_numpy(), located["northing"].to_numpy(), params.cell_m)
    all_counts = pd.Series(all_cells).value_counts()
    total = len(located)
    clusters, members, notes = [], [], []
    for sector in sectors:
        firms = sector_firms(inputs, sector)
        x, y = firms["easting"].to_numpy(), firms["northing"].to_numpy()
        if len(firms) < params.min_cluster_firms:
            notes.append(f"{sector}: {len(firms)} located firm(s), fewer than {params.min_cluster_firms}: no clusters possible")
            labels = np.zeros(len(firms), dtype=int)
        else:
            labels = _relabel_by_size(density_labels(np.column_stack([x, y]), params), params.min_cluster_firms)
        ids = np.where(labels > 0, np.char.add(f"{sector}-", labels.astype(str)), None)
        members.append(pd.DataFrame({"firm_id": firms["firm_id"].to_numpy(), "sector_id": sector, "cluster_id": ids,
                                     "easting": x, "northing": y}))
        n_clusters = int(labels.max()) if len(labels) else 0
        log.info(f"  {sector}: {len(firms)} located firms, {n_clusters} cluster(s), {int((labels > 0).sum())} firms in clusters")
        if n_clusters == 0:
            continue
        cells = _cells(x, y, params.cell_m)
        sector_counts = pd.Series(cells).value_counts()
        national_share = len(firms) / total
        order = np.argsort(labels, kind="stable")  # members of each cluster as one slice, not a mask per cluster
        bounds = np.searchsorted(labels[order], np.arange(1, n_clusters + 2))
        for rank in range(1, n_clusters + 1):
            idx = order[bounds[rank - 1]:bounds[rank]]
            cx, cy = x[idx], y[idx]
            ex, ey = cx.mean(), cy.mean()
            foot = np.unique(cells[idx])
            foot_all = int(all_counts.reindex(foot).sum())
            foot_sector = int(sector_counts.reindex(foot).sum())
            share = foot_sector / foot_all
            clusters.append({
                "cluster_id": f"{sector}-{rank}", "sector_id": sector, "firms": len(idx),
                "centroid_easting": ex, "centroid_northing": ey,
                "min_easting": cx.min(), "max_easting": cx.max(), "min_northing": cy.min(), "max_northing": cy.max(),
                "radius_m": float(np.sqrt((cx - ex) ** 2 + (cy - ey) ** 2).max()),
                "hull_area_km2": _hull_area_km2(np.column_stack([cx, cy])), "footprint_cells": len(foot),
                "footprint_firms": foot_all, "footprint_sector_firms": foot_sector,
                "sector_share": share, "national_share": national_share, "lq": share / national_share,
            })
    table = pd.DataFrame(clusters, columns=CLUSTER_COLUMNS)
    if len(table):
        table["centroid_lat"], table["centroid_lon"] = to_latlon(table["centroid_easting"], table["centroid_northing"])
    member_table = pd.concat(members, ignore_index=True) if members else pd.DataFrame(columns=MEMBER_COLUMNS)
    return SpatialResult(table, member_table[MEMBER_COLUMNS], notes)
