"""Cached activations below the unlocked blocks of the image tower (issue 8): the split forward pass
equals the whole one, the cache equals the tower on the photo, and training with a partly unlocked
tower runs only the unlocked part (the photos are read once, for the cache)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import SplittableFactory, synthetic_products

from prodsearch.encoders.image import RICH_TAPS, ImagePreprocessor, build_backbone
from prodsearch.training.activations import cached_activations, can_cache
from prodsearch.training.augment import ColourSafeAugment
from prodsearch.training.config import TrainConfig
from prodsearch.training.main import live_sides, train
from prodsearch.training.model import ImageTower

SIZE = 64


def _tower(unlocked: int = 4, size: int = SIZE, pretrained: bool = False) -> ImageTower:
    torch.manual_seed(0)
    bb = build_backbone("lite0", image_size=size, pretrained=pretrained, taps=RICH_TAPS)
    tower = ImageTower(bb, bb.dim)
    tower.lock(unlocked, freeze_norm_stats=True)
    return tower


def _pixels(n: int = 6, size: int = SIZE) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def test_split_forward_equals_the_whole_forward_at_every_split():
    tower = _tower()
    x = _pixels()
    tower.eval()
    with torch.no_grad():
        whole = tower(x)
        for start in (1, 4, 5, 11, 13, 16):  # below, at and above the taps (4, 10, 15)
            torch.testing.assert_close(tower.top(*tower.bottom(x, start)), whole, atol=1e-5, rtol=1e-5)
    assert torch.allclose(whole.norm(dim=-1), torch.ones(len(x)), atol=1e-5)


def test_locked_blocks_are_a_fixed_function_in_training_mode():
    """What makes the bottom cacheable: in train mode the locked blocks use running statistics and
    no drop-connect, so the bottom's output is the eval-mode output."""
    tower = _tower(unlocked=4)
    start = tower.first_trainable_block()
    assert start == 13  # 16 blocks + head: the top 4 groups are blocks 13-15 and the head
    x = _pixels()
    with torch.no_grad():
        tower.eval()
        ref = tower.bottom(x, start)[0]
        tower.train()
        assert not tower.backbone.net._blocks[12].training and tower.backbone.net._blocks[13].training
        torch.testing.assert_close(tower.bottom(x, start)[0], ref)
        torch.manual_seed(3)  # drop-connect in the unlocked blocks draws the same numbers on both paths
        split = tower.top(*tower.bottom(x, start))
        torch.manual_seed(3)
        torch.testing.assert_close(split, tower(x))


def test_what_cannot_be_cached_says_why():
    assert can_cache(None, True)[0] is None
    assert "freeze_norm_stats" in can_cache(_tower(), False)[1]
    assert "every block" in can_cache(_tower(unlocked=17), True)[1]
    assert "stem" in can_cache(_tower(unlocked=18), True)[1]
    assert can_cache(_tower(unlocked=1), True)[0] == 16  # only the head trains


def test_cached_views_equal_the_tower_on_the_photo_and_are_reused(tmp_path, monkeypatch):
    from prodsearch.catalog.images import load_image

    products = synthetic_products(tmp_path / "photos", n=10)
    paths = [p.image_path for p in products]
    keys = [f"k{i}" for i in range(len(paths))]
    tower, pre = _tower(pretrained=True), ImagePreprocessor(SIZE)  # ImageNet weights: realistic ranges
    start = tower.first_trainable_block()
    acts = cached_activations(
        tower, pre, paths, keys, start=start, views=3, seed=0, augment=ColourSafeAugment(), batch_size=4
    )
    assert acts.views == 3 and len(acts) == 10 and acts.act.dtype == np.float16
    tower.eval()
    with torch.no_grad():
        whole = tower(torch.stack([pre(load_image(p)) for p in paths]))
        cached = tower.top(*acts.batch(range(10), [0] * 10))
        augmented = tower.top(*acts.batch(range(10), [1] * 10))
    cos = (whole * cached).sum(-1)
    assert cos.min() > 0.99999  # float16 rounding of the cached activation only
    assert (whole * augmented).sum(-1).max() < 0.9999  # view 1 is another view of the photo

    def boom(*a, **k):
        raise AssertionError("the bottom ran again")

    monkeypatch.setattr(tower, "bottom", boom)
    again = cached_activations(
        tower, pre, paths, keys, start=start, views=3, seed=0, augment=ColourSafeAugment(), batch_size=4
    )
    np.testing.assert_array_equal(np.asarray(again.act), np.asarray(acts.act))


@pytest.mark.parametrize("cache", [True, False])
def test_partly_unlocked_image_tower_trains_only_its_top(tmp_path, bert_dir, monkeypatch, cache):
    import prodsearch.catalog.images as images

    products = synthetic_products(tmp_path / "photos", n=24)
    reads = []
    real_load = images.load_image
    monkeypatch.setattr(images, "load_image", lambda p: reads.append(p) or real_load(p))
    cfg = TrainConfig(
        epochs=2,
        batch_size=8,
        embed_dim=8,
        head_hidden=16,
        lr=1e-2,
        tower_lr=1e-2,
        warmup_fraction=0.0,
        patience=0,
        val_fraction=0.2,
        test_fraction=0.0,
        freeze="top",
        image_unlocked_groups=2,
        text_unlocked_groups=0,
        cache_activations=cache,
        activation_views=2,
    )
    assert live_sides(cfg) == (False, True)  # LiT the other way round: locked text, live image top
    factory = SplittableFactory(bert_dir)
    out = tmp_path / "run"
    res = train(None, out, cfg, products=products, factory=factory, progress=False)
    assert np.isfinite(res.history[-1]["train_loss"])
    if cache:  # every photo view read once, for the cache; the steps never open a photo
        assert len(reads) == 2 * len(products)
    else:  # the photos are read at every step and evaluation
        assert len(reads) > 2 * len(products)
    state = torch.load(out / "model.pt", weights_only=False)["model"]
    fresh = factory.image_tower(cfg)[0].state_dict()
    top = "image_tower.backbone.net._blocks.15._project_conv.weight"
    below = "image_tower.backbone.net._blocks.14._project_conv.weight"
    assert not torch.equal(state[top], fresh[top.removeprefix("image_tower.")])
    assert torch.equal(state[below], fresh[below.removeprefix("image_tower.")])
    assert not any(k.startswith("text_tower.") for k in state)


def test_the_cache_key_follows_the_weights_of_the_locked_bottom():
    from prodsearch.training.activations import _bottom_fingerprint

    a, b, pretrained = _tower(), _tower(), _tower(pretrained=True)
    assert _bottom_fingerprint(a, 13) == _bottom_fingerprint(b, 13)
    assert _bottom_fingerprint(a, 13) != _bottom_fingerprint(pretrained, 13)
    assert _bottom_fingerprint(a, 13) != _bottom_fingerprint(a, 12)
    with torch.no_grad():  # a change above the split does not invalidate the cache; below it does
        a.backbone.net._blocks[13]._project_conv.weight.add_(1.0)
        assert _bottom_fingerprint(a, 13) == _bottom_fingerprint(b, 13)
        a.backbone.net._blocks[2]._project_conv.weight.add_(1.0)
        assert _bottom_fingerprint(a, 13) != _bottom_fingerprint(b, 13)


def test_a_heads_run_warm_starts_a_tower_fine_tune_and_a_misfit_is_refused(tmp_path, bert_dir):
    """LP-FT: heads fitted on frozen features start the fine-tune of the image tower's top."""
    from prodsearch.errors import ConfigError
    from prodsearch.training.main import build_model, warm_start

    products = synthetic_products(tmp_path / "photos", n=24)
    factory = SplittableFactory(bert_dir)
    base = dict(
        embed_dim=8, head_hidden=16, epochs=1, batch_size=8, patience=0, val_fraction=0.2, test_fraction=0.0
    )
    heads = tmp_path / "heads"
    train(None, heads, TrainConfig(**base, image_size=32), products=products, factory=factory, progress=False)
    top = TrainConfig(**base, image_size=32, freeze="top", image_unlocked_groups=2, text_unlocked_groups=0)
    model, _ = build_model(top, factory, text_dim=factory.text_encoder(top).dim)
    warm_start(model, heads)
    ref = torch.load(heads / "model.pt", weights_only=False)["model"]
    assert torch.equal(model.state_dict()["image_head.net.0.weight"], ref["image_head.net.0.weight"])
    assert torch.equal(model.state_dict()["logit_scale"], ref["logit_scale"])
    misfit, _ = build_model(
        TrainConfig(**{**base, "embed_dim": 4}, image_size=32, freeze="top", image_unlocked_groups=2,
                    text_unlocked_groups=0),
        factory,
        text_dim=factory.text_encoder(top).dim,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="do not fit"):
        warm_start(misfit, heads)
    with pytest.raises(ConfigError, match="no model.pt"):
        warm_start(model, tmp_path)


def test_a_tuned_tower_is_served_by_the_encoder_of_its_own_features(tmp_path, bert_dir):
    """Search time: the tuned backbone runs in the image encoder (onnxruntime, feature cache) under
    the head; its vectors equal the tower's eager forward, and its spec is not the pretrained one."""
    from prodsearch.training.embedder import (
        HeadedEncoder,
        TowerImageEncoder,
        load_trained_embedder,
        load_trained_model,
    )

    products = synthetic_products(tmp_path / "photos", n=24)
    factory = SplittableFactory(bert_dir)
    cfg = TrainConfig(
        epochs=1, batch_size=8, embed_dim=8, head_hidden=16, lr=1e-2, tower_lr=1e-2, patience=0,
        val_fraction=0.2, test_fraction=0.0, freeze="top", image_unlocked_groups=2, text_unlocked_groups=0,
    )  # fmt: skip
    run = tmp_path / "run"
    train(None, run, cfg, products=products, factory=factory, progress=False)
    emb = load_trained_embedder(run, factory=factory)
    assert isinstance(emb.image, HeadedEncoder)
    paths = [p.image_path for p in products[:10]]
    served = emb.image.encode_paths(paths, [f"k{i}" for i in range(10)])  # the fixture fakes hashes
    model, _, preprocess = load_trained_model(run, factory)
    eager = TowerImageEncoder(model.image_tower, preprocess, model, "run", {}).encode(paths)
    np.testing.assert_allclose(served, eager, atol=1e-4)
    assert emb.image.base.spec()["weights"] != factory.image_encoder(cfg).spec()["weights"]
