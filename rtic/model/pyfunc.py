"""The MLflow pyfunc model (models-from-code): DataFrame with `text` (and optional `firm_id`) in,
per-sector probability and assigned flag out.

MLflow loads this file by path; the classifier itself comes from the `classifier` artifact and the
embedding model from the installed weights package, so nothing is downloaded at load time.
"""

from __future__ import annotations

import json

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

from rtic.contracts import assigned_column, probability_column, taxonomy_mismatch


class SectorModel(PythonModel):
    def load_context(self, context):
        import joblib

        from rtic.embed.encoder import Encoder, encoder_of_record

        try:
            with open(context.artifacts["meta"], encoding="utf-8") as fh:
                self.meta = json.load(fh)
            if "taxonomy_version" not in self.meta:
                raise KeyError("taxonomy_version")
        except Exception as exc:  # noqa: BLE001 - name the damaged artifact whatever the error
            raise ValueError(f"artifact meta.json is damaged ({type(exc).__name__}: {exc})") from None
        try:
            self.classifier = joblib.load(context.artifacts["classifier"])
        except Exception as exc:  # noqa: BLE001 - a damaged pickle raises anything from KeyError to UnpicklingError
            raise ValueError(f"artifact classifier.joblib is damaged ({type(exc).__name__}: {exc})") from None
        config = context.model_config or {}
        self.classifier.encoder = Encoder(
            cache_path=config.get("embedding_cache") or None,
            use_bf16=None if config.get("use_bf16") in (None, "") else config.get("use_bf16"),
            batch_size=int(config.get("batch_size") or 32),
            model=encoder_of_record(self.meta),
        )
        self.classifier.encoder.model.model_dir()  # a missing encoder is one line now, not at the first batch (or on an executor)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        wanted = (params or {}).get("taxonomy_version") or ""
        if wanted and wanted != self.meta["taxonomy_version"]:
            raise ValueError(taxonomy_mismatch("the model", self.meta["taxonomy_version"], wanted))
        texts = model_input["text"].fillna("").astype(str).tolist()
        proba = self.classifier.predict_proba(texts)
        thresholds = self.classifier.thresholds_
        out = pd.DataFrame(index=model_input.index)
        if "firm_id" in model_input.columns:
            out["firm_id"] = model_input["firm_id"].astype(str)
        for j, sector in enumerate(self.classifier.sector_ids):
            out[probability_column(sector)] = proba[:, j].astype(float)
            out[assigned_column(sector)] = proba[:, j] >= thresholds[j]
        return out


mlflow.models.set_model(SectorModel())
