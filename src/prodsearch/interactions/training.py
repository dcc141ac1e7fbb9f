"""Interaction pairs as extra training signal (issue 12, item 4a).

Each pair is a shopper's query (text, or a photo) and the product it led to, weighted by the event
(:func:`prodsearch.interactions.signals.graded_pairs`). The trainer adds, at every step, a weighted
InfoNCE term over a batch of such pairs: the query through the model's text side (a text query) or
image side (a photo query), against the products' photos through the image side, the other products
of the batch as negatives. Product (title, photo) batches are cycled when there are more interaction
batches than product batches, so every pair is seen once per epoch.

Entry points: :func:`train_with_interactions` (``prodsearch train CATALOG --interactions LOG``, and
``prodsearch refresh``), or ``train(..., interactions=pairs)`` with pairs already built.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from prodsearch.interactions.signals import QueryPair, graded_pairs

log = logging.getLogger(__name__)


@dataclass
class ExtraPairs:
    """Query -> product pairs resolved against a :class:`~prodsearch.training.data.PairSet`.

    ``items[i]``: the product's item index; ``feats[kind]``: ``(n_kind, D)`` cached frozen-tower
    features of the queries of that kind (``None`` where that side has a live tower), query ``i`` at
    row ``rows[i]``."""

    kinds: list[str]
    queries: list[str]
    items: list[int]
    weights: list[float]
    rows: list[int] = field(default_factory=list)
    feats: dict[str, torch.Tensor | None] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    def batches(self, epoch: int, seed: int, batch_size: int) -> list[list[int]]:
        """This epoch's shuffled batches of pair indices (one-pair tails dropped: no negatives)."""
        g = torch.Generator().manual_seed(seed * 100_003 + epoch + 7)
        order = torch.randperm(len(self), generator=g).tolist()
        out = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
        return [b for b in out if len(b) >= 2]

    def _queries(self, trainer: Any, idx: list[int], kind: str, epoch: int) -> torch.Tensor:
        model, dev = trainer.model, trainer.device
        feats = self.feats.get(kind)
        if feats is not None:
            rows = torch.as_tensor([self.rows[i] for i in idx])
            return (model.encode_text if kind == "text" else model.encode_image)(feats=feats[rows].to(dev))
        if kind == "text":
            return model.encode_text(texts=[self.queries[i] for i in idx])
        from prodsearch.catalog.images import load_image

        imgs = []
        for i in idx:
            img = load_image(self.queries[i])
            if trainer.augment is not None:  # one draw per (seed, epoch, query photo), as products get
                img = trainer.augment(img, random.Random(f"{trainer.cfg.seed}:{epoch}:query:{i}"))
            imgs.append(trainer.data.preprocess(img))
        return model.encode_image(pixels=torch.stack(imgs).to(dev))

    def loss(self, trainer: Any, idx: list[int], epoch: int) -> torch.Tensor:
        """Weighted InfoNCE, query -> product photo, over the batch ``idx`` of pair indices (photos
        augmented as the trainer augments this ``epoch``'s product photos)."""
        order = sorted(idx, key=lambda i: self.kinds[i])  # photo queries, then text queries
        with trainer.autocast():
            q = torch.cat(
                [
                    self._queries(trainer, [i for i in order if self.kinds[i] == kind], kind, epoch)
                    for kind in ("image", "text")
                    if any(self.kinds[i] == kind for i in order)
                ]
            )
            targets = trainer._image_side([self.items[i] for i in order], epoch)
        return weighted_query_loss(
            q.float(),
            targets.float(),
            trainer.model.scale(),
            torch.as_tensor([self.items[i] for i in order], device=q.device),
            torch.as_tensor([self.weights[i] for i in order], dtype=torch.float32, device=q.device),
        )


def weighted_query_loss(
    queries: torch.Tensor,
    targets: torch.Tensor,
    logit_scale: torch.Tensor,
    items: torch.Tensor,
    weights: torch.Tensor,
) -> torch.Tensor:
    """``queries``, ``targets``: ``(B, D)`` L2-normalised; row i's positives are the targets of the
    same product (``items``); ``weights`` ``(B,)`` scale each row's cross-entropy (normalised to mean
    1, so the term's size does not depend on the weight scale). Returns a scalar."""
    logits = logit_scale * queries @ targets.t()
    pos = (items[:, None] == items[None, :]).float()
    ce = -(pos / pos.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1)
    w = weights / weights.mean().clamp_min(1e-12)
    return (w * ce).mean()


def resolve_pairs(
    ids: Sequence[str], query_pairs: Sequence[QueryPair]
) -> tuple[list[str], list[str], list[int], list[float]]:
    """``(kinds, queries, items, weights)`` for the pairs whose product is a training item (``ids``);
    the others (products without a usable title and photo) are counted in the log."""
    item_of = {pid: i for i, pid in enumerate(ids)}
    kinds, queries, items, weights = [], [], [], []
    missing = 0
    for p in query_pairs:
        i = item_of.get(p.product_id)
        if i is None or p.weight <= 0:
            missing += i is None
            continue
        kinds.append(p.kind)
        queries.append(p.query_image if p.kind == "image" else p.query)
        items.append(i)
        weights.append(float(p.weight))
    if missing:
        log.warning(
            "%d interaction pairs name products without a usable (title, photo) pair; not used", missing
        )
    return kinds, queries, items, weights


def prepare_extra(
    pairs: Any, query_pairs: Sequence[QueryPair], cfg: Any, factory: Any, progress: bool = False
) -> ExtraPairs | None:
    """Resolve ``query_pairs`` against the training ``pairs`` and cache the frozen sides' features of
    the queries (the same encoders as the products' cached features)."""
    from prodsearch.training.features import encode_cached
    from prodsearch.training.main import live_sides

    kinds, queries, items, weights = resolve_pairs(pairs.ids, query_pairs)
    if len(items) < 2:
        log.warning("fewer than 2 usable interaction pairs; training on the catalog's pairs only")
        return None
    extra = ExtraPairs(kinds, queries, items, weights)
    live_text, live_image = live_sides(cfg)
    counter = {"text": 0, "image": 0}
    for k in kinds:
        extra.rows.append(counter[k])
        counter[k] += 1
    for kind, live in (("text", live_text), ("image", live_image)):
        mine = [q for q, k in zip(queries, kinds, strict=True) if k == kind]
        if not mine or live:
            extra.feats[kind] = None
            continue
        if kind == "text":
            feats = encode_cached(factory.text_encoder(cfg), mine, batch_size=cfg.feature_batch_size)
        else:
            keys = [_file_key(q) for q in mine]
            feats = encode_cached(
                factory.image_encoder(cfg),
                mine,
                keys=keys,
                batch_size=cfg.feature_batch_size,
                progress=progress,
            )
        extra.feats[kind] = torch.from_numpy(feats)
    log.info(
        "interaction pairs: %d (%d text queries, %d photo queries) over %d products",
        len(extra), counter["text"], counter["image"], len(set(items)),
    )  # fmt: skip
    return extra


def _file_key(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return f"path:{path}"


def interaction_pairs(
    log_path: str | Path,
    product_ids: Sequence[str] | None,
    *,
    event_weights: Mapping[str, float] | None = None,
    strict: bool = False,
) -> list[QueryPair]:
    """Read and validate a log against ``product_ids`` and return its graded pairs (bad rows are
    reported in the log and left out; ``strict`` raises on the first)."""
    from prodsearch.interactions.log import read_interactions

    result = read_interactions(log_path, product_ids, strict=strict)
    if result.problems:
        log.warning("%s", result.summary())
    return graded_pairs(result.events, event_weights)


def train_with_interactions(
    catalog: str | Path | None,
    out: str | Path,
    interactions: str | Path | Sequence[QueryPair],
    config: Any = None,
    *,
    event_weights: Mapping[str, float] | None = None,
    products: Sequence[Any] | None = None,
    **train_kwargs: Any,
):
    """``prodsearch.training.main.train`` with a log's graded pairs as extra pairs (a log path is
    read and validated against the catalog's product ids first). Returns its ``RunResult``."""
    from prodsearch.training.config import TrainConfig, from_dict
    from prodsearch.training.main import _read_products, train

    cfg = config if isinstance(config, TrainConfig) else from_dict(config or {})
    if products is None and catalog is not None:
        products = _read_products(catalog, cfg, train_kwargs.get("progress", False))
    if isinstance(interactions, (str, Path)):
        ids = [p.id for p in products] if products is not None else None
        interactions = interaction_pairs(interactions, ids, event_weights=event_weights)
    return train(catalog, out, cfg, products=products, interactions=list(interactions), **train_kwargs)


def train_cli(
    catalog: str | Path,
    out: str | Path,
    *,
    interactions: str | Path,
    config_path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
):
    """``prodsearch train CATALOG --out RUN --interactions LOG [--config FILE] [flags]``."""
    from prodsearch.errors import ConfigError
    from prodsearch.training.config import load_config

    if resume:
        raise ConfigError("--resume continues a run as it was started; --interactions starts a new run")
    cfg = load_config(config_path, {k: v for k, v in (overrides or {}).items() if v is not None})
    return train_with_interactions(catalog, out, interactions, cfg, overwrite=overwrite, progress=progress)
