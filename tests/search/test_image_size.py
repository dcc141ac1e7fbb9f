"""The untuned index runs its image encoder near the photos' native size (issue 8), and an existing
index keeps the size it was built with."""

from __future__ import annotations

import pytest
from PIL import Image

from prodsearch.search.recipe import EmbedderRecipe


def _photos(root, n: int, size: tuple[int, int]) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        path = root / f"{i}.jpg"
        Image.new("RGB", size, (200, 10 * i % 255, 30)).save(path)
        out.append(str(path))
    return out


def test_a_new_index_sizes_the_encoder_for_its_photos(tmp_path):
    small, large = _photos(tmp_path / "s", 5, (60, 80)), _photos(tmp_path / "l", 5, (600, 400))
    assert EmbedderRecipe().sized_for(small).image_options == {"image_size": 128}  # not upscaled to 224
    assert EmbedderRecipe().sized_for(large).image_options == {"image_size": 224}  # the model's own size
    lite2 = EmbedderRecipe(image_encoder="efficientnet-lite2")
    assert lite2.sized_for(large).image_options == {"image_size": 260}
    mid = _photos(tmp_path / "m", 5, (120, 100))  # 1.5 x 120 = 180 -> 192 (multiple of 32)
    assert EmbedderRecipe().sized_for(mid).image_options == {"image_size": 192}


def test_a_given_size_an_old_index_and_other_encoders_keep_theirs(tmp_path):
    small = _photos(tmp_path / "s", 3, (60, 80))
    given = EmbedderRecipe(image_options={"image_size": 224})
    assert given.sized_for(small) == given
    built_at_224 = {"image_encoder": "efficientnet-lite0", "image_options": {}}  # before sizing existed
    assert EmbedderRecipe().sized_for(small, old=built_at_224).image_options == {}
    built_at_160 = {"image_encoder": "efficientnet-lite0", "image_options": {"image_size": 160}}
    assert EmbedderRecipe().sized_for(small, old=built_at_160).image_options == {"image_size": 160}
    for other in (EmbedderRecipe(image_encoder="fake-image"), EmbedderRecipe(model="runs/x"),
                  EmbedderRecipe(image_encoder=None)):  # fmt: skip
        assert other.sized_for(small) == other
    assert EmbedderRecipe().sized_for([]) == EmbedderRecipe()


@pytest.mark.slow
def test_build_index_records_the_size_and_a_rerun_keeps_it(tmp_path, tiny_catalog):
    from prodsearch.search import layout
    from prodsearch.search.builder import build_index
    from prodsearch.search.engine import Engine

    out = tmp_path / "idx"
    recipe = EmbedderRecipe(text_encoder="fake-text")  # the real EfficientNet-Lite0 for photos
    build_index(tiny_catalog, out, recipe=recipe)
    stored = layout.Manifest.load(out).settings["recipe"]
    assert stored["image_options"] == {"image_size": 128}  # the tiny catalog's photos are 40x52
    assert layout.Manifest.load(out).embedder["image"]["preprocess"]["size"] == 128
    build_index(tiny_catalog, out, recipe=recipe)  # the same command again: no encoder mismatch
    assert layout.Manifest.load(out).settings["recipe"]["image_options"] == {"image_size": 128}
    with Engine.open(out) as engine:
        photo = next(p for p in (engine.get(f"p{i:02d}") for i in range(1, 13)) if p.image_path)
        hits = engine.search(image=photo.image_path, mode="image", k=1)
        assert hits.results[0].id == photo.id
