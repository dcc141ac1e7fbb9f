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

    # an index built with the run: untuned photo vectors at the size an untuned index of these
    # photos uses (40x52 photos: 128 px), identical to that index's; the joint ones at the run's 64 px
    from prodsearch.search.recipe import EmbedderRecipe

    photos = sorted(str(p) for p in (tiny_catalog.parent / "images").glob("*.jpg"))
    recipe = EmbedderRecipe(model=str(tmp_path / "run")).sized_for(photos)
    assert recipe.image_options == {"image_size": 128}
    indexed, untuned = recipe.build(), EmbedderRecipe().sized_for(photos).build()
    assert indexed.spec()["image"] == untuned.spec()["image"]
    np.testing.assert_allclose(
        indexed.image.encode_paths(photos), untuned.image.encode_paths(photos), atol=1e-5
    )
    assert indexed.joint.spec()["image"]["base"]["preprocess"]["size"] == 64
    # an index built before: no size stored, so the untuned vectors stay at the run's size
    old = EmbedderRecipe(model=str(tmp_path / "run")).to_dict()
    assert EmbedderRecipe(model=str(tmp_path / "run")).sized_for(photos, old=old).image_options == {}


def test_a_locked_image_tower_runs_at_its_own_size_a_training_one_near_the_photos(tmp_path):
    from PIL import Image

    from prodsearch.training.data import PairSet
    from prodsearch.training.main import resolve_image_size

    paths = []
    for i in range(6):  # 60x80 photos: native size 128 px
        paths.append(str(tmp_path / f"{i}.jpg"))
        Image.new("RGB", (60, 80), (10 * i, 100, 30)).save(paths[-1])
    pairs = PairSet(ids=[], titles=[], texts=[], image_paths=paths, image_hashes=[])

    def size(**kw) -> int | None:
        return resolve_image_size(TrainConfig(**kw), pairs, None).image_size

    assert size() == 224  # heads on cached features of the locked tower
    assert size(image_tower="efficientnet-lite2") == 260
    assert size(freeze="top", image_unlocked_groups=2) == 128  # the tower trains: every pixel, every epoch
    assert size(freeze="full") == 128
    assert size(freeze="top", image_unlocked_groups=0, text_unlocked_groups=2) == 224  # LiT: image locked
    assert size(image_size=96) == 96  # given: kept


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
