"""A trained run as an aligned :class:`Embedder`: text and photos into the run's shared space.

Frozen sides run the base encoder (with its feature cache) and the trained head; fine-tuned
sides run the trained tower and head. Each encoder's spec carries the checkpoint's content hash,
so an index built with one run cannot be queried with another (``Embedder.check_compatible``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prodsearch.encoders.base import Embedder, Encoder
from prodsearch.errors import EncoderError
from prodsearch.training.checkpoint import file_hash, load_checkpoint
from prodsearch.training.config import from_dict
from prodsearch.training.main import build_model, live_sides
from prodsearch.training.model import ImageTower, JointModel
from prodsearch.training.neighbours import NeighbourTitles
from prodsearch.training.towers import TowerFactory


class _TrainedEncoder(Encoder):
    def __init__(self, modality: str, model: JointModel, run_id: str, base_spec: dict[str, Any]):
        self.modality = modality  # type: ignore[assignment]
        self.model = model
        self.dim = model.out_dim
        self.name = f"trained-{modality}:{run_id}"
        self._base_spec = base_spec
        self._run_id = run_id

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": 1,
            "dim": self.dim,
            "checkpoint": self._run_id,
            "base": self._base_spec,
        }

    @torch.no_grad()
    def _project(self, feats: np.ndarray, query: bool = False) -> np.ndarray:
        t = torch.from_numpy(np.asarray(feats, dtype=np.float32))
        if self.modality == "text":
            return self.model.encode_text(feats=t).numpy().astype(np.float32)
        return self.model.encode_image(feats=t, query=query).numpy().astype(np.float32)


class HeadedEncoder(_TrainedEncoder):
    """Frozen base encoder ``(N, base_dim)`` -> trained head -> ``(N, embed_dim)`` unit norm."""

    def __init__(self, base: Encoder, model: JointModel, run_id: str):
        super().__init__(base.modality, model, run_id, base.spec())
        self.base = base
        self.base_spec = base.spec()

    def project(self, base_feats: np.ndarray, query: bool = False) -> np.ndarray:
        """The head alone: ``(N, base_dim)`` features of :attr:`base` -> ``(N, dim)``; photos as the
        index stores them, or as photo queries (``query``, see ``JointModel.encode_image``)."""
        if len(base_feats) == 0:
            return np.zeros((0, self.dim), np.float32)
        return self._project(base_feats, query)

    def encode_query(
        self, items: Sequence[Any], *, batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        """Photos (or texts) as search queries: ``project(..., query=True)`` of the base features."""
        if len(items) == 0:
            return np.zeros((0, self.dim), np.float32)
        feats = self.base.encode(list(items), batch_size=batch_size, progress=progress)
        return self._project(feats, query=True)

    def encode(self, items: Sequence[Any], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if len(items) == 0:
            return np.zeros((0, self.dim), np.float32)
        return self._project(self.base.encode(list(items), batch_size=batch_size, progress=progress))

    def encode_paths(
        self,
        paths: Sequence[Any],
        hashes: Sequence[str | None] | None = None,
        *,
        batch_size: int = 32,
        progress: bool = False,
    ) -> np.ndarray:
        """Photos by path through the base encoder's feature cache (when it has one), then the head."""
        if len(paths) == 0:
            return np.zeros((0, self.dim), np.float32)
        if hasattr(self.base, "encode_paths"):
            feats = self.base.encode_paths(list(paths), hashes, batch_size=batch_size, progress=progress)
        else:
            feats = self.base.encode(list(paths), batch_size=batch_size, progress=progress)
        return self._project(feats)


class TowerImageEncoder(_TrainedEncoder):
    """Fine-tuned image tower + head: PIL images or paths -> ``(N, embed_dim)``."""

    def __init__(
        self,
        tower: ImageTower,
        preprocess: Callable,
        model: JointModel,
        run_id: str,
        base_spec: dict[str, Any],
    ):
        super().__init__("image", model, run_id, base_spec)
        self.tower, self.preprocess = tower, preprocess

    @torch.no_grad()
    def encode(self, items: Sequence[Any], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        from PIL import Image

        from prodsearch.catalog.images import load_image

        out = []
        for s in range(0, len(items), batch_size):
            imgs = [it if isinstance(it, Image.Image) else load_image(it) for it in items[s : s + batch_size]]
            out.append(
                self.model.encode_image(
                    pixels=torch.stack([self.preprocess(im.convert("RGB")) for im in imgs])
                )
            )
        return torch.cat(out).numpy().astype(np.float32) if out else np.zeros((0, self.dim), np.float32)


def checkpoint_path(run_dir: str | Path, which: str | None = None) -> Path:
    """``run_dir/{which}.pt``; by default ``model.pt`` (release weights) if present, else ``best.pt``."""
    run_dir = Path(run_dir)
    if which is None:
        which = "model" if (run_dir / "model.pt").is_file() else "best"
    return run_dir / f"{which}.pt"


def load_trained_model(
    run_dir: str | Path, factory: TowerFactory | None = None, which: str | None = None
) -> tuple[JointModel, Any, Any]:
    """``(model in eval mode, config, preprocess)`` from a run's checkpoint (see :func:`checkpoint_path`)."""
    ckpt_path = checkpoint_path(run_dir, which)
    state = load_checkpoint(ckpt_path)
    try:
        cfg = from_dict(state["config"])
    except Exception as err:
        raise EncoderError(
            f"checkpoint {str(ckpt_path)!r} holds a config this prodsearch cannot read: {err}"
        ) from err
    factory = factory or TowerFactory()
    live_text, live_image = live_sides(cfg)
    sd = state["model"]
    text_dim = None if live_text else _in_dim(sd, "text_head")
    image_dim = None if live_image else _in_dim(sd, "image_head")
    model, preprocess = build_model(cfg, factory, text_dim, image_dim)
    model.neighbours = NeighbourTitles.from_state_dict(sd)  # fitted after training, when it helped
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise EncoderError(
            f"checkpoint {str(ckpt_path)!r} does not fit its config (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    model.eval()
    return model, cfg, preprocess


def _in_dim(sd: dict[str, torch.Tensor], head: str) -> int:
    w = [v for k, v in sd.items() if k.startswith(f"{head}.") and k.endswith("weight") and v.ndim == 2]
    if not w:
        raise EncoderError(f"checkpoint has no {head} weights")
    return int(w[0].shape[1])


def load_trained_embedder(
    run_dir: str | Path, factory: TowerFactory | None = None, which: str | None = None
) -> Embedder:
    """The run's aligned embedder (text and image into ``embed_dim``, unit norm)."""
    run_dir = Path(run_dir)
    factory = factory or TowerFactory()
    model, cfg, preprocess = load_trained_model(run_dir, factory, which)
    run_id = file_hash(checkpoint_path(run_dir, which))
    if model.text_tower is None:
        text: Encoder = HeadedEncoder(factory.text_encoder(cfg), model, run_id)
    else:
        text = HeadedEncoder(factory.tuned_text_encoder(model.text_tower), model, run_id)
    tuned = factory.tuned_image_encoder(model.image_tower, cfg) if model.image_tower is not None else None
    if model.image_tower is None:
        image: Encoder = HeadedEncoder(factory.image_encoder(cfg), model, run_id)
    elif tuned is not None:  # the tuned tower's own features under the head: onnxruntime, cached
        image = HeadedEncoder(tuned, model, run_id)
    else:
        image = TowerImageEncoder(
            model.image_tower, preprocess, model, run_id, {"tower": cfg.image_tower, "freeze": cfg.freeze}
        )
    return Embedder(text, image, aligned=True, name=f"trained:{run_id}")


def load_index_embedder(
    run_dir: str | Path, factory: TowerFactory | None = None, *, untuned_image_size: int | None = None
) -> Embedder:
    """What an index built with a run uses: the run's untuned base encoders (its text tower's
    encoder, its image tower's encoder) for the "text" and "image" vectors, and the trained model
    as the ``joint`` space ("joint" vectors). Training thus adds a signal whose fusion weight is
    calibrated, and never replaces vectors that worked (issue 8).

    The untuned photo vectors are the pooled ones, at ``untuned_image_size`` when given (the size
    an untuned index of the same photos uses, :meth:`EmbedderRecipe.sized_for`), else at the run's
    size. At the run's size they come from the same network pass as the joint vectors
    (:class:`~prodsearch.encoders.image.PooledView`); at another size, from their own pass."""
    import dataclasses

    factory = factory or TowerFactory()
    joint = load_trained_embedder(run_dir, factory)
    _, cfg, _ = load_trained_model(run_dir, factory)
    text = getattr(joint.text, "base", None) or factory.text_encoder(cfg)
    image = getattr(joint.image, "base", None) or factory.image_encoder(cfg)
    if getattr(image, "features", None) == "rich":
        if untuned_image_size and untuned_image_size != getattr(image, "image_size", None):
            image = factory.image_encoder(
                dataclasses.replace(cfg, image_size=untuned_image_size, image_features="pooled")
            )
        else:
            from prodsearch.encoders.image import PooledView

            image = PooledView(image)  # untuned photo vectors stay the pooled ones (encoders/image.py)
    return Embedder(text, image, aligned=False, joint=joint, name=f"{text.name}+{image.name}+{joint.name}")


def run_summary(run_dir: str | Path) -> dict[str, Any]:
    p = Path(run_dir) / "run.json"
    return json.loads(p.read_text()) if p.is_file() else {}


__all__ = [
    "load_trained_embedder",
    "load_trained_model",
    "HeadedEncoder",
    "TowerImageEncoder",
]
