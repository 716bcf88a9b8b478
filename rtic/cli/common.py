"""Small helpers the command groups share: stderr lines, tables, the --quiet option."""

from __future__ import annotations

import sys


def err(message: str) -> None:
    """One line on stderr, flushed (errors, warnings, progress)."""
    print(message, file=sys.stderr, flush=True)


def table(frame, columns=None) -> str:
    frame = frame if columns is None else frame[columns]
    return frame.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="")


def quiet_arg(p) -> None:
    """The command's own --quiet, as `rtic --quiet COMMAND`: warnings and errors only on stderr."""
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")

