"""Graded interaction pairs in training move the model toward the clicked products."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import COLOURS, TinyFactory, synthetic_products

from prodsearch.interactions.log import Interaction
from prodsearch.interactions.signals import graded_pairs
from prodsearch.interactions.training import weighted_query_loss
from prodsearch.training.config import TrainConfig
from prodsearch.training.embedder import load_trained_embedder
from prodsearch.training.main import train

FAST = dict(
    epochs=4, batch_size=8, embed_dim=8, head_hidden=32, lr=1e-2, warmup_fraction=0.0, patience=0,
    val_fraction=0.2, test_fraction=0.2,
)  # fmt: skip
# shoppers who type a colour buy the next colour's products: the catalog's own pairs teach the opposite
SHIFT = {c: COLOURS[(i + 1) % len(COLOURS)] for i, c in enumerate(COLOURS)}


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    from helpers import tiny_bert_dir

    return tiny_bert_dir(tmp_path_factory.mktemp("bert"))


def _clicks(products):
    out = []
    for i, p in enumerate(products):
        for c, target in SHIFT.items():
            if p.attributes["colour"] == target:
                out.append(Interaction(p.id, "purchase" if i % 2 else "click", float(i), query=f"{c} please"))
    return out


def _mrr(run, factory, products):
    emb = load_trained_embedder(run, factory=factory)
    photos = emb.encode_images([p.image_path for p in products])
    rr = []
    for c, target in SHIFT.items():
        scores = emb.encode_text([f"{c} please"])[0] @ photos.T
        order = np.argsort(-scores)
        rel = [r for r, j in enumerate(order) if products[j].attributes["colour"] == target]
        rr.append(1.0 / (rel[0] + 1))
    return float(np.mean(rr))


def test_interaction_pairs_move_queries_toward_clicked_products(tmp_path, bert_dir):
    products = synthetic_products(tmp_path / "photos")
    factory = TinyFactory(bert_dir)
    cfg = TrainConfig(**FAST)
    train(None, tmp_path / "plain", cfg, products=products, factory=factory, progress=False)
    pairs = graded_pairs(_clicks(products))
    assert {p.weight for p in pairs} == {1.0, 4.0} and all(p.kind == "text" for p in pairs)
    res = train(
        None, tmp_path / "learned", cfg, products=products, factory=factory, progress=False,
        interactions=pairs,
    )  # fmt: skip
    assert "train_interactions" in res.history[0]
    assert res.history[-1]["train_interactions"] < res.history[0]["train_interactions"]
    before, after = _mrr(tmp_path / "plain", factory, products), _mrr(tmp_path / "learned", factory, products)
    assert after > before + 0.2, (before, after)


def test_photo_queries_train_through_the_image_side(tmp_path, bert_dir):
    from fakes import make_photo

    products = synthetic_products(tmp_path / "photos")
    events = [
        Interaction(p.id, "click", float(i), query_image=str(make_photo(tmp_path / f"q{i}.png", "red", i)))
        for i, p in enumerate(products[:12])
    ]
    res = train(
        None, tmp_path / "run", TrainConfig(**{**FAST, "epochs": 1}), products=products,
        factory=TinyFactory(bert_dir), progress=False, interactions=graded_pairs(events),
    )  # fmt: skip
    assert res.history[0]["train_interactions"] > 0


def test_weighted_query_loss_matches_hand_computed_cross_entropy():
    import torch

    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    scale = torch.tensor(2.0)
    ce_row = -np.log(np.exp(2) / (np.exp(2) + 1))  # each row: positive logit 2, negative 0
    got = weighted_query_loss(q, t, scale, torch.tensor([0, 1]), torch.tensor([1.0, 3.0]))
    assert got.item() == pytest.approx(ce_row)
    # a heavier weight on a worse row raises the loss
    q2 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    light = weighted_query_loss(q2, t, scale, torch.tensor([0, 1]), torch.tensor([1.0, 1.0]))
    heavy = weighted_query_loss(q2, t, scale, torch.tensor([0, 1]), torch.tensor([1.0, 3.0]))
    assert heavy.item() > light.item()
