"""``prodsearch train`` data-parallel: two gloo processes through the real Trainer equal one process
with the same (global) batch, and the run folder is written once, by rank 0.

Exactness needs the same random draws: every rank draws the same global batches and text
variants (seeded per epoch); dropout masks are drawn per rank, so the comparison runs with
``dropout=0``; photo augmentation (live image towers) is seeded per (epoch, product), which
``test_augmentation_does_not_depend_on_the_batch`` checks. What differs is float summation
order (all-reduce, per-shard matmuls): weights agree to ~1e-6.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "training"))  # tiny towers and catalog of the training tests

from helpers import TinyFactory, synthetic_products  # noqa: E402

from fakes import FakeImageEncoder, FakeTextEncoder  # noqa: E402
from prodsearch.training.checkpoint import load_checkpoint  # noqa: E402
from prodsearch.training.config import TrainConfig  # noqa: E402
from prodsearch.training.main import train  # noqa: E402

# Heads on cached features with every loss term that reads the global batch: multi-positive
# contrastive with graded targets, attribute CE, the matching head; 2 micro-batches per step;
# early stopping on val_r1 (best at epoch 1, patience 2: the run stops after epoch 3 of 4).
CFG = dict(
    epochs=4,
    batch_size=8,
    grad_accum=2,
    embed_dim=8,
    head_hidden=16,
    dropout=0.0,
    lr=2e-2,
    warmup_fraction=0.2,
    val_fraction=0.2,
    test_fraction=0.2,
    loss="contrastive+attribute+matching",
    matching_weight=0.5,
    graded_positives=0.3,
    attribute_min_count=2,
    patience=2,
    early_stop_metric="val_r1",
    threads=1,
)
N_PRODUCTS = 48


def _log_calls(kind: str, n: int) -> None:
    with open(os.environ["ENCODE_LOG"], "a") as fh:
        fh.write(f"{os.environ.get('RANK', '-')} {kind} {n}\n")


class _CountingText(FakeTextEncoder):
    def encode(self, items, **kw):
        _log_calls("text", len(items))
        return super().encode(items, **kw)


class _CountingImage(FakeImageEncoder):
    def encode(self, items, **kw):
        _log_calls("image", len(items))
        return super().encode(items, **kw)


class CountingFactory(TinyFactory):
    """Fake frozen encoders that log every encode call with the rank that made it."""

    def text_encoder(self, cfg):
        return _CountingText()

    def image_encoder(self, cfg):
        return _CountingImage()


def _run(out: Path, products) -> dict:
    res = train(
        None, out, TrainConfig(**CFG), products=products, factory=CountingFactory(None), progress=False
    )
    return {
        "history": res.history,
        "epochs": res.epochs_run,
        "stopped": res.stopped_early,
        "step": res.step,
        "test": res.test_metrics,
    }


def _worker(rank: int, world: int, port: int, out: str, products, results: str) -> None:
    os.environ.update(
        {"RANK": str(rank), "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    )
    try:
        got = _run(Path(out), products)
    except Exception as err:  # noqa: BLE001 - the test reads what each rank raised
        got = {"error": f"{type(err).__name__}: {err}"}
    Path(results, f"rank{rank}.json").write_text(json.dumps(got))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _encodes(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


@pytest.mark.slow  # two spawned Python processes importing torch
def test_two_processes_train_like_one_and_write_the_run_folder_once(tmp_path, monkeypatch):
    products = synthetic_products(tmp_path / "photos", N_PRODUCTS)
    for p in products:  # drop the test's own duplicate photo: every pair distinct
        p.image_hash = f"u{p.id}"
    one, two, results = tmp_path / "one", tmp_path / "two", tmp_path / "results"
    results.mkdir()

    monkeypatch.setenv("PRODSEARCH_CACHE", str(tmp_path / "cache-one"))
    monkeypatch.setenv("ENCODE_LOG", str(tmp_path / "encodes-one.log"))
    single = _run(one, products)
    split = json.loads((one / "split.json").read_text())
    assert len(split["train"]) % 2 == 0  # the last global batch splits evenly: no item trimmed

    monkeypatch.setenv("PRODSEARCH_CACHE", str(tmp_path / "cache-two"))  # a cold cache for the 2 ranks
    monkeypatch.setenv("ENCODE_LOG", str(tmp_path / "encodes-two.log"))
    _spawn(two, products, results)

    # frozen-tower features were encoded once, by rank 0; rank 1 read them from the cache
    encodes = _encodes(tmp_path / "encodes-two.log")
    assert {r for r, *_ in encodes} == {"0"}, encodes
    assert sorted(encodes) == sorted(["0", *e[1:]] for e in _encodes(tmp_path / "encodes-one.log"))

    # the same run folder, written once
    names = sorted(p.name for p in one.iterdir())
    assert sorted(p.name for p in two.iterdir()) == names
    assert len(list((two / "tb").iterdir())) == 1
    for name in ("config.json", "split.json"):
        assert (two / name).read_text() == (one / name).read_text(), name
    rows = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines()]
    want = [json.loads(line) for line in (one / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for got_row, want_row in zip(rows, want, strict=True):
        assert set(got_row) == set(want_row)
        for key, value in want_row.items():
            if key != "epoch_seconds":
                assert got_row[key] == pytest.approx(value, rel=1e-4, abs=1e-5), (got_row["epoch"], key)
    run = json.loads((two / "run.json").read_text())
    assert run["status"] == "done" and run["result"]["step"] == single["step"] > 0

    # the same weights: the steps changed them, identically
    for ckpt in ("best.pt", "last.pt", "model.pt"):
        w1, w2 = _weights(one / ckpt), _weights(two / ckpt)
        assert sorted(w1) == sorted(w2)
        for key in w1:
            torch.testing.assert_close(w2[key], w1[key], atol=2e-5, rtol=1e-4, msg=f"{ckpt}: {key}")
    assert (
        load_checkpoint(two / "last.pt")["losses"].keys() == load_checkpoint(one / "last.pt")["losses"].keys()
    )

    # every rank returns rank 0's history and test metrics: they stopped early together
    ranks = [json.loads((results / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]
    assert single["stopped"] and single["epochs"] == 3
    assert (ranks[0]["stopped"], ranks[0]["epochs"], ranks[0]["step"]) == (True, 3, single["step"])
    assert ranks[0]["test"] == pytest.approx(single["test"], rel=1e-4, abs=1e-5)

    # an error rank 0 meets while guarding the run folder stops every rank with the same message
    again = tmp_path / "again"
    again.mkdir()
    _spawn(two, products, again)
    errors = [json.loads((again / f"rank{r}.json").read_text()).get("error", "") for r in range(2)]
    assert errors[0] == errors[1] and "ConfigError: run folder" in errors[0] and "--overwrite" in errors[0]
    assert len((two / "metrics.jsonl").read_text().splitlines()) == 3  # the run is untouched


def _spawn(out: Path, products, results: Path) -> None:
    torch.multiprocessing.spawn(
        _worker, args=(2, _free_port(), str(out), products, str(results)), nprocs=2, join=True
    )


def test_augmentation_does_not_depend_on_the_batch(tmp_path):
    """A live image tower's photo is augmented the same whichever batch (and so rank) it is in."""
    from prodsearch.training.data import build_pairs, split_pairs
    from prodsearch.training.loop import TrainData, Trainer
    from prodsearch.training.model import JointModel

    cfg = TrainConfig(freeze="full", epochs=1, batch_size=4, embed_dim=8, head_hidden=16, dropout=0.0)
    pairs = build_pairs(synthetic_products(tmp_path / "photos", 12), n_variants=2, seed=0, min_pairs=2)
    tower, preprocess, _ = TinyFactory(None).image_tower(cfg)
    model = JointModel(16, tower.dim, 8, head_hidden=16, dropout=0.0, image_tower=tower)
    data = TrainData(pairs=pairs, split=split_pairs(pairs, 0.2, 0.2, 0), preprocess=preprocess)
    trainer = Trainer(model, cfg, data, tmp_path / "run", progress=False)
    model.eval()  # BatchNorm from running statistics: rows do not depend on their batch
    with torch.no_grad():
        whole = trainer._image_side([0, 1, 2, 3], epoch=1)
        halves = torch.cat([trainer._image_side([0, 1], epoch=1), trainer._image_side([2, 3], epoch=1)])
        other_epoch = trainer._image_side([0, 1, 2, 3], epoch=2)
        plain = trainer._image_side([0, 1, 2, 3])
    torch.testing.assert_close(halves, whole)
    assert not torch.allclose(other_epoch, whole)  # it does augment, differently each epoch
    assert not torch.allclose(plain, whole)


def test_a_global_batch_that_does_not_split_is_refused(tmp_path, monkeypatch):
    from prodsearch.errors import ConfigError
    from prodsearch.training.main import join_process_group

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr("prodsearch.training.main.init_from_env", _fake_two_ranks)
    with pytest.raises(ConfigError, match="batch_size 15 .* does not split over 2 processes"):
        join_process_group(TrainConfig(batch_size=15, device="cpu"))


def _fake_two_ranks(backend: str):
    from prodsearch.distributed.ddp import DistInfo

    assert backend == "gloo"
    return DistInfo(rank=0, world_size=2, backend=backend)


@pytest.mark.slow  # torchrun starts 2 processes that load the real (bundled) towers: ~35 s
def test_torchrun_cli_trains_like_one_process(tmp_path, tiny_catalog, monkeypatch, capsys):
    """The command of docs/deployment.md, on the default towers (MiniLM, EfficientNet-Lite0)."""
    import subprocess

    from prodsearch.cli import main

    monkeypatch.setenv("PRODSEARCH_CACHE", str(tmp_path / "cache"))
    args = ["--epochs", "2", "--batch-size", "4", "--embed-dim", "8", "--head-hidden", "16", "--dropout", "0"]
    args += ["--val-fraction", "0.25", "--test-fraction", "0", "--threads", "1", "--no-progress"]
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    two = tmp_path / "two"
    cmd = [*launch, "-m", "prodsearch.cli", "train", str(tiny_catalog), "--out", str(two), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained 2 epoch(s), 4 steps") == 1, done.stdout  # rank 0 reports
    assert done.stderr.count("loss term 'attribute' skipped") == 1  # rank 1 logs errors only

    one = tmp_path / "one"
    with pytest.raises(SystemExit) as exc:
        main(["train", str(tiny_catalog), "--out", str(one), *args])
    assert exc.value.code in (0, None)
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    rows = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines()]
    want = [json.loads(line) for line in (one / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == len(want) == 2
    for got_row, want_row in zip(rows, want, strict=True):
        for key, value in want_row.items():
            if key != "epoch_seconds":
                assert got_row[key] == pytest.approx(value, rel=1e-4, abs=1e-5), (got_row["epoch"], key)
