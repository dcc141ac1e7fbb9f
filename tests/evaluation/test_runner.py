"""End to end: a fake one-hot embedder gives exact, hand-computed metric values; the report files
hold the numbers of metrics.json; bad input fails with errors that name it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_helpers import embed, make_products, onehot_embedder

from prodsearch.errors import ConfigError
from prodsearch.evaluation.corpus import Corpus
from prodsearch.evaluation.fields import FieldChoice
from prodsearch.evaluation.report import fmt, write_report
from prodsearch.evaluation.runner import evaluate
from prodsearch.evaluation.systems import LexicalSignal

FIELDS = FieldChoice(type="type", colour="colour", attributes=["colour", "gender"])


@pytest.fixture
def run(tiny_corpus):
    def go(**kw):
        emb = embed("onehot", onehot_embedder(tiny_corpus.products), tiny_corpus.products)
        lexical = LexicalSignal.build([p.full_text() for p in tiny_corpus.products])
        kw.setdefault("fields", FIELDS)
        kw.setdefault("seed", 0)
        return evaluate(tiny_corpus, [emb], lexical=lexical, **kw)

    return go


def test_title2image_exact_values(run):
    res = run(protocols=["title2image"])
    # queries: "Red Shirt A" (relevant p0, p1; photo p0 first, p1 second), "Blue Jeans C" (p3 first),
    # "Green Bag F" (the fake maps it to p7's photo; p6 comes 8th among all-zero ties)
    img = res["systems"]["image"]
    assert res["queries"]["title2image"] == 3
    assert img["title2image/recall@1"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert img["title2image/recall@10"] == pytest.approx(1.0)
    assert img["title2image/mrr"] == pytest.approx((1 + 1 + 1 / 8) / 3)
    assert res["curves"]["title2image"]["image"]["2"] == pytest.approx((1 + 1 + 0) / 3)
    # text-only systems cannot rank image vectors: skipped with a reason, not run
    for name in ("bm25", "dense-text", "hybrid"):
        assert "title2image" in res["skipped"]["systems"][name]
        assert "title2image/recall@1" not in res["systems"].get(name, {})


def test_image2product_exact_values(run):
    res = run(protocols=["image2product"])
    assert res["queries"]["image2product"] == 4  # photos of p0, p1, p3, p6
    img = res["systems"]["image"]
    assert img["image2product/hit@1"] == 1.0 and img["image2product/mrr"] == 1.0
    # same type + colour in the top 10 (8 products): p0 -> {p0,p1}, p1 -> {p0,p1}, p3 -> {p3}, p6 -> {p6}
    assert img["image2product/type_colour_precision@10"] == pytest.approx((0.2 + 0.2 + 0.1 + 0.1) / 4)
    # photo -> text vectors (aligned): p0 found first; p1's slot has no text (p1 ranks 2nd behind p0);
    # p3 found first; p6's slot has no text (ranks 7th)
    txt = res["systems"]["dense-text"]
    assert txt["image2product/hit@1"] == pytest.approx(0.5)
    assert txt["image2product/mrr"] == pytest.approx((1 + 1 / 2 + 1 + 1 / 7) / 4)
    assert "image2product" in res["skipped"]["systems"]["bm25"]


def test_zeroshot_exact_values(run):
    res = run(protocols=["zeroshot"])
    # prompts: only "Shirt" is known (-> p0's photo); all-zero rows predict class 0 ("Bag").
    # test products p0 Shirt->Shirt, p1 Shirt->Bag, p3 Jeans->Bag, p6 Bag->Bag
    m = res["systems"]["image"]
    assert m["zeroshot/type/accuracy"] == pytest.approx(0.5)
    assert m["zeroshot/type/f1_weighted"] == pytest.approx((1 * 0.5 + 2 * (2 / 3) + 1 * 0.0) / 4)
    # colours: every prediction is "Black", none of the test products is black
    assert m["zeroshot/colour/accuracy"] == 0.0
    conf = res["zeroshot"]["image"]["type"]
    assert conf["classes"] == 4 and conf["labels"][0] == "Shirt"  # most frequent true class first
    cells = {
        (t, p): n
        for t, row in zip(conf["labels"], conf["matrix"], strict=True)
        for p, n in zip(conf["labels"], row, strict=True)
    }
    assert {k: v for k, v in cells.items() if v} == {
        ("Shirt", "Shirt"): 1,
        ("Shirt", "Bag"): 1,
        ("Jeans", "Bag"): 1,
        ("Bag", "Bag"): 1,
    }


def test_slices_by_attribute(run):
    res = run(protocols=["title2image"], slice_by="gender")
    per = res["slices"]["systems"]["image"]
    assert per["Men"]["title2image/recall@1"] == pytest.approx((0.5 + 1) / 2)
    assert per["Women"]["title2image/recall@1"] == 0.0
    assert res["slices"]["counts"]["title2image"] == {"Men": 2, "Women": 1}


def test_attribute_protocol_runs_on_every_signal(run):
    res = run(protocols=["attributes"])
    for name in ("bm25", "dense-text", "image", "hybrid"):
        assert 0.0 <= res["systems"][name]["attributes/ndcg@10"] <= 1.0
    # BM25 matches the words of "Red Shirt"-style queries in titles, the fake dense towers do not
    assert res["systems"]["bm25"]["attributes/ndcg@10"] > res["systems"]["dense-text"]["attributes/ndcg@10"]


def test_unaligned_embedder_skips_cross_modal_with_reason(tiny_corpus):
    emb = embed("plain", onehot_embedder(tiny_corpus.products, aligned=False), tiny_corpus.products)
    res = evaluate(tiny_corpus, [emb], fields=FIELDS)
    assert "aligned" in res["skipped"]["systems"]["image"]["title2image"]
    assert "aligned" in res["skipped"]["systems"]["image"]["zeroshot/type"]
    assert res["systems"]["image"]["image2product/hit@1"] == 1.0  # photo -> photo needs no alignment


def test_model_runs_are_prefixed_and_compared(tiny_corpus):
    base = embed("plain", onehot_embedder(tiny_corpus.products, aligned=False), tiny_corpus.products)
    tuned = embed("tuned", onehot_embedder(tiny_corpus.products), tiny_corpus.products)
    res = evaluate(tiny_corpus, [base, tuned], protocols=["title2image"], fields=FIELDS)
    assert res["systems"]["tuned:image"]["title2image/recall@1"] == pytest.approx(0.5)
    assert "image" in res["skipped"]["systems"]


def test_seed_makes_a_run_repeatable(run):
    a, b = run(protocols=["attributes"], seed=3), run(protocols=["attributes"], seed=3)
    assert a["systems"] == b["systems"] and a["examples"] == b["examples"]


def test_report_files_hold_the_metrics(run, tmp_path, tiny_corpus):
    res = run(slice_by="gender")
    paths = write_report(res, tmp_path / "out", corpus=tiny_corpus)
    data = json.loads(paths["metrics"].read_text())
    assert data["systems"]["image"]["title2image/recall@1"] == pytest.approx(0.5)
    md = paths["markdown"].read_text()
    html = paths["html"].read_text()
    for system, metrics in data["systems"].items():
        for key, value in metrics.items():
            assert fmt(value) in md, (system, key)
            assert fmt(value) in html, (system, key)
    assert "data:image/png;base64," in html  # recall curves / slices / confusion plots
    assert "data:image/jpeg;base64," in html  # thumbnails of example results
    assert data["config"]["fields"]["type"] == "type"


def test_report_shows_the_served_fusion_comparison(run, tmp_path, tiny_corpus):
    """An index's calibration travels into the report: every kind's row, the gain's interval, and "-"
    for a signal a kind lacks (text queries have no only_image)."""
    res = run(protocols=["title2image"])
    res["fusion"] = {
        "weights": {"image": {"image": 1.0, "joint": 0.5}, "text": {"joint": 1.0, "text": 0.5}},
        "anchor_pool": 500,
        "comparison": {
            "text": {
                "metric": "ndcg@10",
                "queries": 30,
                "gallery": 120,
                "untuned_rrf": 0.81,
                "calibrated": 0.86,
                "gain": 0.05,
                "gain_ci": [0.02, 0.08],
            },
            "image": {
                "metric": "mrr",
                "queries": 25,
                "gallery": 120,
                "untuned_rrf": 0.48,
                "calibrated": 0.6,
                "only_image": 0.48,
                "gain": 0.12,
                "gain_ci": [0.08, 0.15],
            },
        },
    }
    paths = write_report(res, tmp_path / "out", corpus=tiny_corpus)
    md, page = paths["markdown"].read_text(), paths["html"].read_text()
    assert "image: image=1, joint=0.5; text: joint=1, text=0.5" in md
    assert "| text | ndcg@10 | 30 | 120 | 0.8100 | 0.8600 | 0.0500 | [+0.0200, +0.0800] | - |" in md
    assert "| image | mrr | 25 | 120 | 0.4800 | 0.6000 | 0.1200 | [+0.0800, +0.1500] | 0.4800 |" in md
    assert "image: image=1, joint=0.5; text: joint=1, text=0.5" in page
    assert "photo + text queries re-rank the photo's 500 nearest products" in md
    assert "<td>[+0.0800, +0.1500]</td>" in page and "<td>0.8600</td>" in page


def test_bad_input_errors_name_the_problem(run, tmp_path):
    with pytest.raises(ConfigError, match="'size'.*attribute columns"):
        run(slice_by="size")
    with pytest.raises(ConfigError, match="unknown protocol"):
        run(protocols=["title2text"])
    # an explicitly chosen protocol with no usable attribute: a clear error naming the protocol
    bare = make_products(tmp_path / "bare")
    for p in bare:
        p.attributes = {"sku": p.id}
    corpus = Corpus(bare, test=np.asarray([0, 3]))
    emb = embed("onehot", onehot_embedder(bare), bare)
    with pytest.raises(ConfigError, match="'attributes'.*type"):
        evaluate(corpus, [emb], protocols=["attributes"])
    # by default the same protocol is skipped with the reason in the report
    res = evaluate(corpus, [emb])
    assert "type" in res["skipped"]["protocols"]["attributes"]
    assert "zeroshot" in res["skipped"]["protocols"]
    assert res["systems"]["image"]["title2image/recall@10"] == 1.0
