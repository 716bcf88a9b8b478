"""Benchmark the cluster stages at register scale: placing firms, specialisation, spatial clustering.

    .venv/bin/python scripts/bench_clusters.py                   # 1M firms x 9 sectors (a few minutes, ~6 GiB)
    .venv/bin/python scripts/bench_clusters.py --firms 200000    # quicker

Firms are generated around the real postcode-district centroids in ../shared/data/uk (a synthetic 700 km x 1000 km
square of districts when that is absent), each district with a log-normal weight so that cities are dense, and
jittered by ~1.5 km so that firms have distinct coordinates as postcodes give them. Each stage runs in its own
process so that its peak memory (max RSS) is its own. HDBSCAN is timed against DBSCAN on the same samples of one
sector, growing until it passes --hdbscan-budget seconds, because on a whole sector it does not finish in minutes.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED = next((p for p in (REPO.parent / "shared" / "data" / "uk", Path("/work/shared/data/uk")) if p.is_dir()), None)
SECTORS = ["ai_data", "clean_growth", "smart_cities_mobility", "ageing_society", "advanced_manufacturing", "fintech",
           "cybersecurity", "life_sciences", "space"]
SECTOR_RATES = [0.12, 0.08, 0.06, 0.05, 0.07, 0.06, 0.03, 0.04, 0.02]


def districts(rng) -> pd.DataFrame:
    if SHARED and (SHARED / "outcode_centroids_academe_2014.csv").is_file():
        d = pd.read_csv(SHARED / "outcode_centroids_academe_2014.csv", usecols=["postcode", "easting", "northing", "region_code"])
        d = d.dropna().rename(columns={"postcode": "outcode", "region_code": "region"})
        return d[(d["easting"] > 0) & (d["northing"] > 0)].reset_index(drop=True)
    n = 2800
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return pd.DataFrame({"outcode": [f"{letters[i // 260]}{letters[i // 10 % 26]}{i % 10}" for i in range(n)], "easting": rng.uniform(100_000, 650_000, n),
                         "northing": rng.uniform(0, 1_000_000, n), "region": [f"R{i % 12}" for i in range(n)]})


def make_firms(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    d = districts(rng)
    weight = rng.lognormal(0, 1.2, len(d))
    which = rng.choice(len(d), size=n, p=weight / weight.sum())
    firms = pd.DataFrame({
        "firm_id": np.char.add("F", np.arange(n).astype(str)),
        "easting": d["easting"].to_numpy()[which] + rng.normal(0, 1500, n),
        "northing": d["northing"].to_numpy()[which] + rng.normal(0, 1500, n),
        "district": d["outcode"].to_numpy()[which], "region": d["region"].to_numpy()[which],
    })
    # Sector rates vary by district (some specialise), so that LQs are not all 1.
    tilt = rng.lognormal(0, 0.5, (len(d), len(SECTORS)))
    rows = []
    for j, sector in enumerate(SECTORS):
        p = np.clip(SECTOR_RATES[j] * tilt[which, j], 0, 1)
        ids = firms["firm_id"].to_numpy()[rng.random(n) < p]
        rows.append(pd.DataFrame({"firm_id": ids, "sector_id": sector}))
    return firms, pd.concat(rows, ignore_index=True)


def write_files_as_a_user_has_them(firms: pd.DataFrame, assignments: pd.DataFrame, folder: Path) -> None:
    """Long-form labels (every firm x every sector), a register with postcodes, and a district-centroid lookup."""
    ids = firms["firm_id"].to_numpy()
    labels = pd.DataFrame({"firm_id": np.repeat(ids, len(SECTORS)), "sector_id": np.tile(SECTORS, len(ids))})
    key = pd.MultiIndex.from_frame(labels)
    labels["assigned"] = key.isin(pd.MultiIndex.from_frame(assignments[["firm_id", "sector_id"]]))
    labels["probability"] = labels["assigned"].astype(float)
    labels.to_parquet(folder / "labels.parquet", index=False)
    pd.DataFrame({"firm_id": ids, "postcode": firms["district"] + " 1AA"}).to_parquet(folder / "register.parquet", index=False)
    centroids = firms.groupby("district")[["easting", "northing"]].mean().rename_axis("outcode").reset_index()
    centroids.to_csv(folder / "districts.csv", index=False)


def _max_rss_mib() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: on Linux ru_maxrss carries the parent's peak
    across fork+exec, so a spawned stage would report the generator's memory as its own."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _inputs(folder: Path):
    from rtic.clusters.inputs import PROBLEM_COLUMNS, ClusterInputs

    firms = pd.read_parquet(folder / "firms.parquet")
    firms["geo_source"] = "postcode"
    assignments = pd.read_parquet(folder / "assignments.parquet")
    return ClusterInputs(firms, assignments, SECTORS, pd.DataFrame(columns=PROBLEM_COLUMNS))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _stage(name: str, folder: str, queue, kwargs: dict) -> None:
    """Runs in a fresh process: load, then time one stage; report wall and CPU seconds and max RSS."""
    folder = Path(folder)
    result = {}
    cpu = _cpu_seconds()
    if name == "load_inputs":
        from rtic.clusters.inputs import load_inputs

        before = _max_rss_mib()
        t = time.perf_counter()
        inputs = load_inputs(folder / "labels.parquet", folder / "register.parquet", [folder / "districts.csv"])
        result["seconds"] = time.perf_counter() - t
        result["placed"] = len(inputs.located)
        result["unplaced"] = len(inputs.problems)
    elif name == "locate":
        from rtic.clusters.geography import locate_firms, to_latlon

        firms = pd.read_parquet(folder / "firms.parquet")
        lat, lon = to_latlon(firms["easting"].to_numpy(), firms["northing"].to_numpy())
        register = pd.DataFrame({"firm_id": firms["firm_id"], "postcode": "", "lat": lat, "lon": lon})
        before = _max_rss_mib()
        t = time.perf_counter()
        placed = locate_firms(register, None)
        result["seconds"] = time.perf_counter() - t
        result["placed"] = int(placed["easting"].notna().sum())
    else:
        inputs = _inputs(folder)
        before = _max_rss_mib()
        t = time.perf_counter()
        if name == "specialisation":
            from rtic.clusters.specialisation import specialisation

            table = specialisation(inputs, kwargs["area"])
            result["rows"] = len(table)
            result["specialised"] = int(table["specialised"].sum())
        elif name == "spatial":
            from rtic.clusters.spatial import SpatialParams, spatial_clusters

            res = spatial_clusters(inputs, SpatialParams(**kwargs))
            result["clusters"] = len(res.clusters)
            result["firms_in_clusters"] = int(res.members["cluster_id"].notna().sum())
        result["seconds"] = time.perf_counter() - t
    result["max_rss_mib"] = _max_rss_mib()
    result["loaded_rss_mib"] = before
    result["cpu_seconds"] = _cpu_seconds() - cpu  # includes loading; less disturbed than wall time on a busy machine
    queue.put(result)


def run_stage(name: str, folder: Path, **kwargs) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_stage, args=(name, str(folder), queue, kwargs))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def time_method(xy: np.ndarray, method: str) -> float:
    from rtic.clusters.spatial import SpatialParams, density_labels

    t = time.perf_counter()
    density_labels(xy, SpatialParams(method=method))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--firms", type=int, default=1_000_000)
    ap.add_argument("--hdbscan-budget", type=float, default=60.0, help="stop growing the HDBSCAN sample after a run this long (s)")
    args = ap.parse_args()
    t = time.perf_counter()
    firms, assignments = make_firms(args.firms)
    print(f"generated {len(firms):,} firms, {len(assignments):,} sector assignments over {firms['district'].nunique()} districts "
          f"in {time.perf_counter() - t:.1f}s (district centroids from {'shared data' if SHARED else 'a synthetic square'})")
    per_sector = assignments["sector_id"].value_counts()
    print("firms per sector: " + ", ".join(f"{s} {n:,}" for s, n in per_sector.items()))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        firms.to_parquet(folder / "firms.parquet", index=False)
        assignments.to_parquet(folder / "assignments.parquet", index=False)
        write_files_as_a_user_has_them(firms, assignments, folder)
        rows = []
        for label, name, kwargs in [
            ("read labels + register, place by district", "load_inputs", {}),
            ("locate (lat/lon -> BNG)", "locate", {}),
            ("specialisation by district", "specialisation", {"area": "district"}),
            ("specialisation by region", "specialisation", {"area": "region"}),
            ("spatial DBSCAN eps 1 km, 9 sectors", "spatial", {"method": "dbscan", "eps_m": 1000.0}),
            ("spatial DBSCAN eps 500 m, 9 sectors", "spatial", {"method": "dbscan", "eps_m": 500.0, "cell_m": 500.0}),
        ]:
            r = run_stage(name, folder, **kwargs)
            extra = ", ".join(f"{k} {v:,}" for k, v in r.items() if k not in {"seconds", "max_rss_mib", "loaded_rss_mib", "cpu_seconds"})
            print(f"{label:<40}{r['seconds']:>8.1f}s (CPU incl. loading {r['cpu_seconds']:.1f}s)  peak RSS {r['max_rss_mib']:>7.0f} MiB (after loading {r['loaded_rss_mib']:.0f})  {extra}")
            rows.append((label, r))

    # HDBSCAN vs DBSCAN on growing samples of the largest sector, side by side.
    largest = per_sector.index[0]
    xy_all = firms.set_index("firm_id").loc[assignments.loc[assignments["sector_id"] == largest, "firm_id"], ["easting", "northing"]].to_numpy()
    rng = np.random.default_rng(1)
    print(f"\nHDBSCAN vs DBSCAN on samples of {largest} ({len(xy_all):,} firms):")
    for method in ("dbscan", "hdbscan"):  # imports and first-call set-up out of the timings
        time_method(xy_all[:500], method)
    for n in [n for n in (5_000, 10_000, 20_000, 40_000, 80_000) if n < len(xy_all)] + [len(xy_all)]:
        xy = xy_all[rng.choice(len(xy_all), n, replace=False)]
        db = time_method(xy, "dbscan")
        hd = time_method(xy, "hdbscan")
        print(f"  n={n:>7,}  dbscan {db:6.2f}s  hdbscan {hd:7.2f}s  ratio {hd / max(db, 1e-9):6.1f}x")
        if hd > args.hdbscan_budget:
            print(f"  (stopping: HDBSCAN took over {args.hdbscan_budget:.0f}s)")
            break


if __name__ == "__main__":
    main()
