"""DDP helpers: why the loss must gather the global batch, and how batches split over ranks.

The two-process run through the real trainer is ``test_ddp_train.py``."""

from __future__ import annotations

import pytest
import torch

from prodsearch.distributed.ddp import DistInfo, init_from_env, on_main, shard, share_from_main
from prodsearch.training.losses import MultiPositiveInfoNCE
from prodsearch.training.model import JointModel

BATCH, TEXT_DIM, IMAGE_DIM, STEPS = 16, 12, 10, 3


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    text = torch.randn(STEPS, BATCH, TEXT_DIM, generator=g)
    image = torch.randn(STEPS, BATCH, IMAGE_DIM, generator=g)
    groups = torch.arange(BATCH) // 2  # pairs of items share a title: multi-positive targets
    return text, image, groups[:, None] == groups[None, :]


def _model() -> JointModel:
    torch.manual_seed(0)
    return JointModel(TEXT_DIM, IMAGE_DIM, embed_dim=8, head="mlp", head_hidden=16, dropout=0.0)


def test_local_loss_alone_would_differ():
    """Guards the test above: without gathering, each rank's loss sees only its half of the batch."""
    text, image, target = _data()
    full, m = MultiPositiveInfoNCE(), _model()
    with torch.no_grad():
        t, im = m.encode_text(feats=text[0]), m.encode_image(feats=image[0])
        whole = full(t, im, m.scale(), target).item()
        halves = [full(t[s], im[s], m.scale(), target[s, s]).item() for s in (slice(0, 8), slice(8, 16))]
    assert abs(whole - sum(halves) / 2) > 1e-3


def test_uneven_batch_is_refused():
    from prodsearch.errors import ConfigError

    with pytest.raises(ConfigError, match="a global batch of 15 does not split over 2 ranks"):
        shard(list(range(15)), DistInfo(rank=0, world_size=2))


def test_single_process_helpers_are_plain_calls(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = init_from_env()
    assert info == DistInfo() and info.is_main and not info.distributed
    assert shard([1, 2, 3], info) == [1, 2, 3]
    assert on_main(info, lambda: 7) == 7 and share_from_main(info, {"a": 1}) == {"a": 1}
    assert shard(list(range(8)), DistInfo(rank=1, world_size=2)) == [4, 5, 6, 7]
