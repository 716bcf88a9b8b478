"""Websites for a register that has none (a Companies House BasicCompanyData file has no website column).

The analyst supplies a `firm_id,website` file (CSV or Parquet; `firm_id` may also be headed `CompanyNumber`
or `company_number`), joined to the register by company number: `rtic crawl --websites FILE` and
`rtic classify --websites FILE`. Company numbers are compared as Companies House writes them (8 characters,
upper case), so `1234567` from a spreadsheet that dropped the leading zero still meets `01234567`. A website in
the file replaces the register's; rows of the file that meet no firm in the register are reported, and so are
its rows with no id, no website, or an id given twice (the first row is kept).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from rtic.contracts import DUPLICATE_ID_CODE, EMPTY_ID_CODE, NO_WEBSITE
from rtic.errors import RticError
from rtic.tables import read_table, write_atomically

ID_HEADERS = ("firm_id", "CompanyNumber", "company_number")
UNMATCHED = "no_such_firm"  # a websites row whose id is not in the register
REPORT_COLUMNS = ["firm_id", "line", "website", "reason"]
_COMPANY_NUMBER = re.compile(r"(?:\d{1,8}|[A-Z]{2}\d{1,6})")


def company_number(value) -> str:
    """The join key: a Companies House number padded to its 8 characters (01234567, SC012345); other ids as they are, stripped."""
    text = str(value).strip()
    compact = text.replace(" ", "").upper()
    if not _COMPANY_NUMBER.fullmatch(compact):
        return text
    prefix = "" if compact.isdigit() else compact[:2]
    return prefix + compact[len(prefix):].zfill(8 - len(prefix))


class Websites:
    """A websites file, read once: key -> website, the unusable rows, and which keys a register has met."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        df = read_table(self.path, "websites file")
        df.columns = [str(c).strip() for c in df.columns]
        id_col = next((c for c in ID_HEADERS if c in df.columns), None)
        if id_col is None or "website" not in df.columns:
            raise RticError(f"websites file {self.path} needs columns firm_id (or CompanyNumber) and website; it has: {', '.join(df.columns[:12])}")
        ids = df[id_col].fillna("").astype(str).str.strip()
        sites = df["website"].fillna("").astype(str).str.strip()
        keys = ids.map(company_number)
        lines = pd.RangeIndex(2, len(df) + 2) if self.path.suffix.lower() == ".csv" else pd.RangeIndex(1, len(df) + 1)
        frame = pd.DataFrame({"firm_id": ids.to_numpy(), "key": keys.to_numpy(), "line": lines, "website": sites.to_numpy()})
        reason = pd.Series("", index=frame.index)
        reason[frame["key"].duplicated() & (frame["key"] != "")] = DUPLICATE_ID_CODE
        reason[frame["website"] == ""] = NO_WEBSITE
        reason[frame["firm_id"] == ""] = EMPTY_ID_CODE
        frame["reason"] = reason
        self.bad = frame.loc[reason != "", REPORT_COLUMNS].reset_index(drop=True)
        good = frame[reason == ""]
        self.rows = good.set_index("key")
        self.by_key = dict(zip(good["key"], good["website"]))
        self.matched: set[str] = set()

    def __len__(self) -> int:
        return len(self.by_key)

    def attach(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Register rows (with firm_id) given the file's website where it has one; other rows keep theirs."""
        rows = rows.copy()
        keys = rows["firm_id"].astype(str).map(company_number)
        found = keys.map(self.by_key)
        self.matched.update(keys[found.notna()])
        current = rows["website"].fillna("").astype(str) if "website" in rows.columns else pd.Series("", index=rows.index)
        rows["website"] = found.where(found.notna(), current)
        return rows

    def unmatched(self) -> pd.DataFrame:
        """Rows of the file that met no firm in the register (so far), then the unusable rows: REPORT_COLUMNS, by line."""
        missed = self.rows[~self.rows.index.isin(list(self.matched))].assign(reason=UNMATCHED)
        report = pd.concat([missed[REPORT_COLUMNS], self.bad], ignore_index=True) if len(self.bad) else missed[REPORT_COLUMNS]
        return report.sort_values("line", kind="stable").reset_index(drop=True)

    def summary(self, report_path: Path | None = None) -> str:
        """One line: how many of the file's websites were attached, and where the rest are listed."""
        report = self.unmatched()
        line = f"websites from {self.path}: {len(self.matched)} of {len(self)} attached to register firms"
        if len(report):
            counts = ", ".join(f"{r} {n}" for r, n in report["reason"].value_counts().items())
            line += f"; {len(report)} row(s) not used ({counts})" + (f", listed in {report_path}" if report_path else "")
        return line

    def write_report(self, path: Path) -> Path | None:
        """Write the unused rows to `path` (CSV); None when every row was used (and a report left by an earlier run is removed)."""
        report = self.unmatched()
        if report.empty:
            Path(path).unlink(missing_ok=True)
            return None
        return write_atomically(report, path)
