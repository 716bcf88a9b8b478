"""`rtic classify`: label every firm in a register (local streaming engine, or Spark)."""

from __future__ import annotations

from rtic import config
from rtic.cli.common import quiet_arg
from rtic.config import Settings
from rtic.errors import RticError


def _local_only_flags(args) -> list[str]:
    given = (("--fast", args.fast), ("--fast-risk", args.fast_risk is not None), ("--fast-agreement", args.fast_agreement is not None),
             ("--fast-workers", args.fast_workers is not None),
             ("--since", args.since), ("--restart", args.restart), ("--store", args.store), ("--websites", args.websites),
             ("--encoder", args.encoder != config.ENCODER_ENGINE))
    return [flag for flag, on in given if on]


def cmd_classify(args) -> int:
    settings = Settings.from_env()
    if args.engine == "spark":
        from rtic.score.spark import classify_spark

        local_only = _local_only_flags(args)
        if local_only:
            raise RticError(f"{', '.join(local_only)}: local engine only (Spark runs the registered model on every firm); drop it or use --engine local")
        result = classify_spark(args.register, args.out, settings, model_uri=args.model, taxonomy_path=args.taxonomy,
                                master=args.spark_master)
    else:
        if args.spark_master:
            raise RticError("--spark-master needs --engine spark")
        from rtic.score.batch import classify_register
        from rtic.text import CrawlStoreText

        source = CrawlStoreText(args.store) if args.store else None
        result = classify_register(args.register, args.out, settings, model_uri=args.model, taxonomy_path=args.taxonomy,
                                   chunk_rows=args.chunk_rows, since=args.since, restart=args.restart, fast=args.fast, fast_risk=args.fast_risk,
                                   fast_agreement=args.fast_agreement, source=source, websites=args.websites,
                                   encoder=args.encoder, fast_workers=config.FAST_WORKERS if args.fast_workers is None else args.fast_workers)
    print(f"{result.n_input} firms in register: {result.n_classified} classified, {result.n_exceptions} not classified (reasons in {result.exceptions_path})")
    if result.n_carried:
        print(f"  of the classified, {result.n_carried} were unchanged since {args.since} and copied from it")
    if result.fast_risk is not None:
        print(f"  fast path: {result.n_escalated} firms with a risk of any label change of at least {result.fast_risk:.3g} re-scored by the transformer")
    for reason, count in sorted(result.exceptions_by_reason.items(), key=lambda kv: -kv[1]):
        print(f"  not classified, {reason}: {count}")
    if result.websites:
        print(result.websites)
    print(f"model {result.model.name} version {result.model.version}; labels written to {result.labels_path}")
    if result.manifest_path:
        print(f"run manifest: {result.manifest_path}")
    print("firms per sector:")
    for sector, count in sorted(result.firms_per_sector.items(), key=lambda kv: -kv[1]):
        print(f"  {sector:<24}{count:>8}")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("classify", help="label every firm in a register",
                       description="Classify a register (CSV or Parquet with firm_id and text; Companies House BasicCompanyData "
                       "accepted as it comes) and write firm labels as long-form Parquet; firms that cannot be classified, and "
                       "malformed rows, go to OUT's .exceptions.csv with their line and reason. The register is streamed in "
                       "chunks written as parts under OUT's .parts/ folder: kill the run at any point and re-run the same "
                       "command to continue where it stopped. A manifest.json there records the run.")
    p.add_argument("register", help="register CSV (UTF-8, with or without a byte-order mark) or Parquet (firm_id as text or "
                   "integers, text as text; Companies House files accepted)")
    p.add_argument("--out", required=True, help="labels Parquet to write (its folder must be writable: checked before anything loads)")
    p.add_argument("--model", help="models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN_ID/model or a model folder "
                   "(default models:/rtic-sector-classifier@champion)")
    p.add_argument("--taxonomy", help="refuse to run unless the model was trained on this taxonomy file's version")
    quiet_arg(p)
    p.add_argument("--store", help="crawl store (from `rtic crawl`) to read firm text from instead of a text column")
    p.add_argument("--websites", metavar="FILE", help="firm_id,website CSV/Parquet joined by company number (as `rtic crawl --websites`): "
                   "firms it gives a website count as no_text rather than no_website; rows meeting no firm go to OUT's .unmatched-websites.csv")
    p.add_argument("--chunk-rows", type=int, default=config.CHUNK_ROWS,
                   help=f"register rows per chunk (default {config.CHUNK_ROWS}); memory grows with it")
    p.add_argument("--since", metavar="PREVIOUS_OUTPUT", help="a previous labels Parquet: firms whose text hash and model version are "
                   "unchanged are copied from it, only the others are scored")
    p.add_argument("--restart", action="store_true", help="discard an unfinished run in OUT's .parts/ folder instead of resuming it")
    p.add_argument("--fast", action="store_true", help="fast path: score every firm with a static-embedding head and re-score only "
                   "firms near a threshold with the transformer (builds RTIC_HOME/static/ on first use)")
    p.add_argument("--fast-agreement", type=float, metavar="SHARE", help="fast path: re-score the riskiest firms, just enough for SHARE "
                   "of firms to get exactly the transformer-only label set, as estimated by cross-fitting (95%% lower bound) when the head "
                   f"was built on a sample of the register (`rtic fastpath build --register`, which prints the table); default {config.FAST_AGREEMENT:g}")
    p.add_argument("--fast-risk", type=float, metavar="P", help="fast path, instead of --fast-agreement: re-score a firm when its estimated "
                   "chance that any of its labels differs from the transformer's is at least P (0: every firm; 1: none)")
    p.add_argument("--fast-workers", type=int, metavar="N", help="fast path: processes that share "
                   f"the static pass (default {config.FAST_WORKERS}: in this process; on 2 cores 2 workers gave only 1.11x on website text and "
                   "cost ~0.65 GiB each, so use more on machines with more cores); the firms re-scored by the transformer use every core anyway")
    p.add_argument("--encoder", choices=list(config.ENCODER_ENGINES), default=config.ENCODER_ENGINE, help="what embeds the text: torch (the "
                   "bundled model, bf16 where the CPU has it, RTIC_BF16=0 for fp32; default) or onnx-int8 (an int8 ONNX copy made here "
                   "from the same weights by `rtic encoder build`, built on first use: faster, but it changes a few labels, see README)")
    p.add_argument("--engine", choices=["local", "spark"], default="local", help="local: stream on this machine (default); spark: "
                   "run the same registered model through mlflow.pyfunc.spark_udf")
    p.add_argument("--spark-master", help="Spark master URL for --engine spark (default: local[*], or what spark-submit set)")
    p.set_defaults(func=cmd_classify)
