"""Encoder interface, registry and the text+image pair (``Embedder``) every index is built with.

An :class:`Encoder` maps a batch of items of one modality to L2-normalised float32 vectors
``(N, dim)``. Its :meth:`Encoder.spec` (name, version, preprocessing, dim) is stored inside every
index, so an index can never be queried with a different encoder (lancedb habit).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from prodsearch.errors import EncoderError, EncoderMismatchError

Modality = Literal["text", "image"]


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation, float32. ``x``: (N, D)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, eps)


class Encoder(ABC):
    """One tower: text -> vectors or image -> vectors."""

    name: str
    modality: Modality
    dim: int

    @abstractmethod
    def encode(self, items: Sequence[Any], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Encode ``items`` (strings, or PIL images / image paths) to ``(len(items), dim)`` float32, unit norm."""

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """JSON-serialisable description: name, version, preprocessing, dim (stored in every index)."""

    def spec_hash(self) -> str:
        return spec_hash(self.spec())


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask on Linux, else ``os.cpu_count()``)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def progress_bar(total: int, enabled: bool, desc: str, unit: str = "it") -> Any:
    """A tqdm bar for long encoding jobs (disabled unless ``enabled``)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit=unit)


def spec_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def weights_fingerprint(module: Any) -> str:
    """16-hex-char hash of a torch module's ``state_dict`` (names + bytes): identifies exact weights.

    Stored in encoder specs, so two checkpoints with the same name but different weights never
    share an index, a feature cache entry or an ONNX export.
    """
    h = hashlib.sha256()
    for key, t in module.state_dict().items():
        h.update(key.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


_REGISTRY: dict[str, tuple[Modality, Callable[..., Encoder], str]] = {}


def register_encoder(name: str, modality: Modality, description: str = "") -> Callable:
    """Decorator registering a factory ``(**kwargs) -> Encoder`` under ``name``."""

    def deco(factory: Callable[..., Encoder]) -> Callable[..., Encoder]:
        _REGISTRY[name] = (modality, factory, description)
        return factory

    return deco


def _ensure_builtins() -> None:
    # Importing the modules registers their encoders; heavy libraries load lazily inside factories.
    from prodsearch.encoders import clip, image, text  # noqa: F401


def list_encoders(modality: Modality | None = None) -> list[str]:
    """Names accepted by :func:`create_encoder` (``clip:`` / ``hf-clip:`` prefixes take a path or hub id)."""
    _ensure_builtins()
    return sorted(n for n, (m, _, _) in _REGISTRY.items() if modality is None or m == modality)


def describe_encoders() -> list[dict[str, str]]:
    _ensure_builtins()
    return [{"name": n, "modality": m, "description": d} for n, (m, _, d) in sorted(_REGISTRY.items())]


def create_encoder(name: str, **kwargs: Any) -> Encoder:
    """Build a registered encoder by name. Unknown names raise an error listing the valid ones.

    ``clip:<path-or-hub-id>[#text|#image]`` and ``hf-clip:<path-or-hub-id>[#text|#image]`` load
    CLIP-family checkpoints (open_clip / transformers format).
    """
    _ensure_builtins()
    for prefix in ("clip:", "hf-clip:"):
        if name.startswith(prefix):
            modality_factory = _REGISTRY[prefix.rstrip(":")][1]
            return modality_factory(name[len(prefix) :], **kwargs)
    if name not in _REGISTRY:
        raise EncoderError(
            f"unknown encoder {name!r}; valid names: {', '.join(list_encoders())} (or clip:PATH, hf-clip:PATH)"
        )
    return _REGISTRY[name][1](**kwargs)


class Embedder:
    """A text encoder and an image encoder used together by an index.

    ``aligned`` is True when both map into one shared space (CLIP, or a model trained by
    ``prodsearch train``), which enables cross-modal search (text query -> image vectors).
    """

    def __init__(
        self,
        text: Encoder,
        image: Encoder | None,
        *,
        aligned: bool = False,
        name: str | None = None,
        joint: Embedder | None = None,
    ):
        if aligned and image is not None and text.dim != image.dim:
            raise EncoderError(
                f"aligned encoders must share a dim, got text {text.dim} and image {image.dim}"
            )
        if joint is not None and not joint.aligned:
            raise EncoderError(
                f"the joint embedder {joint.name!r} must be aligned (text and photos in one space)"
            )
        self.text = text
        self.image = image
        self.aligned = aligned
        #: a trained model beside the untuned encoders: its aligned space is one more signal
        #: ("joint": product photos projected into it), never a replacement of the untuned vectors
        self.joint = joint
        self.name = name or f"{text.name}+{image.name if image else 'none'}"

    def encode_text(self, texts: Sequence[str], **kw: Any) -> np.ndarray:
        return self.text.encode(list(texts), **kw)

    def encode_images(self, images: Sequence[Any], **kw: Any) -> np.ndarray:
        if self.image is None:
            raise EncoderError(f"embedder {self.name!r} has no image encoder")
        return self.image.encode(list(images), **kw)

    def encode_image_queries(self, images: Sequence[Any], **kw: Any) -> np.ndarray:
        """Photos as search queries: like :meth:`encode_images`, except where the image encoder
        embeds a query photo otherwise than the photos it indexes (``encode_query``: a trained
        model's neighbour titles, training/neighbours.py)."""
        if self.image is None:
            raise EncoderError(f"embedder {self.name!r} has no image encoder")
        encode_query = getattr(self.image, "encode_query", None)
        if encode_query is None:
            return self.image.encode(list(images), **kw)
        return encode_query(list(images), **kw)

    def spec(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "aligned": self.aligned,
            "text": self.text.spec(),
            "image": self.image.spec() if self.image is not None else None,
        }
        if self.joint is not None:
            out["joint"] = self.joint.spec()
        return out

    def joint_from_base(
        self, modality: str, base_feats: np.ndarray, query: bool = False
    ) -> np.ndarray | None:
        """The joint vectors of inputs whose untuned features are ``base_feats``, without encoding
        them again, when the joint side is a head over that same untuned encoder; else ``None``.
        ``query``: photos as search queries rather than as the index stores them (they differ
        with a trained model's neighbour titles, training/neighbours.py)."""
        if self.joint is None:
            return None
        enc = self.joint.text if modality == "text" else self.joint.image
        base = self.text if modality == "text" else self.image
        project = getattr(enc, "project", None)
        if project is None or base is None or getattr(enc, "base_spec", None) != base.spec():
            return None
        return project(base_feats, query=True) if query and modality == "image" else project(base_feats)

    def check_compatible(self, stored: dict[str, Any], where: str = "index") -> None:
        """Raise :class:`EncoderMismatchError` if ``stored`` (an index's spec) differs from ours."""
        mine = self.spec()
        if json.dumps(mine, sort_keys=True) != json.dumps(stored, sort_keys=True):
            diffs = [k for k in ("name", "aligned", "text", "image", "joint") if mine.get(k) != stored.get(k)]
            raise EncoderMismatchError(
                f"{where} was built with encoder {stored.get('name')!r} but {mine.get('name')!r} was given "
                f"(differs in: {', '.join(diffs)}); rebuild the index or open it with its own encoder"
            )
