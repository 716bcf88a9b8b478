"""`rtic encoder build`: the int8 ONNX copy of the bundled encoder (rtic.embed.int8)."""

from __future__ import annotations

from rtic.config import Settings


def cmd_build(args) -> int:
    from rtic.embed.int8 import build_int8, read_record

    path = build_int8(Settings.from_env().int8_dir, force=args.force)
    record = read_record(path)
    print(f"int8 encoder: {path} ({path.stat().st_size / 2**20:.0f} MiB, sha256 {record['sha256'][:12]}…, from weights "
          f"{record['source_weights_sha256'][:12]}…); `rtic classify --encoder onnx-int8` uses it")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("encoder", help="build the int8 ONNX copy of the bundled sentence encoder")
    enc_sub = p.add_subparsers(dest="encoder_command", required=True, metavar="ACTION")
    p = enc_sub.add_parser("build", help="export the bundled encoder to ONNX and quantise it to int8 into RTIC_HOME/onnx/",
                           description="Export the installed sentence model (weights checked against upstream's sha256) with "
                           "torch.onnx and quantise its matrix products to int8 per channel with onnxruntime; nothing is downloaded. "
                           "The file's sha256 is recorded beside it and checked on every load. `rtic classify --encoder onnx-int8` "
                           "builds it on first use.")
    p.add_argument("--force", action="store_true", help="rebuild even when it exists")
    p.set_defaults(func=cmd_build)
