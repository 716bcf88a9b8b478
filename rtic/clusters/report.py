"""Pictures: one PNG map per sector (firms, clusters; British National Grid km, no tiles) and one HTML report."""

from __future__ import annotations

import hashlib
import html
import re
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from rtic.clusters.inputs import ClusterInputs
from rtic.clusters.spatial import SpatialResult

MAX_BACKGROUND_POINTS = 200_000  # a random sample of all firms is drawn behind; enough to see the country's shape
SAFE_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")  # a lower-case slug: no "/", no "..", no leading dot or dash


def map_filename(sector: str) -> str:
    """A file name for a sector's map that stays inside the maps folder whatever the sector id holds.

    Ids that are already safe lower-case slugs (every taxonomy id) are used as they are; anything else
    (path separators, "..", odd characters, upper case, which clashes on case-blind file systems)
    becomes its safe characters plus a short hash of the id, so two ids never share a file."""
    if len(sector) <= 64 and SAFE_NAME.fullmatch(sector):
        return f"{sector}.png"
    slug = re.sub(r"[^a-z0-9_-]+", "_", sector.lower()).strip("_-")[:48] or "sector"
    return f"{slug}-{hashlib.sha256(sector.encode('utf-8', 'surrogatepass')).hexdigest()[:10]}.png"


def map_path(maps_dir: Path, sector: str) -> Path:
    path = maps_dir / map_filename(sector)
    if path.resolve().parent != maps_dir.resolve():  # cannot happen with map_filename; a last check before writing
        raise ValueError(f"map path for sector {sector!r} leaves {maps_dir}")
    return path


LABEL_DIRECTIONS = [(1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1)]
LABEL_RINGS = 8  # distances tried for each label, each 8 points further out


def place_labels(ax, items: list[tuple[str, float, float, float]], fontsize: float = 8) -> tuple[list, int]:
    """Label points so that no two labels overlap. `items`: (text, x, y, ring radius), in data units, most important
    first. Each label goes to the first spot around its ring (eight directions, then further out, with a leader line)
    whose box overlaps no label already placed; a label with no free spot is left off. Returns (texts, left off).
    Call once the axes' limits and layout are final: the boxes are measured on the rendered figure."""
    renderer = ax.figure.canvas.get_renderer()
    points_per_pixel = 72 / ax.figure.dpi
    boxes, texts, left_off = [], [], 0
    for text, x, y, radius in items:
        (px, _), (qx, _) = ax.transData.transform([(x, y), (x + radius, y)])
        ring = abs(qx - px) * points_per_pixel + 2
        for step in range(LABEL_RINGS):
            found = None
            for dx, dy in LABEL_DIRECTIONS:
                scale = (ring + 8 * step) / (np.hypot(dx, dy) or 1)
                label = ax.annotate(text, (x, y), xytext=(dx * scale, dy * scale), textcoords="offset points", fontsize=fontsize,
                                    weight="bold", ha="left" if dx > 0 else "right" if dx < 0 else "center",
                                    va="bottom" if dy > 0 else "top" if dy < 0 else "center",
                                    arrowprops={"arrowstyle": "-", "linewidth": 0.5, "color": "#444444"} if step else None)
                box = label.get_window_extent(renderer).expanded(1.08, 1.15)
                if not any(box.overlaps(b) for b in boxes):
                    found = (label, box)
                    break
                label.remove()
            if found:
                texts.append(found[0])
                boxes.append(found[1])
                break
        else:
            left_off += 1
    return texts, left_off


def draw_sector_map(inputs: ClusterInputs, spatial: SpatialResult, sector: str, seed: int = 0):
    """The figure of one sector's map: context faint behind (the lookup's postcode districts, all placed firms), the
    sector's firms dark, its clusters in colour with numbered labels that do not overlap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    located = inputs.located
    rng = np.random.default_rng(seed)
    back = located if len(located) <= MAX_BACKGROUND_POINTS else located.iloc[rng.choice(len(located), MAX_BACKGROUND_POINTS, replace=False)]
    members = spatial.members[spatial.members["sector_id"] == sector]
    clusters = spatial.clusters[spatial.clusters["sector_id"] == sector].sort_values("firms", ascending=False, kind="stable")
    fig, ax = plt.subplots(figsize=(7, 9), dpi=100)
    districts = inputs.districts
    if districts is not None and len(districts):
        # Every district the lookups know: the country's shape, even where few firms are placed.
        ax.scatter(districts["easting"] / 1000, districts["northing"] / 1000, s=4, c="#efe6d2", linewidths=0, rasterized=True,
                   label="postcode districts", zorder=0)
    ax.scatter(back["easting"] / 1000, back["northing"] / 1000, s=1, c="#cccccc", linewidths=0, rasterized=True,
               label="all placed firms", zorder=1)
    noise = members[members["cluster_id"].isna()]
    ax.scatter(noise["easting"] / 1000, noise["northing"] / 1000, s=3, c="#555555", linewidths=0, label=f"{sector} firms", zorder=2)
    cmap = plt.get_cmap("tab20")
    span = max(np.ptp(back["easting"]), np.ptp(back["northing"]), 1.0) / 1000 if len(back) else 1.0
    items = []
    for i, row in enumerate(clusters.itertuples(index=False)):
        pts = members[members["cluster_id"] == row.cluster_id]
        colour = cmap(i % 20)
        centre = (row.centroid_easting / 1000, row.centroid_northing / 1000)
        ax.scatter(pts["easting"] / 1000, pts["northing"] / 1000, s=6, color=colour, linewidths=0, zorder=3)
        # A ring at least 1.5% of the map wide, so that a 1 km cluster shows on a national map.
        radius = max(row.radius_m / 1000, span * 0.015)
        ax.add_patch(plt.Circle(centre, radius, fill=False, color=colour, linewidth=1.2, zorder=4))
        items.append((row.cluster_id.rsplit("-", 1)[1], centre[0], centre[1], radius))
    ax.set_aspect("equal")
    ax.set_xlabel("easting (km, British National Grid)")
    ax.set_ylabel("northing (km)")
    ax.set_title(f"{sector}: {len(members)} located firms, {len(clusters)} cluster(s)")
    ax.legend(loc="upper left", fontsize=7, markerscale=4)
    fig.tight_layout()
    ax.autoscale_view()
    ax.apply_aspect()
    _, left_off = place_labels(ax, items)
    if left_off:
        ax.set_title(f"{sector}: {len(members)} located firms, {len(clusters)} cluster(s); {left_off} label(s) left off "
                     "for want of room (see the clusters table)", fontsize=9)
    return fig


def sector_map(inputs: ClusterInputs, spatial: SpatialResult, sector: str, path: Path, seed: int = 0) -> Path:
    """Draw one sector's map (draw_sector_map) to a PNG."""
    import matplotlib.pyplot as plt

    fig = draw_sector_map(inputs, spatial, sector, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _table(df: pd.DataFrame, max_rows: int = 50) -> str:
    if df is None or df.empty:
        return "<p><em>none</em></p>"
    shown = df.head(max_rows)
    more = f"<p>… and {len(df) - max_rows} more rows in the table file.</p>" if len(df) > max_rows else ""
    return shown.to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep="", border=0, classes="t") + more


def write_report(out_dir: Path, inputs: ClusterInputs, specialisation: pd.DataFrame, spatial: SpatialResult,
                 clusters: pd.DataFrame, communities: pd.DataFrame | None, notes: list[str]) -> Path:
    """index.html plus maps/<sector>.png under out_dir; tables are escaped by pandas, text by html.escape."""
    out_dir.mkdir(parents=True, exist_ok=True)
    esc = html.escape
    sources = inputs.firms["geo_source"].value_counts()
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>rtic cluster report</title><style>"
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto}table.t{border-collapse:collapse;font-size:12px}"
        ".t td,.t th{padding:2px 6px;border-bottom:1px solid #ddd;text-align:right}img{max-width:100%}</style></head><body>",
        "<h1>Sector specialisation and clusters</h1>",
        f"<p>Generated {esc(datetime.now(timezone.utc).isoformat(timespec='seconds'))}. {len(inputs.firms)} labelled firms, "
        f"{len(inputs.located)} placed. Placement: {esc(', '.join(f'{k}: {v}' for k, v in sources.items()))}.</p>",
    ]
    if notes:
        parts.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    if clusters is not None and len(clusters) and "cluster_type" in clusters.columns:
        parts.append("<h2>Cluster types</h2>" + _table(clusters.groupby(["sector_id", "cluster_type"]).size().rename("clusters").reset_index()))
    if communities is not None:
        parts.append("<h2>Collaboration communities</h2>" + _table(communities))
    level = str(specialisation["area_level"].iloc[0]) if len(specialisation) else "area"
    for sector in inputs.sector_ids:
        png = sector_map(inputs, spatial, sector, map_path(out_dir / "maps", sector))
        spec = specialisation[specialisation["sector_id"] == sector]
        top = spec[spec["specialised"]] if spec["specialised"].any() else spec.head(10)
        sector_clusters = clusters[clusters["sector_id"] == sector] if len(clusters) else clusters
        parts += [
            f"<h2 id='{esc(sector)}'>{esc(sector)}</h2>",
            f"<img src='maps/{esc(quote(png.name))}' alt='map of {esc(sector)} firms and clusters'>",
            f"<h3>Specialised {esc(level)} areas ({int(spec['specialised'].sum())} of {len(spec)})</h3>" + _table(top),
            f"<h3>Spatial clusters ({len(sector_clusters)})</h3>" + _table(sector_clusters),
        ]
    parts.append("</body></html>")
    path = out_dir / "index.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    tmp.replace(path)
    return path
