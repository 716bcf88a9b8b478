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
    from rtic.explain import read_firm_labels
    from rtic.review.store import ReviewStore, check_decision

    version, assigned = args.model_version or "", None
    if args.labels:
        rows = read_firm_labels(args.labels, args.firm_id)
        row = rows[rows["sector_id"] == args.sector_id]
        if not row.empty:
            version, assigned = str(row.iloc[0]["model_version"]), bool(row.iloc[0]["assigned"])
    check_decision(args.decision, assigned)
    store = ReviewStore(_reviews_path(args))
    d = store.record(args.firm_id, args.sector_id, args.decision, args.reviewer, note=args.note, model_version=version)
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
          f" {r.n_extra} decisions on firm/sector pairs not in {args.labels}")
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
    p.add_argument("--labels", help="labels Parquet: checks the decision against the model's label and records its model version")
    p.add_argument("--model-version", help="model version to record when no --labels are given")
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
