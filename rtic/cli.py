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
    result = classify_register(args.register, args.out, settings, model_uri=args.model, taxonomy_path=args.taxonomy, progress=quiet,
                               store_path=getattr(args, "store", None))
    print(f"{result.n_input} firms in register: {result.n_classified} classified, {result.n_exceptions} not classified (reasons in {result.exceptions_path})")
    print(f"model {result.model.name} version {result.model.version}; labels written to {result.labels_path}")
    print("firms per sector:")
    for sector, count in sorted(result.firms_per_sector.items(), key=lambda kv: -kv[1]):
        print(f"  {sector:<24}{count:>8}")
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
    p.add_argument("--C", type=float, default=4.0, help="inverse regularisation strength of each sector's logistic regression (default 4)")
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
    p.add_argument("--store", help="crawl store (from `rtic crawl`) to read firm text from when the register has no text column")
    p.set_defaults(func=cmd_classify)
    add_crawl_parsers(sub)
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
