"""Checkpoints: one explicit dict (nanoGPT habit), written atomically, validated on load."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch

from prodsearch.errors import EncoderError
from prodsearch.paths import atomic_write_bytes

FORMAT = "prodsearch-train-checkpoint"
VERSION = 1
REQUIRED = ("format", "version", "model", "config", "step", "epoch", "best_metric")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``state``: model, optimizer, scheduler, config (dict), step, epoch, best_metric, ... (atomic write)."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **state}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and check a checkpoint; anything else raises :class:`EncoderError` naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise EncoderError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise EncoderError(f"checkpoint {str(path)!r} could not be read: {err}") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise EncoderError(f"{str(path)!r} is not a prodsearch training checkpoint")
    if state.get("version") != VERSION:
        raise EncoderError(
            f"checkpoint {str(path)!r} has version {state.get('version')!r}; this prodsearch reads {VERSION}"
        )
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise EncoderError(f"checkpoint {str(path)!r} lacks {missing}")
    return state


def file_hash(path: str | Path) -> str:
    """SHA-256 (first 16 hex) of a checkpoint file: goes into the encoder spec of a trained embedder."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]
