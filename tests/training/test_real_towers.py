"""The default tower factory with prodsearch's real encoders (bundled MiniLM + EfficientNet-Lite0)."""

from __future__ import annotations

import numpy as np
import pytest

from prodsearch.training.config import TrainConfig
from prodsearch.training.embedder import load_trained_embedder
from prodsearch.training.main import train


@pytest.mark.slow
def test_heads_on_real_encoders_through_the_catalog_reader(tmp_path, tiny_catalog):
    cfg = TrainConfig(
        epochs=2,
        batch_size=8,
        embed_dim=16,
        head_hidden=32,
        image_size=64,
        min_pairs=8,
        val_fraction=0.2,
        test_fraction=0.0,
        patience=0,
    )
    res = train(tiny_catalog, tmp_path / "run", cfg, progress=False)
    assert res.epochs_run == 2 and res.pairs["train"] + res.pairs["val"] == 12
    emb = load_trained_embedder(tmp_path / "run")
    t = emb.encode_text(["red shirt"])
    i = emb.image.encode_paths([str(tiny_catalog.parent / "images/p01.jpg")])
    assert t.shape == i.shape == (1, 16) and np.isclose(np.linalg.norm(i), 1, atol=1e-5)
    assert emb.spec()["image"]["base"]["name"] == "efficientnet-lite0"


@pytest.mark.slow
def test_train_time_text_tower_equals_search_time_minilm():
    """The fine-tuned text tower starts from exactly the features the index and queries use."""
    import torch

    from prodsearch.encoders.base import create_encoder
    from prodsearch.training.model import TextTower
    from prodsearch.training.towers import minilm_path

    texts = ["Navy Blue Shirts for men", "Lucera Women Silver Earrings", "t-shirt", "rouge robe d'été"]
    tower = TextTower.from_path(minilm_path()).eval()
    with torch.no_grad():
        train_time = tower(texts).numpy()
    search_time = create_encoder("minilm").encode(texts)
    assert np.abs(train_time - search_time).max() < 1e-4
