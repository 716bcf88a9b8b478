"""A generated little country for the cluster tests: an ONSPD-layout postcode file, a register, firm labels and
funded-project participation, with clusters and communities planted where the tests expect to find them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rtic.clusters.geography import to_latlon

ORIGIN = (300_000.0, 200_000.0)  # south-west corner (BNG metres) of a 100 km × 100 km square
SIZE = 100_000.0
SECTORS = ["alpha", "beta", "gamma", "tiny"]
ALPHA_CENTRE = (320_000.0, 230_000.0)  # in LAD "E1" (south-west quadrant)
BETA_CENTRE = (380_000.0, 280_000.0)  # in LAD "E4" (north-east quadrant)
LADS = {(0, 0): "E1", (1, 0): "E2", (0, 1): "E3", (1, 1): "E4"}


def _inward(i: int) -> str:
    letters = "ABDEFGHJLNPQRSTUWXYZ"
    return f"{i // 400 % 10}{letters[i // 20 % 20]}{letters[i % 20]}"


@dataclass
class World:
    onspd: pd.DataFrame
    register: pd.DataFrame
    labels: pd.DataFrame
    participation: pd.DataFrame
    planted: dict = field(default_factory=dict)  # what the tests must find

    def write(self, folder: Path) -> dict[str, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"onspd": folder / "onspd.csv", "register": folder / "register.csv", "labels": folder / "labels.parquet",
                 "participation": folder / "participation.csv"}
        self.onspd.to_csv(paths["onspd"], index=False)
        self.register.to_csv(paths["register"], index=False)
        self.labels.to_parquet(paths["labels"], index=False)
        self.participation.to_csv(paths["participation"], index=False)
        return paths


def _postcodes(points: np.ndarray, outward: str, start: int) -> pd.DataFrame:
    x, y = points[:, 0], points[:, 1]
    lat, lon = to_latlon(x, y)
    quad = [LADS[(int(a >= ORIGIN[0] + SIZE / 2), int(b >= ORIGIN[1] + SIZE / 2))] for a, b in zip(x, y)]
    pcds = [f"{outward} {_inward(start + i)}" for i in range(len(points))]
    return pd.DataFrame({
        "pcd7": [p.replace(" ", "").ljust(7) for p in pcds], "pcds": pcds, "dointr": "199801", "doterm": "",
        "oslaua": quad, "oseast1m": np.round(x).astype(int), "osnrth1m": np.round(y).astype(int), "osgrdind": "1",
        "ctry": "E92000001", "rgn": "E12000009", "ttwa": [q.replace("E", "T") for q in quad],
        "lat": np.round(lat, 6), "long": np.round(lon, 6),
    })


def make_world(seed: int = 0, n_background: int = 3000) -> World:
    rng = np.random.default_rng(seed)
    # Background postcodes on a 2 km grid (2,500), and 100 m grids of 1 km² around the two planted cluster centres.
    grid = np.arange(1000.0, SIZE, 2000.0)
    bg_points = np.array([(ORIGIN[0] + a, ORIGIN[1] + b) for a in grid for b in grid])
    block = np.arange(-450.0, 500.0, 100.0)
    alpha_points = np.array([(ALPHA_CENTRE[0] + a, ALPHA_CENTRE[1] + b) for a in block for b in block])
    beta_points = np.array([(BETA_CENTRE[0] + a, BETA_CENTRE[1] + b) for a in block for b in block])
    onspd = pd.concat([_postcodes(bg_points, "QA1", 0), _postcodes(alpha_points, "QB2", 0), _postcodes(beta_points, "QC3", 0)], ignore_index=True)
    # A terminated-looking postcode with no grid reference, as ONSPD publishes them.
    onspd = pd.concat([onspd, pd.DataFrame([{**onspd.iloc[0].to_dict(), "pcds": "QD4 1AA", "pcd7": "QD4 1AA",
                                              "oseast1m": "", "osnrth1m": "", "osgrdind": "9", "lat": 99.999999, "long": 0.0}])], ignore_index=True)
    bg_pc = onspd[onspd["pcds"].str.startswith("QA1")]["pcds"].to_numpy()
    alpha_pc = onspd[onspd["pcds"].str.startswith("QB2")]["pcds"].to_numpy()
    beta_pc = onspd[onspd["pcds"].str.startswith("QC3")]["pcds"].to_numpy()

    rows, labels = [], []

    def add(firm_id, postcode, sectors, **extra):
        rows.append({"firm_id": firm_id, "postcode": postcode, **extra})
        for s in SECTORS:
            labels.append({"firm_id": firm_id, "sector_id": s, "probability": 0.9 if s in sectors else 0.1, "assigned": s in sectors})

    for i in range(n_background):
        draw = rng.random()
        sectors = ["alpha"] if draw < 0.08 else ["beta"] if draw < 0.16 else ["gamma"] if draw < 0.30 else []
        add(f"BG{i:05d}", rng.choice(bg_pc), sectors)
    planted_alpha = [f"AL{i:03d}" for i in range(60)]
    for fid in planted_alpha:
        add(fid, rng.choice(alpha_pc).lower().replace(" ", ""), ["alpha"])  # messy case and spacing on purpose
    planted_beta = [f"BE{i:03d}" for i in range(40)]
    for fid in planted_beta:
        add(fid, rng.choice(beta_pc), ["beta"])
    tiny = [f"TI{i:03d}" for i in range(6)]
    for j, fid in enumerate(tiny):
        add(fid, alpha_pc[j], ["tiny"])  # six firms, all inside the alpha block: too few for any cluster
    # Firms that cannot be placed, each for a different reason; one placed only by its own lat/lon.
    add("NOPC", "", ["gamma"])
    add("BADPC", "not a postcode", ["gamma"])
    add("UNKNOWN", "ZZ9 9ZZ", ["gamma"])
    add("NOGRID", "QD4 1AA", ["gamma"])
    lat, lon = to_latlon(np.array([350_000.0]), np.array([250_000.0]))
    add("LATLON", "", ["gamma"], lat=f"{lat[0]:.6f}", lon=f"{lon[0]:.6f}")
    register = pd.DataFrame(rows).fillna("")
    register["name"] = "Firm " + register["firm_id"]
    labels_df = pd.DataFrame(labels)
    labels_df["model_name"], labels_df["model_version"] = "rtic-sector-classifier", "1"

    # Participation: three planted communities, 8 firms each, 6 projects within each, one weak project across.
    # C-spec: co-located alpha firms (planted cluster); C-disp: alpha firms spread over the country;
    # C-mixed: co-located background firms of several sectors around one place.
    spec = planted_alpha[:8]
    bg_alpha = labels_df[(labels_df["sector_id"] == "alpha") & labels_df["assigned"] & labels_df["firm_id"].str.startswith("BG")]["firm_id"]
    lad_of = register.set_index("firm_id")["postcode"].map(onspd.set_index("pcds")["oslaua"])
    disp = [f for lad in sorted(LADS.values()) for f in bg_alpha[bg_alpha.map(lad_of) == lad].head(2)]  # 2 per quadrant
    beta_block = planted_beta[:4]
    mixed = beta_block + [f"BE{i:03d}" for i in range(30, 34)]  # co-located firms, relabelled below as mixed sectors
    groups = {"spec": spec, "disp": disp, "mixed": mixed}
    part_rows, project = [], 0
    for name, firms in groups.items():
        for _ in range(6):
            project += 1
            members = rng.choice(firms, size=4, replace=False)
            for k, fid in enumerate(members):
                part_rows.append({"Project Number": f"P{project:04d}", "Participant Name": f"Firm {fid}", "CRN": fid,
                                  "Is Lead Participant": "Yes" if k == 0 else "No", "Postcode": ""})
        project += 1  # a university in each group's projects (no CRN: matched by name)
        for fid in firms[:3]:
            part_rows.append({"Project Number": f"P{project:04d}", "Participant Name": f"Firm {fid}", "CRN": fid, "Is Lead Participant": "No", "Postcode": ""})
        part_rows.append({"Project Number": f"P{project:04d}", "Participant Name": f"University of {name.title()}", "CRN": "",
                          "Is Lead Participant": "Yes", "Postcode": ""})
    project += 1  # one weak link across groups
    for fid in (spec[0], disp[0], mixed[0]):
        part_rows.append({"Project Number": f"P{project:04d}", "Participant Name": f"Firm {fid}", "CRN": fid, "Is Lead Participant": "No", "Postcode": ""})
    part_rows.append({"Project Number": "", "Participant Name": "Orphan row", "CRN": "", "Is Lead Participant": "No", "Postcode": ""})
    participation = pd.DataFrame(part_rows)
    # Make the "mixed" group span sectors: half beta, the rest gamma / none (a diverse collaborating group).
    for fid, new in zip(mixed[4:], ["gamma", "gamma", None, None]):
        labels_df.loc[labels_df["firm_id"] == fid, "assigned"] = labels_df.loc[labels_df["firm_id"] == fid, "sector_id"] == new
    planted = {"alpha": planted_alpha, "beta": [f for f in planted_beta if f not in mixed[4:]], "tiny": tiny, "groups": groups,
               "unplaced": {"NOPC": "no postcode", "BADPC": "invalid postcode", "UNKNOWN": "unknown postcode", "NOGRID": "postcode has no grid reference"}}
    return World(onspd, register, labels_df, participation, planted)


def district_world(seed: int = 0, share: float = 0.7) -> tuple[World, pd.DataFrame]:
    """The little country as a real register meets a partial ONSPD: `share` of the background firms have postcodes
    the ONSPD does not list, in districts QF1–QF9 that only a centroid file (no LAD column, as the national outcode
    centroid files have none) places. Returns the world and that centroid file."""
    world = make_world(seed)
    rng = np.random.default_rng(seed + 1)
    grid = [(ORIGIN[0] + 15_000 + 35_000 * i, ORIGIN[1] + 15_000 + 35_000 * j) for i in range(3) for j in range(3)]
    outcodes = [f"QF{k + 1}" for k in range(len(grid))]
    lat, lon = to_latlon(np.array([g[0] for g in grid]), np.array([g[1] for g in grid]))
    centroids = pd.DataFrame({"postcode": outcodes, "easting": [int(g[0]) for g in grid], "northing": [int(g[1]) for g in grid],
                              "latitude": np.round(lat, 5), "longitude": np.round(lon, 5), "region_code": "SOUTHWEST"})
    background = world.register["firm_id"].str.startswith("BG")
    moved = background & (rng.random(len(world.register)) < share)
    world.register.loc[moved, "postcode"] = [f"{rng.choice(outcodes)} {_inward(i)}" for i in range(int(moved.sum()))]
    world.planted["district_placed"] = world.register.loc[moved, "firm_id"].tolist()
    return world, centroids
