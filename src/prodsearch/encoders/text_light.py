"""Torch-free text encoding from a cached ONNX export: what a command-line query needs.

Importing ``sentence_transformers`` (and with it torch and transformers) takes 10+ s on a small
CPU; a one-line query needs only the tokenizer, the ONNX graph and the pooling rule. The first time
a :class:`~prodsearch.encoders.text.SentenceTransformerEncoder` runs on onnxruntime it writes a
*query bundle* next to its ONNX export: the encoder spec, the fast tokenizer as ``tokenizer.json``,
the pooling modes and the sequence length. Later, the ``minilm`` / ``sentence-transformers``
factories return a :class:`LightTextEncoder` built from the bundle (``tokenizers`` + onnxruntime +
numpy) whenever one matches the model folder, so the vectors and the spec are the same as the full
encoder's (tested for congruence) at a fraction of the start-up cost.

A bundle is keyed by the model folder's path, the size and modification time of its files and the
installed sentence-transformers version, so an edited model or an upgrade never reuses a stale one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from prodsearch.encoders.text import SentenceTransformerEncoder, _OnnxPlan
from prodsearch.errors import EncoderError
from prodsearch.paths import atomic_write_text, cache_dir

log = logging.getLogger(__name__)

BUNDLE_VERSION = 1


def folder_key(folder: str | os.PathLike[str]) -> str:
    """Hash of a model folder's real path, its files' sizes and mtimes, and the library version."""
    root = Path(folder).resolve()
    h = hashlib.sha256(f"v{BUNDLE_VERSION}|{root}|".encode())
    try:
        h.update(metadata.version("sentence-transformers").encode())
    except metadata.PackageNotFoundError:
        h.update(b"no-sentence-transformers")
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            st = os.stat(os.path.join(dirpath, name))
            h.update(
                f"{os.path.relpath(os.path.join(dirpath, name), root)}|{st.st_size}|{st.st_mtime_ns};".encode()
            )
    return h.hexdigest()[:16]


def _bundle_path(folder: str | os.PathLike[str], precision: str = "float32") -> Path:
    suffix = "" if precision == "float32" else f"-{precision}"
    return cache_dir() / "onnx" / f"query-{folder_key(folder)}{suffix}.json"


def write_query_bundle(encoder: SentenceTransformerEncoder) -> Path | None:
    """Record what :class:`LightTextEncoder` needs, after ``encoder`` loaded its ONNX session.

    Returns the bundle path, or None when the encoder has no model folder or no ONNX plan.
    """
    plan, session = encoder._plan, encoder._session
    if encoder.model_path is None or plan is None or session is None:
        return None
    path = _bundle_path(encoder.model_path, encoder.precision)
    if path.is_file():
        return path
    backend = getattr(plan.tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    tok_path = session.path.with_suffix(".tokenizer.json")
    atomic_write_text(tok_path, backend.to_str())
    tok = plan.tokenizer
    bundle = {
        "version": BUNDLE_VERSION,
        "spec": encoder.spec(),
        "name": encoder.name,
        "model_id": encoder.model_id,
        "dim": encoder.dim,
        "onnx": session.path.name,
        "tokenizer": tok_path.name,
        "input_names": list(plan.input_names),
        "modes": list(plan.modes),
        "lower": plan.lower,
        "max_seq_length": int(plan.model.max_seq_length),
        "pad_id": int(tok.pad_token_id or 0),
        "pad_token": str(tok.pad_token or "[PAD]"),
        "pad_type_id": int(getattr(tok, "pad_token_type_id", 0) or 0),
    }
    atomic_write_text(path, json.dumps(bundle, indent=1))
    log.info("wrote torch-free query bundle %s", path)
    return path


class _LightPlan(_OnnxPlan):
    """The ONNX plan's tokenise + pool, with the ``tokenizers`` library instead of transformers."""

    def __init__(self, tokenizer: Any, bundle: dict[str, Any]):
        self.tokenizer = tokenizer
        self.modes = tuple(bundle["modes"])
        self.lower = bool(bundle["lower"])
        self.input_names = list(bundle["input_names"])
        self.max_seq_length = int(bundle["max_seq_length"])
        self._lock = threading.Lock()

    def tokenize(self, texts: list[str]) -> dict[str, np.ndarray]:
        """As :meth:`_OnnxPlan.tokenize`: pad to the longest, truncate to ``max_seq_length``."""
        if self.lower:
            texts = [t.lower() for t in texts]
        encs = self.tokenizer.encode_batch(texts)
        cols = {
            "input_ids": [e.ids for e in encs],
            "attention_mask": [e.attention_mask for e in encs],
            "token_type_ids": [e.type_ids for e in encs],
        }
        return {n: np.asarray(cols[n], dtype=np.int64) for n in self.input_names}


class LightTextEncoder(SentenceTransformerEncoder):
    """A :class:`SentenceTransformerEncoder` on onnxruntime without torch: same spec, same vectors.

    Built by :func:`load_light_encoder`; ``.model`` is None (nothing to fine-tune here).
    """

    def __init__(self, bundle: dict[str, Any], folder: Path, *, workers: int | None, num_threads: int | None):
        from tokenizers import Tokenizer

        from prodsearch.encoders.base import cpu_count
        from prodsearch.encoders.onnx_runtime import OnnxSession

        onnx_dir = cache_dir() / "onnx"
        tok = Tokenizer.from_file(str(onnx_dir / bundle["tokenizer"]))
        tok.enable_truncation(max_length=int(bundle["max_seq_length"]), strategy="longest_first")
        tok.enable_padding(
            pad_id=int(bundle["pad_id"]),
            pad_token=bundle["pad_token"],
            pad_type_id=int(bundle["pad_type_id"]),
        )
        self.model = None
        self.model_path = str(folder)
        self.model_id = bundle["model_id"]
        self.name = bundle["name"]
        self.dim = int(bundle["dim"])
        self._spec = dict(bundle["spec"])
        self.precision = str(self._spec.get("precision", "float32"))
        self._fingerprint = self._spec.get("weights")
        self._plan = _LightPlan(tok, bundle)
        self.backend = "onnx"
        self.workers = max(1, int(workers or cpu_count()))
        self.num_threads = num_threads
        self._lock = threading.Lock()
        self._session = OnnxSession(onnx_dir / bundle["onnx"], num_threads=num_threads or 1)

    def _ensure_session(self) -> bool:
        return True

    def spec(self) -> dict[str, Any]:
        return dict(self._spec)


def load_light_encoder(
    folder: str | os.PathLike[str], *, backend: str = "auto", workers: int | None = None,
    num_threads: int | None = None, precision: str = "float32",
) -> LightTextEncoder | None:  # fmt: skip
    """The torch-free encoder for ``folder`` if a query bundle matches it, else None.

    ``backend="torch"`` always returns None (the caller asked for the torch encoder).
    """
    if backend == "torch":
        return None
    try:
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError:
        return None
    path = _bundle_path(folder, precision)
    if not path.is_file():
        return None
    try:
        bundle = json.loads(path.read_text(encoding="utf-8"))
        if bundle.get("version") != BUNDLE_VERSION:
            return None
        return LightTextEncoder(bundle, Path(folder), workers=workers, num_threads=num_threads)
    except (OSError, ValueError, KeyError, EncoderError, Exception) as err:  # noqa: BLE001 - fall back
        log.info("query bundle %s unusable (%s); loading the full encoder", path, err)
        return None
