import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from rtic.mlops import registry
from rtic.config import MODEL_NAME
from rtic.errors import RticError
from rtic.labels import read_labels
from rtic.contracts import probability_column
from rtic.taxonomy import load_taxonomy


def test_train_registers_a_champion(trained, settings):
    registry.configure(settings)
    client = MlflowClient()
    model = client.get_registered_model(MODEL_NAME)
    assert str(model.aliases["champion"]) == trained.version
    mv = client.get_model_version(MODEL_NAME, trained.version)
    assert mv.tags["taxonomy_version"] == load_taxonomy().version
    run = client.get_run(trained.run_id)
    assert run.data.params["taxonomy_version"] == load_taxonomy().version
    assert "oof_macro_f1" in run.data.metrics
    assert any(a.path == "sector_report.csv" for a in client.list_artifacts(trained.run_id))


def test_load_by_alias_gives_same_predictions_as_the_classifier(trained, settings, mini_labels):
    loaded = registry.open_model(None, settings)
    assert loaded.ref.version == trained.version
    model = loaded.pyfunc
    firms = read_labels(mini_labels, load_taxonomy())
    frame = pd.DataFrame({"firm_id": firms.firm_ids[:12], "text": firms.texts[:12]})
    out = model.predict(frame)
    assert list(out["firm_id"]) == firms.firm_ids[:12]

    # The same artifact, unwrapped: the pyfunc must add nothing and lose nothing.
    clf = model.unwrap_python_model().classifier
    expected = clf.predict_proba(firms.texts[:12])
    got = np.column_stack([out[probability_column(s)] for s in clf.sector_ids])
    np.testing.assert_allclose(got, expected, rtol=1e-6)

    # And loading the exact version again gives identical output.
    again = registry.open_model(f"models:/{MODEL_NAME}/{trained.version}", settings).pyfunc.predict(frame)
    pd.testing.assert_frame_equal(out, again)


def test_model_refuses_another_taxonomy_version(trained, settings):
    model = registry.open_model(None, settings).pyfunc
    with pytest.raises(Exception, match="refusing to score"):
        model.predict(pd.DataFrame({"text": ["anything"]}), params={"taxonomy_version": "1999.1"})


def test_unknown_model_and_alias_say_how_to_train(settings):
    with pytest.raises(RticError, match="rtic train"):
        registry.resolve("models:/no-such-model@champion", settings)
    with pytest.raises(RticError, match="rtic train"):
        registry.resolve(f"models:/{MODEL_NAME}@no-such-alias", settings)
