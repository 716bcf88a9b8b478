"""The `rtic` command: parses arguments and calls library functions; user mistakes exit 2 with one line."""

from __future__ import annotations

import argparse
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
    from rtic import registry
    from rtic.training import train

    settings = Settings.from_env()
    if args.if_missing and registry.has_champion(settings, args.name):
        print(f"{args.name}@champion already exists in {settings.resolved_tracking_uri}; not retraining (drop --if-missing to train anyway)")
        return 0
    result = train(settings, labels_path=args.labels, taxonomy_path=args.taxonomy, name=args.name, features=args.features, C=args.C, seed=args.seed)
    report = result.report.set_index("sector_id")
    print(f"\nout-of-fold scores on the training labels (thresholds tuned on the same folds, so optimistic):")
    print(report[["support", "threshold", "precision", "recall", "f1"]].to_string(float_format=lambda v: f"{v:.3f}"))
    champion = " and set as champion" if result.is_champion else " (champion unchanged)"
    print(f"\nregistered {result.name} version {result.version}{champion}; run {result.run_id}; taxonomy {result.taxonomy_version}")
    return 0


def cmd_classify(args) -> int:
    settings = Settings.from_env()
    quiet = (lambda *_: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    if args.engine == "spark":
        from rtic.spark import classify_spark

        if args.fast or args.since or args.restart:
            raise RticError("--fast, --since and --restart work with the local engine only (Spark runs the registered model on every firm)")
        result = classify_spark(args.register, args.out, settings, model_uri=args.model, taxonomy_path=args.taxonomy,
                                master=args.spark_master, progress=quiet)
    else:
        from rtic.classify import classify_register

        result = classify_register(args.register, args.out, settings, model_uri=args.model, taxonomy_path=args.taxonomy, progress=quiet,
                                   chunk_rows=args.chunk_rows, since=args.since, restart=args.restart, fast=args.fast, fast_margin=args.fast_margin)
    print(f"{result.n_input} firms in register: {result.n_classified} classified, {result.n_exceptions} not classified (reasons in {result.exceptions_path})")
    if result.n_carried:
        print(f"  of the classified, {result.n_carried} were unchanged since {args.since} and copied from it")
    if result.n_escalated:
        print(f"  fast path: {result.n_escalated} firms near a threshold re-scored by the transformer")
    for reason, count in sorted(result.exceptions_by_reason.items(), key=lambda kv: -kv[1]):
        print(f"  not classified, {reason}: {count}")
    print(f"model {result.model.name} version {result.model.version}; labels written to {result.labels_path}")
    if result.manifest_path:
        print(f"run manifest: {result.manifest_path}")
    print("firms per sector:")
    for sector, count in sorted(result.firms_per_sector.items(), key=lambda kv: -kv[1]):
        print(f"  {sector:<24}{count:>8}")
    return 0


def cmd_fastpath_build(args) -> int:
    from rtic.fastpath import build_static_model

    settings = Settings.from_env()
    path = build_static_model(settings, force=args.force, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(f"static embedding model: {path}")
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
    p.add_argument("--chunk-rows", type=int, default=2048, help="register rows per chunk (default 2048); memory grows with it")
    p.add_argument("--since", metavar="PREVIOUS_OUTPUT", help="a previous labels Parquet: firms whose text hash and model version are "
                   "unchanged are copied from it, only the others are scored")
    p.add_argument("--restart", action="store_true", help="discard an unfinished run in OUT's .parts/ folder instead of resuming it")
    p.add_argument("--fast", action="store_true", help="fast path: score every firm with a static-embedding head and re-score only "
                   "firms near a threshold with the transformer (builds models/static/ on first use)")
    p.add_argument("--fast-margin", type=float, help="fast path: re-score a firm when any sector's probability is within this of its "
                   "threshold (default 0.1; larger: closer to the transformer, slower)")
    p.add_argument("--engine", choices=["local", "spark"], default="local", help="local: stream on this machine (default); spark: "
                   "run the same registered model through mlflow.pyfunc.spark_udf")
    p.add_argument("--spark-master", help="Spark master URL for --engine spark (default: local[*], or what spark-submit set)")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("fastpath", help="build the fast path's static embedding model")
    fp_sub = p.add_subparsers(dest="fastpath_command", required=True, metavar="ACTION")
    p = fp_sub.add_parser("build", help="distil a static token-embedding table from the bundled MiniLM into models/static/",
                          description="Run every token of the bundled all-MiniLM-L6-v2 vocabulary through the model once and keep "
                          "its vector (model2vec-style distillation). Offline; takes a minute on two cores; `rtic classify --fast` "
                          "builds it on first use too.")
    p.add_argument("--force", action="store_true", help="rebuild even when the table exists")
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
