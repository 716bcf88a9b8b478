"""The `rtic` command: parses arguments and calls library functions; user mistakes exit 2 with one line."""

from __future__ import annotations

import argparse
import os
import sys

from rtic.config import MODEL_NAME, Settings
from rtic.errors import RticError


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- taxonomy -----------------------------------------------------------------------------------
def cmd_taxonomy_show(args) -> int:
    from rtic.taxonomy import load_taxonomy

    tax = load_taxonomy(args.file)
    print(f"taxonomy {tax.name or ''} version {tax.version}: {len(tax.sectors)} sectors, {len(tax.verticals)} verticals")
    for s in tax.sectors:
        print(f"\n{s.id}  —  {s.name}" + (f"  (expected share {s.expected_share:.1%})" if s.expected_share else ""))
        print(f"  {s.description}")
        for v in tax.verticals_of(s.id):
            print(f"  · {v.id}: {v.name}")
        if s.include:
            print(f"  include: {', '.join(s.include)}")
        if s.exclude:
            print(f"  exclude: {', '.join(s.exclude)}")
    return 0


def cmd_taxonomy_validate(args) -> int:
    from rtic.taxonomy import load_taxonomy

    tax = load_taxonomy(args.file)
    print(f"{args.file}: valid, version {tax.version}, {len(tax.sectors)} sectors, {len(tax.verticals)} verticals")
    return 0


# -- train / classify ------------------------------------------------------------------------------
def cmd_train(args) -> int:
    from rtic.mlops import registry
    from rtic.model.training import train

    settings = Settings.from_env()
    if args.if_missing and registry.has_champion(settings, args.name):
        print(f"{args.name}@champion already exists in {settings.resolved_tracking_uri}; not retraining (drop --if-missing to train anyway)")
        return 0
    result = train(settings, labels_path=args.labels, taxonomy_path=args.taxonomy, name=args.name, features=args.features, C=args.C,
                   seed=args.seed, cv=args.cv, ignore_unknown=args.ignore_unknown, description_prior=args.description_prior)
    report = result.report.set_index("sector_id")
    if result.cv_folds:
        print(f"\n{result.cv_folds}-fold cross-validation (each fold tunes its thresholds on its own training folds):")
    else:
        print("\nout-of-fold scores on the training labels (thresholds tuned on the same folds, so optimistic):")
    print(report[["support", "threshold", "precision", "recall", "f1", "pr_auc", "ece", "precision_at_expected"]].to_string(float_format=lambda v: f"{v:.3f}"))
    champion = " and set as champion" if result.is_champion else " (champion unchanged)"
    print(f"\nregistered {result.name} version {result.version}{champion}; run {result.run_id}; taxonomy {result.taxonomy_version}")
    return 0


def cmd_classify(args) -> int:
    settings = Settings.from_env()
    quiet = (lambda *_: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    if args.engine == "spark":
        from rtic.score.spark import classify_spark

        local_only = [flag for flag, given in (("--fast", args.fast), ("--fast-margin", args.fast_margin is not None),
                                               ("--fast-agreement", args.fast_agreement is not None), ("--since", args.since),
                                               ("--restart", args.restart), ("--store", args.store)) if given]
        if local_only:
            raise RticError(f"{', '.join(local_only)}: local engine only (Spark runs the registered model on every firm); drop it or use --engine local")
        result = classify_spark(args.register, args.out, settings, model_uri=args.model, taxonomy_path=args.taxonomy,
                                master=args.spark_master, progress=quiet)
    else:
        if args.spark_master:
            raise RticError("--spark-master needs --engine spark")
        from rtic.score.batch import classify_register
        from rtic.text import CrawlStoreText

        source = CrawlStoreText(args.store) if args.store else None
        result = classify_register(args.register, args.out, settings, model_uri=args.model, taxonomy_path=args.taxonomy, progress=quiet,
                                   chunk_rows=args.chunk_rows, since=args.since, restart=args.restart, fast=args.fast, fast_margin=args.fast_margin,
                                   fast_agreement=args.fast_agreement, source=source)
    print(f"{result.n_input} firms in register: {result.n_classified} classified, {result.n_exceptions} not classified (reasons in {result.exceptions_path})")
    if result.n_carried:
        print(f"  of the classified, {result.n_carried} were unchanged since {args.since} and copied from it")
    if result.fast_margin is not None:
        print(f"  fast path: {result.n_escalated} firms within z {result.fast_margin:g} of a threshold re-scored by the transformer")
    for reason, count in sorted(result.exceptions_by_reason.items(), key=lambda kv: -kv[1]):
        print(f"  not classified, {reason}: {count}")
    print(f"model {result.model.name} version {result.model.version}; labels written to {result.labels_path}")
    if result.manifest_path:
        print(f"run manifest: {result.manifest_path}")
    print("firms per sector:")
    for sector, count in sorted(result.firms_per_sector.items(), key=lambda kv: -kv[1]):
        print(f"  {sector:<24}{count:>8}")
    return 0


# -- clusters -------------------------------------------------------------------------------------
def _cluster_inputs(args):
    from rtic.clusters.inputs import load_inputs

    inputs = load_inputs(args.labels, args.register, args.postcodes)
    placed = len(inputs.located)
    print(f"{len(inputs.firms)} labelled firms: {placed} placed, {len(inputs.problems)} not placed", file=sys.stderr)
    for reason, count in inputs.problems["reason"].value_counts().items():
        print(f"  {reason}: {count}", file=sys.stderr)
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


def _specialisation(args, inputs):
    from rtic.clusters.specialisation import SpecialisationParams, specialisation
    from rtic.clusters.geography import load_area_names

    names = load_area_names(args.names) if args.names else None
    params = SpecialisationParams(lq_threshold=args.lq_threshold, min_count=args.min_count, confidence=args.confidence)
    return specialisation(inputs, args.area, params, names)


def cmd_clusters_specialisation(args) -> int:
    from rtic.clusters.pipeline import check_out, write_unplaced
    from rtic.tables import write_atomically

    out = check_out(args.out)
    inputs = _cluster_inputs(args)
    table = _specialisation(args, inputs)
    write_atomically(table, out)
    unplaced = write_unplaced(inputs, out)
    print(f"{table['area_code'].nunique()} {args.area} areas × {table['sector_id'].nunique()} sectors written to {out}; unplaced firms in {unplaced}")
    for sector, n in table.groupby("sector_id")["specialised"].sum().items():
        print(f"  {sector:<24}{int(n):>5} specialised area(s)")
    return 0


def cmd_clusters_spatial(args) -> int:
    from rtic.clusters.pipeline import run_spatial, sibling

    inputs = _cluster_inputs(args)
    progress = (lambda *_: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    spatial, table, collab = run_spatial(inputs, args.out, _spatial_params(args), _typology_params(args), args.participation,
                                         _community_params(args), args.sector or None, progress)
    for note in spatial.notes + (collab.notes if collab else []):
        print(f"note: {note}", file=sys.stderr)
    print(f"{len(table)} clusters written to {args.out}; firms and their clusters in {sibling(args.out, 'members')}")
    if len(table) and "cluster_type" in table.columns:
        for kind, n in table["cluster_type"].value_counts().items():
            print(f"  {kind:<24}{n:>5}")
    return 0


def cmd_clusters_communities(args) -> int:
    from rtic.clusters.pipeline import run_communities, sibling

    inputs = _cluster_inputs(args)
    collab, table = run_communities(inputs, args.participation, args.out, _community_params(args), _typology_params(args))
    for note in collab.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"{len(table)} communities written to {args.out}; participants in {sibling(args.out, 'members')}; "
          f"{len(collab.problems)} participation row(s) not usable (see {sibling(args.out, 'participation_problems', '.csv')})")
    if len(table) and "cluster_type" in table.columns:
        for kind, n in table["cluster_type"].value_counts().items():
            print(f"  {kind:<24}{n:>5}")
    return 0


def cmd_clusters_report(args) -> int:
    from pathlib import Path

    from rtic.clusters.pipeline import run_communities, run_spatial
    from rtic.clusters.report import write_report
    from rtic.tables import write_atomically

    out = Path(args.out)
    inputs = _cluster_inputs(args)
    spec = _specialisation(args, inputs)
    write_atomically(spec, out / "specialisation.csv")
    spatial, clusters, collab = run_spatial(inputs, out / "clusters.csv", _spatial_params(args), _typology_params(args),
                                            args.participation, _community_params(args), None, lambda *_: None)
    communities = None
    if args.participation:
        collab, communities = run_communities(inputs, args.participation, out / "communities.csv", _community_params(args), _typology_params(args))
    notes = spatial.notes + (collab.notes if collab else [])
    path = write_report(out, inputs, spec, spatial, clusters, communities, notes)
    print(f"report written to {path} (tables as CSV and maps as PNG beside it)")
    return 0


# -- crawl / extract -----------------------------------------------------------------------------
def cmd_crawl(args) -> int:
    from rtic.crawl.crawler import CrawlOptions, crawl, parse_duration
    from rtic.crawl.fetch import FetchOptions

    fetch = FetchOptions(connect_timeout=args.connect_timeout, read_timeout=args.read_timeout, page_timeout=args.page_timeout,
                         max_page_bytes=args.max_page_bytes, allow_private=args.allow_private)
    options = CrawlOptions(concurrency=args.concurrency, delay=args.delay, max_crawl_delay=args.max_crawl_delay, max_pages=args.max_pages,
                           max_site_bytes=args.max_site_bytes, retries=args.retries, backoff=args.backoff, contact_url=args.contact,
                           recrawl_after=parse_duration(args.recrawl_after) if args.recrawl_after else None, workers=args.workers,
                           fetch=fetch)
    quiet = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    s = crawl(args.register, args.store, options, progress_out=quiet)
    rate = s.pages / s.seconds if s.seconds else 0.0
    print(f"{s.sites} sites: {s.crawled} crawled now, {s.skipped} already done; {s.pages} pages in {s.seconds:.1f}s ({rate:.1f} pages/s)")
    print("verdicts: " + (", ".join(f"{k} {v}" for k, v in sorted(s.verdicts.items(), key=lambda kv: -kv[1])) or "none"))
    print("errors: " + (", ".join(f"{k} {v}" for k, v in sorted(s.errors.items(), key=lambda kv: -kv[1])) or "none"))
    print(f"store: {s.store}")
    return 0


def cmd_extract(args) -> int:
    from pathlib import Path

    from rtic.crawl.extract import extract

    path = Path(args.page)
    if not path.is_file():
        raise RticError(f"page not found: {path}")
    data = path.read_bytes()
    if path.suffix == ".gz":
        import gzip

        data = gzip.decompress(data)
    result = extract(data, url=args.url)
    print(result.text if args.main_only else result.document())
    return 0


def add_crawl_parsers(sub) -> None:
    p = sub.add_parser("crawl", help="fetch each firm's website into a crawl store (polite, resumable)",
                       description="Crawl the home page and up to --max-pages chosen pages of every firm's website (register column "
                       "'website') into a SQLite crawl store. Polite: one request at a time per host, --delay seconds apart, robots.txt "
                       "obeyed (Crawl-delay honoured up to --max-crawl-delay). Safe: private, loopback, link-local, multicast and "
                       "reserved addresses refused after DNS and on every redirect; page and site size caps. Resumable: kill it and "
                       "run the same command again; finished sites and fetched pages are kept.")
    p.add_argument("register", help="register CSV or Parquet with firm_id and website (name, postcode, company_number used for matching)")
    p.add_argument("--store", required=True, help="SQLite crawl store to create or continue")
    p.add_argument("--concurrency", type=int, default=32, help="sites crawled at once (default 32)")
    p.add_argument("--delay", type=float, default=1.0, help="seconds between requests to one host (default 1)")
    p.add_argument("--max-crawl-delay", type=float, default=30.0, help="cap on a robots.txt Crawl-delay, seconds (default 30)")
    p.add_argument("--max-pages", type=int, default=8, help="pages per site besides the home page (default 8)")
    p.add_argument("--max-page-bytes", type=int, default=3_000_000, help="largest page body after decompression (default 3 MB)")
    p.add_argument("--max-site-bytes", type=int, default=15_000_000, help="stop a site after this many bytes (default 15 MB)")
    p.add_argument("--connect-timeout", type=float, default=10.0, help="seconds (default 10)")
    p.add_argument("--read-timeout", type=float, default=20.0, help="seconds without data (default 20)")
    p.add_argument("--page-timeout", type=float, default=45.0, help="seconds for a whole page (default 45)")
    p.add_argument("--retries", type=int, default=2, help="retries on 429, 5xx and connection errors (default 2)")
    p.add_argument("--backoff", type=float, default=1.0, help="first retry wait in seconds, doubling with jitter (default 1)")
    p.add_argument("--recrawl-after", help="refetch sites finished longer ago than this (e.g. 30d), with conditional requests")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="processes extracting text from pages, beside the fetching loop (default: cores, at most 4; 0: none)")
    p.add_argument("--contact", default="https://github.com/rtic/rtic", help="contact URL named in the User-Agent")
    p.add_argument("--allow-private", action="store_true", help="allow private/loopback addresses (tests and local farms only)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_crawl)

    p = sub.add_parser("extract", help="print the main text extracted from one saved HTML page",
                       description="Extract one saved page (HTML, or .html.gz) as the crawler does: title, meta description, "
                       "JSON-LD descriptions and main-content blocks, one per line.")
    p.add_argument("page", help="saved HTML file")
    p.add_argument("--url", help="the page's URL (for relative links)")
    p.add_argument("--main-only", action="store_true", help="main-content blocks only (what the extraction benchmark scores)")
    p.set_defaults(func=cmd_extract)


# -- explain / review ------------------------------------------------------------------------------
def _reviews_path(args) -> str:
    return args.reviews or str(Settings.from_env().home / "reviews.sqlite")


def cmd_explain(args) -> int:
    import json

    from rtic.explain import explain, format_explanation

    ex = explain(args.firm_id, Settings.from_env(), labels=args.labels, register=args.register, store=args.store, model_uri=args.model)
    print(json.dumps(ex.to_dict(), indent=2, default=str) if args.json else format_explanation(ex))
    return 0


def cmd_review_decide(args) -> int:
    from rtic.review.publish import decision_target
    from rtic.review.store import ReviewStore, check_decision

    target = decision_target(args.labels, args.firm_id, args.sector_id)  # unknown firm or sector: refused, nothing stored
    check_decision(args.decision, target.model_assigned)
    store = ReviewStore(_reviews_path(args))
    d = store.record(args.firm_id, args.sector_id, args.decision, args.reviewer, note=args.note, model_version=target.model_version)
    print(f"recorded #{d.id}: {d.firm_id} {d.sector_id} {d.decision} by {d.reviewer} at {d.decided_at} (model version {d.model_version or '?'}) in {store.path}")
    return 0


def cmd_review_history(args) -> int:
    from rtic.review.store import ReviewStore

    rows = ReviewStore(_reviews_path(args)).history(args.firm_id)
    if not rows:
        print(f"no decisions on firm {args.firm_id}")
    for d in rows:
        print(f"#{d.id} {d.decided_at}  {d.sector_id:<24}{d.decision:<8}{d.reviewer}  model {d.model_version or '?'}" + (f"  — {d.note}" if d.note else ""))
    return 0


def cmd_review_publish(args) -> int:
    from rtic.review.publish import publish_file

    r = publish_file(args.labels, _reviews_path(args), args.out)
    print(f"published {r.n_rows} labels to {r.out}: {r.n_decisions} decisions in force, {r.n_changed} labels changed by review,"
          f" {r.n_extra} decisions on firm/sector pairs not in {args.labels}"
          + (f"; {r.n_unknown} decisions on sectors not in the labels' taxonomy left out" if r.n_unknown else ""))
    return 0


def cmd_review_export(args) -> int:
    from rtic.review.publish import export_file

    r = export_file(args.labels, _reviews_path(args), args.out, register=args.register, store=args.store)
    print(f"exported {r.n_firms} reviewed firms to {r.out} (firm_id,text,sectors; use with rtic train --labels);"
          f" {r.n_missing} without text listed in {r.exceptions}")
    return 0


def cmd_review_serve(args) -> int:
    from rtic.review.app import build_app, make_server

    if not args.reviewer.strip():
        raise RticError("a reviewer name is required: --reviewer NAME (it is stored with every decision)")
    say = lambda msg: print(msg, file=sys.stderr, flush=True)
    app = build_app(Settings.from_env(), args.labels, _reviews_path(args), register=args.register, store=args.store, reviewer=args.reviewer,
                    host=args.host, port=args.port, use_model=not args.no_model, index_path=args.index, margin=args.margin, progress=say)
    server = make_server(app)
    host, port = server.server_address[:2]
    print(f"reviewing {args.labels} as {args.reviewer}: open http://{host}:{port}/  (decisions in {app.config.reviews_path}; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
# -- evaluate / models / ui / label / taxonomy add-sector (retraining workflow) ----------------------
def _table(frame, columns=None) -> str:
    frame = frame if columns is None else frame[columns]
    return frame.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="")


def cmd_evaluate(args) -> int:
    from rtic.model.training import evaluate

    result = evaluate(Settings.from_env(), args.labels, model_uri=args.model, taxonomy_path=args.taxonomy, eval_set=args.eval_set,
                      ignore_unknown=args.ignore_unknown, progress=lambda m: print(m, file=sys.stderr, flush=True))
    print(_table(result.report, ["sector_id", "support", "predicted", "precision", "recall", "f1", "pr_auc", "ece", "precision_at_expected"]))
    print(f"\nevaluated {result.model.name} version {result.model.version} on '{result.eval_set}'; run {result.run_id}")
    return 0


def cmd_models_list(args) -> int:
    from rtic.mlops.lifecycle import list_versions

    table = list_versions(Settings.from_env(), args.name)
    print(_table(table) if len(table) else f"no versions of {args.name}")
    return 0


def cmd_models_show(args) -> int:
    from rtic.mlops.lifecycle import show_version

    info = show_version(Settings.from_env(), args.version, args.name)
    print(f"{info['name']} version {info['version']}  aliases: {', '.join(info['aliases']) or '-'}  run: {info['run_id']}")
    print(f"source: {info['source']}")
    for title, values in (("version tags", info["tags"]), ("training parameters", info["params"]), ("run tags", info["run_tags"])):
        print(f"\n{title}:")
        for key in sorted(values):
            print(f"  {key}: {values[key]}")
    print("\ntraining metrics (macro/micro):")
    for key in sorted(k for k in info["metrics"] if k.startswith(("macro_", "micro_"))):
        print(f"  {key}: {info['metrics'][key]:.4f}")
    print("\nevaluations:" if info["evaluations"] else "\nno evaluation runs (rtic evaluate)")
    for e in info["evaluations"]:
        print(f"  {e['eval_set']}: macro_f1 {e['macro_f1']:.4f} (run {e['run_id']})")
    return 0


def cmd_models_compare(args) -> int:
    from rtic.mlops.lifecycle import compare

    print(_table(compare(Settings.from_env(), args.a, args.b, args.name, args.eval_set)))
    return 0


PROMOTION_REFUSED = 3  # `rtic models promote` exit status when the comparison refuses the candidate


def cmd_models_promote(args) -> int:
    from rtic.mlops.lifecycle import promote

    result = promote(Settings.from_env(), args.version, eval_set=args.eval_set, tolerance=args.tolerance, force=args.force,
                     reason=args.reason or "", who=args.who, name=args.name)
    if result.promoted or result.previous == result.version:
        print(result.message)
        return 0
    # A refusal is the gate working, not a user mistake (2) or a crash (1): its own exit status, one line.
    _err(f"rtic: {result.message}")
    return PROMOTION_REFUSED


def cmd_ui(args) -> int:
    import subprocess

    from rtic.mlops.lifecycle import ui_command

    cmd = ui_command(Settings.from_env(), args.port)
    print(f"MLflow UI on http://127.0.0.1:{args.port} (Ctrl-C to stop): {' '.join(cmd)}", flush=True)
    if args.print_only:
        return 0
    try:
        return subprocess.call(cmd)
    except FileNotFoundError:
        raise RticError(f"mlflow command not found: {cmd[0]}") from None


def cmd_label_suggest(args) -> int:
    from rtic.active import suggest

    result = suggest(Settings.from_env(), args.register, args.sector, args.out, n=args.n, model_uri=args.model, exclude_labels=args.labels,
                     progress=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"{len(result)} firms to review for {args.sector} written to {args.out}: correct the `sectors` column, "
          f"set `reviewed` to yes, then `rtic label import {args.out} --into LABELS`")
    return 0


def cmd_label_import(args) -> int:
    from rtic.active import import_reviews

    summary = import_reviews(args.file, args.into, out=args.out, reviewer=args.reviewer, taxonomy_path=args.taxonomy)
    print(summary.message)
    return 0


def cmd_taxonomy_add_sector(args) -> int:
    from rtic.model.fewshot import add_sector

    result = add_sector(args.taxonomy, args.out, sector_id=args.id, name=args.name, description=args.description,
                        seeds_path=args.seeds, labels_path=args.labels, labels_out=args.labels_out, expected_share=args.expected_share,
                        include=args.include, version=args.version)
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(result.message)
def cmd_fastpath_build(args) -> int:
    from rtic.score.fastpath import DEFAULT_AGREEMENT, build_fast_path

    settings = Settings.from_env()
    quiet = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    source = None
    if args.store:
        from rtic.text import CrawlStoreText

        source = CrawlStoreText(args.store)
    table, head, head_path = build_fast_path(settings, model_uri=args.model, register=args.register, sample=args.sample, source=source,
                                             force=args.force, progress=quiet)
    print(f"static embedding model: {table}")
    if head is None:
        print("no registered model yet: the fast head is built for a model by `rtic fastpath build` or the first `rtic classify --fast`")
        return 0
    print(f"fast head for {head.model_uri}: {head_path}\n  distilled on {head.n_texts:,} texts ({head.corpus}); ridge lambda {head.ridge_lambda:g}")
    print("  residual sigma of each sector's calibrated logit: " + ", ".join(f"{s} {v:.2f}" for s, v in zip(head.sector_ids, head.sigma)))
    if head.validation:
        print("  cross-fitted on that corpus: margin z -> firms re-scored by the transformer, agreement with transformer-only labels")
        for row in head.validation:
            print(f"    z {row['z']:4.2f}: {row['rescored']:6.1%} re-scored, {row['cell_agreement']:.2%} of (firm, sector) decisions, "
                  f"{row['firm_agreement']:.2%} of firms identical")
        z, expected = head.margin_for(DEFAULT_AGREEMENT)
        print(f"  `rtic classify --fast` will re-score within z {z:g} (the smallest z reaching {DEFAULT_AGREEMENT:.0%}: {expected:.2%}); "
              "--fast-agreement or --fast-margin choose otherwise")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtic",
        description="Real-time industrial classifications: label firms with emerging sectors from their website text.",
        epilog="State lives under RTIC_HOME (default ./models): MLflow registry (SQLite) and embedding cache. "
        "MLFLOW_TRACKING_URI points at another MLflow; RTIC_BF16=0/1 forces fp32/bf16 embeddings.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    tax = sub.add_parser("taxonomy", help="show or validate a sector taxonomy file")
    tax_sub = tax.add_subparsers(dest="taxonomy_command", required=True, metavar="ACTION")
    p = tax_sub.add_parser("show", help="print the sectors, verticals and key phrases")
    p.add_argument("--file", help="taxonomy YAML (default: the bundled one)")
    p.set_defaults(func=cmd_taxonomy_show)
    p = tax_sub.add_parser("validate", help="check a taxonomy file: duplicate ids, unknown parents, empty descriptions")
    p.add_argument("file", help="taxonomy YAML to check")
    p.set_defaults(func=cmd_taxonomy_validate)

    p = sub.add_parser("train", help="train a sector classifier and register it in MLflow",
                       description="Embed the labelled firms (cached), fit one calibrated classifier per sector with thresholds "
                       "chosen on out-of-fold predictions, log everything to MLflow, register the model, and make it champion "
                       "when no champion exists.")
    p.add_argument("--labels", help="labelled firms CSV/Parquet with firm_id,text,sectors (default: training/seed_labels.csv)")
    p.add_argument("--taxonomy", help="taxonomy YAML (default: the bundled one)")
    p.add_argument("--name", default=MODEL_NAME, help=f"registered model name (default {MODEL_NAME})")
    p.add_argument("--features", default="embedding+tfidf", choices=["embedding", "tfidf", "embedding+tfidf"], help="feature set (default embedding+tfidf)")
    p.add_argument("--C", type=float, default=1.0, help="inverse regularisation strength of each sector's logistic regression (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed for the folds (default 0)")
    p.add_argument("--cv", type=int, default=5, help="cross-validation folds for the reported metrics; 0 skips it (default 5)")
    p.add_argument("--ignore-unknown", action="store_true", help="drop sector ids the taxonomy does not know instead of refusing")
    p.add_argument("--description-prior", action="store_true",
                   help="also learn from each sector's description and key phrases (helps sectors with few seed firms)")
    p.add_argument("--if-missing", action="store_true", help="do nothing when the registry already has a champion")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("classify", help="label every firm in a register",
                       description="Classify a register (CSV or Parquet with firm_id and text; Companies House BasicCompanyData "
                       "accepted as it comes) and write firm labels as long-form Parquet; firms that cannot be classified, and "
                       "malformed rows, go to OUT's .exceptions.csv with their line and reason. The register is streamed in "
                       "chunks written as parts under OUT's .parts/ folder: kill the run at any point and re-run the same "
                       "command to continue where it stopped. A manifest.json there records the run.")
    p.add_argument("register", help="register CSV or Parquet (firm_id, text; Companies House files accepted)")
    p.add_argument("--out", required=True, help="labels Parquet to write")
    p.add_argument("--model", help="model URI (default models:/rtic-sector-classifier@champion)")
    p.add_argument("--taxonomy", help="refuse to run unless the model was trained on this taxonomy file's version")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--store", help="crawl store (from `rtic crawl`) to read firm text from instead of a text column")
    p.add_argument("--chunk-rows", type=int, default=2048, help="register rows per chunk (default 2048); memory grows with it")
    p.add_argument("--since", metavar="PREVIOUS_OUTPUT", help="a previous labels Parquet: firms whose text hash and model version are "
                   "unchanged are copied from it, only the others are scored")
    p.add_argument("--restart", action="store_true", help="discard an unfinished run in OUT's .parts/ folder instead of resuming it")
    p.add_argument("--fast", action="store_true", help="fast path: score every firm with a static-embedding head and re-score only "
                   "firms near a threshold with the transformer (builds models/static/ on first use)")
    p.add_argument("--fast-agreement", type=float, metavar="SHARE", help="fast path: re-score just enough firms near a threshold to "
                   "agree with transformer-only labels on SHARE of (firm, sector) decisions, as estimated by cross-fitting when the head "
                   "was built on a sample of the register (`rtic fastpath build --register`, which prints the table); default 0.97")
    p.add_argument("--fast-margin", type=float, metavar="Z", help="fast path, instead of --fast-agreement: re-score a firm when any "
                   "sector's fast logit is within Z residual standard deviations of its threshold (0: never; larger: closer to the "
                   "transformer, slower)")
    p.add_argument("--engine", choices=["local", "spark"], default="local", help="local: stream on this machine (default); spark: "
                   "run the same registered model through mlflow.pyfunc.spark_udf")
    p.add_argument("--spark-master", help="Spark master URL for --engine spark (default: local[*], or what spark-submit set)")
    p.set_defaults(func=cmd_classify)

    clusters = sub.add_parser("clusters", help="sector specialisation by area, spatial clusters, collaboration communities, report",
                              description="Turn firm labels into innovation-cluster evidence: location quotients by area, density "
                              "clusters of same-sector firms (British National Grid metres), co-participation communities from "
                              "funded projects, and the four cluster types (Diverse, Specialised, R&D Collaborating, Dispersed).")
    cl_sub = clusters.add_subparsers(dest="clusters_command", required=True, metavar="ACTION")

    def cluster_inputs(p):
        p.add_argument("--labels", required=True, help="firm labels Parquet/CSV (firm_id, sector_id, assigned), from rtic classify or reviewed")
        p.add_argument("--register", required=True, help="register CSV/Parquet (firm_id, postcode and/or lat, lon)")
        p.add_argument("--postcodes", action="append", default=[], metavar="FILE",
                       help="postcode lookup: ONS Postcode Directory CSV, or postcode-district centroids; repeat to add fall-backs")
        p.add_argument("--lq-threshold", type=float, default=1.25, help="LQ at or above which an area or cluster is specialised (default 1.25)")
        p.add_argument("--min-count", type=int, default=10, help="firms of the sector an area needs to be called specialised (default 10)")

    def spatial_args(p):
        p.add_argument("--method", default="dbscan", choices=["dbscan", "hdbscan"], help="density clustering (default dbscan; hdbscan is slow at register scale)")
        p.add_argument("--eps-m", type=float, default=1000.0, help="DBSCAN neighbourhood radius in metres (default 1000)")
        p.add_argument("--min-samples", type=int, default=10, help="firms within --eps-m for a core firm (default 10)")
        p.add_argument("--min-cluster-firms", type=int, default=10, help="smallest cluster kept (default 10)")
        p.add_argument("--cell-m", type=float, help="grid square for a cluster's footprint share and LQ (default --eps-m)")

    def typology_args(p, participation_required=False):
        p.add_argument("--participation", required=participation_required, help="Innovate UK funded-projects file (one row per participant; CRN matched to firm_id)")
        p.add_argument("--rd-share", type=float, default=0.5, help="share of members in funded projects for R&D-active (default 0.5)")
        p.add_argument("--collab-share", type=float, default=0.5, help="share of members sharing a project inside the group (default 0.5)")
        p.add_argument("--min-group-firms", type=int, default=5, help="members of its dominant sector a community needs to be specialised (default 5)")
        p.add_argument("--colocated-km", type=float, default=30.0, help="radius around a community's median point for co-location (default 30)")
        p.add_argument("--max-participants", type=int, default=50, help="projects with more participants are left out of the network (default 50)")
        p.add_argument("--resolution", type=float, default=1.0, help="Louvain resolution (default 1)")
        p.add_argument("--seed", type=int, default=0, help="Louvain seed (default 0)")

    def area_args(p):
        p.add_argument("--area", default="lad", help="area level: lad, ttwa, region, itl, lep, country, district, or any register column (default lad)")
        p.add_argument("--names", help="area code → name lookup (JSON object or code,name CSV), e.g. gss_districts.json")
        p.add_argument("--confidence", type=float, default=0.95, help="confidence level of the LQ interval (default 0.95)")

    p = cl_sub.add_parser("specialisation", help="firm counts, shares and location quotients by area and sector",
                          description="Per area and sector: firms, share, LQ with a confidence interval, and a specialised flag "
                          "(LQ >= --lq-threshold and at least --min-count firms). Firms that cannot be placed go to OUT.unplaced.csv.")
    cluster_inputs(p)
    area_args(p)
    p.add_argument("--out", required=True, help="table to write (.parquet or .csv)")
    p.set_defaults(func=cmd_clusters_specialisation)

    p = cl_sub.add_parser("spatial", help="density clusters of each sector's firms, with centroid, extent, share and LQ",
                          description="Per sector, DBSCAN (or HDBSCAN) on British National Grid metres; clusters below "
                          "--min-cluster-firms are dropped. Writes OUT (clusters, typed when --participation is given), "
                          "OUT.members (firm → cluster) and OUT.unplaced.csv.")
    cluster_inputs(p)
    spatial_args(p)
    typology_args(p)
    p.add_argument("--sector", action="append", help="only this sector (repeatable; default all)")
    p.add_argument("--out", required=True, help="clusters table to write (.parquet or .csv)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_clusters_spatial)

    p = cl_sub.add_parser("communities", help="co-participation communities from funded projects, typed",
                          description="Build the network of participants sharing funded projects, find Louvain communities "
                          "(seeded), and type each by the four criteria. Writes OUT, OUT.members, OUT.participation_problems.csv.")
    cluster_inputs(p)
    typology_args(p, participation_required=True)
    p.add_argument("--out", required=True, help="communities table to write (.parquet or .csv)")
    p.set_defaults(func=cmd_clusters_communities)

    p = cl_sub.add_parser("report", help="one HTML page with specialisation tables, cluster tables and a PNG map per sector",
                          description="Run specialisation, spatial clustering and (with --participation) communities, and write "
                          "OUT/index.html, OUT/maps/<sector>.png and the tables as CSV in OUT.")
    cluster_inputs(p)
    area_args(p)
    spatial_args(p)
    typology_args(p)
    p.add_argument("--out", required=True, help="folder to write the report into")
    p.set_defaults(func=cmd_clusters_report)
    add_crawl_parsers(sub)
    p = sub.add_parser("explain", help="why a firm carries its labels: probabilities, provenance, evidence",
                       description="Show a firm's sectors with probability against threshold, the model and taxonomy versions, where its "
                       "text came from, and for each assigned or near-miss sector the sentences of its text that most support it (each "
                       "scored by the same registered model), the words and phrases carrying most weight, and the nearest labelled "
                       "training firms with their labels. Without --labels the text is scored now by --model (default: champion).")
    p.add_argument("firm_id", help="the firm's id")
    p.add_argument("--labels", help="firm labels Parquet written by rtic classify (the model version that made them explains them)")
    p.add_argument("--register", help="register CSV/Parquet with the firm's text")
    p.add_argument("--store", help="crawl store (SQLite) with the firm's pages, used when the register has no text for it")
    p.add_argument("--model", help="model URI (default: the one named in --labels, else the champion)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a report")
    p.set_defaults(func=cmd_explain)

    rev = sub.add_parser("review", help="review decisions: record, publish, export, and the review web app",
                         description="Reviewers confirm, reject or add a firm's sector labels. Decisions are stored append-only in "
                         "SQLite (default RTIC_HOME/reviews.sqlite): a later decision supersedes an earlier one and both are kept.")
    rev_sub = rev.add_subparsers(dest="review_command", required=True, metavar="ACTION")

    def reviews_arg(p):
        p.add_argument("--reviews", help="reviews SQLite database (default: RTIC_HOME/reviews.sqlite)")

    p = rev_sub.add_parser("decide", help="record one decision from the command line")
    p.add_argument("firm_id")
    p.add_argument("sector_id")
    p.add_argument("decision", choices=["confirm", "reject", "add"], help="confirm: model assigned it and it is right; reject: not in the sector; add: in the sector though the model did not assign it")
    p.add_argument("--reviewer", required=True, help="who decides (stored with the decision)")
    p.add_argument("--note", default="", help="why")
    p.add_argument("--labels", required=True, help="labels Parquet from rtic classify: the firm (or its exceptions row) and the sector must be in it;"
                   " the decision is checked against the model's label and records its model version")
    reviews_arg(p)
    p.set_defaults(func=cmd_review_decide)

    p = rev_sub.add_parser("history", help="every decision on a firm, oldest first")
    p.add_argument("firm_id")
    reviews_arg(p)
    p.set_defaults(func=cmd_review_history)

    p = rev_sub.add_parser("publish", help="write published labels: model labels with the decisions in force applied")
    p.add_argument("--labels", required=True, help="labels Parquet from rtic classify")
    p.add_argument("--out", required=True, help="published labels (.parquet or .csv): adds model_assigned, decision, reviewer, decided_at, source")
    reviews_arg(p)
    p.set_defaults(func=cmd_review_publish)

    p = rev_sub.add_parser("export", help="write reviewed firms as labelled firms (firm_id,text,sectors) for retraining")
    p.add_argument("--labels", required=True, help="labels Parquet from rtic classify (sectors not reviewed keep the model's label)")
    p.add_argument("--register", help="register with the firms' text")
    p.add_argument("--store", help="crawl store with the firms' pages")
    p.add_argument("--out", required=True, help="labelled firms CSV to write; firms without text go to OUT's .exceptions.csv")
    reviews_arg(p)
    p.set_defaults(func=cmd_review_export)

    p = rev_sub.add_parser("serve", help="the review web app (search, firm pages with evidence, decision buttons)",
                           description="Serve the review app on 127.0.0.1. The labels are indexed in SQLite beside the labels file on "
                           "first start (rebuilt when the labels or register change), so search and firm pages stay fast at millions of firms.")
    p.add_argument("--labels", required=True, help="labels Parquet from rtic classify")
    p.add_argument("--register", help="register with names and texts (search by name, evidence)")
    p.add_argument("--store", help="crawl store with the firms' pages (text when the register has none)")
    p.add_argument("--reviewer", required=True, help="your name, stored with every decision you make")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--index", help="labels index path (default: LABELS.review-index.sqlite beside the labels)")
    p.add_argument("--margin", type=float, help="'near threshold' means within this probability of it (default 0.1)")
    p.add_argument("--no-model", action="store_true", help="do not load the model: labels and decisions only, no evidence")
    reviews_arg(p)
    p.set_defaults(func=cmd_review_serve)
    # -- retraining workflow: evaluate, models, ui, label, taxonomy add-sector --------------------------
    p = tax_sub.add_parser("add-sector", help="add a sector (id, name, description) and its seed firms",
                           description="Append a sector to a taxonomy (new version), and add its seed firms (CSV firm_id,text; 8-32 "
                           "is enough to train) to a labels file, so `rtic train --labels OUT --taxonomy OUT` learns it.")
    p.add_argument("--id", required=True, help="stable sector id (letters, digits, underscores)")
    p.add_argument("--name", required=True, help="display name")
    p.add_argument("--description", required=True, help="one paragraph: what firms in the sector do")
    p.add_argument("--seeds", required=True, help="CSV/Parquet of seed firms in the sector: firm_id,text")
    p.add_argument("--labels", required=True, help="labels file to add the seeds to (firm_id,text,sectors)")
    p.add_argument("--labels-out", help="where to write the labels (default: overwrite --labels)")
    p.add_argument("--taxonomy", help="taxonomy YAML to extend (default: the bundled one)")
    p.add_argument("--out", required=True, help="where to write the new taxonomy YAML")
    p.add_argument("--version", help="new taxonomy version (default: old version with its last number + 1)")
    p.add_argument("--expected-share", type=float, help="share of a whole register expected in the sector, e.g. 0.005")
    p.add_argument("--include", nargs="*", default=[], help="key phrases of the sector")
    p.set_defaults(func=cmd_taxonomy_add_sector)

    p = sub.add_parser("evaluate", help="score a registered model on a labelled set and log an evaluation run",
                       description="Same metrics as training (per sector and macro/micro: precision, recall, F1, PR-AUC, calibration "
                       "error, precision at the expected register share) for a registered model on labelled firms, using the "
                       "model's own thresholds. Logged to MLflow as an evaluation run tagged with the model version and the "
                       "evaluation set's name, which `rtic models compare/promote --eval-set` use.")
    p.add_argument("--labels", required=True, help="labelled firms CSV/Parquet with firm_id,text,sectors")
    p.add_argument("--model", help="model URI (default models:/rtic-sector-classifier@champion)")
    p.add_argument("--taxonomy", help="taxonomy YAML of the labels (must be the model's taxonomy version; default: bundled)")
    p.add_argument("--eval-set", help="name of the evaluation set (default: the labels file's stem)")
    p.add_argument("--ignore-unknown", action="store_true", help="drop sector ids the taxonomy does not know instead of refusing")
    p.set_defaults(func=cmd_evaluate)

    models = sub.add_parser("models", help="list, show, compare and promote registered model versions")
    models_sub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    p = models_sub.add_parser("list", help="versions, aliases and key training metrics")
    p.set_defaults(func=cmd_models_list)
    p = models_sub.add_parser("show", help="one version: tags, parameters, provenance, metrics, evaluations")
    p.add_argument("version")
    p.set_defaults(func=cmd_models_show)
    p = models_sub.add_parser("compare", help="per-sector metrics of two versions side by side")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--eval-set", help="compare their evaluations on this set (default: their training cross-validation)")
    p.set_defaults(func=cmd_models_compare)
    p = models_sub.add_parser("promote", help="make a version champion if it is not worse than the current one",
                              description="Sets the champion alias on VERSION only when its macro F1 on --eval-set is not below the "
                              "current champion's minus --tolerance (both must have an `rtic evaluate` run on that set). --force "
                              "overrides, and needs --reason; who, when and why are recorded as tags on the version. Exit status: 0 promoted "
                              "(or already champion), 3 refused by the comparison (one line on stderr, champion unchanged), 2 bad input.")
    p.add_argument("version")
    p.add_argument("--eval-set", help="evaluation set both versions were evaluated on")
    p.add_argument("--tolerance", type=float, default=0.01, help="allowed drop in macro F1 (default 0.01)")
    p.add_argument("--force", action="store_true", help="promote without (or against) the comparison")
    p.add_argument("--reason", help="why (required with --force)")
    p.add_argument("--who", help="who promotes (default $RTIC_USER or the login name)")
    p.set_defaults(func=cmd_models_promote)
    for p in models_sub.choices.values():
        p.add_argument("--name", default=MODEL_NAME, help=f"registered model name (default {MODEL_NAME})")

    p = sub.add_parser("ui", help="open the MLflow UI for this project's store on 127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--print-only", action="store_true", help="print the command instead of running it")
    p.set_defaults(func=cmd_ui)

    label = sub.add_parser("label", help="active learning: suggest firms to label, import reviewed labels")
    label_sub = label.add_subparsers(dest="label_command", required=True, metavar="ACTION")
    p = label_sub.add_parser("suggest", help="the unlabelled firms most worth labelling for one sector",
                             description="Score a register with the model and pick N firms near the sector's threshold and unlike "
                             "each other (uncertain, then diverse by embedding), skipping firms already labelled. Writes a CSV to review.")
    p.add_argument("--sector", required=True, help="sector id")
    p.add_argument("--register", required=True, help="register CSV/Parquet with firm_id,text")
    p.add_argument("--n", type=int, default=50, help="firms to suggest (default 50)")
    p.add_argument("--out", default="to_review.csv", help="review CSV to write (default to_review.csv)")
    p.add_argument("--labels", help="labelled firms to skip (e.g. the training set)")
    p.add_argument("--model", help="model URI (default: champion)")
    p.set_defaults(func=cmd_label_suggest)
    p = label_sub.add_parser("import", help="merge reviewed labels into a training set, with provenance",
                             description="Rows of FILE with `reviewed` yes take their `sectors` into --into (new firms added, "
                             "existing firms relabelled), recording who, when and from which model version.")
    p.add_argument("file", help="reviewed CSV from `rtic label suggest`")
    p.add_argument("--into", required=True, help="labels file to merge into")
    p.add_argument("--out", help="where to write the merged labels (default: overwrite --into)")
    p.add_argument("--reviewer", help="who reviewed (default: the file's reviewer column, else $RTIC_USER or login name)")
    p.add_argument("--taxonomy", help="taxonomy YAML the sector ids must belong to (default: bundled)")
    p.set_defaults(func=cmd_label_import)

    p = sub.add_parser("fastpath", help="build the fast path's static embedding model and the head for a model")
    fp_sub = p.add_subparsers(dest="fastpath_command", required=True, metavar="ACTION")
    p = fp_sub.add_parser("build", help="distil the static token table and the model's fast head into models/static/",
                          description="1. Run every token of the bundled all-MiniLM-L6-v2 vocabulary through the model once and keep "
                          "its vector (model2vec-style distillation; offline, a minute on two cores). 2. For the registered model, read a "
                          "distillation corpus once with the transformer: average each token's contextual vectors over it (the "
                          "out-of-context vectors are the fallback for rare tokens) and fit a ridge map from the resulting static "
                          "embedding to the transformer's, so the fast pass runs the model's own classifier with only the embedding "
                          "approximated; measure each sector's residual by cross-fitting (printed as a table of margin z -> share "
                          "re-scored, agreement, with the z `classify --fast` will use for 97%). Best corpus: a random sample of the "
                          "register you will classify (--register); otherwise the model's training texts. The sampled firms' "
                          "transformer embeddings go to the embedding cache, so classifying them later costs nothing. "
                          "`rtic classify --fast` builds what is missing on first use.")
    p.add_argument("--model", help="model URI (default models:/rtic-sector-classifier@champion)")
    p.add_argument("--register", help="register (CSV or Parquet, with a text column, or with --store) to sample the distillation corpus from")
    p.add_argument("--store", help="crawl store to read the sampled firms' text from (as `rtic classify --store`)")
    p.add_argument("--sample", type=int, default=2000, help="firms to sample from --register (default 2000; measured on two "
                   "cores: ~12 s per 100 website-length texts, less for short ones, plus ~40 s for the model's training texts)")
    p.add_argument("--force", action="store_true", help="rebuild the table and the head even when they exist")
    p.set_defaults(func=cmd_fastpath_build)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except RticError as exc:
        _err(f"rtic: error: {exc}")
        return 2
    except KeyboardInterrupt:
        _err("rtic: interrupted")
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
