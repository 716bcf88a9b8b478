"""`rtic labels`: firm labels (what `rtic classify` writes) in the shapes analysts use."""

from __future__ import annotations

from rtic.cli.common import err, quiet_arg


def cmd_export(args) -> int:
    from rtic.firm_labels import export_wide

    chosen = {"values": args.values} if args.values else {}  # the default lives in export_wide
    r = export_wide(args.labels, args.out, register=args.register, **chosen)
    for warning in r.warnings:
        err(f"warning: {warning}")
    print(f"wrote {r.n_classified + r.n_not_classified} firms to {r.out}: {r.n_classified} classified, {r.n_not_classified} not classified "
          f"(reason in not_classified); {r.n_named} with name/website from the register; sector cells are {r.values}")
    return 0


def add_parsers(sub) -> None:
    labels = sub.add_parser("labels", help="firm labels for spreadsheets (wide CSV)")
    labels_sub = labels.add_subparsers(dest="labels_command", required=True, metavar="ACTION")
    p = labels_sub.add_parser("export", help="one row per firm, one column per sector, as a CSV for a spreadsheet",
                              description="Write firm labels (from rtic classify, or published with reviews applied) as a wide CSV: "
                              "firm_id, name, website (from --register), one column per sector (yes/no, or the probability with "
                              "--values probability), model_name, model_version, taxonomy_version, and not_classified (the reason, "
                              "for firms in the exceptions file beside the labels). Streams, so it works at millions of firms; "
                              "cells a spreadsheet would run as a formula are quoted.")
    p.add_argument("--labels", required=True, help="labels Parquet from rtic classify or rtic review publish")
    p.add_argument("--register", help="register CSV/Parquet for each firm's name and website")
    p.add_argument("--values", help="what a sector cell holds: assigned (default: yes/no) or probability")
    p.add_argument("--out", required=True, help="CSV to write")
    quiet_arg(p)
    p.set_defaults(func=cmd_export)
