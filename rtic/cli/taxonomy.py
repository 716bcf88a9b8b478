"""`rtic taxonomy show|validate|add-sector`."""

from __future__ import annotations

from rtic.cli.common import err


def cmd_show(args) -> int:
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


def cmd_validate(args) -> int:
    from rtic.taxonomy import load_taxonomy

    tax = load_taxonomy(args.file)
    print(f"{args.file}: valid, version {tax.version}, {len(tax.sectors)} sectors, {len(tax.verticals)} verticals")
    return 0


def cmd_add_sector(args) -> int:
    from rtic.model.fewshot import add_sector

    result = add_sector(args.taxonomy, args.out, sector_id=args.id, name=args.name, description=args.description,
                        seeds_path=args.seeds, labels_path=args.labels, labels_out=args.labels_out, expected_share=args.expected_share,
                        include=args.include, version=args.version)
    for w in result.warnings:
        err(f"warning: {w}")
    print(result.message)
    return 0


def add_parsers(sub) -> None:
    tax = sub.add_parser("taxonomy", help="show or validate a sector taxonomy file")
    tax_sub = tax.add_subparsers(dest="taxonomy_command", required=True, metavar="ACTION")
    p = tax_sub.add_parser("show", help="print the sectors, verticals and key phrases")
    p.add_argument("--file", help="taxonomy YAML (default: the bundled one)")
    p.set_defaults(func=cmd_show)
    p = tax_sub.add_parser("validate", help="check a taxonomy file: duplicate ids, unknown parents, empty descriptions")
    p.add_argument("file", help="taxonomy YAML to check")
    p.set_defaults(func=cmd_validate)

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
    p.set_defaults(func=cmd_add_sector)
