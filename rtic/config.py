"""Defaults in one place. Library functions take a Settings; only the CLI builds one from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from rtic.contracts import parse_bool

MODEL_NAME = "rtic-sector-classifier"
CHAMPION_ALIAS = "champion"
EXPERIMENT_NAME = "rtic"
PACKAGE_DATA = Path(__file__).resolve().parent / "data"
DEFAULT_TAXONOMY = PACKAGE_DATA / "taxonomy.yaml"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SEED_LABELS = REPO_ROOT / "training" / "seed_labels.csv"


@dataclass(frozen=True)
class Settings:
    """Where rtic keeps its state. `home` holds the local MLflow store and the embedding cache."""

    home: Path = field(default_factory=lambda: Path("models"))
    tracking_uri: str | None = None  # None: SQLite under home
    embedding_cache: Path | None = None  # None: SQLite file under home
    use_bf16: bool | None = None  # None: bf16 when the CPU has native bf16 support
    batch_size: int = 32

    @property
    def resolved_tracking_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def artifact_root(self) -> Path:
        return (self.home / "artifacts").resolve()

    @property
    def resolved_embedding_cache(self) -> Path:
        return Path(self.embedding_cache) if self.embedding_cache else self.home / "embedding_cache.sqlite"

    @classmethod
    def from_env(cls) -> "Settings":
        """RTIC_HOME, MLFLOW_TRACKING_URI, RTIC_EMBEDDING_CACHE and RTIC_BF16 (0/1) override defaults."""
        bf16 = os.environ.get("RTIC_BF16")
        return cls(
            home=Path(os.environ.get("RTIC_HOME", "models")),
            tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or None,
            embedding_cache=Path(os.environ["RTIC_EMBEDDING_CACHE"]) if os.environ.get("RTIC_EMBEDDING_CACHE") else None,
            use_bf16=None if bf16 is None else parse_bool(bf16) is True,
        )
