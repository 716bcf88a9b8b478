"""Shared fixtures for the review tests: a register with a hostile firm, labels made by the real model."""

from pathlib import Path

import pandas as pd
import pytest

from rtic.config import PACKAGE_DATA

EXAMPLE = PACKAGE_DATA / "example_register.csv"
HOSTILE_ID = "EVIL-1"
HOSTILE_TEXT = ("We install solar panels and battery storage for homes. <script>document.title='pwned';window.pwned=1;alert('xss')</script> "
                "Our engineers fit heat pumps across Kent. <img src=x onerror=\"document.title='pwned'\"> Call us for a quote today.")
WEBSITE = "www.chargeloop.example/home"  # as registers write them: no scheme
HOSTILE_WEBSITE = "javascript:alert('site')"


@pytest.fixture(scope="session")
def review_register(tmp_path_factory) -> Path:
    register = pd.read_csv(EXAMPLE, dtype=str, keep_default_na=False)
    register["website"] = ""
    register.loc[register["firm_id"] == "EX004", "website"] = WEBSITE
    hostile = pd.DataFrame({"firm_id": [HOSTILE_ID], "name": ["<script>alert('name')</script> Solar Ltd"], "text": [HOSTILE_TEXT],
                            "website": [HOSTILE_WEBSITE]})
    path = tmp_path_factory.mktemp("review_register") / "register.csv"
    pd.concat([register, hostile], ignore_index=True).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def review_labels(trained, settings, review_register, tmp_path_factory) -> Path:
    """Labels for the register made by the session's trained model, as `rtic classify` writes them."""
    from rtic.score.batch import classify_register

    out = tmp_path_factory.mktemp("review_labels") / "labels.parquet"
    classify_register(review_register, out, settings)
    return out


@pytest.fixture(scope="session")
def review_explainer(settings, review_labels):
    """The model that made the labels, loaded once in this process (loading torch is the slow part)."""
    from rtic.explain import ModelExplainer

    first = pd.read_parquet(review_labels).iloc[0]
    return ModelExplainer(settings, f"models:/{first['model_name']}/{first['model_version']}")
