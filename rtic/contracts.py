"""The data contracts shared by the stages: column lists, reason strings, sibling output paths."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def sibling_path(out: str | Path, suffix: str) -> Path:
    """A file beside `out` named by replacing only its last suffix: labels.2026.11.parquet + '.exceptions.csv'
    -> labels.2026.11.exceptions.csv (so two dotted output names never share side files)."""
    out = Path(out)
    return out.with_name(out.stem + suffix)


# -- firm labels (the output of `rtic classify`) and the exceptions beside them ------------------
LABEL_COLUMNS = ["firm_id", "sector_id", "probability", "assigned", "model_name", "model_version", "taxonomy_version", "text_sha256", "classified_at"]
# Added beside the contract: which scorer produced the row ("transformer", or "static" on the fast path).
OUTPUT_COLUMNS = LABEL_COLUMNS + ["scored_by"]
# One row per register row that got no labels, and why (also the register reader's bad rows).
EXCEPTION_COLUMNS = ["firm_id", "line", "reason", "detail"]

# Why a register row got no labels: `reason` is one of these short codes (to group by in a spreadsheet),
# the free text is in `detail`. Each code's default detail is its value here.
NO_TEXT = "no_text"
NO_WEBSITE = "no_website"
NOT_CRAWLED = "not_crawled"
SITE_DEAD = "site_dead"
SITE_PARKED = "site_parked"
ROBOTS_BLOCKED = "robots_blocked"
MALFORMED_ROW = "malformed_row"
BAD_ENCODING = "bad_encoding"
EMPTY_ID_CODE = "empty_id"
DUPLICATE_ID_CODE = "duplicate_id"
SCORING_ERROR = "scoring_error"
REASONS = {
    NO_TEXT: "no usable text",
    NO_WEBSITE: "register row has no website and no text",
    NOT_CRAWLED: "firm not in the crawl store, or its crawl is unfinished",
    SITE_DEAD: "website unreachable",
    SITE_PARKED: "website is a parked or for-sale domain",
    ROBOTS_BLOCKED: "website's robots.txt disallows the crawler",
    MALFORMED_ROW: "row has the wrong number of fields",
    BAD_ENCODING: "row is not valid UTF-8",
    EMPTY_ID_CODE: "row has no firm_id",
    DUPLICATE_ID_CODE: "firm_id already seen earlier in the register; first row kept",
    SCORING_ERROR: "the model failed on this firm's text",
}
EMPTY_TEXT_DETAIL = "register row has an empty text column"  # NO_TEXT's detail when the text came from the register
EMPTY_ID = (EMPTY_ID_CODE, REASONS[EMPTY_ID_CODE])  # (reason, detail)
DUPLICATE_ID = (DUPLICATE_ID_CODE, REASONS[DUPLICATE_ID_CODE])


# -- the pyfunc model's output columns -----------------------------------------------------------
def probability_column(sector_id: str) -> str:
    return f"{sector_id}__probability"


def assigned_column(sector_id: str) -> str:
    return f"{sector_id}__assigned"


# -- values --------------------------------------------------------------------------------------
TRUE_STRINGS = frozenset({"true", "1", "yes", "y", "t", "on"})
FALSE_STRINGS = frozenset({"false", "0", "no", "n", "f", "off", ""})


def parse_bool(value) -> bool | None:
    """True/False for the strings a CSV, an environment variable or a reviewer tool writes for a boolean; None otherwise."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return True if text in TRUE_STRINGS else False if text in FALSE_STRINGS else None


def parse_bool_column(values, what) -> "np.ndarray":
    """A boolean column, or the strings a CSV or a reviewer tool writes for one (true/false, 1/0, yes/no); anything
    else is refused with one line naming `what`. Hashed in Arrow: pandas' isin on strings loops in Python."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    from rtic.errors import RticError

    values = pd.Series(values)
    if values.dtype == bool:
        return values.to_numpy()
    text = pa.array(np.asarray(values.astype(str).str.strip().str.lower(), dtype=object), type=pa.string(), from_pandas=True)
    known = pc.is_in(text, value_set=pa.array(sorted(TRUE_STRINGS | FALSE_STRINGS))).to_numpy(zero_copy_only=False)
    if not known.all():
        raise RticError(f"{what}: column '{values.name}' has {(~known).sum()} value(s) that are not true/false, e.g. {values[~known].iloc[0]!r}")
    return pc.is_in(text, value_set=pa.array(sorted(TRUE_STRINGS))).to_numpy(zero_copy_only=False)


def taxonomy_mismatch(model: str, model_taxonomy: str | None, wanted: str, where: str = "") -> str:
    """The one wording of "this model was trained on another taxonomy"; `model` e.g. "model NAME version 3"."""
    source = f" ({where})" if where else ""
    return (f"{model} was trained on taxonomy {model_taxonomy}, refusing to score against taxonomy {wanted}{source}: "
            "pass --taxonomy with the model's taxonomy file, or retrain")
