"""`rtic label suggest|import`: active learning, the firms worth labelling next and their reviewed labels."""

from __future__ import annotations

from rtic import config
from rtic.config import Settings


def cmd_suggest(args) -> int:
    from rtic.active import suggest

    result = suggest(Settings.from_env(), args.register, args.sector, args.out, n=args.n, model_uri=args.model, exclude_labels=args.labels)
    print(f"{len(result)} firms to review for {args.sector} written to {args.out}: correct the `sectors` column, "
          f"set `reviewed` to yes, then `rtic label import {args.out} --into LABELS`")
    return 0


def cmd_import(args) -> int:
    from rtic.active import import_reviews

    summary = import_reviews(args.file, args.into, out=args.out, reviewer=args.reviewer, taxonomy_path=args.taxonomy, settings=Settings.from_env())
    print(summary.message)
    return 0


def add_parsers(sub) -> None:
    label = sub.add_parser("label", help="active learning: suggest firms to label, import reviewed labels")
    label_sub = label.add_subparsers(dest="label_command", required=True, metavar="ACTION")
    p = label_sub.add_parser("suggest", help="the unlabelled firms most worth labelling for one sector",
                             description="Score a register with the model and pick N firms near the sector's threshold and unlike "
                             "each other (uncertain, then diverse by embedding), skipping firms already labelled. Writes a CSV to review.")
    p.add_argument("--sector", required=True, help="sector id")
    p.add_argument("--register", required=True, help="register CSV/Parquet with firm_id,text")
    p.add_argument("--n", type=int, default=config.SUGGEST_N, help=f"firms to suggest (default {config.SUGGEST_N})")
    p.add_argument("--out", default=config.SUGGEST_OUT, help=f"review CSV to write (default {config.SUGGEST_OUT})")
    p.add_argument("--labels", help="labelled firms to skip (e.g. the training set)")
    p.add_argument("--model", help="model URI (default: champion)")
    p.set_defaults(func=cmd_suggest)
    p = label_sub.add_parser("import", help="merge reviewed labels into a training set, with provenance",
                             description="Rows of FILE with `reviewed` yes take their `sectors` into --into (new firms added, "
                             "existing firms relabelled), recording who, when and from which model version.")
    p.add_argument("file", help="reviewed CSV from `rtic label suggest`")
    p.add_argument("--into", required=True, help="labels file to merge into")
    p.add_argument("--out", help="where to write the merged labels (default: overwrite --into)")
    p.add_argument("--reviewer", help="who reviewed (default: the file's reviewer column, else $RTIC_USER or login name)")
    p.add_argument("--taxonomy", help="taxonomy YAML the sector ids must belong to (default: the taxonomy version the file records, "
                   "whose sectors the suggesting model knows; else the bundled one)")
    p.set_defaults(func=cmd_import)
