"""The `rtic` command line: one thin module per command group; `main` is the console script."""

from rtic.cli.main import main

__all__ = ["main"]
