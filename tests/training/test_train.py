from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from helpers import FAST, TinyFactory, synthetic_products

from prodsearch.errors import ConfigError, EncoderError
from prodsearch.training.config import TrainConfig
from prodsearch.training.embedder import load_trained_embedder, load_trained_model
from prodsearch.training.main import train, train_from_cli


@pytest.fixture
def products(tmp_path):
    return synthetic_products(tmp_path / "photos")


def test_heads_run_lowers_loss_and_writes_every_artefact(tmp_path, products, bert_dir):
    out = tmp_path / "run"
    res = train(
        None, out, TrainConfig(**FAST), products=products, factory=TinyFactory(bert_dir), progress=False
    )
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
    assert {"val_r1", "val_r10", "val_mrr", "val_loss"} <= set(rows[0])
    for name in ("config.json", "split.json", "best.pt", "last.pt", "model.pt", "run.json"):
        assert (out / name).is_file(), name
    from prodsearch.training.checkpoint import load_checkpoint

    best, release = load_checkpoint(out / "best.pt"), load_checkpoint(out / "model.pt")
    assert {"model", "optimizer", "scheduler", "config", "step", "best_metric"} <= set(best)
    assert "optimizer" not in release and release["step"] == best["step"]
    assert any(p.name.startswith("events.out.tfevents") for p in (out / "tb").iterdir())
    assert json.loads((out / "config.json").read_text())["embed_dim"] == 8
    split = json.loads((out / "split.json").read_text())
    assert sum(len(v) for v in split.values()) == len(products)
    assert res.epochs_run == 2 and res.step == rows[1]["step"] and "test_mrr" in res.test_metrics
    # the run says which columns the attribute term classified (their values on >= 5 training
    # products) and why not the others (one year on every product)
    columns = json.loads((out / "run.json").read_text())["attribute_columns"]
    train_ids = set(split["train"])
    expected = {}
    for col in ("colour", "kind", "gender"):
        counts = Counter(p.attributes[col] for p in products if p.id in train_ids)
        expected[col] = sum(n >= 5 for n in counts.values())
    assert min(expected.values()) >= 2 and columns["classified"] == expected
    assert columns["skipped"] == {"year": "1 value(s) on >= 5 training products"}

    emb = load_trained_embedder(out, factory=TinyFactory(bert_dir))
    assert emb.aligned and emb.text.dim == emb.image.dim == 8
    t = emb.encode_text(["red shirt", "blue bag"])
    i = emb.encode_images([products[0].image_path])
    assert t.shape == (2, 8) and i.shape == (1, 8)
    assert np.allclose(np.linalg.norm(t, axis=1), 1, atol=1e-5)
    assert emb.spec()["text"]["checkpoint"] == emb.spec()["image"]["checkpoint"] != ""


def test_run_folder_guard_and_overwrite(tmp_path, products, bert_dir):
    out = tmp_path / "run"
    cfg = TrainConfig(**{**FAST, "epochs": 1})
    train(None, out, cfg, products=products, factory=TinyFactory(bert_dir), progress=False)
    with pytest.raises(ConfigError, match="already holds a training run"):
        train(None, out, cfg, products=products, factory=TinyFactory(bert_dir), progress=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a prodsearch run"):
        train(
            None, other, cfg, products=products, factory=TinyFactory(bert_dir), progress=False, overwrite=True
        )
    assert (other / "notes.txt").read_text() == "mine"
    train(None, out, cfg, products=products, factory=TinyFactory(bert_dir), progress=False, overwrite=True)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_resume_continues_from_saved_step(tmp_path, products, bert_dir, monkeypatch):
    out = tmp_path / "run"
    r1 = train(
        None,
        out,
        TrainConfig(**{**FAST, "epochs": 1}),
        products=products,
        factory=TinyFactory(bert_dir),
        progress=False,
    )
    monkeypatch.setattr("prodsearch.training.main.TowerFactory", lambda: TinyFactory(bert_dir))
    monkeypatch.setattr(
        "prodsearch.training.main._read_products", lambda catalog, cfg, progress=False: products
    )
    with pytest.raises(ConfigError, match=r"cannot change \['lr'\]"):
        train_from_cli("cat.csv", out, overrides={"epochs": 2, "lr": 0.5}, resume=True, progress=False)
    r2 = train_from_cli("cat.csv", out, overrides={"epochs": 2}, resume=True, progress=False)
    assert r2.step == 2 * r1.step and r2.epochs_run == 2
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["step"] == r2.step


def test_resume_of_a_run_stored_before_the_attribute_classifier_option(
    tmp_path, products, bert_dir, monkeypatch
):
    """Such a run trained linear attribute classifiers on every column with classes: resuming keeps
    them, whatever today's defaults."""
    out = tmp_path / "run"
    cfg = TrainConfig(**{**FAST, "epochs": 1}, attribute_min_count=2, attribute_classifier="linear")
    train(None, out, cfg, products=products, factory=TinyFactory(bert_dir), progress=False)
    stored = json.loads((out / "config.json").read_text())
    del stored["attribute_classifier"], stored["attribute_min_coverage"]
    (out / "config.json").write_text(json.dumps(stored))
    monkeypatch.setattr("prodsearch.training.main.TowerFactory", lambda: TinyFactory(bert_dir))
    monkeypatch.setattr(
        "prodsearch.training.main._read_products", lambda catalog, cfg, progress=False: products
    )
    r2 = train_from_cli("cat.csv", out, overrides={"epochs": 2}, resume=True, progress=False)
    assert r2.epochs_run == 2
    from prodsearch.training.checkpoint import load_checkpoint

    state = load_checkpoint(out / "last.pt")
    assert (
        state["config"]["attribute_classifier"] == "linear"
        and "heads.0.weight" in state["losses"]["attribute"]
    )
    assert state["config"]["attribute_min_coverage"] == 0.0  # no coverage bar before it existed


def test_early_stopping_stops(tmp_path, products, bert_dir):
    cfg = TrainConfig(**{**FAST, "epochs": 10, "lr": 0.0, "patience": 2})  # lr 0: the metric never improves
    res = train(None, tmp_path / "run", cfg, products=products, factory=TinyFactory(bert_dir), progress=False)
    assert res.stopped_early and res.epochs_run == 3 and res.best_epoch == 1


@pytest.mark.parametrize("freeze", ["top", "lora"])
def test_tower_paths_train_and_reload(tmp_path, products, bert_dir, freeze):
    cfg = TrainConfig(**{**FAST, "epochs": 1, "freeze": freeze, "unlocked_groups": 1, "matching_weight": 0.5})
    out = tmp_path / "run"
    res = train(None, out, cfg, products=products[:24], factory=TinyFactory(bert_dir), progress=False)
    assert "train_matching" in res.history[0] and np.isfinite(res.history[0]["train_loss"])
    emb = load_trained_embedder(out, factory=TinyFactory(bert_dir))
    # queries run the tuned SentenceTransformer modules through the search-time encoder (onnx where
    # it can); they equal the train-time tower + head on the same texts
    assert type(emb.text).__name__ == "HeadedEncoder"
    assert type(emb.text.base).__name__ == "SentenceTransformerEncoder"
    texts = ["red shirt", "green shoes for the beach", "bag"]
    model, _, _ = load_trained_model(out, factory=TinyFactory(bert_dir))
    with torch.no_grad():
        train_time = model.encode_text(texts=texts).numpy()
    assert np.abs(emb.encode_text(texts) - train_time).max() < 1e-4
    # the tuned weights are what runs: the search-time encoder's weights fingerprint is not the base model's
    from prodsearch.encoders.text import SentenceTransformerEncoder

    fresh = SentenceTransformerEncoder(TinyFactory(bert_dir).text_tower(None).st)
    assert emb.text.base.spec()["weights"] != fresh.spec()["weights"]
    assert type(emb.image).__name__ == ("TowerImageEncoder" if freeze == "top" else "HeadedEncoder")
    assert emb.encode_images([products[0].image_path]).shape == (1, 8)
    assert emb.encode_text(["red shirt"]).shape == (1, 8)


def test_incompatible_checkpoint_is_one_clear_error(tmp_path, bert_dir):
    out = tmp_path / "run"
    out.mkdir()
    (out / "best.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(EncoderError, match="could not be read"):
        load_trained_embedder(out, factory=TinyFactory(bert_dir))


def test_attribute_term_trains_and_reports_the_whole_catalog_gallery(tmp_path, products, bert_dir):
    res = train(
        None,
        tmp_path / "run",
        TrainConfig(**FAST, attribute_min_count=2),
        products=products,
        factory=TinyFactory(bert_dir),
        progress=False,
    )
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["train_attribute"] > 0  # colour, kind and gender are classified
    # one protocol: validation and test rank against every product of the catalog, and say so
    assert rows[0]["val_gallery"] == len(products) and res.test_metrics["test_gallery"] == len(products)


@pytest.mark.parametrize("freeze", ["heads", "top"])
def test_attribute_term_classified_by_the_value_names_text(tmp_path, products, bert_dir, freeze):
    """attribute_classifier=text: the value names go through the text side (cached features and
    head, or the live tower) and classify both embeddings; it trains on either side."""
    cfg = TrainConfig(
        **{**FAST, "epochs": 1},
        attribute_min_count=2,
        attribute_classifier="text",
        freeze=freeze,
        text_unlocked_groups=1,
        image_unlocked_groups=0,
    )
    train(None, tmp_path / "run", cfg, products=products, factory=TinyFactory(bert_dir), progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert np.isfinite(rows[0]["train_attribute"]) and rows[0]["train_attribute"] > 0


def test_attribute_term_is_skipped_with_its_reason_when_attributes_are_unique(
    tmp_path, products, bert_dir, caplog
):
    for i, p in enumerate(products):
        p.attributes = {"sku": f"sku-{i}"}
    with caplog.at_level("WARNING"):
        train(
            None,
            tmp_path / "run",
            TrainConfig(**FAST),
            products=products,
            factory=TinyFactory(bert_dir),
            progress=False,
        )
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "train_attribute" not in rows[0]
    assert "loss term 'attribute' skipped" in caplog.text and "sku" in caplog.text


def test_training_test_metrics_equal_the_evaluation_protocol(tmp_path, products, bert_dir):
    """One protocol under one name: the run's own test R@1/R@10/MRR are what `prodsearch evaluate`'s
    title2image reports for the same model on the same catalog (whole catalog as gallery)."""
    from prodsearch.catalog.images import file_sha256
    from prodsearch.evaluation.corpus import Corpus
    from prodsearch.evaluation.runner import _encode_corpus, evaluate

    for p in products:  # real content hashes (the fixture fakes one shared photo by its hash alone)
        p.image_hash = file_sha256(p.image_path)
    out = tmp_path / "run"
    res = train(
        None, out, TrainConfig(**FAST), products=products, factory=TinyFactory(bert_dir), progress=False
    )
    split = json.loads((out / "split.json").read_text())
    test = np.asarray([i for i, p in enumerate(products) if p.id in set(split["test"])], dtype=np.int64)
    emb = load_trained_embedder(out, factory=TinyFactory(bert_dir))
    corpus = Corpus(products, test=test)
    result = evaluate(corpus, [_encode_corpus("run", emb, products, False)], protocols=["title2image"])
    got = result["systems"]["image"]
    assert res.test_metrics["test_gallery"] == len(products)
    assert got["title2image/recall@1"] == pytest.approx(res.test_metrics["test_r1"], abs=1e-6)
    assert got["title2image/recall@10"] == pytest.approx(res.test_metrics["test_r10"], abs=1e-6)
    assert got["title2image/mrr"] == pytest.approx(res.test_metrics["test_mrr"], abs=1e-5)
