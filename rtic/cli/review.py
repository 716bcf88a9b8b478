"""`rtic explain` and `rtic review decide|history|publish|export|serve`: why a firm has its labels, and people's decisions on them."""

from __future__ import annotations

from pathlib import Path

from rtic import config
from rtic.config import Settings
from rtic.errors import RticError


def _reviews_path(args) -> str:
    return args.reviews or str(Settings.from_env().home / "reviews.sqlite")


def cmd_explain(args) -> int:
    import json

    from rtic.explain import explain, format_explanation

    ex = explain(args.firm_id, Settings.from_env(), labels=args.labels, register=args.register, store=args.store, model_uri=args.model)
    print(json.dumps(ex.to_dict(), indent=2, default=str) if args.json else format_explanation(ex))
    return 0


def cmd_decide(args) -> int:
    from rtic.review.store import record_decision

    path = _reviews_path(args)
    d = record_decision(path, args.firm_id, args.sector_id, args.decision, args.reviewer, labels=args.labels, note=args.note)
    print(f"recorded #{d.id}: {d.firm_id} {d.sector_id} {d.decision} by {d.reviewer} at {d.decided_at} (model version {d.model_version or '?'}) in {Path(path)}")
    return 0


def cmd_history(args) -> int:
    from rtic.review.store import ReviewStore

    rows = ReviewStore(_reviews_path(args)).history(args.firm_id)
    if not rows:
        print(f"no decisions on firm {args.firm_id}")
    for d in rows:
        print(f"#{d.id} {d.decided_at}  {d.sector_id:<24}{d.decision:<8}{d.reviewer}  model {d.model_version or '?'}" + (f"  — {d.note}" if d.note else ""))
    return 0


def cmd_publish(args) -> int:
    from rtic.review.publish import publish_file

    r = publish_file(args.labels, _reviews_path(args), args.out)
    print(f"published {r.n_rows} labels to {r.out}: {r.n_decisions} decisions in force, {r.n_changed} labels changed by review,"
          f" {r.n_extra} decisions on firm/sector pairs not in {args.labels}"
          + (f"; {r.n_unknown} decisions on sectors not in the labels' taxonomy left out" if r.n_unknown else ""))
    return 0


def cmd_export(args) -> int:
    from rtic.review.publish import export_file

    r = export_file(args.labels, _reviews_path(args), args.out, register=args.register, store=args.store)
    print(f"exported {r.n_firms} reviewed firms to {r.out} (firm_id,text,sectors; use with rtic train --labels);"
          f" {r.n_missing} without text listed in {r.exceptions}")
    return 0


def cmd_serve(args) -> int:
    from rtic.review.app import build_app, make_server

    if not args.reviewer.strip():
        raise RticError("a reviewer name is required: --reviewer NAME (it is stored with every decision)")
    app = build_app(Settings.from_env(), args.labels, _reviews_path(args), register=args.register, store=args.store, reviewer=args.reviewer,
                    host=args.host, port=args.port, use_model=not args.no_model, index_path=args.index, margin=args.margin)
    server = make_server(app)
    host, port = server.server_address[:2]
    print(f"reviewing {args.labels} as {args.reviewer}: open http://{host}:{port}/  (decisions in {app.config.reviews_path}; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def add_explain_parser(sub) -> None:
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


def _reviews_arg(p) -> None:
    p.add_argument("--reviews", help="reviews SQLite database (default: RTIC_HOME/reviews.sqlite)")


def add_parsers(sub) -> None:
    rev = sub.add_parser("review", help="review decisions: record, publish, export, and the review web app",
                         description="Reviewers confirm, reject or add a firm's sector labels. Decisions are stored append-only in "
                         "SQLite (default RTIC_HOME/reviews.sqlite): a later decision supersedes an earlier one and both are kept.")
    rev_sub = rev.add_subparsers(dest="review_command", required=True, metavar="ACTION")

    p = rev_sub.add_parser("decide", help="record one decision from the command line")
    p.add_argument("firm_id")
    p.add_argument("sector_id")
    p.add_argument("decision", choices=["confirm", "reject", "add"], help="confirm: model assigned it and it is right; reject: not in the "
                   "sector; add: in the sector though the model did not assign it")
    p.add_argument("--reviewer", required=True, help="who decides (stored with the decision)")
    p.add_argument("--note", default="", help="why")
    p.add_argument("--labels", required=True, help="labels Parquet from rtic classify: the firm (or its exceptions row) and the sector must be in it;"
                   " the decision is checked against the model's label and records its model version")
    _reviews_arg(p)
    p.set_defaults(func=cmd_decide)

    p = rev_sub.add_parser("history", help="every decision on a firm, oldest first")
    p.add_argument("firm_id")
    _reviews_arg(p)
    p.set_defaults(func=cmd_history)

    p = rev_sub.add_parser("publish", help="write published labels: model labels with the decisions in force applied")
    p.add_argument("--labels", required=True, help="labels Parquet from rtic classify")
    p.add_argument("--out", required=True, help="published labels (.parquet or .csv): adds model_assigned, decision, reviewer, decided_at, source")
    _reviews_arg(p)
    p.set_defaults(func=cmd_publish)

    p = rev_sub.add_parser("export", help="write reviewed firms as labelled firms (firm_id,text,sectors) for retraining")
    p.add_argument("--labels", required=True, help="labels Parquet from rtic classify (sectors not reviewed keep the model's label)")
    p.add_argument("--register", help="register with the firms' text")
    p.add_argument("--store", help="crawl store with the firms' pages")
    p.add_argument("--out", required=True, help="labelled firms CSV to write; firms without text go to OUT's .exceptions.csv")
    _reviews_arg(p)
    p.set_defaults(func=cmd_export)

    p = rev_sub.add_parser("serve", help="the review web app (search, firm pages with evidence, decision buttons)",
                           description="Serve the review app on 127.0.0.1. The labels are indexed in SQLite beside the labels file on "
                           "first start (rebuilt when the labels or register change), so search and firm pages stay fast at millions of firms.")
    p.add_argument("--labels", required=True, help="labels Parquet from rtic classify")
    p.add_argument("--register", help="register with names and texts (search by name, evidence)")
    p.add_argument("--store", help="crawl store with the firms' pages (text when the register has none)")
    p.add_argument("--reviewer", required=True, help="your name, stored with every decision you make")
    p.add_argument("--host", default=config.REVIEW_HOST, help=f"address to bind (default {config.REVIEW_HOST}: this machine only)")
    p.add_argument("--port", type=int, default=config.REVIEW_PORT, help=f"port (default {config.REVIEW_PORT}; 0 picks a free one)")
    p.add_argument("--index", help="labels index path (default: LABELS.review-index.sqlite beside the labels)")
    p.add_argument("--margin", type=float, help=f"'near threshold' means within this probability of it (default {config.REVIEW_MARGIN:g})")
    p.add_argument("--no-model", action="store_true", help="do not load the model: labels and decisions only, no evidence")
    _reviews_arg(p)
    p.set_defaults(func=cmd_serve)
