"""Data-parallel training with torch.distributed (DDP): gloo on CPUs, NCCL on GPUs.

``prodsearch train`` is data-parallel when launched by ``torchrun --nproc-per-node N -m
prodsearch.cli train ...`` (or ``prodsearch train --nproc N``, which runs that command): each
process calls :func:`init_from_env`, and the :class:`~prodsearch.training.loop.Trainer` runs
in its distributed mode with the helpers below. ``batch_size`` stays the *global* batch: each
rank embeds its :func:`shard` of every global batch.

Contrastive losses need every other item of the batch as a negative, so plain DDP (each rank's
loss over its own shard) is *not* the same as one process with the whole batch. As open_clip's
``--gather-with-grad`` does, each rank embeds its shard, :func:`gather_with_grad` collects every
rank's embeddings (rank order = batch order), and the whole loss (contrastive, attribute CE,
matching) is computed over the global batch on every rank. Autograd's all-gather sends each rank
the sum of all ranks' gradients for its own rows (world x the global loss's gradient) and DDP
averages parameter gradients over ranks, so one step on ``W`` ranks with ``B/W`` items each
equals one step of one process on ``B`` items (``tests/distributed/test_ddp_train.py``).
Parameters that act only on the gathered batch (the logit scale, the matching head; the loss
modules are outside the model) get the same full gradient on every rank and are left out of
DDP's all-reduce.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from prodsearch import errors
from prodsearch.errors import ConfigError

log = logging.getLogger(__name__)
T = TypeVar("T")


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
    def distributed(self) -> bool:
        return self.world_size > 1

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
    if backend == "nccl":
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world)
    log.info("rank %d/%d (%s) joined", rank, world, backend)
    return DistInfo(rank, world, local, backend)


def is_main_process() -> bool:
    """Whether this process reports for the job: rank 0 under torchrun, or not distributed."""
    return int(os.environ.get("RANK", "0")) == 0


def shard(batch: Sequence[Any], info: DistInfo) -> list[Any]:
    """This rank's contiguous share of a global batch (rank order = batch order after gathering).

    The global batch must split evenly, so that every rank contributes the same number of rows.
    """
    n, w = len(batch), info.world_size
    if n % w:
        raise ConfigError(f"a global batch of {n} does not split over {w} ranks; use a multiple of {w}")
    per = n // w
    return list(batch[info.rank * per : (info.rank + 1) * per])


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward hands each rank the sum over ranks of the gradients of its rows
    (an all-reduce, then this rank's slice: gloo has no reduce-scatter). Public collectives only:
    ``torch.distributed.nn.functional.all_gather`` is deprecated."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rows = slice(dist.get_rank() * x.shape[0], (dist.get_rank() + 1) * x.shape[0])
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rows]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """``(b, D)`` on each rank -> ``(W*b, D)``, rank order, differentiable (identity when not distributed)."""
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


class PairForward(nn.Module):
    """One ``forward`` for DDP to wrap: ``(text_args, image_args) -> (text (b, D), image (b, D))``.

    ``text_side(*text_args)`` / ``image_side(*image_args)`` embed this rank's rows with ``model``'s
    parameters (the trainer's own side functions: cached features or live towers), so DDP's
    hooks see the forward pass that produced the gradients it reduces.
    """

    def __init__(
        self,
        model: nn.Module,
        text_side: Callable[..., torch.Tensor],
        image_side: Callable[..., torch.Tensor],
    ):
        super().__init__()
        self.model = model
        self._text_side, self._image_side = text_side, image_side

    def forward(
        self, text_args: Sequence[Any], image_args: Sequence[Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self._text_side(*text_args), self._image_side(*image_args)


def wrap(
    pair: PairForward, info: DistInfo, *, ignore: Iterable[str] = (), find_unused: bool = False
) -> nn.Module:
    """``pair`` under DDP when distributed (``pair`` itself otherwise).

    ``ignore``: names of ``pair.model``'s parameters that DDP must not all-reduce (used only on
    the gathered global batch: every rank computes their full gradient). ``find_unused``: some
    trainable parameters may get no gradient in a step (e.g. a transformer's unused pooler).
    """
    if not info.distributed:
        return pair
    names = [f"model.{n}" for n in ignore]
    nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(pair, names)
    ids = [info.local_rank] if info.backend == "nccl" else None
    return nn.parallel.DistributedDataParallel(pair, device_ids=ids, find_unused_parameters=find_unused)


# ---------------------------------------------------------------------------- rank 0 decides
def _share(info: DistInfo, value: Any = None) -> Any:
    """Rank 0's ``value`` on every rank (a collective: every rank must call it)."""
    box = [value if info.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _leave_together() -> None:
    """Every rank knows rank 0 failed (it was shared): meet once more, then tear the group down
    on every rank before raising, so no rank exits with gloo still talking to a peer that has
    gone (which aborts the process with SIGABRT instead of raising)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _raise_shared(failure: tuple[str, str] | None) -> None:
    """Re-raise on this rank the error rank 0 hit (its prodsearch class, else RuntimeError),
    after leaving the process group with the other ranks."""
    if failure is None:
        return
    _leave_together()
    name, message = failure
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, errors.ProdsearchError):
        raise cls(message)
    raise RuntimeError(f"rank 0 failed: {name}: {message}")


def on_main(info: DistInfo, fn: Callable[[], T]) -> T:
    """``fn()`` on rank 0 only (e.g. guarding and emptying the run folder); its result, or its
    error, on every rank. Single process: just ``fn()``."""
    if not info.distributed:
        return fn()
    result, failure = None, None
    if info.is_main:
        try:
            result = fn()
        except Exception as err:
            failure = (type(err).__name__, str(err))
            _share(info, (None, failure))
            _leave_together()
            raise
    result, failure = _share(info, (result, failure))
    _raise_shared(failure)
    return result  # type: ignore[return-value]


def main_first(info: DistInfo, fn: Callable[[], T]) -> T:
    """``fn()`` on rank 0, then on the other ranks, which find what it cached (frozen-tower
    features: encoded once, not once per rank). An error on rank 0 is raised on every rank."""
    if not info.distributed:
        return fn()
    if info.is_main:
        try:
            result = fn()
        except Exception as err:
            _share(info, (type(err).__name__, str(err)))
            _leave_together()
            raise
        _share(info, None)
        return result
    _raise_shared(_share(info))
    return fn()


def share_from_main(info: DistInfo, value: T) -> T:
    """Rank 0's ``value`` (an epoch's metrics and early-stopping decision) on every rank."""
    return _share(info, value) if info.distributed else value
