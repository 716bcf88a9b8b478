import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rtic.config import DEFAULT_SEED_LABELS, Settings
from rtic.embed.encoder import text_sha256

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def _mpnet_installed() -> bool:
    from importlib import metadata

    from rtic.embed.encoder import MPNET

    try:
        for n in range(1, MPNET.split_zip_parts + 1):
            metadata.distribution(f"{MPNET.name}-pypi-part-{n:03d}")
    except metadata.PackageNotFoundError:
        return False
    return True


# The opt-in encoder's tests (`make test` installs it through `make setup-mpnet`; a bare pytest may not have it).
needs_mpnet = pytest.mark.skipif(not _mpnet_installed(), reason="all-mpnet-base-v2 is not installed: run `make setup-mpnet`")


class HashEncoder:
    """A stand-in encoder for fast classifier tests: a fixed random unit vector per word, averaged."""

    def __init__(self, dims: int = 64):
        self.dims = dims
        self.calls = 0

    def encode(self, texts):
        self.calls += 1
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in str(text).lower().split():
                rng = np.random.default_rng(int(text_sha256(word)[:8], 16))
                out[i] += rng.standard_normal(self.dims)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


@pytest.fixture(scope="session")
def mini_labels(tmp_path_factory) -> Path:
    """A small labelled set taken from the team's seed data: 8 firms per sector plus 24 in none."""
    seed = pd.read_csv(DEFAULT_SEED_LABELS, dtype=str, keep_default_na=False)
    parts = []
    from rtic.taxonomy import load_taxonomy

    for sector in load_taxonomy().sector_ids:
        parts.append(seed[seed["sectors"] == sector].head(8))
    parts.append(seed[seed["sectors"] == ""].head(24))
    mini = pd.concat(parts).drop_duplicates("firm_id")
    path = tmp_path_factory.mktemp("labels") / "mini_labels.csv"
    mini[["firm_id", "text", "sectors"]].to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def rtic_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("rtic_home")


@pytest.fixture(scope="session")
def settings(rtic_home) -> Settings:
    return Settings(home=rtic_home)


@pytest.fixture(scope="session")
def trained(settings, mini_labels):
    """One real training run (real encoder, real MLflow SQLite registry) shared by the session."""
    from rtic.model.training import train

    return train(settings, labels_path=mini_labels)


def run_cli(*args: str, home: Path, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real `rtic` console entry point in a subprocess."""
    full_env = {**os.environ, "RTIC_HOME": str(home), **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "rtic.cli", *args], capture_output=True, text=True, cwd=cwd or REPO, env=full_env, timeout=600)
