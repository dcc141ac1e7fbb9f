"""Two gloo processes with half the batch each take the same step as one process with the whole
batch (heads training on cached features: JointModel heads + the contrastive loss)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch

from prodsearch.distributed.ddp import DistInfo, contrastive_step, init_from_env, shard, wrap
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


def _train(info: DistInfo) -> dict[str, torch.Tensor]:
    model = _model()
    pair = wrap(model, info)
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    text, image, target = _data()
    rows = shard(list(range(BATCH)), info)
    for step in range(STEPS):
        contrastive_step(pair, opt, MultiPositiveInfoNCE(), text[step, rows], image[step, rows], target)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        {"RANK": str(rank), "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    )
    torch.set_num_threads(1)
    info = init_from_env("gloo")
    assert info.world_size == world and info.rank == rank and info.is_main == (rank == 0)
    torch.save(_train(info), Path(out) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two spawned Python processes importing torch
def test_two_processes_equal_one_with_the_doubled_batch(tmp_path):
    single = _train(DistInfo())
    torch.multiprocessing.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    before = _model().state_dict()
    assert any(not torch.equal(single[k], before[k]) for k in single)  # the steps did change the heads
    for key, want in single.items():
        for r, got in enumerate(ranks):
            torch.testing.assert_close(got[key], want, atol=2e-5, rtol=1e-4, msg=f"rank {r}: {key}")


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
