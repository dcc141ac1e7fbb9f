"""Neighbour titles (training/neighbours.py): the transfer against a brute-force reference, the
validation fit's decision, and the fitted bank at search time (release checkpoint, embedder,
one protocol with `evaluate`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import FAST, SplittableFactory, TinyFactory, synthetic_products

from prodsearch.training import neighbours as nb
from prodsearch.training.checkpoint import load_checkpoint
from prodsearch.training.config import TrainConfig
from prodsearch.training.embedder import load_trained_embedder
from prodsearch.training.main import train
from prodsearch.training.retrieval import retrieval_metrics


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _reference_titles(keys, values, feats, k, tau, weights=None):
    """Loops in float64 over the bank as stored (half precision): each photo's neighbour title, its
    look-alikes found by the cosine of the features times ``weights``."""
    w = np.ones(keys.shape[1]) if weights is None else weights
    bank = _unit(keys * w).astype(np.float16).astype(np.float64)
    vals = values.astype(np.float16).astype(np.float64)
    out = []
    for f in _unit(feats * w):
        sims = sorted(((float(bank[j] @ f), j) for j in range(len(bank))), key=lambda t: -t[0])
        top = [(s, j) for s, j in sims if s <= nb.SAME_PHOTO][:k]
        w = np.exp(np.array([s for s, _ in top]) / tau)
        w /= w.sum()
        out.append(sum(wi * vals[j] for wi, (_, j) in zip(w, top, strict=True)))
    return np.stack(out)


def test_transfer_equals_a_brute_force_reference_and_skips_the_same_photo():
    rng = np.random.default_rng(0)
    keys, values = rng.normal(size=(40, 12)), _unit(rng.normal(size=(40, 6)))
    feats = np.concatenate([keys[:3] * 2.0, rng.normal(size=(5, 12))])  # 3 photos that are in the bank
    emb = _unit(rng.normal(size=(8, 6)))
    module = nb.NeighbourTitles(torch.tensor(keys), torch.tensor(values), k=5, tau=0.05, beta=1.5)
    photos = module(torch.tensor(feats, dtype=torch.float32), torch.tensor(emb, dtype=torch.float32)).numpy()
    titles = _reference_titles(keys, values, feats, 5, 0.05)
    mixed = _unit(emb + 1.5 * titles)
    np.testing.assert_allclose(photos, np.hstack([mixed, emb]) / 2**0.5, atol=2e-4)
    _, rows = module.neighbours(torch.tensor(feats, dtype=torch.float32), 5)
    assert all(i not in rows[i].tolist() for i in range(3))  # a bank photo is not its own neighbour

    # what each query kind ranks by: a text query the head plus beta x the neighbour titles, and
    # gamma x the heads alone; a photo query the heads alone
    q = _unit(rng.normal(size=(4, 6)))
    text_scores = module.text(torch.tensor(q, dtype=torch.float32)).numpy() @ photos.T
    gamma = nb.TEXT_HEAD_SHARE
    assert 0 < gamma < 1
    np.testing.assert_allclose(text_scores, (q @ mixed.T + gamma * q @ emb.T) / 2**0.5, atol=2e-4)
    photo_scores = module.photo_query(torch.tensor(emb, dtype=torch.float32)).numpy() @ photos.T
    np.testing.assert_allclose(photo_scores, emb @ emb.T / 2**0.5, atol=2e-4)
    # beta 0: the head alone in both halves
    np.testing.assert_allclose(
        module.mix(
            torch.tensor(emb, dtype=torch.float32), *module.neighbours(torch.tensor(feats), 5), beta=0.0
        ),
        np.hstack([emb, emb]) / 2**0.5,
        atol=1e-6,
    )


def test_key_weights_choose_the_look_alikes():
    """Re-weighted parts find other neighbours (the reference with the same weights), and a bank
    saved before key weights existed loads as the features as they are."""
    rng = np.random.default_rng(3)
    keys, values = rng.normal(size=(40, 12)), _unit(rng.normal(size=(40, 6)))
    feats, emb = rng.normal(size=(6, 12)), _unit(rng.normal(size=(6, 6)))
    parts = {"a": (0, 8), "b": (8, 12)}
    w = nb.key_weights(12, parts, {"a": 0.25, "b": 3.0})
    assert w.tolist() == [0.25] * 8 + [3.0] * 4
    module = nb.NeighbourTitles(
        torch.tensor(keys), torch.tensor(values), k=4, tau=0.05, beta=1.0, key_weights=w
    )
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    titles = _reference_titles(keys, values, feats, 4, 0.05, weights=w.numpy().astype(np.float64))
    np.testing.assert_allclose(
        module(t(feats), t(emb))[:, :6].numpy(), _unit(emb + titles) / 2**0.5, atol=2e-4
    )
    plain = _reference_titles(keys, values, feats, 4, 0.05)
    assert not np.allclose(titles, plain, atol=1e-2)  # the weights changed who the neighbours are

    old = nb.NeighbourTitles(torch.tensor(keys), torch.tensor(values), k=4, tau=0.05, beta=1.0)
    state = {k: v for k, v in old.state_dict().items() if k != "key_weights"}
    loaded = nb.NeighbourTitles.from_state_dict({nb.PREFIX + k: v for k, v in state.items()})
    loaded.load_state_dict(state)
    assert torch.equal(loaded.key_weights, torch.ones(12))
    np.testing.assert_allclose(loaded(t(feats), t(emb)).numpy(), old(t(feats), t(emb)).numpy(), atol=1e-6)
    # key mixes: only those that differ on the encoder's parts
    assert list(nb.key_mixes(12, None)) == ["encoded"]
    rich = {"pooled": (0, 6), "taps": (6, 10), "colour": (10, 12)}
    assert list(nb.key_mixes(12, rich)) == list(nb.KEY_MIXES)


def _clusters(rng, related: bool, noisy_part: bool = False):
    """20 looks (feature clusters), each with its own title; the head's embeddings know little."""
    n_c, dim = 20, 32
    centres, titles = rng.normal(size=(n_c, dim)), _unit(rng.normal(size=(n_c, 16)))
    bank_c = np.arange(200) % n_c
    keys = centres[bank_c] + 0.3 * rng.normal(size=(200, dim))
    values = titles[bank_c] if related else _unit(rng.normal(size=(200, 16)))
    gal_c = np.arange(100) % n_c
    gal_feats = centres[gal_c] + 0.3 * rng.normal(size=(100, dim))
    gal_emb = _unit(0.3 * titles[gal_c] + _unit(rng.normal(size=(100, 16))))
    if noisy_part:  # a louder part of the features that says nothing of the looks
        keys = np.hstack([keys, 3.0 * rng.normal(size=(200, dim))])
        gal_feats = np.hstack([gal_feats, 3.0 * rng.normal(size=(100, dim))])
    q = torch.tensor(titles, dtype=torch.float32)

    def score(queries, gallery):
        return retrieval_metrics(queries.float(), gallery.float(), list(range(n_c)), gal_c.tolist())

    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return t(keys), t(values), t(gal_feats), t(gal_emb), q, score


def test_fit_keeps_the_transfer_where_look_alikes_share_titles():
    keys, values, feats, emb, q, score = _clusters(np.random.default_rng(1), related=True)
    module, report = nb.fit_neighbour_titles(keys, values, feats, emb, q, score, 20, min_queries=10)
    assert module is not None and report["used"]
    assert report["val_with"]["mrr"] > report["val_without"]["mrr"] + 0.1
    assert (module.k, module.tau, module.beta) == (report["k"], report["tau"], report["beta"])
    assert len(report["tried"]) == len(nb.GRID_K) * len(nb.GRID_TAU) * len(nb.GRID_BETA)
    assert score(module.text(q), module(feats, emb))["mrr"] == pytest.approx(
        report["val_with"]["mrr"], abs=1e-4
    )


def test_fit_chooses_the_key_mix_that_finds_the_look_alikes():
    keys, values, feats, emb, q, score = _clusters(np.random.default_rng(1), related=True, noisy_part=True)
    parts = {"looks": (0, 32), "noise": (32, 64)}
    mixes = {"encoded": None, "looks": nb.key_weights(64, parts, {"noise": 0.0})}
    module, report = nb.fit_neighbour_titles(
        keys, values, feats, emb, q, score, 20, mixes=mixes, min_queries=10
    )
    assert module is not None and report["keys"] == "looks"
    assert torch.equal(module.key_weights, mixes["looks"])
    by_mix = {m: max(t["val_mrr"] for t in report["tried"] if t["keys"] == m) for m in mixes}
    assert by_mix["looks"] > by_mix["encoded"] + 0.1
    assert score(module.text(q), module(feats, emb))["mrr"] == pytest.approx(
        report["val_with"]["mrr"], abs=1e-4
    )


def test_fit_refuses_the_transfer_where_titles_do_not_follow_looks():
    keys, values, feats, emb, q, score = _clusters(np.random.default_rng(2), related=False)
    module, report = nb.fit_neighbour_titles(keys, values, feats, emb, q, score, 20, min_queries=10)
    assert module is None and not report["used"] and "below" in report["why"]
    module, report = nb.fit_neighbour_titles(keys, values, feats, emb, q, score, 20)  # MIN_QUERIES = 50
    assert module is None and "20 validation titles" in report["why"]


@pytest.fixture
def products(tmp_path):
    from prodsearch.catalog.images import file_sha256

    out = synthetic_products(tmp_path / "photos")
    for p in out:  # real content hashes (the fixture fakes one shared photo by its hash alone)
        p.image_hash = file_sha256(p.image_path)
    return out


@pytest.mark.parametrize("rich", [False, True], ids=["fake-features", "rich-mid-level-keys"])
def test_the_fitted_bank_is_released_and_served_under_one_protocol(
    tmp_path, products, bert_dir, monkeypatch, rich
):
    """Forced on (the synthetic catalog has too few titles to pass the real bar): the release
    checkpoint carries the training split's bank, the search-time embedder applies it, and the run's
    test report equals what `evaluate`'s title2image reports for the served vectors. With the rich
    EfficientNet features and the mid-level key mix forced, the served photos find their
    neighbours with the fitted key weights too (else the two protocols would disagree)."""
    from prodsearch.evaluation.corpus import Corpus
    from prodsearch.evaluation.runner import _encode_corpus, evaluate

    monkeypatch.setattr(nb, "MIN_QUERIES", 2)
    monkeypatch.setattr(nb, "MIN_GAIN", -1.0)
    factory = SplittableFactory(bert_dir) if rich else TinyFactory(bert_dir)
    if rich:
        monkeypatch.setattr(nb, "KEY_MIXES", {"mid-level": nb.KEY_MIXES["mid-level"]})
    out = tmp_path / "run"
    res = train(None, out, TrainConfig(**FAST), products=products, factory=factory, progress=False)
    split = json.loads((out / "split.json").read_text())
    report = json.loads((out / "run.json").read_text())["result"]["neighbour_titles"]
    assert report["used"] and res.neighbour_titles["used"]
    release = load_checkpoint(out / "model.pt")["model"]
    assert release["neighbours.keys"].shape[0] == len(split["train"])
    assert "neighbours.keys" not in load_checkpoint(out / "best.pt")["model"]
    weights = release["neighbours.key_weights"]
    assert report["keys"] == ("mid-level" if rich else "encoded")
    assert set(weights.tolist()) == ({1.0, 4.0, 0.0} if rich else {1.0})

    emb = load_trained_embedder(out, factory=factory)
    photos = [p.image_path for p in products]
    served, as_queries = emb.encode_images(photos), emb.encode_image_queries(photos)
    model = emb.image.model
    bank, model.neighbours = model.neighbours, None
    head_only = emb.encode_images(photos)
    model.neighbours = bank
    d = model.embed_dim
    assert served.shape == as_queries.shape == (len(products), 2 * d) and emb.image.dim == 2 * d
    assert not np.allclose(served[:, :d], served[:, d:], atol=1e-3)  # the bank is applied at search time
    np.testing.assert_allclose(served[:, d:], head_only / 2**0.5, atol=1e-5)
    np.testing.assert_allclose(as_queries, np.hstack([np.zeros_like(head_only), head_only]), atol=1e-5)
    # a catalog photo as a query ranks the indexed photos by the heads alone
    np.testing.assert_allclose(as_queries @ served.T, head_only @ head_only.T / 2**0.5, atol=1e-4)

    test = np.asarray([i for i, p in enumerate(products) if p.id in set(split["test"])], dtype=np.int64)
    result = evaluate(
        Corpus(products, test=test), [_encode_corpus("run", emb, products, False)], protocols=["title2image"]
    )
    got = result["systems"]["image"]
    assert got["title2image/recall@10"] == pytest.approx(res.test_metrics["test_r10"], abs=1e-6)
    assert got["title2image/mrr"] == pytest.approx(res.test_metrics["test_mrr"], abs=1e-5)

    # a warm start from this run fits its own bank rather than failing on the stored one
    again = train(
        None,
        tmp_path / "again",
        TrainConfig(**{**FAST, "epochs": 1}),
        products=products,
        factory=factory,
        progress=False,
        init_from=out,
    )
    assert again.neighbour_titles["used"]


def test_off_means_no_bank(tmp_path, products, bert_dir, monkeypatch):
    monkeypatch.setattr(nb, "MIN_QUERIES", 2)
    monkeypatch.setattr(nb, "MIN_GAIN", -1.0)
    out = tmp_path / "run"
    res = train(
        None,
        out,
        TrainConfig(**FAST, neighbour_titles=False),
        products=products,
        factory=TinyFactory(bert_dir),
        progress=False,
    )
    assert res.neighbour_titles == {}
    assert not any(k.startswith("neighbours.") for k in load_checkpoint(out / "model.pt")["model"])
    assert load_trained_embedder(out, factory=TinyFactory(bert_dir)).image.model.neighbours is None
