"""`rtic train`, `rtic evaluate`, `rtic models list|show|compare|promote` and `rtic ui`: the model lifecycle."""

from __future__ import annotations

from rtic import config
from rtic.cli.common import err, table
from rtic.config import MODEL_NAME, Settings
from rtic.errors import RticError

PROMOTION_REFUSED = 3  # `rtic models promote` exit status when the comparison refuses the candidate


def cmd_train(args) -> int:
    from rtic.embed.encoder import MINILM
    from rtic.mlops import registry
    from rtic.model.training import train

    from rtic.taxonomy import load_taxonomy

    settings = Settings.from_env()
    stale = None  # --if-missing: a champion trained on another taxonomy version cannot score against this one
    if args.if_missing and (tags := registry.champion_tags(settings, args.name)) is not None:
        trained_on, wanted = tags.get("taxonomy_version") or "", load_taxonomy(args.taxonomy).version
        if trained_on == wanted:
            # the champion still scores: another encoder is a choice to make explicitly, not to make silently
            encoder = tags.get("encoder_model") or MINILM.name  # versions registered before the tag: MiniLM
            other = "" if encoder == args.encoder_model else f"; it was trained with {encoder}, not {args.encoder_model}"
            print(f"{args.name}@champion already exists in {settings.resolved_tracking_uri}{other}; not retraining "
                  f"(drop --if-missing to train anyway)")
            return 0
        else:
            stale = f"--if-missing: the champion was trained on taxonomy {trained_on or '?'}, the taxonomy is now {wanted}"
            print(f"{stale}: training a new champion")
    result = train(settings, labels_path=args.labels, taxonomy_path=args.taxonomy, name=args.name, features=args.features, C=args.C,
                   seed=args.seed, cv=args.cv, ignore_unknown=args.ignore_unknown, description_prior=args.description_prior,
                   encoder_name=args.encoder_model)
    report = result.report.set_index("sector_id")
    if result.cv_folds:
        print(f"\n{result.cv_folds}-fold cross-validation (each fold tunes its thresholds on its own training folds):")
    else:
        print("\nout-of-fold scores on the training labels (thresholds tuned on the same folds, so optimistic):")
    print(report[["support", "threshold", "precision", "recall", "f1", "pr_auc", "ece", "precision_at_expected"]].to_string(float_format=lambda v: f"{v:.3f}"))
    if stale and not result.is_champion:
        from rtic.mlops.lifecycle import promote

        promote(settings, result.version, force=True, reason=stale, name=args.name)
        result.is_champion = True
    champion = " and set as champion" if result.is_champion else " (champion unchanged)"
    print(f"\nregistered {result.name} version {result.version}{champion}; run {result.run_id}; taxonomy {result.taxonomy_version}")
    return 0


def cmd_evaluate(args) -> int:
    from rtic.model.training import evaluate

    result = evaluate(Settings.from_env(), args.labels, model_uri=args.model, taxonomy_path=args.taxonomy, eval_set=args.eval_set,
                      ignore_unknown=args.ignore_unknown)
    print(table(result.report, ["sector_id", "support", "predicted", "precision", "recall", "f1", "pr_auc", "ece", "precision_at_expected"]))
    print(f"\nevaluated {result.model.name} version {result.model.version} on '{result.eval_set}'; run {result.run_id}")
    return 0


def cmd_list(args) -> int:
    from rtic.mlops.lifecycle import list_versions

    versions = list_versions(Settings.from_env(), args.name)
    print(table(versions) if len(versions) else f"no versions of {args.name}")
    return 0


def cmd_show(args) -> int:
    from rtic.mlops.lifecycle import show_version

    info = show_version(Settings.from_env(), args.version, args.name)
    print(f"{info['name']} version {info['version']}  aliases: {', '.join(info['aliases']) or '-'}  run: {info['run_id']}")
    print(f"source: {info['source']}")
    for title, values in (("version tags", info["tags"]), ("training parameters", info["params"]), ("run tags", info["run_tags"])):
        print(f"\n{title}:")
        for key in sorted(values):
            print(f"  {key}: {values[key]}")
    print("\ntraining metrics (macro/micro):")
    for key in sorted(k for k in info["metrics"] if k.startswith(("macro_", "micro_"))):
        print(f"  {key}: {info['metrics'][key]:.4f}")
    print("\nevaluations:" if info["evaluations"] else "\nno evaluation runs (rtic evaluate)")
    for e in info["evaluations"]:
        print(f"  {e['eval_set']}: macro_f1 {e['macro_f1']:.4f} (run {e['run_id']})")
    return 0


def cmd_compare(args) -> int:
    from rtic.mlops.lifecycle import compare

    print(table(compare(Settings.from_env(), args.a, args.b, args.name, args.eval_set)))
    return 0


def cmd_promote(args) -> int:
    from rtic.mlops.lifecycle import promote

    result = promote(Settings.from_env(), args.version, eval_set=args.eval_set, tolerance=args.tolerance, force=args.force,
                     reason=args.reason or "", who=args.who, name=args.name)
    if result.promoted or result.previous == result.version:
        print(result.message)
        return 0
    # A refusal is the gate working, not a user mistake (2) or a crash (1): its own exit status, one line.
    err(f"rtic: {result.message}")
    return PROMOTION_REFUSED


def cmd_ui(args) -> int:
    import subprocess

    from rtic.mlops.lifecycle import ui_command

    cmd = ui_command(Settings.from_env(), args.port)
    print(f"MLflow UI on http://127.0.0.1:{args.port} (Ctrl-C to stop): {' '.join(cmd)}", flush=True)
    if args.print_only:
        return 0
    try:
        return subprocess.call(cmd)
    except FileNotFoundError:
        raise RticError(f"mlflow command not found: {cmd[0]}") from None


def add_train_parser(sub) -> None:
    from rtic.embed.encoder import ENCODER_MODELS

    p = sub.add_parser("train", help="train a sector classifier and register it in MLflow",
                       description="Embed the labelled firms (cached), fit one calibrated classifier per sector with thresholds "
                       "chosen on out-of-fold predictions, log everything to MLflow, register the model, and make it champion "
                       "when no champion exists.")
    p.add_argument("--labels", help="labelled firms CSV/Parquet with firm_id,text,sectors (default: training/seed_labels.csv)")
    p.add_argument("--taxonomy", help="taxonomy YAML (default: the bundled one)")
    p.add_argument("--name", default=MODEL_NAME, help=f"registered model name (default {MODEL_NAME})")
    p.add_argument("--features", default=config.FEATURES, choices=config.FEATURE_SETS, help=f"feature set (default {config.FEATURES})")
    p.add_argument("--C", type=float, default=config.C,
                   help=f"inverse regularisation strength of each sector's logistic regression (default {config.C:g})")
    p.add_argument("--seed", type=int, default=config.SEED, help=f"random seed for the folds (default {config.SEED})")
    p.add_argument("--cv", type=int, default=config.CV_FOLDS,
                   help=f"cross-validation folds for the reported metrics; 0 skips it (default {config.CV_FOLDS})")
    p.add_argument("--ignore-unknown", action="store_true", help="drop sector ids the taxonomy does not know instead of refusing")
    p.add_argument("--description-prior", action="store_true",
                   help="also learn from each sector's description and key phrases (helps sectors with few seed firms)")
    p.add_argument("--encoder-model", choices=list(ENCODER_MODELS), default=config.ENCODER_MODEL,
                   help=f"sentence encoder the model embeds text with, in training and whenever it classifies (default "
                   f"{config.ENCODER_MODEL}; all-mpnet-base-v2: about +0.04 macro-F1 on the gold sets at 5-9x the cost per text, "
                   "installed by `make setup-mpnet`)")
    p.add_argument("--if-missing", action="store_true", help="do nothing when the registry already has a champion")
    p.set_defaults(func=cmd_train)


def add_parsers(sub) -> None:
    """`evaluate`, `models` and `ui` (`train` is added by add_train_parser, where it sits in the help)."""
    p = sub.add_parser("evaluate", help="score a registered model on a labelled set and log an evaluation run",
                       description="Same metrics as training (per sector and macro/micro: precision, recall, F1, PR-AUC, calibration "
                       "error, precision at the expected register share) for a registered model on labelled firms, using the "
                       "model's own thresholds. Logged to MLflow as an evaluation run tagged with the model version and the "
                       "evaluation set's name, which `rtic models compare/promote --eval-set` use.")
    p.add_argument("--labels", required=True, help="labelled firms CSV/Parquet with firm_id,text,sectors")
    p.add_argument("--model", help="model URI (default models:/rtic-sector-classifier@champion)")
    p.add_argument("--taxonomy", help="taxonomy YAML of the labels (must be the model's taxonomy version; default: bundled)")
    p.add_argument("--eval-set", help="name of the evaluation set (default: the labels file's stem)")
    p.add_argument("--ignore-unknown", action="store_true", help="drop sector ids the taxonomy does not know instead of refusing")
    p.set_defaults(func=cmd_evaluate)

    models = sub.add_parser("models", help="list, show, compare and promote registered model versions")
    models_sub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    p = models_sub.add_parser("list", help="versions, aliases and key training metrics")
    p.set_defaults(func=cmd_list)
    p = models_sub.add_parser("show", help="one version: tags, parameters, provenance, metrics, evaluations")
    p.add_argument("version")
    p.set_defaults(func=cmd_show)
    p = models_sub.add_parser("compare", help="per-sector metrics of two versions side by side")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--eval-set", help="compare their evaluations on this set (default: their training cross-validation)")
    p.set_defaults(func=cmd_compare)
    p = models_sub.add_parser("promote", help="make a version champion if it is not worse than the current one",
                              description="Sets the champion alias on VERSION only when its macro F1 on --eval-set is not below the "
                              "current champion's minus --tolerance (both must have an `rtic evaluate` run on that set). --force "
                              "overrides, and needs --reason; who, when and why are recorded as tags on the version. Exit status: 0 promoted "
                              f"(or already champion), {PROMOTION_REFUSED} refused by the comparison (one line on stderr, champion unchanged), 2 bad input.")
    p.add_argument("version")
    p.add_argument("--eval-set", help="evaluation set both versions were evaluated on")
    p.add_argument("--tolerance", type=float, default=config.PROMOTE_TOLERANCE,
                   help=f"allowed drop in macro F1, between -1 and 1; negative demands an improvement (default {config.PROMOTE_TOLERANCE:g})")
    p.add_argument("--force", action="store_true", help="promote without (or against) the comparison")
    p.add_argument("--reason", help="why (required with --force)")
    p.add_argument("--who", help="who promotes (default $RTIC_USER or the login name)")
    p.set_defaults(func=cmd_promote)
    for p in models_sub.choices.values():
        p.add_argument("--name", default=MODEL_NAME, help=f"registered model name (default {MODEL_NAME})")

    p = sub.add_parser("ui", help="open the MLflow UI for this project's store on 127.0.0.1")
    p.add_argument("--port", type=int, default=config.UI_PORT)
    p.add_argument("--print-only", action="store_true", help="print the command instead of running it")
    p.set_defaults(func=cmd_ui)
