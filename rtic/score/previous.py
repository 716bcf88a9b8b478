"""--since: a previous labels Parquet, indexed once on disk, so unchanged firms' rows are copied, not re-scored."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rtic.contracts import LABEL_COLUMNS, OUTPUT_COLUMNS
from rtic.embed.encoder import text_sha256
from rtic.errors import RticError
from rtic.score.runstate import empty_labels
from rtic.tables import select_in


class Previous:
    """A previous labels Parquet for --since, indexed in SQLite on disk (memory stays flat at 5M firms).

    The index maps firm_id → (text hash | model version, the row groups holding the firm's rows), so each
    chunk looks up its own firms and copies the unchanged firms' rows from just those row groups.
    """

    def __init__(self, path: Path, index_path: Path):
        import pyarrow.parquet as pq
        import sqlite3

        self.path, self.file = path, pq.ParquetFile(path)
        self.db = sqlite3.connect(str(index_path))
        self._cache: dict[int, pd.DataFrame] = {}
        if not self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'built'").fetchone():  # built once; a resume reuses it
            self._build()

    @staticmethod
    def check(path: str | Path) -> Path:
        """A clear one-line error before any work when PREVIOUS is missing or not a firm-labels Parquet."""
        import pyarrow.parquet as pq

        path = Path(path)
        if not path.is_file():
            raise RticError(f"--since output not found: {path}")
        try:
            names = set(pq.ParquetFile(path).schema_arrow.names)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
            raise RticError(f"--since {path} is not a firm-labels Parquet: {str(exc).splitlines()[0]}") from None
        missing = [c for c in LABEL_COLUMNS if c not in names]
        if missing:
            raise RticError(f"--since {path} is not a firm-labels Parquet: no column {', '.join(missing)}")
        return path

    def _build(self) -> None:
        with self.db:
            self.db.execute("DROP TABLE IF EXISTS prev")
            self.db.execute("CREATE TABLE prev (firm_id TEXT PRIMARY KEY, key TEXT, rg_first INTEGER, rg_last INTEGER) WITHOUT ROWID")
            for rg in range(self.file.num_row_groups):
                part = self.file.read_row_group(rg, columns=["firm_id", "text_sha256", "model_version"]).to_pandas().drop_duplicates("firm_id")
                keys = part["text_sha256"].astype(str) + "|" + part["model_version"].astype(str)
                self.db.executemany("INSERT INTO prev VALUES (?, ?, ?, ?) ON CONFLICT(firm_id) DO UPDATE SET rg_last = excluded.rg_last",
                                    zip(part["firm_id"].astype(str), keys, [rg] * len(part), [rg] * len(part)))
            self.db.execute("CREATE TABLE built (at TEXT)")

    def _lookup(self, ids: list[str]) -> dict[str, tuple[str, int, int]]:
        return {fid: (key, first, last) for fid, key, first, last in select_in(self.db, "SELECT * FROM prev WHERE firm_id IN ({})", ids)}

    def carried(self, texts: pd.DataFrame, model_version: str) -> tuple[pd.Series, pd.DataFrame]:
        """Which firms' text hash and model version are unchanged, and those firms' previous rows."""
        found = self._lookup(texts["firm_id"].tolist())
        now = texts["text"].map(text_sha256) + "|" + model_version
        before = [found.get(fid, ("",))[0] for fid in texts["firm_id"]]
        same = pd.Series(now.to_numpy() == before, index=texts.index)
        return same, self._rows(texts.loc[same, "firm_id"].tolist(), found)

    def _rows(self, ids: list[str], found: dict[str, tuple[str, int, int]]) -> pd.DataFrame:
        """The previous output's rows for these firms (OUTPUT_COLUMNS), read from their row groups only."""
        groups = sorted({rg for fid in ids for rg in range(found[fid][1], found[fid][2] + 1)})
        frames = []
        for rg in groups:
            if rg not in self._cache:
                if len(self._cache) >= 2:  # consecutive chunks mostly read the same row group or the next
                    self._cache.pop(next(iter(self._cache)))
                table = self.file.read_row_group(rg)
                frame = table.to_pandas()
                if "scored_by" not in frame.columns:
                    frame["scored_by"] = "transformer"
                self._cache[rg] = frame[OUTPUT_COLUMNS]
            frame = self._cache[rg]
            frames.append(frame[frame["firm_id"].isin(ids)])
        if not frames:
            return empty_labels()
        return pd.concat(frames, ignore_index=True).drop_duplicates(["firm_id", "sector_id"])

    def close(self) -> None:
        self.db.close()
