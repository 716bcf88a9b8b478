"""`rtic fastpath build`: the static embedding table and a model's fast head."""

from __future__ import annotations

from rtic import config
from rtic.config import Settings


def cmd_build(args) -> int:
    from rtic.score.fastpath import build_fast_path
    from rtic.text import CrawlStoreText

    source = CrawlStoreText(args.store) if args.store else None
    table, head, head_path = build_fast_path(Settings.from_env(), model_uri=args.model, register=args.register, sample=args.sample, source=source,
                                             force=args.force)
    print(f"static embedding model: {table}")
    if head is None:
        print("no registered model yet: the fast head is built for a model by `rtic fastpath build` or the first `rtic classify --fast`")
        return 0
    print(f"fast head for {head.model_uri}: {head_path}\n  distilled on {head.n_texts:,} texts ({head.corpus}); ridge lambda {head.ridge_lambda:g}")
    print("  residual sigma of each sector's calibrated logit: " + ", ".join(f"{s} {v:.2f}" for s, v in zip(head.sector_ids, head.sigma)))
    if head.validation:
        print("  cross-fitted on that corpus: risk threshold -> firms re-scored by the transformer, agreement with transformer-only labels")
        for row in head.validation:
            print(f"    risk >= {row['risk']:.3g}: {row['rescored']:6.1%} re-scored, {row['firm_agreement']:.2%} of firms identical "
                  f"(95% lower bound {row['firm_agreement_low']:.2%}), {row['cell_agreement']:.2%} of (firm, sector) decisions")
        row = head.risk_for(config.FAST_AGREEMENT)
        print(f"  `rtic classify --fast` will re-score firms with risk >= {row['risk']:.3g} ({row['rescored']:.1%} here; the fewest whose lower bound "
              f"reaches {config.FAST_AGREEMENT:.0%} of firms identical: {row['firm_agreement']:.2%}); --fast-agreement or --fast-risk choose otherwise")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("fastpath", help="build the fast path's static embedding model and the head for a model")
    fp_sub = p.add_subparsers(dest="fastpath_command", required=True, metavar="ACTION")
    p = fp_sub.add_parser("build", help="distil the static token table and the model's fast head into RTIC_HOME/static/",
                          description="1. Run every token of the bundled all-MiniLM-L6-v2 vocabulary through the model once and keep "
                          "its vector (model2vec-style distillation; offline, a minute on two cores). 2. For the registered model, read a "
                          "distillation corpus once with the transformer: average each token's contextual vectors over it (the "
                          "out-of-context vectors are the fallback for rare tokens) and fit a ridge map from the resulting static "
                          "embedding to the transformer's, so the fast pass runs the model's own classifier with only the embedding "
                          "approximated; measure each sector's residual by cross-fitting (printed as a table of a firm's risk of any label change -> "
                          f"share re-scored, share of firms identical to the transformer, with the threshold `classify --fast` will use for "
                          f"{config.FAST_AGREEMENT:.0%} of firms). Best corpus: a random "
                          "sample of the register you will classify (--register); otherwise the model's training texts. The sampled firms' "
                          "transformer embeddings go to the embedding cache, so classifying them later costs nothing. "
                          "`rtic classify --fast` builds what is missing on first use.")
    p.add_argument("--model", help="model URI (default models:/rtic-sector-classifier@champion)")
    p.add_argument("--register", help="register (CSV or Parquet, with a text column, or with --store) to sample the distillation corpus from")
    p.add_argument("--store", help="crawl store to read the sampled firms' text from (as `rtic classify --store`)")
    p.add_argument("--sample", type=int, default=config.FASTPATH_SAMPLE, help=f"firms to sample from --register (default {config.FASTPATH_SAMPLE}; "
                   "measured on two cores: ~12 s per 100 website-length texts, less for short ones, plus ~40 s for the model's training texts)")
    p.add_argument("--force", action="store_true", help="rebuild the table and the head even when they exist")
    p.set_defaults(func=cmd_build)
