"""Cluster stages on a generated country with planted clusters and communities (see cluster_world.py)."""

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cluster_world import ALPHA_CENTRE, BETA_CENTRE, district_world, make_world
from conftest import REPO, run_cli
from rtic.clusters.communities import CommunityParams, Participation, find_communities, normalise_crn, read_participation
from rtic.clusters.inputs import build_inputs, load_inputs, read_labels
from rtic.clusters.pipeline import load_collaboration, run_communities, run_spatial, type_spatial
from rtic.clusters.spatial import SpatialParams, spatial_clusters
from rtic.clusters.specialisation import SpecialisationParams, choose_area, left_out, location_quotients, specialisation
from rtic.clusters.typology import (DISPERSED, DIVERSE, NO_TYPE, NOT_RD_ACTIVE, RD_COLLABORATING, SPECIALISED,
                                    TypologyParams, cluster_type)
from rtic.errors import RticError
from rtic.clusters.geography import load_lookup, locate_firms, normalise_postcode, to_bng, to_latlon

SHARED_UK = next((p for p in (REPO.parent / "shared" / "data" / "uk", Path("/work/shared/data/uk")) if p.is_dir()), None)


@pytest.fixture(scope="module")
def world():
    return make_world(seed=0)


@pytest.fixture(scope="module")
def paths(world, tmp_path_factory):
    return world.write(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def inputs(paths):
    return load_inputs(paths["labels"], paths["register"], [paths["onspd"]])


# -- geography --------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw,expected", [
    ("sw1a1aa", ("SW1A 1AA", "SW1A")), ("  EC1A  1BB ", ("EC1A 1BB", "EC1A")), ("M1 1AE", ("M1 1AE", "M1")),
    ("b33 8th", ("B33 8TH", "B33")), ("AB10", ("", "AB10")), ("not a postcode", ("", "")), ("", ("", "")), (None, ("", "")),
])
def test_normalise_postcode(raw, expected):
    assert normalise_postcode(raw) == expected


def test_bng_round_trip_and_scale():
    lat, lon = np.array([51.5, 55.95, np.nan]), np.array([-0.12, -3.19, 0.0])
    x, y = to_bng(lat, lon)
    assert np.isnan(x[2]) and np.isnan(y[2])
    # London and Edinburgh are roughly 530 km apart: metres, not degrees.
    assert 500_000 < np.hypot(x[1] - x[0], y[1] - y[0]) < 560_000
    back_lat, back_lon = to_latlon(x[:2], y[:2])
    assert np.allclose(back_lat, lat[:2], atol=1e-6) and np.allclose(back_lon, lon[:2], atol=1e-6)


def test_every_firm_is_placed_or_reported(world, inputs):
    reasons = dict(zip(inputs.problems["firm_id"], inputs.problems["reason"]))
    assert reasons == world.planted["unplaced"]
    assert len(inputs.firms) == world.register["firm_id"].nunique()
    latlon = inputs.firms.set_index("firm_id").loc["LATLON"]
    assert latlon["geo_source"] == "register lat/lon"
    assert abs(latlon["easting"] - 350_000) < 1 and abs(latlon["northing"] - 250_000) < 1
    # Messy postcodes ("qb2 0ab" style) are normalised and found.
    assert (inputs.firms.set_index("firm_id").loc[world.planted["alpha"], "geo_source"] == "postcode").all()


def test_district_centroid_fallback_and_order(tmp_path):
    onspd = pd.DataFrame({"pcds": ["AA1 1AA", "AA1 1AB"], "oseast1m": ["400000", "400200"], "osnrth1m": ["300000", "300000"],
                          "oslaua": ["E1", "E1"], "osgrdind": ["1", "1"]})
    districts = pd.DataFrame({"postcode": ["BB2", "AA1"], "easting": ["500000", "1"], "northing": ["200000", "1"]})
    onspd.to_csv(tmp_path / "onspd.csv", index=False)
    districts.to_csv(tmp_path / "districts.csv", index=False)
    lookup = load_lookup([tmp_path / "onspd.csv", tmp_path / "districts.csv"])
    register = pd.DataFrame({"firm_id": ["a", "b", "c", "d"], "postcode": ["AA1 1AA", "AA1 9ZZ", "BB2 3CD", "CC3 1AA"]})
    firms = locate_firms(register, lookup).set_index("firm_id")
    assert firms.loc["a", "geo_source"] == "postcode" and firms.loc["a", "easting"] == 400000
    # AA1 is in both files: the first (ONSPD) wins, with the mean of its postcodes and their most common LAD.
    assert firms.loc["b", "geo_source"] == "postcode district centroid"
    assert firms.loc["b", "easting"] == 400100 and firms.loc["b", "lad"] == "E1"
    assert firms.loc["c", "geo_source"] == "postcode district centroid" and firms.loc["c", "easting"] == 500000
    assert firms.loc["d", "geo_source"] == "unknown postcode" and np.isnan(firms.loc["d", "easting"])


def test_lookup_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("foo,bar\n1,2\n")
    with pytest.raises(RticError, match="no postcode column"):
        load_lookup([bad])
    nocoords = tmp_path / "nocoords.csv"
    nocoords.write_text("pcds,oslaua\nAA1 1AA,E1\n")
    with pytest.raises(RticError, match="neither easting/northing"):
        load_lookup([nocoords])
    with pytest.raises(RticError, match="not found"):
        load_lookup([tmp_path / "missing.csv"])


@pytest.mark.skipif(SHARED_UK is None, reason="shared UK data not present")
def test_real_onspd_sample_projects_to_its_own_grid_references():
    lookup = load_lookup([SHARED_UK / "onspd_sample_AB1_postcodes.csv"])
    raw = pd.read_csv(SHARED_UK / "onspd_sample_AB1_postcodes.csv", dtype=str, usecols=["pcds", "lat", "long", "osgrdind"])
    raw = raw[raw["osgrdind"] != "9"].head(500)
    x, y = to_bng(raw["lat"].astype(float).to_numpy(), raw["long"].astype(float).to_numpy())
    known = lookup.postcodes.loc[raw["pcds"]]
    # ONSPD's lat/long are derived from its grid references; without the OSTN15 grid the difference stays small.
    assert np.nanmax(np.hypot(x - known["easting"].to_numpy(), y - known["northing"].to_numpy())) < 10
    assert set(lookup.area_columns) >= {"lad", "ttwa", "region"}


@pytest.mark.skipif(SHARED_UK is None, reason="shared UK data not present")
def test_real_district_centroids_as_fallback():
    lookup = load_lookup([SHARED_UK / "onspd_sample_AB1_postcodes.csv", SHARED_UK / "outcode_centroids_academe_2014.csv"])
    register = pd.DataFrame({"firm_id": ["ab", "sw"], "postcode": ["AB1 0AA", "SW1A 2AA"]})
    firms = locate_firms(register, lookup).set_index("firm_id")
    assert firms.loc["ab", "geo_source"] == "postcode" and firms.loc["ab", "lad"] == "S12000033"
    assert firms.loc["sw", "geo_source"] == "postcode district centroid"
    # Westminster is about 530 km east and 180 km north of the grid's origin.
    assert abs(firms.loc["sw", "easting"] - 530_000) < 5_000 and abs(firms.loc["sw", "northing"] - 180_000) < 5_000


# -- specialisation ---------------------------------------------------------------------------------
def test_location_quotient_by_hand():
    # area with 20 of 100 firms, 10 in the sector; sector 50 of 1000 nationally: LQ = (10/100)/(50/1000) = 2
    lq, low, high = location_quotients(np.array([10, 0]), np.array([100, 100]), np.array([50, 50]), 1000.0)
    assert lq[0] == pytest.approx(2.0)
    # Clopper–Pearson through the F distribution (not the beta quantiles the code uses), over the national share 0.05.
    from scipy.stats import f

    x, n = 10, 100
    share_low = x / (x + (n - x + 1) * f.ppf(0.975, 2 * (n - x + 1), 2 * x))
    share_high = (x + 1) * f.ppf(0.975, 2 * (x + 1), 2 * (n - x)) / ((n - x) + (x + 1) * f.ppf(0.975, 2 * (x + 1), 2 * (n - x)))
    assert low[0] == pytest.approx(share_low / 0.05, rel=1e-9) and high[0] == pytest.approx(share_high / 0.05, rel=1e-9)
    assert 0.98 < low[0] < 0.99 and 3.52 < high[0] < 3.53
    # No firm of the sector among 100: LQ 0, low 0, high 1 - 0.025^(1/100) over the national share.
    assert lq[1] == 0 and low[1] == 0 and high[1] == pytest.approx((1 - 0.025 ** (1 / 100)) / 0.05)


def test_lq_interval_is_honest_for_small_counts():
    # The case: one firm in its area, and in a sector of 10 firms among 1,144, so LQ = 114.4. The old
    # interval collapsed to 114.4-114.4; the exact one runs from 0.025 × 114.4 (the share could be as low as 2.5%)
    # to 114.4 (a share above 1 is impossible).
    lq, low, high = location_quotients(np.array([1, 1, 0, 3]), np.array([1, 2, 10, 3]), np.array([10, 10, 10, 10]), 1144.0)
    assert lq[0] == pytest.approx(114.4) and low[0] == pytest.approx(0.025 * 114.4) and high[0] == pytest.approx(114.4)
    # One of two: share bounds 1 - √0.975 and √0.975.
    assert low[1] == pytest.approx((1 - 0.975 ** 0.5) * 114.4) and high[1] == pytest.approx(0.975 ** 0.5 * 114.4)
    # None of ten: 0 to 1 - 0.025^(1/10).
    assert (lq[2], low[2]) == (0, 0) and high[2] == pytest.approx((1 - 0.025 ** 0.1) * 114.4)
    # Three of three: 0.025^(1/3) to 1.
    assert low[3] == pytest.approx(0.025 ** (1 / 3) * 114.4) and high[3] == pytest.approx(114.4)
    assert (high - low > 0).all()
    # At 90% the tails are 5%: one of one starts at 0.05.
    _, low90, _ = location_quotients(np.array([1]), np.array([1]), np.array([10]), 1144.0, confidence=0.9)
    assert low90[0] == pytest.approx(0.05 * 114.4)
    # No sector firms, or an empty area: no LQ at all.
    lq, low, high = location_quotients(np.array([0, 0]), np.array([5, 0]), np.array([0, 10]), 1144.0)
    assert np.isnan(lq).all() and np.isnan(low).all() and np.isnan(high).all()


def test_specialisation_finds_planted_area(inputs):
    table = specialisation(inputs, "lad", SpecialisationParams(lq_threshold=1.25, min_count=10))
    assert set(table["area_code"]) == {"E1", "E2", "E3", "E4"}
    assert len(table) == 4 * 4  # every area × every sector, zeros included
    row = table.set_index(["area_code", "sector_id"])
    assert row.loc[("E1", "alpha"), "specialised"] and row.loc[("E1", "alpha"), "significant"]
    assert row.loc[("E4", "beta"), "specialised"]
    assert not row.loc[("E2", "alpha"), "specialised"]
    # The six "tiny" firms sit in E1: a huge LQ, but fewer than min_count firms.
    assert row.loc[("E1", "tiny"), "lq"] > 3 and not row.loc[("E1", "tiny"), "specialised"]
    assert (row.loc[(slice(None), "tiny"), "firms"].sum()) == 6
    # Counts add up to the placed, labelled firms.
    placed = inputs.located
    assert table.groupby("area_code")["area_firms"].first().sum() == len(placed)
    assert (table["lq_low"] <= table["lq"]).all() and (table["lq"] <= table["lq_high"]).all()


def test_district_placed_firms_are_counted_by_default(tmp_path):
    """A partial ONSPD plus a national centroid file: most firms are placed by district and have no LAD. The default
    area must count them (postcode districts), and a named --area lad must list every firm it does not count."""
    world, centroids = district_world()
    paths = world.write(tmp_path)
    centroids.to_csv(tmp_path / "centroids.csv", index=False)
    inp = load_inputs(paths["labels"], paths["register"], [paths["onspd"], tmp_path / "centroids.csv"])
    moved = world.planted["district_placed"]
    assert len(moved) > len(inp.firms) / 2
    assert (inp.firms.set_index("firm_id").loc[moved, "geo_source"] == "postcode district centroid").all()

    column, note = choose_area(inp, "auto")
    assert column == "district" and "postcode district" in note
    table = specialisation(inp, "auto")
    gone = left_out(inp, "district")
    counted = table.groupby("area_code")["area_firms"].first()
    # Every labelled firm is counted once or listed: here all but the unplaced and the one placed by lat/lon alone.
    assert counted.sum() + len(gone) == len(inp.firms) == world.register["firm_id"].nunique()
    assert set(gone["firm_id"]) == {"NOPC", "BADPC", "UNKNOWN", "LATLON"}
    assert (table["area_level"] == "district").all() and table["total_firms"].iloc[0] == counted.sum()
    assert {f"QF{k}" for k in range(1, 10)} <= set(counted.index)
    latlon = gone.set_index("firm_id").loc["LATLON"]
    assert latlon["reason"] == "no district area" and "no postcode" in latlon["detail"]

    # By LAD: the district-placed firms are left out, each with its reason and its district.
    by_lad = left_out(inp, "lad").set_index("firm_id")
    assert set(moved) <= set(by_lad.index)
    row = by_lad.loc[moved[0]]
    assert row["reason"] == "no lad area" and f"postcode district {row['postcode'].split()[0]} no lad" in row["detail"]
    lad_table = specialisation(inp, "lad")
    assert lad_table.groupby("area_code")["area_firms"].first().sum() + len(by_lad) == len(inp.firms)


def test_auto_area_is_lad_when_the_lookup_gives_every_district_one(inputs):
    column, note = choose_area(inputs, "auto")
    assert column == "lad" and "have a LAD" in note
    assert (specialisation(inputs, "auto")["area_level"] == "lad").all()
    # NOGRID has no coordinates but its ONSPD row gives a LAD: it is counted; the rest are listed.
    gone = left_out(inputs, "lad")
    assert set(gone["firm_id"]) == {"NOPC", "BADPC", "UNKNOWN", "LATLON"}
    counted = specialisation(inputs, "lad").groupby("area_code")["area_firms"].first().sum()
    assert counted + len(gone) == len(inputs.firms)


def test_district_areas_from_any_lookup_file_and_only_known_districts(tmp_path):
    # Centroid file first: AA1's position comes from it, its LAD from the ONSPD after it (the centroid file has none).
    # GY1 (Guernsey) is off the British National Grid, as in the real centroid files: listed, but not placeable.
    pd.DataFrame({"postcode": ["AA1", "BB2", "GY1"], "easting": ["410000", "500000", "361100"],
                  "northing": ["310000", "200000", "-48888"]}).to_csv(tmp_path / "centroids.csv", index=False)
    pd.DataFrame({"pcds": ["AA1 1AA", "AA1 1AB", "AA1 1AD"], "oseast1m": ["400000", "400200", "400400"], "osnrth1m": ["300000"] * 3,
                  "oslaua": ["E2", "E1", "E1"], "osgrdind": ["1"] * 3}).to_csv(tmp_path / "onspd.csv", index=False)
    lookup = load_lookup([tmp_path / "centroids.csv", tmp_path / "onspd.csv"])
    register = pd.DataFrame({"firm_id": ["a", "b", "c", "d", "e"], "postcode": ["AA1 9ZZ", "BB2 1AA", "ZZ9 9ZZ", "AA1 1AA", "GY1 1AA"]})
    firms = locate_firms(register, lookup).set_index("firm_id")
    assert firms.loc["a", "geo_source"] == "postcode district centroid" and firms.loc["a", "easting"] == 410000
    assert firms.loc["a", "lad"] == "E1"  # the most common LAD of AA1's postcodes
    assert pd.isna(firms.loc["b", "lad"]) and firms.loc["b", "district"] == "BB2"
    # A postcode-shaped typo is not an area: its district is unknown to every lookup.
    assert firms.loc["c", "geo_source"] == "unknown postcode" and pd.isna(firms.loc["c", "district"])
    assert firms.loc["d", "lad"] == "E2" and firms.loc["d", "district"] == "AA1"
    assert firms.loc["e", "geo_source"] == "postcode has no grid reference" and np.isnan(firms.loc["e", "easting"])


def test_unplaced_rows_keep_the_postcode_as_given(inputs, world):
    problems = inputs.problems.set_index("firm_id")
    given = world.register.set_index("firm_id")["postcode"]
    for firm in ("BADPC", "UNKNOWN", "NOGRID", "NOPC"):
        assert problems.loc[firm, "postcode"] == given[firm].strip()
    assert problems.loc["BADPC", "postcode"] == "not a postcode" and problems.loc["BADPC", "reason"] == "invalid postcode"
    assert all(problems["detail"].str.len() > 0)


def test_specialisation_unknown_area(inputs):
    with pytest.raises(RticError, match="no area column 'nuts9'"):
        specialisation(inputs, "nuts9")


# -- spatial ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["dbscan", "hdbscan"])
def test_spatial_recovers_planted_clusters(world, inputs, method):
    result = spatial_clusters(inputs, SpatialParams(method=method, eps_m=1000, min_samples=10))
    for sector, centre in (("alpha", ALPHA_CENTRE), ("beta", BETA_CENTRE)):
        clusters = result.clusters[result.clusters["sector_id"] == sector]
        members = result.members[result.members["sector_id"] == sector]
        planted = set(world.planted[sector])
        # The cluster holding the planted firms: all of them, and few others. HDBSCAN has no distance scale, so it
        # also takes in part of the sparse background around the planted block (one reason DBSCAN is the default).
        best = members[members["firm_id"].isin(planted)]["cluster_id"].mode()[0]
        got = set(members.loc[members["cluster_id"] == best, "firm_id"])
        extras = 5 if method == "dbscan" else len(planted) - 1  # HDBSCAN: the planted firms are still the majority
        assert planted <= got and len(got - planted) <= extras, (sector, method, len(got - planted))
        row = clusters.set_index("cluster_id").loc[best]
        if method == "dbscan":
            assert np.hypot(row["centroid_easting"] - centre[0], row["centroid_northing"] - centre[1]) < 300
        assert row["lq"] > 3 and 0 < row["sector_share"] <= 1
        assert row["min_easting"] <= centre[0] <= row["max_easting"]
    # Background firms are spread out uniformly: DBSCAN finds nothing else (HDBSCAN, relative to density, does).
    if method == "dbscan":
        assert len(result.clusters) == 2 and (result.clusters["sector_id"] != "gamma").all()
    assert all(result.clusters["firms"] >= 10)


def test_sector_with_fewer_than_ten_firms(inputs):
    result = spatial_clusters(inputs, SpatialParams(), sectors=["tiny"])
    assert result.clusters.empty
    assert any("tiny" in n and "fewer than 10" in n for n in result.notes)
    assert len(result.members) == 6 and result.members["cluster_id"].isna().all()


@pytest.mark.parametrize("method", ["dbscan", "hdbscan"])
def test_all_firms_in_one_postcode(method):
    register = pd.DataFrame({"firm_id": [f"F{i}" for i in range(25)], "postcode": "QA1 1AA"})
    labels = pd.DataFrame({"firm_id": register["firm_id"], "sector_id": "alpha", "assigned": [i < 15 for i in range(25)]})
    lookup_rows = pd.DataFrame({"pcds": ["QA1 1AA"], "oseast1m": ["400000"], "osnrth1m": ["300000"], "oslaua": ["E1"]})
    from rtic.clusters.geography import PostcodeLookup

    lookup = PostcodeLookup(lookup_rows.rename(columns={"pcds": "postcode"}).assign(outcode="QA1", easting=400000.0, northing=300000.0, lad="E1").set_index("postcode"),
                            pd.DataFrame(columns=["easting", "northing"]), {"lad": "lad"}, [])
    inp = build_inputs(labels, register, lookup)
    result = spatial_clusters(inp, SpatialParams(method=method))
    assert len(result.clusters) == 1
    row = result.clusters.iloc[0]
    assert row["firms"] == 15 and row["radius_m"] == 0 and row["hull_area_km2"] == 0
    assert row["sector_share"] == pytest.approx(15 / 25) and row["lq"] == pytest.approx(1.0)
    spec = specialisation(inp, "lad", SpecialisationParams(min_count=10))
    assert spec.iloc[0]["lq"] == pytest.approx(1.0) and not spec.iloc[0]["specialised"]


def test_missing_coordinates_are_reported_not_clustered(tmp_path):
    register = pd.DataFrame({"firm_id": ["a", "b", "c"], "postcode": ["", "", ""], "lat": ["51.5", "", "x"], "lon": ["-0.1", "", "0"]})
    labels = pd.DataFrame({"firm_id": ["a", "b", "c", "ghost"], "sector_id": "alpha", "assigned": True})
    inp = build_inputs(labels, register, None)
    assert list(inp.located["firm_id"]) == ["a"]
    assert dict(zip(inp.problems["firm_id"], inp.problems["reason"])) == {"b": "no postcode", "c": "no postcode", "ghost": "not in register"}
    result = spatial_clusters(inp, SpatialParams())
    assert result.clusters.empty and list(result.members["firm_id"]) == ["a"]
    with pytest.raises(RticError, match="no way to place firms"):
        pd.DataFrame({"firm_id": ["a"], "postcode": ["AA1 1AA"]}).to_csv(tmp_path / "r.csv", index=False)
        labels.to_csv(tmp_path / "l.csv", index=False)
        load_inputs(tmp_path / "l.csv", tmp_path / "r.csv", [])


def test_labels_accept_reviewed_csv_and_reject_bad_assigned(tmp_path):
    path = tmp_path / "published.csv"
    path.write_text("firm_id,sector_id,assigned,reviewer\nA,alpha,True,me\nA,beta,0,me\nB,alpha,yes,\n")
    labels = read_labels(path)
    assert labels["assigned"].tolist() == [True, False, True]
    path.write_text("firm_id,sector_id,assigned\nA,alpha,maybe\n")
    with pytest.raises(RticError, match="not true/false"):
        read_labels(path)
    path.write_text("firm_id,sector_id\nA,alpha\n")
    with pytest.raises(RticError, match="no column 'assigned'"):
        read_labels(path)


# -- communities and types --------------------------------------------------------------------------
def test_planted_communities_recovered_and_seeded(world, paths, inputs):
    participation = read_participation(paths["participation"])
    assert list(participation.problems["reason"]) == ["no project number"]
    result = find_communities(participation, inputs.firms["firm_id"], CommunityParams(seed=3))
    community_of = result.members.set_index("participant_id")["community_id"]
    found = []
    for name, firms in world.planted["groups"].items():
        ids = set(community_of.reindex(firms))
        assert len(ids) == 1 and None not in ids, (name, ids)
        found.append(ids.pop())
    assert len(set(found)) == 3
    assert set(result.summary["internal_projects"]) == {7}  # 6 projects + 1 with the university, per group
    again = find_communities(participation, inputs.firms["firm_id"], CommunityParams(seed=3))
    pd.testing.assert_frame_equal(result.members, again.members)


def test_large_projects_left_out_and_crn_matching():
    rows = pd.DataFrame({"project_id": ["P1"] * 5 + ["P2"] * 2, "participant_id": ["00000001", "00000002", "00000003", "00000004", "00000005", "00000001", "00000002"],
                         "participant_name": "x", "crn": "", "postcode": ""})
    result = find_communities(Participation(rows, pd.DataFrame()), ["1", "2"], CommunityParams(max_participants=3, min_members=2))
    assert "1 project(s) with more than 3 participants" in result.notes[0]
    assert len(result.edges) == 1
    assert result.members.set_index("participant_id").loc["00000001", "firm_id"] == "1"
    assert normalise_crn(" 123 ") == "00000123" and normalise_crn("SC123456") == "SC123456" and normalise_crn("nan") == ""


@pytest.mark.parametrize("rd,coloc,spec,collab,expected", [
    (False, True, True, True, NOT_RD_ACTIVE),
    (True, True, True, False, SPECIALISED), (True, True, True, True, SPECIALISED),
    (True, True, False, True, RD_COLLABORATING), (True, True, False, False, DIVERSE),
    (True, False, True, True, DISPERSED), (True, False, True, False, NO_TYPE), (True, False, False, True, NO_TYPE),
])
def test_type_decision_table(rd, coloc, spec, collab, expected):
    assert cluster_type(rd, coloc, spec, collab) == expected


def test_planted_communities_get_their_types(world, paths, inputs, tmp_path):
    collab, table = run_communities(inputs, paths["participation"], tmp_path / "communities.parquet", CommunityParams(), TypologyParams())
    community_of = collab.communities.members.set_index("participant_id")["community_id"]
    types = table.set_index("community_id")["cluster_type"]
    groups = world.planted["groups"]
    assert types[community_of[groups["spec"][0]]] == SPECIALISED
    assert types[community_of[groups["disp"][0]]] == DISPERSED
    assert types[community_of[groups["mixed"][0]]] == RD_COLLABORATING
    assert (tmp_path / "communities.members.parquet").exists() and (tmp_path / "communities.unplaced.csv").exists()


def test_spatial_cluster_types_follow_rd_activity(world, paths, inputs, tmp_path):
    # With the funded projects alone only 8 of 60 alpha firms are R&D-active: not an innovation cluster.
    spatial, table, _ = run_spatial(inputs, tmp_path / "c.parquet", SpatialParams(), TypologyParams(), paths["participation"])
    assert set(table["cluster_type"]) == {NOT_RD_ACTIVE}
    # A register rd_active column (say, R&D tax credit claimants) makes the planted clusters R&D-active.
    register = world.register.assign(rd_active=world.register["firm_id"].str.startswith(("AL", "BE")).map({True: "yes", False: "no"}))
    inp = build_inputs(world.labels, register, load_lookup([paths["onspd"]]))
    collab = load_collaboration(paths["participation"], inp)
    types = type_spatial(inp, spatial_clusters(inp), collab, TypologyParams()).set_index("group_id")["cluster_type"]
    assert types.to_dict() == {"alpha-1": SPECIALISED, "beta-1": SPECIALISED}
    # And a cluster that is not specialised by footprint LQ (threshold raised above its LQ) is Diverse.
    types = type_spatial(inp, spatial_clusters(inp), collab, TypologyParams(lq_threshold=50)).set_index("group_id")["cluster_type"]
    assert types.to_dict() == {"alpha-1": DIVERSE, "beta-1": DIVERSE}


# -- CLI and pictures -------------------------------------------------------------------------------
def assert_one_line_error(res, needle):
    assert res.returncode == 2, res.stderr
    errors = [l for l in res.stderr.splitlines() if l.startswith("rtic: error:")]
    assert len(errors) == 1 and needle in errors[0] and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines()[-1] == errors[0]  # progress lines may come first; the error is last


def test_cli_report_end_to_end(paths, tmp_path):
    out = tmp_path / "report"
    res = run_cli("clusters", "report", "--labels", str(paths["labels"]), "--register", str(paths["register"]),
                  "--postcodes", str(paths["onspd"]), "--participation", str(paths["participation"]), "--out", str(out), home=tmp_path)
    assert res.returncode == 0, res.stderr
    page = (out / "index.html").read_text()
    for sector in ("alpha", "beta", "gamma", "tiny"):
        png = out / "maps" / f"{sector}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        assert f"maps/{sector}.png" in page
    assert "alpha-1" in page and "fewer than 10" in page
    communities = pd.read_csv(out / "communities.csv")
    assert sorted(communities["cluster_type"]) == sorted([SPECIALISED, DISPERSED, RD_COLLABORATING])
    spec = pd.read_csv(out / "specialisation.csv")
    assert spec["specialised"].sum() >= 2
    assert (out / "clusters.members.csv").exists() and (out / "communities.csv").exists()
    unplaced = pd.read_csv(out / "clusters.unplaced.csv")
    assert set(unplaced["firm_id"]) == {"NOPC", "BADPC", "UNKNOWN", "NOGRID"}


def test_cli_specialisation_and_spatial(paths, tmp_path):
    out = tmp_path / "spec.parquet"
    res = run_cli("clusters", "specialisation", "--labels", str(paths["labels"]), "--register", str(paths["register"]),
                  "--postcodes", str(paths["onspd"]), "--area", "ttwa", "--out", str(out), home=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "4 ttwa areas" in res.stdout and "not placed" in res.stderr
    assert set(pd.read_parquet(out)["area_code"]) == {"T1", "T2", "T3", "T4"}
    res = run_cli("clusters", "spatial", "--labels", str(paths["labels"]), "--register", str(paths["register"]),
                  "--postcodes", str(paths["onspd"]), "--sector", "alpha", "--out", str(tmp_path / "c.csv"), home=tmp_path)
    assert res.returncode == 0, res.stderr
    assert pd.read_csv(tmp_path / "c.csv")["cluster_id"].tolist() == ["alpha-1"]


def test_cli_user_errors(paths, tmp_path):
    base = ["--register", str(paths["register"]), "--postcodes", str(paths["onspd"])]
    bad = tmp_path / "labels.csv"
    bad.write_text("firm_id,sector\nA,alpha\n")
    assert_one_line_error(run_cli("clusters", "specialisation", "--labels", str(bad), *base, "--out", str(tmp_path / "o.csv"), home=tmp_path), "no column")
    assert_one_line_error(run_cli("clusters", "specialisation", "--labels", str(paths["labels"]), *base, "--area", "nuts9", "--out", str(tmp_path / "o.csv"), home=tmp_path), "nuts9")
    assert_one_line_error(run_cli("clusters", "spatial", "--labels", str(paths["labels"]), *base, "--sector", "nope", "--out", str(tmp_path / "o.csv"), home=tmp_path), "unknown sector")
    assert_one_line_error(run_cli("clusters", "spatial", "--labels", str(paths["labels"]), *base, "--out", str(tmp_path / "o.txt"), home=tmp_path), ".parquet or .csv")


def test_area_names_from_json_or_csv(inputs, tmp_path):
    from rtic.clusters.geography import load_area_names

    (tmp_path / "names.json").write_text('{"E1": "South <West>", "E2": "South East"}')
    (tmp_path / "names.csv").write_text("code,name\nE1,Sud-Ouest\n")
    table = specialisation(inputs, "lad", names=load_area_names(tmp_path / "names.json")).set_index("area_code")
    assert table.loc["E1", "area_name"].iloc[0] == "South <West>" and table.loc["E3", "area_name"].iloc[0] == "E3"
    assert load_area_names(tmp_path / "names.csv") == {"E1": "Sud-Ouest"}
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(RticError, match="JSON object"):
        load_area_names(tmp_path / "bad.json")


def test_report_escapes_names(inputs, tmp_path):
    from rtic.clusters.report import write_report

    spatial = spatial_clusters(inputs)
    spec = specialisation(inputs, "lad", names={"E1": "<script>alert(1)</script>"})
    page = write_report(tmp_path, inputs, spec, spatial, spatial.clusters, None, ["note with <b>"]).read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page and "note with &lt;b&gt;" in page


def test_weighted_dbscan_on_shared_postcodes_equals_plain_dbscan():
    from sklearn.cluster import DBSCAN

    from rtic.clusters.spatial import density_labels

    rng = np.random.default_rng(5)
    sites = np.vstack([rng.normal(c, 400, (30, 2)) for c in ((0, 0), (5000, 0))] + [rng.uniform(-20000, 20000, (60, 2))])
    xy = sites[rng.integers(0, len(sites), 2000)]  # 2,000 firms on 120 postcodes: the weighted path
    ours = density_labels(xy, SpatialParams(eps_m=800, min_samples=10))
    plain = DBSCAN(eps=800, min_samples=10).fit(xy).labels_
    assert ours.max() >= 1
    # Same partition (cluster numbers may differ): each of our clusters is exactly one plain cluster.
    assert pd.crosstab(ours, plain).astype(bool).sum(axis=1).eq(1).all()
    assert ((ours == -1) == (plain == -1)).all()


def test_cli_report_keeps_hostile_sector_ids_inside_out(tmp_path):
    """A sector id from the labels never becomes a path: '../../../escaped/pwned' gets a safe map name inside OUT/maps."""
    from rtic.clusters.report import map_filename

    hostile = {"tiny": "../../../escaped/pwned", "gamma": "a/b"}
    world = make_world(seed=0)  # a fresh one: the module's world stays as the other tests expect
    world.labels = world.labels.assign(sector_id=world.labels["sector_id"].replace(hostile))
    paths = world.write(tmp_path / "inputs")
    out = tmp_path / "deep" / "er" / "report"
    res = run_cli("clusters", "report", "--labels", str(paths["labels"]), "--register", str(paths["register"]),
                  "--postcodes", str(paths["onspd"]), "--out", str(out), home=tmp_path)
    assert res.returncode == 0, res.stderr
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png")}
    names = {s: map_filename(s) for s in ("alpha", "beta", *hostile.values())}
    assert written == {f"deep/er/report/maps/{n}" for n in names.values()}
    assert names["alpha"] == "alpha.png" and "/" not in names["../../../escaped/pwned"] and ".." not in names["../../../escaped/pwned"]
    assert not any(p.name == "escaped" for p in tmp_path.rglob("*"))
    page = (out / "index.html").read_text()
    for name in names.values():
        assert f"src='maps/{name}'" in page
    assert "../../../escaped/pwned" in page  # the id is still shown (escaped text), only the file name is sanitised


# -- Innovate UK spreadsheets -------------------------------------------------------------------------
IUK_COLUMNS = ["Project Number", "Project Title", "Competition Year", "Competition Title", "Innovate UK Product Type",
               "Participant Name", "Is Lead Participant", "CRN", "Postcode", "Address Region", "Address Local Authority",
               "Enterprise Size", "Project Start Date", "Project End Date", "Award Offered (£)", "Total Costs (£)", "Project Status"]


def write_iuk_xlsx(path, participation: pd.DataFrame, title_rows=2):
    """A workbook laid out like the published Innovate UK funded-projects file: a title above the header, one row per
    participant, numbers and dates as typed cells; a notes sheet first."""
    from openpyxl import Workbook

    book = Workbook()
    book.active.title = "Notes"
    book.active.append(["About this data"])
    sheet = book.create_sheet("Funded projects")
    for i in range(title_rows):
        sheet.append(["Innovate UK funded projects since 2004" if i == 0 else None])
    sheet.append(IUK_COLUMNS)
    for rec in participation.to_dict("records"):
        sheet.append([rec["Project Number"] or None, "A project", 2021, "Smart grants", "Grant", rec["Participant Name"],
                      rec["Is Lead Participant"], rec["CRN"] or None, rec["Postcode"] or None, "London", "Camden", "Small",
                      datetime(2021, 4, 1), datetime(2022, 3, 31), 125000.0, 250000.5, "Closed"])
    sheet.append([None] * len(IUK_COLUMNS))  # formatting rows after the data
    book.save(path)
    return path


def test_participation_from_xlsx_equals_csv(world, paths, tmp_path):
    xlsx = write_iuk_xlsx(tmp_path / "iuk.xlsx", world.participation)
    from_csv, from_xlsx = read_participation(paths["participation"]), read_participation(xlsx)
    pd.testing.assert_frame_equal(from_csv.rows, from_xlsx.rows)
    # The orphan row's line is its row on the sheet: 2 title rows, the header, then the data.
    assert list(from_xlsx.problems["line"]) == [3 + len(world.participation)]
    assert list(from_xlsx.problems["reason"]) == ["no project number"]


def test_xlsx_number_typed_crns_dates_and_repeated_columns(tmp_path):
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["Project Number", "Participant Name", "CRN", "Postcode", "Postcode", "Project Start Date"])
    sheet.append([10001234, "Acme Ltd", 1234, "AB1 0AA", "x", datetime(2021, 4, 1)])
    sheet.append([10001234, "Beta Ltd", 1234567.0, None, None, None])
    sheet.append([10001234, "University of Q", None, None, None, None])
    book.save(tmp_path / "p.xlsx")
    rows = read_participation(tmp_path / "p.xlsx").rows
    assert rows["project_id"].tolist() == ["10001234"] * 3
    assert rows["participant_id"].tolist() == ["00001234", "01234567", "name:university of q"]
    assert rows["postcode"].tolist() == ["AB1 0AA", "", ""]


def test_bad_spreadsheets_are_one_line_errors(tmp_path):
    from openpyxl import Workbook

    (tmp_path / "renamed.xlsx").write_text("Project Number,CRN\nP1,1\n")
    with pytest.raises(RticError, match="as an .xlsx workbook"):
        read_participation(tmp_path / "renamed.xlsx")
    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 504)
    with pytest.raises(RticError, match="old binary .xls"):
        read_participation(tmp_path / "old.xls")
    book = Workbook()
    book.active.append(["Title", "Budget"])
    book.active.append(["Something", 1])
    book.save(tmp_path / "other.xlsx")
    with pytest.raises(RticError, match=r"no sheet \(Sheet\) has a header row with 'Project Number'"):
        read_participation(tmp_path / "other.xlsx")
    (tmp_path / "empty.xlsx").write_bytes(b"")
    with pytest.raises(RticError, match="empty"):
        read_participation(tmp_path / "empty.xlsx")


def test_cli_communities_from_xlsx(world, paths, tmp_path):
    xlsx = write_iuk_xlsx(tmp_path / "iuk.xlsx", world.participation)
    res = run_cli("clusters", "communities", "--labels", str(paths["labels"]), "--register", str(paths["register"]),
                  "--postcodes", str(paths["onspd"]), "--participation", str(xlsx), "--out", str(tmp_path / "c.csv"), home=tmp_path)
    assert res.returncode == 0, res.stderr
    assert sorted(pd.read_csv(tmp_path / "c.csv")["cluster_type"]) == sorted([SPECIALISED, DISPERSED, RD_COLLABORATING])


# -- GIS files and maps --------------------------------------------------------------------------------
def test_geojson_hulls_centroids_and_members(world, paths, inputs, tmp_path):
    import json

    from matplotlib.path import Path as Ring

    from rtic.clusters.pipeline import gis_paths

    spatial, table, _ = run_spatial(inputs, tmp_path / "c.parquet", SpatialParams(), TypologyParams(), paths["participation"])
    hulls_path, centroids_path, members_path = gis_paths(tmp_path / "c.parquet")
    hulls, centroids, members = (json.loads(p.read_text()) for p in (hulls_path, centroids_path, members_path))
    assert hulls["type"] == "FeatureCollection" and {f["properties"]["cluster_id"] for f in hulls["features"]} == {"alpha-1", "beta-1"}
    for feature in hulls["features"]:
        ring = np.array(feature["geometry"]["coordinates"][0])
        assert feature["geometry"]["type"] == "Polygon" and feature["properties"]["hull"] == "convex"
        assert (ring[0] == ring[-1]).all() and len(ring) >= 4
        # Exterior ring counter-clockwise (RFC 7946), in lon/lat degrees around the cluster.
        assert 0.5 * np.sum(ring[:-1, 0] * ring[1:, 1] - ring[1:, 0] * ring[:-1, 1]) > 0
        props = feature["properties"]
        assert props["cluster_type"] == NOT_RD_ACTIVE and props["firms"] >= 30
        # Every member firm lies inside its hull (firms on its edges too: the ring grown by 0.1% about its middle).
        firms = spatial.members[spatial.members["cluster_id"] == props["cluster_id"]]
        lat, lon = to_latlon(firms["easting"].to_numpy(), firms["northing"].to_numpy())
        middle = ring[:-1].mean(axis=0)
        assert Ring(middle + (ring - middle) * 1.001).contains_points(np.column_stack([lon, lat])).all()
        centre = table.set_index("cluster_id").loc[props["cluster_id"]]
        assert props["centroid_easting"] == pytest.approx(centre["centroid_easting"])
    point = {f["properties"]["cluster_id"]: f["geometry"]["coordinates"] for f in centroids["features"]}
    lat, lon = to_latlon(np.array([ALPHA_CENTRE[0]]), np.array([ALPHA_CENTRE[1]]))
    assert abs(point["alpha-1"][0] - lon[0]) < 0.005 and abs(point["alpha-1"][1] - lat[0]) < 0.005
    assert len(members["features"]) == len(spatial.members)
    first = members["features"][0]["properties"]
    assert set(first) == {"firm_id", "sector_id", "cluster_id", "easting", "northing"}
    noise = [f for f in members["features"] if f["properties"]["cluster_id"] is None]
    assert len(noise) == spatial.members["cluster_id"].isna().sum() > 0


def test_hull_of_firms_at_one_point_or_on_a_line_is_a_circle():
    from rtic.clusters.gis import MIN_RING_M, hull_ring

    ring, kind = hull_ring(np.array([400000.0] * 5), np.array([300000.0] * 5), (400000.0, 300000.0), 0.0)
    assert kind == "circle" and np.allclose(np.hypot(ring[:, 0] - 400000, ring[:, 1] - 300000), MIN_RING_M)
    ring, kind = hull_ring(np.array([0.0, 500.0, 1000.0]), np.array([0.0, 0.0, 0.0]), (500.0, 0.0), 500.0)
    assert kind == "circle" and np.allclose(np.hypot(ring[:, 0] - 500, ring[:, 1]), 500)
    ring, kind = hull_ring(np.array([0.0, 1000.0, 0.0, 300.0]), np.array([0.0, 0.0, 1000.0, 300.0]), (0.0, 0.0), 1.0)
    assert kind == "convex" and len(ring) == 4  # the inner point is not a vertex; ring closed


def test_map_labels_never_overlap():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rtic.clusters.report import place_labels

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    rng = np.random.default_rng(1)
    items = [(str(i + 1), 50 + rng.normal(0, 8), 50 + rng.normal(0, 8), 1.0) for i in range(40)]  # 40 clusters in one city
    texts, left_off = place_labels(ax, items)
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts]
    assert len(texts) + left_off == 40 and len(texts) >= 20
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert [t.get_text() for t in texts][:8] == [str(i) for i in range(1, 9)]  # the largest clusters are labelled first
    plt.close(fig)


def test_map_draws_districts_and_placed_firms_behind(tmp_path):
    from rtic.clusters.report import draw_sector_map

    world, centroids = district_world()
    paths = world.write(tmp_path)
    centroids.to_csv(tmp_path / "centroids.csv", index=False)
    inp = load_inputs(paths["labels"], paths["register"], [paths["onspd"], tmp_path / "centroids.csv"])
    fig = draw_sector_map(inp, spatial_clusters(inp, sectors=["beta"]), "beta")
    ax = fig.axes[0]
    sizes = {c.get_label(): len(c.get_offsets()) for c in ax.collections}
    assert sizes["postcode districts"] == len(inp.districts) > 9  # ONSPD-derived districts and the nine centroids
    assert sizes["all placed firms"] == len(inp.located)
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_cli_report_counts_district_placed_firms(tmp_path):
    """The journey of issue 14: a partial ONSPD and a national centroid file. The default area keeps every placed
    firm; the report says which area it used and lists the firms it could not count."""
    world, centroids = district_world()
    paths = world.write(tmp_path / "in")
    centroids.to_csv(tmp_path / "in" / "centroids.csv", index=False)
    out = tmp_path / "report"
    common = ["--labels", str(paths["labels"]), "--register", str(paths["register"]),
              "--postcodes", str(paths["onspd"]), "--postcodes", str(tmp_path / "in" / "centroids.csv")]
    res = run_cli("clusters", "report", *common, "--out", str(out), home=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "area auto: postcode district" in res.stderr and "4 not counted" in res.stderr, res.stderr
    spec = pd.read_csv(out / "specialisation.csv")
    gone = pd.read_csv(out / "specialisation.unplaced.csv", keep_default_na=False)
    assert (spec["area_level"] == "district").all()
    assert spec.groupby("area_code")["area_firms"].first().sum() + len(gone) == world.register["firm_id"].nunique()
    assert set(gone["firm_id"]) == {"NOPC", "BADPC", "UNKNOWN", "LATLON"}
    assert gone.set_index("firm_id").loc["BADPC", "postcode"] == "not a postcode"
    page = (out / "index.html").read_text()
    assert "Specialised district areas" in page and "specialisation.unplaced.csv" in page
    for name in ("clusters.hulls.geojson", "clusters.centroids.geojson", "clusters.members.geojson"):
        assert (out / name).stat().st_size > 100
    # Named LADs: the district-placed firms are listed, not dropped in silence.
    res = run_cli("clusters", "specialisation", *common, "--area", "lad", "--out", str(tmp_path / "lad.csv"), home=tmp_path)
    assert res.returncode == 0, res.stderr
    by_lad = pd.read_csv(tmp_path / "lad.unplaced.csv", keep_default_na=False)
    assert (by_lad["reason"] == "no lad area").sum() >= len(world.planted["district_placed"])
    counted = pd.read_csv(tmp_path / "lad.csv").groupby("area_code")["area_firms"].first().sum()
    assert counted + len(by_lad) == world.register["firm_id"].nunique()
    assert f"{len(by_lad)} not counted" in res.stderr
