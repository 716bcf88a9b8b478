"""`rtic classify --engine spark`: the same registered pyfunc over a register on Apache Spark.

The model runs through `mlflow.pyfunc.spark_udf` (env_manager="local": executors use the Python they
have, which must have rtic's requirements installed). The register is read by Spark, checked the same
way as the local engine (empty or repeated firm_id, no text, malformed rows), scored, turned into the
long firm-labels contract, and written by Spark, sorted in register order, as a Parquet folder
`OUT.parts/spark-labels/` (and `spark-exceptions/`); the driver then streams them, part file by part
file, into OUT and its exceptions CSV. A CSV register is read by Spark as raw lines with their line
numbers (`rtic.score.spark_register`), so exception rows carry the same line numbers and reasons as the local
engine's.
"""

from __future__ import annotations

import logging
import os
import shutil
from datetime import datetime, timezone
from functools import reduce
from pathlib import Path

from rtic.mlops import registry
from rtic.contracts import (BAD_ENCODING, DUPLICATE_ID, EMPTY_ID, EMPTY_TEXT_DETAIL, EXCEPTION_COLUMNS, NO_TEXT, NO_WEBSITE, OUTPUT_COLUMNS,
                            REASONS)
from rtic.score.batch import ClassifyResult
from rtic.score.runstate import exceptions_path_for, merge_csv, merge_parquet, parts_dir_for
from rtic.config import Settings
from rtic.errors import RticError
from rtic.contracts import assigned_column, probability_column
from rtic.register import COMPANIES_HOUSE_COLUMNS, CH_SIC_COLUMNS, Register
from rtic.score.spark_register import read_csv_records
from rtic.tables import check_writable, require_columns

log = logging.getLogger(__name__)


PANDAS_WARNING = "PySpark does not yet fully support pandas"  # a FutureWarning pyspark repeats on every pandas UDF
# Spark's own log: errors only (warnings and INFO chatter off), on stderr, so a real failure is still seen.
LOG4J2_PROPERTIES = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
"""


def quiet_spark() -> dict[str, str]:
    """Keep the terminal to rtic's own progress lines: no stage bars, no pandas-version FutureWarnings (in this process
    and in the Python workers), Spark's log at ERROR. Returns the Spark settings that do it (also for a session that
    spark-submit configured); errors still reach stderr and a failed job still fails."""
    import tempfile
    import warnings

    warnings.filterwarnings("ignore", message=PANDAS_WARNING, category=FutureWarning)
    worker_filter = f"ignore:{PANDAS_WARNING}:FutureWarning"
    current = os.environ.get("PYTHONWARNINGS", "")
    if worker_filter not in current:  # Python workers started by this machine's JVM inherit it
        os.environ["PYTHONWARNINGS"] = ",".join(x for x in (current, worker_filter) if x)
    log4j = Path(tempfile.gettempdir()) / "rtic-spark-log4j2.properties"
    if not log4j.is_file() or log4j.read_text() != LOG4J2_PROPERTIES:
        log4j.write_text(LOG4J2_PROPERTIES)
    conf = {"spark.ui.showConsoleProgress": "false", "spark.executorEnv.PYTHONWARNINGS": worker_filter}
    if "extraJavaOptions" not in os.environ.get("PYSPARK_SUBMIT_ARGS", ""):  # the user's own JVM options win
        conf["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile={log4j.as_uri()}"
    return conf


def spark_session(master: str | None = None, app: str = "rtic-classify"):
    """A SparkSession; without a master, whatever spark-submit configured, else local[*]."""
    os.environ.setdefault("PYSPARK_PYTHON", os.environ.get("PYSPARK_PYTHON") or __import__("sys").executable)
    conf = quiet_spark()  # before pyspark.sql is imported: importing it warns too
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise RticError("--engine spark needs pyspark: run `make setup` (installs the pinned pyspark)") from None
    builder = SparkSession.builder.appName(app)
    for key, value in conf.items():
        builder = builder.config(key, value)
    if master:
        builder = builder.master(master)
    elif not os.environ.get("SPARK_HOME") and "spark.master" not in os.environ.get("PYSPARK_SUBMIT_ARGS", ""):
        builder = builder.master("local[*]")
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")  # when spark-submit started the JVM with its own log settings
    return spark


def read_register_spark(spark, register: Register):
    """The register as a Spark DataFrame of strings, mapped to the contract, with `line` (CSV: the physical
    line where the row starts; Parquet: the 1-based row number) and `_reason`/`_detail` set for rows the
    reader rejects (malformed, bad encoding), exactly as the local reader numbers and rejects them."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import BinaryType, StringType

    if register.format == "parquet":
        df = spark.read.parquet(str(register.path))
        # Text the local reader decodes from bytes is checked the same way: a row not valid UTF-8 is rejected.
        texts = [f.name for f in df.schema.fields if isinstance(f.dataType, (StringType, BinaryType))]
        valid = [F.coalesce(F.is_valid_utf8(F.col(f"`{c}`")), F.lit(True)) for c in texts]
        bad = ~reduce(lambda a, b: a & b, valid) if valid else F.lit(False)
        id_col = next((c for c in df.columns if c == "firm_id" or c.strip() == "CompanyNumber"), None)
        bad_id = F.when(F.coalesce(F.is_valid_utf8(F.col(f"`{id_col}`")), F.lit(True)), strip(F.coalesce(F.col(f"`{id_col}`").cast("string"), F.lit(""))))
        df = df.select([F.coalesce(F.col(f"`{c}`").cast("string"), F.lit("")).alias(c) for c in df.columns]
                       + [(F.col("_metadata.row_index") + 1).alias("line"), bad.alias("_bad"),
                          (F.coalesce(bad_id, F.lit("")) if id_col else F.lit("")).alias("_bad_id")])
        df = (df.withColumn("_reason", F.when(F.col("_bad"), F.lit(BAD_ENCODING)))
              .withColumn("_detail", F.when(F.col("_bad"), F.lit(REASONS[BAD_ENCODING]))).drop("_bad"))
    else:
        df = read_csv_records(spark, str(register.path), register.header)
    internal = {"line", "_reason", "_detail", "_bad_id"}
    df = df.select([F.col(f"`{c}`").alias(c if c in internal else c.strip()) for c in df.columns])
    if "CompanyNumber" in df.columns:
        sic = [c for c in CH_SIC_COLUMNS if c in df.columns]
        for old, new in COMPANIES_HOUSE_COLUMNS.items():
            if old in df.columns:
                df = df.withColumnRenamed(old, new)
        if sic:
            codes = [strip(F.split(F.coalesce(F.col(f"`{c}`"), F.lit("")), " - ").getItem(0)) for c in sic]
            kept = [F.when((c != "") & (F.lower(c) != "none supplied"), c) for c in codes]
            df = df.withColumn("sic_codes", F.concat_ws("|", *kept))
    # A rejected row keeps the id the reader could read from it, so the analyst can find the firm.
    return df.withColumn("firm_id", F.when(F.col("_reason").isNotNull(), F.col("_bad_id")).otherwise(strip(F.coalesce(F.col("firm_id"), F.lit("")))))


def _stages(total: int):
    """A line on the log, "stage k/total: what (previous stage took Xs)", once per stage."""
    import time

    state = {"k": 0, "t": time.monotonic()}

    def stage(what: str) -> None:
        now = time.monotonic()
        took = f" (previous stage {now - state['t']:.0f}s)" if state["k"] else ""
        state["k"] += 1
        state["t"] = now
        log.info(f"stage {state['k']}/{total}: {what}{took}")

    return stage


def strip(column):
    """Python's str.strip() in Spark (F.trim removes spaces only, not tabs or newlines)."""
    from pyspark.sql import functions as F

    return F.regexp_replace(column, r"^\s+|\s+$", "")


def classify_spark(
    register_path: str | Path,
    out_path: str | Path,
    settings: Settings,
    model_uri: str | None = None,
    taxonomy_path: str | Path | None = None,
    master: str | None = None,
    spark=None,
) -> ClassifyResult:
    import mlflow.pyfunc
    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    out_path = Path(out_path)
    if out_path.suffix.lower() not in {".parquet", ".pq"}:
        raise RticError(f"--out must be a .parquet file, got {out_path}")
    check_writable(out_path)  # before the register is read or the model loaded
    register_path = Path(register_path)
    register = Register.open(register_path)
    require_columns(register.columns, ["text"], register_path, "register")
    model = registry.open_model(model_uri, settings, taxonomy_path)  # on the driver: verified, and a clear error before Spark starts
    ref, model_taxonomy, sector_ids = model.ref, model.taxonomy_version, model.sector_ids
    spark = spark or spark_session(master)
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    log.info(f"classifying {register_path.name} on Spark ({spark.sparkContext.master}) with {ref.name} v{ref.version}")

    df = read_register_spark(spark, register)
    # First row wins among well-formed rows with an id, as in the local reader.
    first = Window.partitionBy("firm_id", F.col("_reason").isNull()).orderBy("line")
    df = df.withColumn("_nth", F.when(F.col("_reason").isNull() & (F.col("firm_id") != ""), F.row_number().over(first)))
    text = F.coalesce(F.col("text"), F.lit(""))
    no_site = (strip(F.coalesce(F.col("website"), F.lit(""))) == "") if "website" in df.columns else F.lit(False)
    empty_text = F.length(strip(text)) == 0
    reason = (F.when(F.col("_reason").isNotNull(), F.col("_reason"))
              .when(F.col("firm_id") == "", F.lit(EMPTY_ID[0]))
              .when(F.col("_nth") > 1, F.lit(DUPLICATE_ID[0]))
              .when(empty_text & no_site, F.lit(NO_WEBSITE))
              .when(empty_text, F.lit(NO_TEXT)))
    detail = (F.when(F.col("_reason").isNotNull(), F.col("_detail"))
              .when(F.col("firm_id") == "", F.lit(EMPTY_ID[1]))
              .when(F.col("_nth") > 1, F.lit(DUPLICATE_ID[1]))
              .when(empty_text & no_site, F.lit(REASONS[NO_WEBSITE]))
              .otherwise(F.lit(EMPTY_TEXT_DETAIL)))
    df = df.withColumn("reason", reason).withColumn("detail", detail).select("firm_id", "line", "text", "reason", "detail").cache()

    udf = mlflow.pyfunc.spark_udf(
        spark, str(model.path), env_manager="local", params={"taxonomy_version": model_taxonomy},  # the folder whose digest was just checked
        model_config=registry.load_config(settings),
        result_type=", ".join(f"`{probability_column(s)}` double, `{assigned_column(s)}` boolean" for s in sector_ids),
    )
    scored = df.where(F.col("reason").isNull()).withColumn("_p", udf(F.struct(F.col("text"), F.col("firm_id"))))
    per_sector = F.array(*[F.struct(F.lit(s).alias("sector_id"), F.col("_p")[probability_column(s)].alias("probability"),
                                    F.col("_p")[assigned_column(s)].alias("assigned")) for s in sector_ids])
    labels = (scored.select("firm_id", "line", F.sha2(F.col("text"), 256).alias("text_sha256"), F.explode(per_sector).alias("_s"))
              .select("line", "firm_id", "_s.sector_id", "_s.probability", "_s.assigned",
                      F.lit(ref.name).alias("model_name"), F.lit(ref.version).alias("model_version"), F.lit(model_taxonomy).alias("taxonomy_version"),
                      "text_sha256", F.lit(when).alias("classified_at"), F.lit("transformer").alias("scored_by"))
              .persist(StorageLevel.MEMORY_AND_DISK))  # scored once: the sort below samples it before writing it
    ordered = labels.orderBy("line", "sector_id")  # register order, like the local engine: part files come out in order
    exceptions = df.where(F.col("reason").isNotNull()).select(*EXCEPTION_COLUMNS).orderBy("line")

    parts = parts_dir_for(out_path)
    if parts.exists():
        shutil.rmtree(parts)
    labels_dir, exceptions_dir = parts / "spark-labels", parts / "spark-exceptions"
    # One progress line per stage (Spark's own stage bars are off, see quiet_spark).
    stage = _stages(4)
    stage(f"reading the register, scoring every firm and writing labels to {labels_dir}")
    ordered.write.mode("overwrite").parquet(str(labels_dir))
    stage(f"writing the rows not classified to {exceptions_dir}")
    exceptions.write.mode("overwrite").parquet(str(exceptions_dir))
    stage("counting firms, reasons and labels")
    counts = df.select(F.count(F.lit(1)).alias("rows"), F.count_if(F.col("reason").isNull()).alias("classified")).first()
    reasons = {r["reason"]: int(r["count"]) for r in df.where(F.col("reason").isNotNull()).groupBy("reason").count().collect()}
    assigned = spark.read.parquet(str(labels_dir)).where("assigned").groupBy("sector_id").count().collect()
    labels.unpersist()
    df.unpersist()

    # Merge on the driver (OUT is local here), part file by part file, row group by row group: bounded memory.
    stage(f"merging the parts into {out_path} and {exceptions_path_for(out_path)}")
    merge_parquet(sorted(labels_dir.glob("part-*.parquet")), out_path, OUTPUT_COLUMNS)
    exceptions_path = merge_csv(sorted(exceptions_dir.glob("part-*.parquet")), exceptions_path_for(out_path), EXCEPTION_COLUMNS)
    per = {s: 0 for s in sector_ids} | {r["sector_id"]: int(r["count"]) for r in assigned}
    n_exceptions = sum(reasons.values())
    return ClassifyResult(out_path, exceptions_path, int(counts["rows"]), int(counts["classified"]), n_exceptions, per, ref, exceptions_by_reason=reasons)
