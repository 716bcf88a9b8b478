"""An int8 ONNX copy of an installed sentence encoder, made here from the installed weights (never downloaded).

`build_int8` exports the whole sentence model (transformer, pooling, normalisation: whatever the bundled
model's modules.json lists) with torch.onnx, then quantises its MatMul weights to int8 per output channel
with onnxruntime's dynamic quantiser (per-tensor int8 measured cosine 0.94 to fp32 on website text,
per-channel 0.995). The file's sha256 is written in a record beside it with the source weights' sha256 and
the versions that made it; `Int8SentenceModel` refuses a file whose digest or source does not match, as the
encoder refuses weights that are not upstream's.

It is an option (`rtic classify --encoder onnx-int8`), not the default: its vectors differ slightly from
the torch model's, so a firm near a threshold can change label (scripts/bench_batch.py measures cosine and
per-firm label agreement on the shared gold sets).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from rtic.embed.encoder import MINILM, EncoderModel, file_sha256, verify_model_files
from rtic.errors import RticError
from rtic.tables import atomic_path

log = logging.getLogger(__name__)

INT8_METHOD = "onnx-int8-matmul-perchannel-v1"  # change when the export or quantisation recipe changes
OPSET = 17


def int8_path(folder: str | Path, model: EncoderModel = MINILM) -> Path:
    """The int8 model file for the encoder `model` under `folder` (RTIC_HOME/onnx); its record is the .json beside it."""
    return Path(folder) / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', model.model_id)}-{INT8_METHOD}.onnx"


def build_int8(folder: str | Path, force: bool = False, model_dir: str | Path | None = None, model: EncoderModel = MINILM) -> Path:
    """Export and quantise the encoder `model` into `folder` (offline; under a minute for MiniLM). Returns the model file."""
    path = int8_path(folder, model)
    if path.exists() and path.with_suffix(".json").exists() and not force:
        return path
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import onnx
    import onnxruntime
    import torch
    import transformers
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from sentence_transformers import SentenceTransformer

    transformers.utils.logging.disable_progress_bar()
    model_dir = Path(model_dir) if model_dir else model.model_dir()
    verify_model_files(model_dir, model)
    sentence_model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True).eval()

    class Sentence(torch.nn.Module):  # the sentence model as a function of two tensors, for the exporter
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner({"input_ids": input_ids, "attention_mask": attention_mask})["sentence_embedding"]

    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log.info(f"exporting {model_dir.name} to ONNX and quantising it to int8 into {path} …")
    example = sentence_model.tokenizer(["an example firm text", "another"], padding=True, return_tensors="pt")
    fp32 = path.with_name(path.stem + ".fp32.tmp.onnx")
    try:
        import warnings

        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's tracer warnings are about shapes it handles with dynamic axes
            torch.onnx.export(Sentence(sentence_model).eval(), (example["input_ids"], example["attention_mask"]), str(fp32),
                              input_names=["input_ids", "attention_mask"], output_names=["sentence_embedding"], opset_version=OPSET,
                              dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                                            "sentence_embedding": {0: "batch"}}, dynamo=False)
        root = logging.getLogger()
        level, handlers = root.level, list(root.handlers)
        root.setLevel(logging.ERROR)  # the quantiser logs generic advice on the root logger (and may give it a handler)
        try:
            with atomic_path(path) as tmp:
                quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"])
        finally:
            root.setLevel(level)
            root.handlers[:] = handlers
    finally:
        fp32.unlink(missing_ok=True)
    record = {"method": INT8_METHOD, "model_id": model.model_id, "source_weights_sha256": model.weights_sha256, "sha256": file_sha256(path),
              "max_seq_length": int(sentence_model.max_seq_length), "dims": int(sentence_model.get_embedding_dimension()),
              "torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
              "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with atomic_path(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    log.info(f"  int8 encoder built in {time.monotonic() - started:.0f} s ({path.stat().st_size / 2**20:.0f} MiB)")
    return path


def read_record(path: Path, model: EncoderModel = MINILM) -> dict:
    """The record beside an int8 model file; a missing or unreadable one is a one-line error."""
    record_path = path.with_suffix(".json")
    try:
        record = json.loads(record_path.read_text())
        if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
            raise ValueError("no sha256")
    except (OSError, ValueError) as exc:
        raise RticError(f"int8 encoder record {record_path} is missing or damaged ({exc}): rebuild with `{rebuild(model)}`") from None
    return record


def rebuild(model: EncoderModel) -> str:
    """The command that rebuilds the int8 copy of `model`."""
    return "rtic encoder build --force" + ("" if model is MINILM else f" --model {model.name}")


class Int8SentenceModel:
    """The int8 ONNX sentence model behind the same calls the encoder makes of the torch one: `tokenizer`,
    `max_seq_length`, `encode(pieces)`."""

    def __init__(self, path: str | Path, model_dir: str | Path | None = None, threads: int | None = None, model: EncoderModel = MINILM):
        path = Path(path)
        record = read_record(path, model)
        if record.get("source_weights_sha256") != model.weights_sha256 or record.get("method") != INT8_METHOD:
            raise RticError(f"int8 encoder {path} was made from other weights or by another recipe: rebuild with `{rebuild(model)}`")
        if not path.is_file():
            raise RticError(f"int8 encoder {path} not found: build it with `{rebuild(model).replace(' --force', '')}`")
        digest = file_sha256(path)
        if digest != record["sha256"]:
            raise RticError(f"int8 encoder {path} does not match the digest recorded when it was built (sha256 {digest}): "
                            f"rebuild with `{rebuild(model)}`")
        import onnxruntime
        from transformers import AutoTokenizer

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1  # both cores for the matrix products
        options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - a file that passed its digest but does not load is still one line
            raise RticError(f"int8 encoder {path} cannot be loaded ({type(exc).__name__}): rebuild with `{rebuild(model)}`") from None
        model_dir = Path(model_dir) if model_dir else model.verified_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        self.max_seq_length = int(record["max_seq_length"])
        self.dims = int(record["dims"])
        self.digest = digest

    def encode(self, pieces: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Sentence vectors of texts that fit the model, batched by token length so that padding is small."""
        out = np.zeros((len(pieces), self.dims), dtype=np.float32)
        if not len(pieces):
            return out
        lengths = [len(ids) for ids in self.tokenizer(list(pieces), truncation=True, max_length=self.max_seq_length, verbose=False)["input_ids"]]
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            enc = self.tokenizer([pieces[i] for i in rows], padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="np")
            out[rows] = self.session.run(None, {"input_ids": enc["input_ids"].astype(np.int64),
                                                "attention_mask": enc["attention_mask"].astype(np.int64)})[0]
        return out
