"""`rtic encoder build` / `rtic encoder check`: the installed sentence encoders (rtic.embed.encoder, rtic.embed.int8)."""

from __future__ import annotations

from rtic import config
from rtic.config import Settings


def cmd_build(args) -> int:
    from rtic.embed.encoder import encoder_model
    from rtic.embed.int8 import build_int8, read_record

    model = encoder_model(args.model)
    path = build_int8(Settings.from_env().int8_dir, force=args.force, model=model)
    record = read_record(path)
    print(f"int8 encoder: {path} ({path.stat().st_size / 2**20:.0f} MiB, sha256 {record['sha256'][:12]}…, from weights "
          f"{record['source_weights_sha256'][:12]}…); `rtic classify --encoder onnx-int8` uses it for models trained with {model.name}")
    return 0


def cmd_check(args) -> int:
    from rtic.embed.encoder import encoder_model

    model = encoder_model(args.model)
    folder = model.verified_dir()  # an opt-in encoder is assembled from its packages here, once
    print(f"{model.name}: {folder} ({len(model.files)} files as pinned, weights match upstream sha256 {model.weights_sha256[:12]}…; "
          f"{model.dimensions} dimensions)")
    return 0


def add_parsers(sub) -> None:
    from rtic.embed.encoder import ENCODER_MODELS

    p = sub.add_parser("encoder", help="check an installed sentence encoder, or build its int8 ONNX copy")
    enc_sub = p.add_subparsers(dest="encoder_command", required=True, metavar="ACTION")
    models = list(ENCODER_MODELS)
    p = enc_sub.add_parser("build", help="export an installed encoder to ONNX and quantise it to int8 into RTIC_HOME/onnx/",
                           description="Export the installed sentence model (weights checked against upstream's sha256) with "
                           "torch.onnx and quantise its matrix products to int8 per channel with onnxruntime; nothing is downloaded. "
                           "The file's sha256 is recorded beside it and checked on every load. `rtic classify --encoder onnx-int8` "
                           "builds it on first use.")
    p.add_argument("--model", choices=models, default=config.ENCODER_MODEL, help="which encoder (default %(default)s)")
    p.add_argument("--force", action="store_true", help="rebuild even when it exists")
    p.set_defaults(func=cmd_build)
    p = enc_sub.add_parser("check", help="say where an encoder is installed and check its files",
                           description="Locate an encoder (all-mpnet-base-v2 is reassembled from its five package parts the "
                           "first time, into the environment) and check every file it is read from against its pinned size "
                           "and sha256 (the weights against upstream's).")
    p.add_argument("--model", choices=models, default=config.ENCODER_MODEL, help="which encoder (default %(default)s)")
    p.set_defaults(func=cmd_check)
