"""How long steps (classify, crawl, train, fastpath build) report progress: one rate/ETA formatter.

Library modules log progress with `logging.getLogger(__name__)` at INFO (warnings at WARNING); the CLI shows
rtic's records as plain lines on stderr (`rtic --quiet`: warnings only). Used as a library, rtic is silent
unless the caller configures logging.
"""

from __future__ import annotations

import math


def format_eta(seconds: float) -> str:
    """'0m42s', '12m05s', '3h07m'; '?' when the time is unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def eta(count: float, seconds: float, left: float) -> str:
    """The time the `left` items take at the rate of `count` items in `seconds`."""
    return format_eta(left * seconds / count) if count > 0 and seconds > 0 else "?"


def rate_eta(count: float, seconds: float, left: float, unit: str) -> str:
    """'1,234 firms/s, ETA 3m05s': the rate of `count` items in `seconds`, and the ETA of the `left` items at it."""
    rate = count / seconds if seconds > 0 else 0.0
    shown = f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}"
    return f"{shown} {unit}/s, ETA {eta(count, seconds, left)}"
