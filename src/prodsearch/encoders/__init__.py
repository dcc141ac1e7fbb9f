"""Encoders: registry + factory, text (sentence-transformers), image (EfficientNet-Lite), CLIP, feature cache.

Importing this package is cheap: the encoder modules (and torch) load on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

from prodsearch.encoders.base import (
    Embedder,
    Encoder,
    create_encoder,
    describe_encoders,
    l2_normalize,
    list_encoders,
    register_encoder,
    spec_hash,
)

_LAZY = {
    "SentenceTransformerEncoder": "text",
    "load_sentence_transformer": "text",
    "EfficientNetLiteEncoder": "image",
    "ImagePreprocessor": "image",
    "build_backbone": "image",
    "preprocess_batch": "image",
    "ClipTower": "clip",
    "load_clip_embedder": "clip",
    "load_clip_tower": "clip",
    "FeatureCache": "cache",
    "CachedImageEncoder": "cache",
    "encode_with_cache": "cache",
}

__all__ = [
    "Embedder",
    "Encoder",
    "create_encoder",
    "describe_encoders",
    "l2_normalize",
    "list_encoders",
    "register_encoder",
    "spec_hash",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"prodsearch.encoders.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'prodsearch.encoders' has no attribute {name!r}")
