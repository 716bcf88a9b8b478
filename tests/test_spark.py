"""`rtic classify --engine spark`: the registered pyfunc through mlflow.pyfunc.spark_udf on a real Spark
local[2] (started by the test, UI off, bound to 127.0.0.1) gives the local engine's output."""

import pandas as pd

from rtic.classify import classify_register
from conftest import run_cli

SPARK_ENV = {"SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_SUBMIT_ARGS": "--conf spark.ui.enabled=false --conf spark.sql.shuffle.partitions=4 pyspark-shell"}


def test_spark_engine_equals_local_engine(trained, settings, rtic_home, tmp_path):
    register = tmp_path / "register.csv"
    register.write_text(
        "firm_id,name,website,text\n"
        "A1,Alpha,alpha.co.uk,We build welding robots and automation cells for car plants.\n"
        "A2,Beta,beta.co.uk,\"Open banking payments API for lenders, with fraud scoring.\"\n"
        "A3,Gamma,,\n"
        "A4,Delta,delta.co.uk,\n"
        "A1,Alpha again,alpha.com,Repeated firm.\n"
        ",Nameless,x.co.uk,Row without an id.\n"
        "A5,Epsilon,eps.co.uk,\"Residential care home for older people, with dementia nursing.\"\n"
        "A6,Zeta,zeta.co.uk,Satellite radar data for insurers and farmers.\n"
    )
    local = classify_register(register, tmp_path / "local.parquet", settings, chunk_rows=3, progress=lambda *_: None)
    out = tmp_path / "spark.parquet"
    res = run_cli("classify", str(register), "--out", str(out), "--engine", "spark", "--spark-master", "local[2]", home=rtic_home, env=SPARK_ENV)
    assert res.returncode == 0, res.stderr
    assert "firms per sector" in res.stdout

    def tidy(df):
        return df.drop(columns=["classified_at"]).sort_values(["firm_id", "sector_id"]).reset_index(drop=True)

    spark_labels, local_labels = tidy(pd.read_parquet(out)), tidy(pd.read_parquet(local.labels_path))
    assert set(spark_labels["firm_id"]) == {"A1", "A2", "A5", "A6"}
    pd.testing.assert_frame_equal(spark_labels.drop(columns=["probability"]), local_labels.drop(columns=["probability"]))
    assert (spark_labels["probability"] - local_labels["probability"]).abs().max() < 1e-6

    key = ["firm_id", "reason"]
    spark_exc = pd.read_csv(tmp_path / "spark.exceptions.csv", dtype=str, keep_default_na=False)[key].sort_values(key).values.tolist()
    local_exc = pd.read_csv(local.exceptions_path, dtype=str, keep_default_na=False)[key].sort_values(key).values.tolist()
    assert spark_exc == local_exc == [["", "empty firm_id"], ["A1", "duplicate firm_id"], ["A3", "no website"], ["A4", "no text"]]
