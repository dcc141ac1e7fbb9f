"""The training loop: batches of (text, image) pairs, the configured loss terms (contrastive or SigLIP,
+ attribute cross-entropy, + matching), AdamW, warm-up + cosine.

Each side of a batch comes either from cached frozen-tower features (fast path) or from a live
tower (texts through the text tower, augmented photos through the image tower). The loop reads
top to bottom: optimiser groups, schedule, one epoch, evaluation, fit with early stopping.

Data-parallel (``torchrun``, see :mod:`prodsearch.distributed.ddp`) is a mode of this one loop:
every rank draws the same global batches and text variants, embeds its shard under DDP, gathers
the global batch and computes the whole loss on it; rank 0 alone evaluates, decides early
stopping (shared with the others) and writes the run folder. Photo augmentation is seeded per
(epoch, product), so it does not depend on which rank draws a photo; dropout is seeded per rank.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prodsearch.distributed.ddp import (
    DistInfo,
    PairForward,
    gather_with_grad,
    shard,
    share_from_main,
    wrap,
)
from prodsearch.training.activations import TowerActivations
from prodsearch.training.augment import ColourSafeAugment
from prodsearch.training.checkpoint import save_checkpoint
from prodsearch.training.config import TrainConfig
from prodsearch.training.data import (
    AttributeLabels,
    PairSet,
    grouped_batches,
    same_attributes,
    sample_text_indices,
)
from prodsearch.training.losses import (
    AttributeCE,
    MatchingLoss,
    MultiPositiveInfoNCE,
    SigLIPLoss,
    graded_targets,
    parse_loss,
    positive_mask,
)
from prodsearch.training.model import JointModel, count_trainable
from prodsearch.training.retrieval import retrieval_metrics

log = logging.getLogger(__name__)

HIGHER_IS_BETTER = {"val_mrr": True, "val_r1": True, "val_r10": True, "val_loss": False}


@dataclass
class TrainData:
    """Pairs, split and, for the frozen sides, cached features.

    ``text_feats``: ``(T, Dt)`` over every text variant of every product, product i's variants at
    ``text_offsets[i] + v``; ``image_feats``: ``(P, Di)``. ``None`` where that side has a live tower.
    """

    pairs: PairSet
    split: dict[str, list[int]]
    text_feats: torch.Tensor | None = None
    text_offsets: list[int] = field(default_factory=list)
    image_feats: torch.Tensor | None = None
    # where each part of an image feature lies ({name: (start, stop)}, the encoder's feature_parts)
    image_parts: dict[str, tuple[int, int]] | None = None
    preprocess: Callable[[Any], torch.Tensor] | None = None
    attributes: AttributeLabels | None = None
    activations: TowerActivations | None = None  # cached bottom of a partly unlocked image tower
    groups: list[int] | None = None  # per pair: its product type's code (batch_groups sampling), -1 unknown
    extra: Any = None  # shoppers' query -> product pairs (prodsearch.interactions.training.ExtraPairs)
    # per attribute column, its value names' cached text features (attribute_classifier=text, frozen text side)
    attribute_text_feats: dict[str, torch.Tensor] = field(default_factory=dict)


def param_groups(model: JointModel, cfg: TrainConfig, extra: list[nn.Module] = ()) -> list[dict[str, Any]]:
    """AdamW groups: heads (lr) and tower layer groups (tower lr x layer_decay^depth-from-top), each split
    into decay (matrices) and no-decay (biases, norms, temperature) parameters."""
    groups: list[dict[str, Any]] = []

    def add(params: list[nn.Parameter], lr: float, tag: str) -> None:
        params = [p for p in params if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        if decay:
            groups.append(
                {"params": decay, "lr": lr, "weight_decay": cfg.weight_decay, "name": f"{tag}/decay"}
            )
        if no_decay:
            groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": f"{tag}/no_decay"})

    head_params = [*model.text_head.parameters(), *model.image_head.parameters(), model.logit_scale]
    for m in extra:
        head_params += list(m.parameters())
    add(head_params, cfg.lr, "heads")
    tower_lr = cfg.lr * 0.1 if cfg.freeze == "lora" else cfg.tower_lr
    for name, tower in (("text", model.text_tower), ("image", model.image_tower)):
        if tower is None:
            continue
        tg = tower.groups()
        for i, g in enumerate(tg):
            add(g, tower_lr * cfg.layer_decay ** (len(tg) - 1 - i), f"{name}/{i}")
    return groups


def warmup_cosine(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    """LR multiplier: linear 0 -> 1 over the warm-up steps, then cosine 1 -> 0 at ``total_steps``."""
    warm = int(round(total_steps * warmup_fraction))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


def resolve_device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


class Trainer:
    """Owns the model, optimiser, schedule and the run folder's metrics/checkpoints."""

    def __init__(
        self,
        model: JointModel,
        cfg: TrainConfig,
        data: TrainData,
        out: Path,
        *,
        progress: bool = True,
        dist: DistInfo | None = None,
    ):
        self.model, self.cfg, self.data, self.out = model, cfg, data, Path(out)
        self.dist = dist or DistInfo()
        self.device = self.dist.device if self.dist.backend == "nccl" else resolve_device(cfg)
        self.model.to(self.device)
        terms = set(parse_loss(cfg.loss))
        self.contrastive = MultiPositiveInfoNCE()
        self.siglip = SigLIPLoss().to(self.device) if "siglip" in terms else None
        head = getattr(model, "matching_head", None)
        self.matching = MatchingLoss(head) if head is not None else None
        attrs = data.attributes
        self.attribute = (
            AttributeCE(model.embed_dim, attrs.classes, by_text=cfg.attribute_classifier == "text").to(
                self.device
            )
            if "attribute" in terms and attrs is not None and attrs.classes and cfg.attribute_weight > 0
            else None
        )
        if "attribute" in terms and self.attribute is None:
            log.warning(
                "loss term 'attribute' skipped: no categorical attribute column to classify (%s)",
                "; ".join(f"{c}: {why}" for c, why in (attrs.skipped.items() if attrs else ()))
                or "none mapped",
            )
        self._attr_labels = (
            {c: torch.as_tensor(v) for c, v in attrs.labels.items()} if self.attribute is not None else {}
        )
        extra = [m for m in (head, self.siglip, self.attribute) if m is not None]
        self.optimizer = torch.optim.AdamW(param_groups(model, cfg, extra), betas=(0.9, 0.98), eps=1e-6)
        n_train = max(len(data.split["train"]), len(data.extra) if data.extra is not None else 0)
        self.steps_per_epoch = max(1, math.ceil(n_train / cfg.batch_size / cfg.grad_accum))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(self.steps_per_epoch * cfg.epochs, cfg.warmup_fraction)
        )
        use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and self.device.type == "cuda")
        self.autocast = (
            (lambda: torch.autocast(self.device.type, dtype=torch.bfloat16))
            if use_bf16
            else (lambda: nullcontext())
        )
        self.augment = ColourSafeAugment() if cfg.image_augment else None
        self.progress = progress and self.dist.is_main
        # DDP sees the per-rank forward; parameters used only on the gathered batch stay out of it
        self.pair = wrap(
            PairForward(model, self._text_side, self._image_side),
            self.dist,
            ignore=[
                n for n, _ in model.named_parameters() if n == "logit_scale" or n.startswith("matching_head.")
            ],
            find_unused=not self._towers_frozen(),
        )
        self.step = 0
        self.epoch = 0  # epochs completed
        self.best_metric: float | None = None
        self.best_epoch = 0
        self.bad_epochs = 0
        self.writer = _summary_writer(self.out / "tb") if self.dist.is_main else None
        log.info("trainable parameters: %d", count_trainable(model))

    # ---------------------------------------------------------------- batches
    def _batches(self, epoch: int) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
        train = self.data.split["train"]
        bs = self.cfg.batch_size
        if self.cfg.batch_groups and self.data.groups is not None:  # hard in-batch negatives
            rng = random.Random(f"{self.cfg.seed}:batches:{epoch}")
            chunks = grouped_batches(train, self.data.groups, bs, self.cfg.batch_groups, rng)
        else:
            order = torch.randperm(len(train), generator=g).tolist()
            chunks = [[train[j] for j in order[s : s + bs]] for s in range(0, len(order), bs)]
        w = self.dist.world_size
        for chunk in chunks:
            chunk = chunk[: len(chunk) - len(chunk) % w]  # ranks embed equal shares of a global batch
            if len(chunk) >= 2:  # a one-item batch has no negatives
                yield chunk

    def _text_side(self, idx: list[int], variants: list[int]) -> torch.Tensor:
        d = self.data
        if self.model.text_tower is None:
            rows = torch.as_tensor([d.text_offsets[i] + v for i, v in zip(idx, variants, strict=True)])
            return self.model.encode_text(feats=d.text_feats[rows].to(self.device))
        return self.model.encode_text(texts=[d.pairs.texts[i][v] for i, v in zip(idx, variants, strict=True)])

    def _image_side(self, idx: list[int], epoch: int | None = None) -> torch.Tensor:
        """Photos of ``idx`` embedded; augmented when training (``epoch`` given), with one draw per
        (seed, epoch, product) whichever rank and batch position the photo lands on."""
        d = self.data
        if self.model.image_tower is None:
            return self.model.encode_image(feats=d.image_feats[torch.as_tensor(idx)].to(self.device))
        if d.activations is not None:  # only the unlocked blocks run; augmentation = a cached view
            views = [
                self.augment_rng(epoch, i).randrange(d.activations.views) if epoch is not None else 0
                for i in idx
            ]
            tower = self.model.image_tower
            return self.model.encode_image(feats=tower.top(*d.activations.batch(idx, views, self.device)))
        from prodsearch.catalog.images import load_image

        imgs = []
        for i in idx:
            img = load_image(d.pairs.image_paths[i])
            if epoch is not None and self.augment is not None:
                img = self.augment(img, self.augment_rng(epoch, i))
            imgs.append(d.preprocess(img))
        return self.model.encode_image(pixels=torch.stack(imgs).to(self.device))

    def augment_rng(self, epoch: int, item: int) -> random.Random:
        """The augmentation draws of ``item``'s photo in ``epoch``: independent of the batch and rank
        it lands on, so that N data-parallel ranks augment exactly as one process does."""
        return random.Random(f"{self.cfg.seed}:{epoch}:{item}")

    def _loss(self, idx: list[int], variants: list[int], epoch: int) -> tuple[torch.Tensor, dict]:
        """The loss of the global batch ``idx``: this rank embeds its shard, the gathered rows
        (in ``idx`` order) feed every loss term."""
        p = self.data.pairs
        mine, my_variants = shard(idx, self.dist), shard(variants, self.dist)
        with self.autocast():
            t, im = self.pair((mine, my_variants), (mine, epoch))
        t, im = gather_with_grad(t.float()), gather_with_grad(im.float())
        texts = [p.texts[i][v] for i, v in zip(idx, variants, strict=True)]
        text_ids: dict[str, int] = {}
        same_text = torch.as_tensor([text_ids.setdefault(s.lower(), len(text_ids)) for s in texts])
        mask = positive_mask(
            torch.as_tensor([p.title_group[i] for i in idx]), torch.as_tensor([p.image_group[i] for i in idx])
        )
        mask = (mask | (same_text[:, None] == same_text[None, :])).to(self.device)
        if self.siglip is not None:
            loss = self.siglip(t, im, self.model.scale(), mask)
            parts = {"siglip": loss.item()}
        else:
            target: torch.Tensor = mask
            if self.cfg.graded_positives > 0 and self.data.attributes is not None:
                same = same_attributes(self.data.attributes.labels, idx)
                if same is not None:
                    target = graded_targets(
                        mask, torch.as_tensor(same, device=self.device), self.cfg.graded_positives
                    )
            loss = self.contrastive(t, im, self.model.scale(), target)
            parts = {"contrastive": loss.item()}
        if self.attribute is not None:
            rows = torch.as_tensor(idx)
            labels = {c: v[rows].to(self.device) for c, v in self._attr_labels.items()}
            if self.attribute.by_text:
                with self.autocast():
                    names = self._class_embeddings()
                a = self.attribute(t, im, labels, names, self.model.scale())
            else:
                a = self.attribute(t, im, labels)
            parts["attribute"] = a.item()
            loss = loss + self.cfg.attribute_weight * a
        if self.matching is not None:
            m = self.matching(t, im, mask)
            parts["matching"] = m.item()
            loss = loss + (self.cfg.matching_weight or 1.0) * m
        return loss, parts

    def _class_embeddings(self) -> dict[str, torch.Tensor]:
        """Every attribute value's name through the text side (cached features and head, or the live
        tower): the classifier rows of ``AttributeCE(by_text=True)``."""
        feats = self.data.attribute_text_feats
        out = {}
        for col, names in self.attribute.classes.items():
            if self.model.text_tower is None:
                out[col] = self.model.encode_text(feats=feats[col].to(self.device)).float()
            else:
                out[col] = self.model.encode_text(texts=names).float()
        return out

    # ---------------------------------------------------------------- epoch
    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        rng = random.Random(f"{self.cfg.seed}:{epoch}")  # text variants: the same draws on every rank
        # dropout: the same draws after --resume, other draws on each rank (masks of other rows)
        torch.manual_seed(self.cfg.seed * 100_003 + epoch + 1_000_003 * self.dist.rank)
        totals: dict[str, float] = {}
        n = 0
        batches = list(self._batches(epoch))
        extra = self.data.extra.batches(epoch, self.cfg.seed, self.cfg.batch_size) if self.data.extra else []
        if batches and len(extra) > len(batches):  # every interaction pair once per epoch
            batches = [batches[k % len(batches)] for k in range(len(extra))]
        bar = _bar(len(batches), f"epoch {epoch}", self.progress)
        self.optimizer.zero_grad(set_to_none=True)
        for k, idx in enumerate(batches):
            variants = sample_text_indices(self.data.pairs, idx, rng, self.cfg.title_prob)
            step_now = (k + 1) % self.cfg.grad_accum == 0 or k + 1 == len(batches)
            sync = nullcontext() if step_now or not self.dist.distributed else self.pair.no_sync()
            # a forward under no_sync: DDP all-reduces once per optimiser step, not per micro-batch
            with sync:
                loss, parts = self._loss(idx, variants, epoch)
            if extra:
                term = self.data.extra.loss(self, extra[k % len(extra)], epoch)
                parts["interactions"] = term.item()
                loss = loss + term
            (loss / self.cfg.grad_accum).backward()
            if step_now:
                if self.cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(
                        [p for g in self.optimizer.param_groups for p in g["params"]], self.cfg.grad_clip
                    )
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.scheduler.step()
                self.model.clamp_()
                self.step += 1
            parts["loss"] = loss.item()
            for key, v in parts.items():
                totals[key] = totals.get(key, 0.0) + v
            n += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    loss=f"{parts['loss']:.3f}", best=_fmt(self.best_metric)
                )  # no float() of a grad tensor: UserWarning
        if bar is not None:
            bar.close()
        return {f"train_{k}": v / max(n, 1) for k, v in totals.items()}

    # ---------------------------------------------------------------- evaluation
    @torch.no_grad()
    def _gallery(self) -> torch.Tensor:
        """Image embeddings of every product of the catalog (all splits): the evaluation gallery."""
        n = len(self.data.pairs)
        bs = max(self.cfg.batch_size, 64)
        return torch.cat([self._image_side(list(range(s, min(n, s + bs)))) for s in range(0, n, bs)])

    def _split_titles(self, idx: list[int]) -> torch.Tensor:
        """The titles (text variant 0) of products ``idx`` in the joint space, ``(len(idx), D)``."""
        bs = max(self.cfg.batch_size, 64)
        return torch.cat(
            [self._text_side(idx[s : s + bs], [0] * len(idx[s : s + bs])) for s in range(0, len(idx), bs)]
        ).float()

    def _title_queries(
        self, split: str, titles: torch.Tensor, max_queries: int | None = None
    ) -> tuple[torch.Tensor, list[int], list[int]]:
        """The leaderboard protocol's queries of ``split``: its distinct titles (rows of ``titles``,
        the split's :meth:`_split_titles`), their keys, and the key of every gallery product."""
        from prodsearch.evaluation.protocols import distinct_title_queries

        idx = self.data.split[split]
        src, labels = distinct_title_queries(
            self.data.pairs.titles, np.asarray(idx), max_queries=max_queries or self.cfg.val_max_queries
        )
        row_of = {i: r for r, i in enumerate(idx)}
        q_rows = [row_of[int(i)] for i in src]
        return titles[q_rows], labels[src].tolist(), labels.tolist()

    @torch.no_grad()
    def fit_neighbours(self) -> dict[str, Any]:
        """Fit the neighbour-titles transfer (:mod:`prodsearch.training.neighbours`) on the
        validation split and attach it to the model when it helps there. Returns what was tried."""
        from prodsearch.evaluation.protocols import DEPTH
        from prodsearch.training.neighbours import fit_neighbour_titles, key_mixes

        d = self.data
        self.model.eval()
        self.model.neighbours = None
        if self.model.image_tower is not None or d.image_feats is None:
            return {"used": False, "why": "needs a locked image tower (photo features computed once)"}
        if len(d.split["val"]) < 2 or len(d.split["train"]) < 2:
            return {"used": False, "why": "no validation or training split"}
        train = d.split["train"]
        q, qk, dk = self._title_queries("val", self._split_titles(d.split["val"]))
        module, report = fit_neighbour_titles(
            d.image_feats[torch.as_tensor(train)],
            self._split_titles(train).cpu(),
            d.image_feats,
            self._gallery().float().cpu(),
            q.cpu(),
            lambda queries, gallery: retrieval_metrics(queries, gallery, qk, dk, max_rank=DEPTH),
            len(qk),
            mixes=key_mixes(d.image_feats.shape[1], d.image_parts),
        )
        if module is not None:
            self.model.neighbours = module.to(self.device)
        return report

    @torch.no_grad()
    def evaluate(self, split: str = "val", max_queries: int | None = None) -> dict[str, float]:
        """Text -> image retrieval, the leaderboard protocol of ``prodsearch evaluate``: queries = the
        split's distinct titles, gallery = the photos of EVERY product of the catalog (train, val and
        test: what search ranks against), relevant = every product with the same normalised title;
        plus the in-batch contrastive loss on the split's title/photo pairs. ``{split}_gallery`` says
        the gallery size."""
        idx = self.data.split[split]
        if len(idx) < 2:
            return {}
        self.model.eval()
        p = self.data.pairs
        t = self._split_titles(idx)
        gallery = self._gallery().float()
        im = gallery[torch.as_tensor(idx)]
        losses = []
        for s in range(0, len(idx), self.cfg.batch_size):
            sl = idx[s : s + self.cfg.batch_size]
            if len(sl) < 2:
                continue
            mask = positive_mask(
                torch.as_tensor([p.title_group[i] for i in sl]),
                torch.as_tensor([p.image_group[i] for i in sl]),
            )
            losses.append(
                float(
                    self.contrastive(
                        t[s : s + len(sl)], im[s : s + len(sl)], self.model.scale(), mask.to(self.device)
                    )
                )
            )
        from prodsearch.evaluation.protocols import DEPTH

        q, q_keys, doc_keys = self._title_queries(split, t, max_queries)
        m = retrieval_metrics(q, gallery, q_keys, doc_keys, max_rank=DEPTH)
        out = {f"{split}_{k}": v for k, v in m.items()}
        out[f"{split}_gallery"] = len(gallery)
        out[f"{split}_queries"] = len(q_keys)
        if losses:
            out[f"{split}_loss"] = sum(losses) / len(losses)
        return out

    # ---------------------------------------------------------------- fit
    def state(self) -> dict[str, Any]:
        model_state = self.model.head_state_dict() if self._towers_frozen() else self.model.state_dict()
        return {
            "model": model_state,
            "losses": {
                name: m.state_dict()
                for name, m in (("siglip", self.siglip), ("attribute", self.attribute))
                if m is not None
            },
            "attribute_classes": self.attribute.classes if self.attribute is not None else {},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "config": self.cfg.to_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "metric_name": self.cfg.early_stop_metric,
        }

    def _towers_frozen(self) -> bool:
        return self.model.text_tower is None and self.model.image_tower is None

    def load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"], strict=not self._towers_frozen())
        for name, sd in state.get("losses", {}).items():
            module = getattr(self, name, None)
            if module is not None:
                module.load_state_dict(sd)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.best_metric, self.best_epoch = state["best_metric"], int(state.get("best_epoch", 0))
        self.bad_epochs = int(state.get("bad_epochs", 0))

    def _improved(self, value: float) -> bool:
        if self.best_metric is None:
            return True
        return (
            value > self.best_metric
            if HIGHER_IS_BETTER[self.cfg.early_stop_metric]
            else value < self.best_metric
        )

    def fit(self) -> tuple[list[dict[str, Any]], bool]:
        """Train from ``self.epoch`` to ``cfg.epochs``; returns (this call's metric rows, stopped early)."""
        history: list[dict[str, Any]] = []
        stopped = False
        has_val = len(self.data.split["val"]) >= 2
        while self.epoch < self.cfg.epochs:
            epoch = self.epoch + 1
            t0 = time.perf_counter()
            row: dict[str, Any] = {"epoch": epoch}
            row.update(self.train_epoch(epoch))
            row["epoch_seconds"] = round(time.perf_counter() - t0, 3)
            if has_val and self.dist.is_main:  # rank 0 evaluates and decides; the others wait for it
                row.update(self.evaluate("val"))
            row.update(
                step=self.step + 0, lr=self.scheduler.get_last_lr()[0], logit_scale=self.model.scale().item()
            )
            self.epoch = epoch
            if self.dist.is_main:
                metric = row.get(self.cfg.early_stop_metric)
                if metric is None or self._improved(metric):
                    self.best_metric, self.best_epoch, self.bad_epochs = metric, epoch, 0
                    save_checkpoint(self.out / "best.pt", self.state())
                else:
                    self.bad_epochs += 1
                self._record(row)
            # every rank takes rank 0's metrics and early-stopping state: all ranks stop together
            row, self.best_metric, self.best_epoch, self.bad_epochs = share_from_main(
                self.dist, (row, self.best_metric, self.best_epoch, self.bad_epochs)
            )
            history.append(row)
            if has_val and self.cfg.patience > 0 and self.bad_epochs >= self.cfg.patience:
                log.info(
                    "early stopping: %s did not improve for %d epochs",
                    self.cfg.early_stop_metric,
                    self.bad_epochs,
                )
                stopped = True
                break
        if self.writer is not None:
            self.writer.close()
        return history, stopped

    def _record(self, row: dict[str, Any]) -> None:
        """The epoch's files (rank 0 only): last checkpoint, metrics row, TensorBoard scalars, log line."""
        epoch = row["epoch"]
        save_checkpoint(self.out / "last.pt", self.state())
        with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "epoch":
                    self.writer.add_scalar(k, v, epoch)
            self.writer.flush()
        log.info(
            "epoch %d: %s", epoch, {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}
        )


def _summary_writer(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is the optional 'train' extra
        log.warning("tensorboard is not installed; no TensorBoard logs (pip install 'prodsearch[train]')")
        return None
    return SummaryWriter(str(path))


def _bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"
