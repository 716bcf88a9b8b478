"""`rtic classify --engine spark`: the same registered pyfunc over a register on Apache Spark.

The model runs through `mlflow.pyfunc.spark_udf` (env_manager="local": executors use the Python they
have, which must have rtic's requirements installed). The register is read by Spark, checked the same
way as the local engine (empty or repeated firm_id, no text, malformed rows), scored, turned into the
long firm-labels contract, and written by Spark as a Parquet folder `OUT.parts/spark-labels/` (and
`spark-exceptions/`); when OUT is on a local disk the driver then merges them into OUT and its
exceptions CSV, like the local engine. Spark has no line numbers for a CSV read in parallel, so
exception rows carry `line` empty; use the local engine when line numbers matter.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from rtic import registry
from rtic.classify import EXCEPTION_COLUMNS, OUTPUT_COLUMNS, ClassifyResult, exceptions_path_for, parts_dir_for
from rtic.config import Settings
from rtic.errors import RticError
from rtic.pyfunc_model import assigned_column, probability_column
from rtic.register import COMPANIES_HOUSE_COLUMNS, CH_SIC_COLUMNS, register_columns
from rtic.tables import PARQUET_SUFFIXES
from rtic.taxonomy import load_taxonomy


def spark_session(master: str | None = None, app: str = "rtic-classify"):
    """A SparkSession; without a master, whatever spark-submit configured, else local[*]."""
    os.environ.setdefault("PYSPARK_PYTHON", os.environ.get("PYSPARK_PYTHON") or __import__("sys").executable)
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise RticError("--engine spark needs pyspark: run `make setup` (installs the pinned pyspark)") from None
    builder = SparkSession.builder.appName(app)
    if master:
        builder = builder.master(master)
    elif not os.environ.get("SPARK_HOME") and "spark.master" not in os.environ.get("PYSPARK_SUBMIT_ARGS", ""):
        builder = builder.master("local[*]")
    return builder.getOrCreate()


def read_register_spark(spark, path: Path, columns: list[str]):
    """The register as a Spark DataFrame of strings, mapped to the contract, with `_malformed` rows flagged."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    if path.suffix.lower() in PARQUET_SUFFIXES:
        df = spark.read.parquet(str(path))
        df = df.select([F.col(f"`{c}`").cast("string").alias(c) for c in df.columns]).withColumn("_malformed", F.lit(None).cast("string"))
    else:
        import csv

        with path.open(encoding="utf-8", errors="replace", newline="") as fh:
            header = next(csv.reader(fh))
        schema = StructType([StructField(h, StringType()) for h in header] + [StructField("_malformed", StringType())])
        df = (spark.read.option("header", True).option("multiLine", True).option("escape", '"').option("mode", "PERMISSIVE")
              .option("columnNameOfCorruptRecord", "_malformed").option("enforceSchema", True).schema(schema).csv(str(path)))
    stripped = {c: c.strip() for c in df.columns}
    df = df.select([F.col(f"`{c}`").alias(stripped[c]) for c in df.columns])
    if "CompanyNumber" in df.columns:
        sic = [c for c in CH_SIC_COLUMNS if c in df.columns]
        for old, new in COMPANIES_HOUSE_COLUMNS.items():
            if old in df.columns:
                df = df.withColumnRenamed(old, new)
        if sic:
            codes = [F.trim(F.split(F.coalesce(F.col(f"`{c}`"), F.lit("")), " - ").getItem(0)) for c in sic]
            kept = [F.when((c != "") & (F.lower(c) != "none supplied"), c) for c in codes]
            df = df.withColumn("sic_codes", F.concat_ws("|", *kept))
    return df.withColumn("firm_id", F.trim(F.coalesce(F.col("firm_id"), F.lit(""))))


def classify_spark(
    register_path: str | Path,
    out_path: str | Path,
    settings: Settings,
    model_uri: str | None = None,
    taxonomy_path: str | Path | None = None,
    master: str | None = None,
    spark=None,
    progress=print,
) -> ClassifyResult:
    import mlflow.pyfunc
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    out_path = Path(out_path)
    if out_path.suffix.lower() not in {".parquet", ".pq"}:
        raise RticError(f"--out must be a .parquet file, got {out_path}")
    register_path = Path(register_path)
    columns = register_columns(register_path)
    if "text" not in columns:
        raise RticError(f"register {register_path} has no column 'text' (columns: {', '.join(columns[:12])})")
    ref = registry.resolve(model_uri, settings)
    model = registry.load(ref, settings)  # on the driver: metadata, and a clear error before Spark starts
    model_taxonomy = registry.model_taxonomy_version(model) or ref.taxonomy_version
    sector_ids = list((model.metadata.metadata or {}).get("sector_ids") or [])
    if taxonomy_path is not None and load_taxonomy(taxonomy_path).version != model_taxonomy:
        raise RticError(f"model {ref.name} v{ref.version} was trained on taxonomy {model_taxonomy}, not the one in {taxonomy_path}: retrain or pick another model")
    spark = spark or spark_session(master)
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    progress(f"classifying {register_path.name} on Spark ({spark.sparkContext.master}) with {ref.name} v{ref.version}")

    df = read_register_spark(spark, register_path, columns).withColumn("_order", F.monotonically_increasing_id())
    first = Window.partitionBy("firm_id").orderBy("_order")
    df = df.withColumn("_nth", F.when(F.col("firm_id") != "", F.row_number().over(first)))
    text = F.coalesce(F.col("text"), F.lit(""))
    no_site = (F.trim(F.coalesce(F.col("website"), F.lit(""))) == "") if "website" in df.columns else F.lit(False)
    reason = (F.when(F.col("_malformed").isNotNull(), F.lit("malformed row"))
              .when(F.col("firm_id") == "", F.lit("empty firm_id"))
              .when(F.col("_nth") > 1, F.lit("duplicate firm_id"))
              .when((F.trim(text) == "") & no_site, F.lit("no website"))
              .when(F.trim(text) == "", F.lit("no text")))
    detail = (F.when(F.col("_malformed").isNotNull(), F.lit("row does not parse as the header's columns"))
              .when(F.col("firm_id") == "", F.lit("row has no firm_id"))
              .when(F.col("_nth") > 1, F.lit("firm_id already seen earlier in the register; first row kept"))
              .when((F.trim(text) == "") & no_site, F.lit("register row has no website and no text"))
              .otherwise(F.lit("register row has an empty text column")))
    df = df.withColumn("_reason", reason).withColumn("_detail", detail).cache()

    udf = mlflow.pyfunc.spark_udf(
        spark, ref.uri, env_manager="local", params={"taxonomy_version": model_taxonomy},
        model_config=registry.load_config(settings),
        result_type=", ".join(f"`{probability_column(s)}` double, `{assigned_column(s)}` boolean" for s in sector_ids),
    )
    good = df.where(F.col("_reason").isNull()).select("firm_id", "text")
    scored = good.withColumn("_p", udf(F.struct(F.col("text"), F.col("firm_id"))))
    per_sector = F.array(*[F.struct(F.lit(s).alias("sector_id"), F.col("_p")[probability_column(s)].alias("probability"),
                                    F.col("_p")[assigned_column(s)].alias("assigned")) for s in sector_ids])
    labels = (scored.select("firm_id", F.sha2(F.col("text"), 256).alias("text_sha256"), F.explode(per_sector).alias("_s"))
              .select("firm_id", "_s.sector_id", "_s.probability", "_s.assigned",
                      F.lit(ref.name).alias("model_name"), F.lit(ref.version).alias("model_version"), F.lit(model_taxonomy).alias("taxonomy_version"),
                      "text_sha256", F.lit(when).alias("classified_at"), F.lit("transformer").alias("scored_by"))
              .select(*OUTPUT_COLUMNS))
    exceptions = df.where(F.col("_reason").isNotNull()).select(
        "firm_id", F.lit(None).cast("long").alias("line"), F.col("_reason").alias("reason"), F.col("_detail").alias("detail"))

    parts = parts_dir_for(out_path)
    if parts.exists():
        shutil.rmtree(parts)
    labels_dir, exceptions_dir = parts / "spark-labels", parts / "spark-exceptions"
    labels.write.mode("overwrite").parquet(str(labels_dir))
    exceptions.write.mode("overwrite").parquet(str(exceptions_dir))
    n_input = df.count()
    df.unpersist()

    # Merge on the driver (OUT is local here), sorted like the local engine writes each chunk.
    label_frame = pd.read_parquet(labels_dir)
    label_frame = label_frame.sort_values(["firm_id", "sector_id"], kind="stable").reset_index(drop=True) if len(label_frame) else label_frame
    exc_frame = pd.read_parquet(exceptions_dir).reindex(columns=EXCEPTION_COLUMNS) if any(exceptions_dir.glob("*.parquet")) else pd.DataFrame(columns=EXCEPTION_COLUMNS)
    from rtic.tables import write_atomically

    write_atomically(label_frame[OUTPUT_COLUMNS], out_path)
    exceptions_path = write_atomically(exc_frame, exceptions_path_for(out_path))
    assigned = label_frame[label_frame["assigned"].astype(bool)]
    per = {s: int((assigned["sector_id"] == s).sum()) for s in sector_ids}
    n_classified = int(label_frame["firm_id"].nunique())
    reasons = {str(k): int(v) for k, v in exc_frame["reason"].value_counts().items()}
    return ClassifyResult(out_path, exceptions_path, n_input, n_classified, len(exc_frame), per, ref, exceptions_by_reason=reasons)
