"""The `rtic` command: builds the parser from the command groups and runs one handler.

Each group (rtic/cli/<group>.py) adds its parsers and holds handlers that only parse arguments, call library
functions and print; every handler returns the exit status. A user's mistake (RticError) is one line on stderr
and exit 2; `rtic models promote` refused by the comparison exits 3; anything else is a bug (traceback, exit 1).
Library modules are imported inside the handlers, so `rtic --help` does not load them.
"""

from __future__ import annotations

import argparse
import logging
import sys

from rtic.cli import classify, clusters, crawl, encoder, fastpath, label, labels, models, review, taxonomy
from rtic.cli.common import err
from rtic.errors import RticError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtic",
        description="Real-time industrial classifications: label firms with emerging sectors from their website text.",
        epilog="State lives under RTIC_HOME (default: models/ of this checkout when rtic is installed from it, else the user data folder, e.g. ~/.local/share/rtic; the same whatever folder rtic runs from): MLflow registry (SQLite) and embedding cache. "
        "MLFLOW_TRACKING_URI points at another MLflow; RTIC_BF16=0/1 forces fp32/bf16 embeddings.",
    )
    parser.add_argument("--quiet", action="store_true", dest="quiet_all", help="no progress on stderr: warnings and errors only "
                        "(also accepted after the command where it says so)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    taxonomy.add_parsers(sub)
    models.add_train_parser(sub)
    classify.add_parsers(sub)
    clusters.add_parsers(sub)
    crawl.add_parsers(sub)
    review.add_explain_parser(sub)
    review.add_parsers(sub)
    models.add_parsers(sub)
    label.add_parsers(sub)
    labels.add_parsers(sub)
    fastpath.add_parsers(sub)
    encoder.add_parsers(sub)
    return parser


def configure_logging(quiet: bool = False) -> logging.Handler:
    """Once per run: progress (INFO) and warnings of every rtic module on stderr as plain lines, as the
    commands printed them before they logged; only warnings when quiet."""
    logger = logging.getLogger("rtic")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    return handler


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = configure_logging(quiet=args.quiet_all or getattr(args, "quiet", False))
    try:
        return args.func(args)
    except RticError as exc:
        err(f"rtic: error: {exc}")
        return 2
    except KeyboardInterrupt:
        err("rtic: interrupted")
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    finally:  # main() may run again in the same process (tests, notebooks)
        logging.getLogger("rtic").removeHandler(handler)
        logging.getLogger("rtic").setLevel(logging.NOTSET)


if __name__ == "__main__":
    sys.exit(main())
