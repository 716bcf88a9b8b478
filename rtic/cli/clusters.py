"""`rtic clusters specialisation|spatial|communities|report`: firm labels into cluster evidence."""

from __future__ import annotations

from rtic import config
from rtic.cli.common import err, quiet_arg


def _inputs(args):
    from rtic.clusters.inputs import load_inputs

    inputs = load_inputs(args.labels, args.register, args.postcodes)
    err(f"{len(inputs.firms)} labelled firms: {len(inputs.located)} placed, {len(inputs.problems)} not placed")
    for reason, count in inputs.problems["reason"].value_counts().items():
        err(f"  {reason}: {count}")
    return inputs


def _typology_params(args):
    from rtic.clusters.typology import TypologyParams

    return TypologyParams(rd_share=args.rd_share, colocated_km=args.colocated_km, lq_threshold=args.lq_threshold,
                          min_sector_firms=args.min_group_firms, collab_share=args.collab_share)


def _spatial_params(args):
    from rtic.clusters.spatial import SpatialParams

    return SpatialParams(method=args.method, eps_m=args.eps_m, min_samples=args.min_samples,
                         min_cluster_firms=args.min_cluster_firms, cell_m=args.cell_m or args.eps_m)


def _community_params(args):
    from rtic.clusters.communities import CommunityParams

    return CommunityParams(max_participants=args.max_participants, resolution=args.resolution, seed=args.seed)


def _specialisation_params(args):
    from rtic.clusters.specialisation import SpecialisationParams

    return SpecialisationParams(lq_threshold=args.lq_threshold, min_count=args.min_count, confidence=args.confidence)


def _print_types(table) -> None:
    if len(table) and "cluster_type" in table.columns:
        for kind, n in table["cluster_type"].value_counts().items():
            print(f"  {kind:<24}{n:>5}")


def cmd_specialisation(args) -> int:
    from rtic.clusters.pipeline import check_out, run_specialisation

    out = check_out(args.out)
    run = run_specialisation(_inputs(args), out, args.area, _specialisation_params(args), args.names)
    for line in run.notes:
        err(line)
    table = run.table
    print(f"{table['area_code'].nunique()} {run.area} areas × {table['sector_id'].nunique()} sectors written to {out}; "
          f"firms not counted in any area in {run.left_out_path}")
    for sector, n in table.groupby("sector_id")["specialised"].sum().items():
        print(f"  {sector:<24}{int(n):>5} specialised area(s)")
    return 0


def cmd_spatial(args) -> int:
    from rtic.clusters.pipeline import gis_paths, run_spatial, sibling

    inputs = _inputs(args)
    spatial, table, collab = run_spatial(inputs, args.out, _spatial_params(args), _typology_params(args), args.participation,
                                         _community_params(args), args.sector or None)
    for note in spatial.notes + (collab.notes if collab else []):
        err(f"note: {note}")
    print(f"{len(table)} clusters written to {args.out}; firms and their clusters in {sibling(args.out, 'members')}; "
          f"for GIS: {', '.join(p.name for p in gis_paths(args.out))}")
    _print_types(table)
    return 0


def cmd_communities(args) -> int:
    from rtic.clusters.pipeline import run_communities, sibling

    inputs = _inputs(args)
    collab, table = run_communities(inputs, args.participation, args.out, _community_params(args), _typology_params(args))
    for note in collab.notes:
        err(f"note: {note}")
    print(f"{len(table)} communities written to {args.out}; participants in {sibling(args.out, 'members')}; "
          f"{len(collab.problems)} participation row(s) not usable (see {sibling(args.out, 'participation_problems', '.csv')})")
    _print_types(table)
    return 0


def cmd_report(args) -> int:
    from rtic.clusters.pipeline import run_report

    inputs = _inputs(args)
    path, notes = run_report(inputs, args.out, args.area, _specialisation_params(args), args.names, _spatial_params(args), _typology_params(args),
                      args.participation, _community_params(args))
    for line in notes:
        err(line)
    print(f"report written to {path} (tables as CSV, clusters as GeoJSON and maps as PNG beside it)")
    return 0


def _input_args(p) -> None:
    p.add_argument("--labels", required=True, help="firm labels Parquet/CSV (firm_id, sector_id, assigned), from rtic classify or reviewed")
    p.add_argument("--register", required=True, help="register CSV/Parquet (firm_id, postcode and/or lat, lon)")
    p.add_argument("--postcodes", action="append", default=[], metavar="FILE",
                   help="postcode lookup: ONS Postcode Directory CSV, or postcode-district centroids; repeat to add fall-backs")
    p.add_argument("--lq-threshold", type=float, default=config.LQ_THRESHOLD,
                   help=f"LQ at or above which an area or cluster is specialised (default {config.LQ_THRESHOLD:g})")
    p.add_argument("--min-count", type=int, default=config.MIN_COUNT,
                   help=f"firms of the sector an area needs to be called specialised (default {config.MIN_COUNT})")


def _spatial_args(p) -> None:
    p.add_argument("--method", default=config.CLUSTER_METHOD, choices=config.CLUSTER_METHODS,
                   help=f"density clustering (default {config.CLUSTER_METHOD}; hdbscan is slow at register scale)")
    p.add_argument("--eps-m", type=float, default=config.EPS_M, help=f"DBSCAN neighbourhood radius in metres (default {config.EPS_M:g})")
    p.add_argument("--min-samples", type=int, default=config.MIN_SAMPLES, help=f"firms within --eps-m for a core firm (default {config.MIN_SAMPLES})")
    p.add_argument("--min-cluster-firms", type=int, default=config.MIN_CLUSTER_FIRMS,
                   help=f"smallest cluster kept (default {config.MIN_CLUSTER_FIRMS})")
    p.add_argument("--cell-m", type=float, help="grid square for a cluster's footprint share and LQ (default --eps-m)")


def _typology_args(p, participation_required=False) -> None:
    p.add_argument("--participation", required=participation_required,
                   help="Innovate UK funded-projects file (one row per participant; CRN matched to firm_id)")
    p.add_argument("--rd-share", type=float, default=config.RD_SHARE,
                   help=f"share of members in funded projects for R&D-active (default {config.RD_SHARE:g})")
    p.add_argument("--collab-share", type=float, default=config.COLLAB_SHARE,
                   help=f"share of members sharing a project inside the group (default {config.COLLAB_SHARE:g})")
    p.add_argument("--min-group-firms", type=int, default=config.MIN_GROUP_FIRMS,
                   help=f"members of its dominant sector a community needs to be specialised (default {config.MIN_GROUP_FIRMS})")
    p.add_argument("--colocated-km", type=float, default=config.COLOCATED_KM,
                   help=f"radius around a community's median point for co-location (default {config.COLOCATED_KM:g})")
    p.add_argument("--max-participants", type=int, default=config.MAX_PARTICIPANTS,
                   help=f"projects with more participants are left out of the network (default {config.MAX_PARTICIPANTS})")
    p.add_argument("--resolution", type=float, default=config.RESOLUTION, help=f"Louvain resolution (default {config.RESOLUTION:g})")
    p.add_argument("--seed", type=int, default=config.SEED, help=f"Louvain seed (default {config.SEED})")


def _area_args(p) -> None:
    p.add_argument("--area", default=config.AREA,
                   help="area level: lad, ttwa, region, itl, lep, country, district (postcode district), any register column, "
                   "or auto: lad when the lookups give nearly every firm with a postcode district a LAD, else district "
                   f"(default {config.AREA})")
    p.add_argument("--names", help="area code → name lookup (JSON object or code,name CSV), e.g. gss_districts.json")
    p.add_argument("--confidence", type=float, default=config.CONFIDENCE,
                   help=f"confidence level of the LQ interval (default {config.CONFIDENCE:g})")


def add_parsers(sub) -> None:
    clusters = sub.add_parser("clusters", help="sector specialisation by area, spatial clusters, collaboration communities, report",
                              description="Turn firm labels into innovation-cluster evidence: location quotients by area, density "
                              "clusters of same-sector firms (British National Grid metres), co-participation communities from "
                              "funded projects, and the four cluster types (Diverse, Specialised, R&D Collaborating, Dispersed).")
    cl_sub = clusters.add_subparsers(dest="clusters_command", required=True, metavar="ACTION")

    p = cl_sub.add_parser("specialisation", help="firm counts, shares and location quotients by area and sector",
                          description="Per area and sector: firms, share, LQ with a confidence interval, and a specialised flag "
                          "(LQ >= --lq-threshold and at least --min-count firms). Every labelled firm not counted in an area goes to "
                          "OUT.unplaced.csv with its reason.")
    _input_args(p)
    _area_args(p)
    p.add_argument("--out", required=True, help="table to write (.parquet or .csv)")
    p.set_defaults(func=cmd_specialisation)

    p = cl_sub.add_parser("spatial", help="density clusters of each sector's firms, with centroid, extent, share and LQ",
                          description="Per sector, DBSCAN (or HDBSCAN) on British National Grid metres; clusters below "
                          "--min-cluster-firms are dropped. Writes OUT (clusters, typed when --participation is given), "
                          "OUT.members (firm → cluster), OUT.hulls/.centroids/.members.geojson (WGS84, BNG as attributes) and OUT.unplaced.csv.")
    _input_args(p)
    _spatial_args(p)
    _typology_args(p)
    p.add_argument("--sector", action="append", help="only this sector (repeatable; default all)")
    p.add_argument("--out", required=True, help="clusters table to write (.parquet or .csv)")
    quiet_arg(p)
    p.set_defaults(func=cmd_spatial)

    p = cl_sub.add_parser("communities", help="co-participation communities from funded projects, typed",
                          description="Build the network of participants sharing funded projects, find Louvain communities "
                          "(seeded), and type each by the four criteria. Writes OUT, OUT.members, OUT.participation_problems.csv.")
    _input_args(p)
    _typology_args(p, participation_required=True)
    p.add_argument("--out", required=True, help="communities table to write (.parquet or .csv)")
    p.set_defaults(func=cmd_communities)

    p = cl_sub.add_parser("report", help="one HTML page with specialisation tables, cluster tables and a PNG map per sector",
                          description="Run specialisation, spatial clustering and (with --participation) communities, and write "
                          "OUT/index.html, OUT/maps/<sector>.png, the tables as CSV and the clusters as GeoJSON in OUT.")
    _input_args(p)
    _area_args(p)
    _spatial_args(p)
    _typology_args(p)
    p.add_argument("--out", required=True, help="folder to write the report into")
    p.set_defaults(func=cmd_report)
