"""Company registers: the firms to classify (CSV or Parquet), including Companies House bulk files as they come."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rtic.tables import check_unique_ids, read_table, require_columns

# Companies House BasicCompanyData → register contract. Two CH headers carry a leading space.
COMPANIES_HOUSE_COLUMNS = {
    "CompanyNumber": "firm_id",
    "CompanyName": "name",
    "RegAddress.PostCode": "postcode",
    "URI": "ch_uri",
}
CH_SIC_COLUMNS = [f"SICCode.SicText_{i}" for i in range(1, 5)]


def is_companies_house(df: pd.DataFrame) -> bool:
    return "CompanyNumber" in {c.strip() for c in df.columns}


def from_companies_house(df: pd.DataFrame) -> pd.DataFrame:
    """Map a BasicCompanyData frame onto the register contract (firm_id, name, postcode, sic_codes)."""
    df = df.rename(columns={c: c.strip() for c in df.columns})
    out = df.rename(columns=COMPANIES_HOUSE_COLUMNS)
    sic = [c for c in CH_SIC_COLUMNS if c in df.columns]
    if sic:
        # "62012 - Business and domestic software development" → "62012"
        codes = df[sic].fillna("").astype(str).apply(lambda col: col.str.split(" - ").str[0].str.strip())
        out["sic_codes"] = codes.apply(lambda row: "|".join(c for c in row if c and c.lower() != "none supplied"), axis=1)
    return out


def read_register(path: str | Path) -> pd.DataFrame:
    """Read a whole register, checked: a firm_id column (or CompanyNumber), ids present and unique."""
    df = read_table(path, "register")
    if is_companies_house(df):
        df = from_companies_house(df)
    require_columns(df, ["firm_id"], path, "register")
    df["firm_id"] = df["firm_id"].astype(str).str.strip()
    check_unique_ids(df, path, "register")
    if df.empty:
        from rtic.errors import RticError

        raise RticError(f"register {path} has a header but no firms")
    return df
