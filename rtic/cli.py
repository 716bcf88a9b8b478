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
    result = train(settings, labels_path=args.labels, taxonomy_path=args.taxonomy, name=args.name, features=args.features, C=args.C,
                   seed=args.seed, cv=args.cv, ignore_unknown=args.ignore_unknown, description_prior=args.description_prior)
    report = result.report.set_index("sector_id")
    if result.cv_folds:
        print(f"\n{result.cv_folds}-fold cross-validation (each fold tunes its thresholds on its own training folds):")
    else:
        print(f"\nout-of-fold scores on the training labels (thresholds tuned on the same folds, so optimistic):")
    print(report[["support", "threshold", "precision", "recall", "f1", "pr_auc", "ece", "precision_at_expected"]].to_string(float_format=lambda v: f"{v:.3f}"))
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


# -- evaluate / models / ui / label / taxonomy add-sector (retraining workflow) ----------------------
def _table(frame, columns=None) -> str:
    frame = frame if columns is None else frame[columns]
    return frame.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="")


def cmd_evaluate(args) -> int:
    from rtic.training import evaluate

    result = evaluate(Settings.from_env(), args.labels, model_uri=args.model, taxonomy_path=args.taxonomy, eval_set=args.eval_set,
                      ignore_unknown=args.ignore_unknown, progress=lambda m: print(m, file=sys.stderr, flush=True))
    print(_table(result.report, ["sector_id", "support", "predicted", "precision", "recall", "f1", "pr_auc", "ece", "precision_at_expected"]))
    print(f"\nevaluated {result.model.name} version {result.model.version} on '{result.eval_set}'; run {result.run_id}")
    return 0


def cmd_models_list(args) -> int:
    from rtic.models import list_versions

    table = list_versions(Settings.from_env(), args.name)
    print(_table(table) if len(table) else f"no versions of {args.name}")
    return 0


def cmd_models_show(args) -> int:
    from rtic.models import show_version

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
    from rtic.models import compare

    print(_table(compare(Settings.from_env(), args.a, args.b, args.name, args.eval_set)))
    return 0


def cmd_models_promote(args) -> int:
    from rtic.models import promote

    result = promote(Settings.from_env(), args.version, eval_set=args.eval_set, tolerance=args.tolerance, force=args.force,
                     reason=args.reason or "", who=args.who, name=args.name)
    print(result.message)
    return 0 if result.promoted or result.previous == result.version else 1


def cmd_ui(args) -> int:
    import subprocess

    from rtic.models import ui_command

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
    from rtic.fewshot import add_sector

    result = add_sector(args.taxonomy, args.out, sector_id=args.id, name=args.name, description=args.description,
                        seeds_path=args.seeds, labels_path=args.labels, labels_out=args.labels_out, expected_share=args.expected_share,
                        include=args.include, version=args.version)
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(result.message)
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
                       description="Classify a register (CSV or Parquet with firm_id and text) and write firm labels as long-form "
                       "Parquet; firms that cannot be classified go to OUT's .exceptions.csv with their reason.")
    p.add_argument("register", help="register CSV or Parquet (firm_id, text; Companies House files accepted)")
    p.add_argument("--out", required=True, help="labels Parquet to write")
    p.add_argument("--model", help="model URI (default models:/rtic-sector-classifier@champion)")
    p.add_argument("--taxonomy", help="refuse to run unless the model was trained on this taxonomy file's version")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_classify)

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
                              "overrides, and needs --reason; who, when and why are recorded as tags on the version. Exit 1 when refused.")
    p.add_argument("version")
    p.add_argument("--eval-set", help="evaluation set both versions were evaluated on")
    p.add_argument("--tolerance", type=float, default=0.01, help="allowed drop in macro F1 (default 0.01)")
    p.add_argument("--force", action="store_true", help="promote without (or against) the comparison")
    p.add_argument("--reason", help="why (required with --force)")
    p.add_argument("--who", help="who promotes (default $RTIC_USER or the login name)")
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
