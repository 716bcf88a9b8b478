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
    from rtic.classify import classify_register

    settings = Settings.from_env()
    quiet = (lambda *_: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    result = classify_register(args.register, args.out, settings, model_uri=args.model, taxonomy_path=args.taxonomy, progress=quiet)
    print(f"{result.n_input} firms in register: {result.n_classified} classified, {result.n_exceptions} not classified (reasons in {result.exceptions_path})")
    print(f"model {result.model.name} version {result.model.version}; labels written to {result.labels_path}")
    print("firms per sector:")
    for sector, count in sorted(result.firms_per_sector.items(), key=lambda kv: -kv[1]):
        print(f"  {sector:<24}{count:>8}")
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
                       description="Classify a register (CSV or Parquet with firm_id and text) and write firm labels as long-form "
                       "Parquet; firms that cannot be classified go to OUT's .exceptions.csv with their reason.")
    p.add_argument("register", help="register CSV or Parquet (firm_id, text; Companies House files accepted)")
    p.add_argument("--out", required=True, help="labels Parquet to write")
    p.add_argument("--model", help="model URI (default models:/rtic-sector-classifier@champion)")
    p.add_argument("--taxonomy", help="refuse to run unless the model was trained on this taxonomy file's version")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_classify)
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
