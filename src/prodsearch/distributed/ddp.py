"""Data-parallel contrastive training with torch.distributed (DDP): gloo on CPUs, NCCL on GPUs.

Launch one process per device with ``torchrun --nproc-per-node N`` (or Ray Train's TorchTrainer,
which sets the same environment variables); each process calls :func:`init_from_env`.

Contrastive losses need every other item of the batch as a negative, so plain DDP (each rank's
loss over its own shard) is *not* the same as one process with the whole batch. As open_clip's
``--gather-with-grad`` does, each rank embeds its shard, :func:`gather_with_grad` collects every
rank's embeddings (rank order = batch order), and the loss is computed over the global batch on
every rank. Autograd's all-gather sends each rank the sum of all ranks' gradients for its own
rows (world x the global loss's gradient) and DDP averages parameter gradients over ranks, so one
step on ``W`` ranks with ``B/W`` items each equals one step of one process on ``B`` items
(``tests/distributed/test_ddp.py``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from prodsearch.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (``world_size`` 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = "none"

    @property
    def is_main(self) -> bool:
        """The rank that writes the run folder (metrics, checkpoints), as in a single-process run."""
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        return torch.device(f"cuda:{self.local_rank}") if self.backend == "nccl" else torch.device("cpu")


def init_from_env(backend: str = "auto", init_method: str = "env://") -> DistInfo:
    """Join the process group described by torchrun's variables (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). Without them: a single process.

    ``backend``: ``"gloo"``, ``"nccl"`` or ``"auto"`` (NCCL when CUDA is available, else gloo).
    """
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return DistInfo()
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend not in ("gloo", "nccl"):
        raise ConfigError(f"distributed backend {backend!r} is unknown; expected gloo, nccl or auto")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world)
    if backend == "nccl":
        torch.cuda.set_device(local)
    log.info("rank %d/%d (%s) joined", rank, world, backend)
    return DistInfo(rank, world, local, backend)


def shard(batch: Sequence[Any], info: DistInfo) -> list[Any]:
    """This rank's contiguous share of a global batch (rank order = batch order after gathering).

    The global batch must split evenly, so that every rank contributes the same number of rows.
    """
    n, w = len(batch), info.world_size
    if n % w:
        raise ConfigError(f"a global batch of {n} does not split over {w} ranks; use a multiple of {w}")
    per = n // w
    return list(batch[info.rank * per : (info.rank + 1) * per])


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """``(b, D)`` on each rank -> ``(W*b, D)``, rank order, differentiable (identity when not distributed)."""
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


class PairForward(nn.Module):
    """Wraps a two-tower model so that DDP sees one ``forward``: ``(text_in, image_in) ->
    (text (b, D), image (b, D), logit scale)``, using ``encode_text(feats=...)`` / ``encode_image(feats=...)``
    of :class:`prodsearch.training.model.JointModel` (heads on cached tower features)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, text_feats: torch.Tensor, image_feats: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (
            self.model.encode_text(feats=text_feats),
            self.model.encode_image(feats=image_feats),
            self.model.scale(),
        )


def wrap(model: nn.Module, info: DistInfo) -> nn.Module:
    """``PairForward(model)`` under DDP when distributed (plain otherwise)."""
    pair = PairForward(model)
    if info.world_size == 1:
        return pair
    ids = [info.local_rank] if info.backend == "nccl" else None
    return nn.parallel.DistributedDataParallel(pair, device_ids=ids)


def contrastive_step(
    pair: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[..., torch.Tensor],
    text_feats: torch.Tensor,
    image_feats: torch.Tensor,
    target: torch.Tensor | None = None,
) -> float:
    """One training step on this rank's shard; the loss is over the gathered global batch.

    ``text_feats``/``image_feats``: ``(b, D_in)`` this rank's rows; ``target``: ``(B, B)`` positives
    of the *global* batch (``None``: the identity). Returns the global loss.
    """
    optimizer.zero_grad(set_to_none=True)
    t, im, scale = pair(text_feats, image_feats)
    t, im = gather_with_grad(t), gather_with_grad(im)
    loss = loss_fn(t, im, scale, target)
    loss.backward()
    optimizer.step()
    inner = pair.module if isinstance(pair, nn.parallel.DistributedDataParallel) else pair
    clamp = getattr(inner.model, "clamp_", None)  # JointModel keeps its logit scale in range
    if clamp is not None:
        clamp()
    return float(loss.detach())
