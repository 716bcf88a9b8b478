"""Defaults in one place. Library functions take a Settings; only the CLI builds one from the environment."""

from __future__ import annotations

import os
import sys
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

# -- defaults of the library's options, read by its dataclasses and signatures and by the CLI's parsers --------
# train
FEATURES = "embedding+tfidf"
FEATURE_SETS = ("embedding", "tfidf", "embedding+tfidf")
C = 1.0  # inverse regularisation strength of each sector's logistic regression
SEED = 0
CV_FOLDS = 5
TRAIN_JOBS = -1  # threads fitting the sectors' models side by side (joblib: -1 = every core); results do not depend on it
# classify
CHUNK_ROWS = 2048  # register rows per chunk
FAST_AGREEMENT = 0.97  # fast path: share of firms whose whole label set equals the transformer's
# fast path: processes sharing the static pass (1: in the classify process itself). Measured on 2 cores
# (scripts/bench_batch.py): 2 workers gave 1.11x on website text, 0.79x on short text, and ~0.65 GiB of RSS each
# (the fast path's 1M-row peak went from ~0.8 to 2.1 GiB), so one process is the default; more pay on more cores.
FAST_WORKERS = 1
FASTPATH_SAMPLE = 2000  # register firms embedded with the transformer to fit the fast head
ENCODER_ENGINES = ("torch", "onnx-int8")  # torch: fp32 or bf16 (use_bf16); onnx-int8: rtic.embed.int8, made here from the same weights
ENCODER_ENGINE = "torch"  # onnx-int8 changes some labels, so it is opt-in (README)
# the sentence encoder a new model is trained with (rtic.embed.encoder.ENCODER_MODELS); a trained model always
# uses the one it was trained with. all-mpnet-base-v2 measured +0.04 macro-F1 at 5-9x the cost per text (README).
ENCODER_MODEL = "all-MiniLM-L6-v2"
# models promote / ui / label suggest
PROMOTE_TOLERANCE = 0.01  # allowed drop in macro F1
UI_PORT = 5000
SUGGEST_N = 50
SUGGEST_OUT = "to_review.csv"
# review app
REVIEW_HOST = "127.0.0.1"
REVIEW_PORT = 8765
REVIEW_MARGIN = 0.1  # "near threshold": within this probability of it
# crawl
CRAWL_CONCURRENCY = 32  # sites in flight at once
CRAWL_DELAY = 1.0  # seconds between request starts to one origin
MAX_CRAWL_DELAY = 30.0  # cap on robots.txt Crawl-delay
MAX_PAGES = 8  # pages besides the home page
MAX_PAGE_BYTES = 3_000_000  # decoded bytes
MAX_SITE_BYTES = 15_000_000
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 20.0
PAGE_TIMEOUT = 45.0  # the whole request, however slowly the server drips bytes
RETRIES = 2  # extra attempts on 429, 5xx and connection errors
BACKOFF = 1.0  # first retry wait; doubles, with jitter
CONTACT_URL = "https://github.com/rtic/rtic"
CLI_CRAWL_WORKERS = min(4, os.cpu_count() or 1)  # extraction processes the CLI starts (the library's default is 0)
# clusters
LQ_THRESHOLD = 1.25
MIN_COUNT = 10  # firms of the sector an area needs to be called specialised
CONFIDENCE = 0.95
CLUSTER_METHOD = "dbscan"
CLUSTER_METHODS = ("dbscan", "hdbscan")
EPS_M = 1000.0
MIN_SAMPLES = 10
MIN_CLUSTER_FIRMS = 10
RD_SHARE = 0.5
COLLAB_SHARE = 0.5
MIN_GROUP_FIRMS = 5  # members of its dominant sector a community needs to be specialised
COLOCATED_KM = 30.0
MAX_PARTICIPANTS = 50
RESOLUTION = 1.0
AREA = "auto"  # clusters.specialisation.choose_area


def default_home() -> Path:
    """Where rtic keeps its state when RTIC_HOME is not set, the same whatever folder it is run from: the
    repository's models/ for a source checkout (an editable install beside training/), else the user's data folder."""
    if (REPO_ROOT / "training").is_dir() and (REPO_ROOT / "pyproject.toml").is_file():
        return REPO_ROOT / "models"
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "rtic"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "rtic"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "rtic"


@dataclass(frozen=True)
class Settings:
    """Where rtic keeps its state. `home` holds the local MLflow store and the embedding cache."""

    home: Path = field(default_factory=default_home)
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
    def registry_missing(self) -> bool:
        """True when the registry is the local SQLite file and it does not exist yet (nothing was ever trained here)."""
        return not self.tracking_uri and not (self.home / "mlflow.db").is_file()

    def where(self) -> str:
        """The registry in words, naming the variables that move it (for 'not found' errors)."""
        if self.tracking_uri:
            return f"{self.tracking_uri} (MLFLOW_TRACKING_URI)"
        return f"{self.resolved_tracking_uri} (RTIC_HOME={self.home}; set RTIC_HOME or MLFLOW_TRACKING_URI to use another)"

    @property
    def int8_dir(self) -> Path:
        """Where the int8 ONNX copy of the encoder is built (rtic.embed.int8)."""
        return self.home / "onnx"

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
            home=Path(os.environ["RTIC_HOME"]).resolve() if os.environ.get("RTIC_HOME") else default_home(),
            tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or None,
            embedding_cache=Path(os.environ["RTIC_EMBEDDING_CACHE"]) if os.environ.get("RTIC_EMBEDDING_CACHE") else None,
            use_bf16=None if bf16 is None else parse_bool(bf16) is True,
        )
