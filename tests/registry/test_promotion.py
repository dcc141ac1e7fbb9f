"""The promotion gate: a candidate is promoted only when it beats the served model beyond the noise
(paired bootstrap over the same held-out queries), on a shop where the answer is known: text queries
name colours that only the photos show, so only a model trained on true pairs can answer them."""

from __future__ import annotations

import numpy as np
import pytest

from prodsearch.registry import Registry
from prodsearch.registry.evaluate import compare_versions, paired_bootstrap
from prodsearch.registry.refresh import ensure_registered, promote_if_better, refresh
from prodsearch.search.engine import Engine


def test_bootstrap_of_a_constant_difference_is_that_difference():
    a = np.linspace(0, 1, 25)
    out = paired_bootstrap({"text": a}, {"text": a + 0.1}, resamples=200)
    assert out["difference"] == pytest.approx(0.1)
    assert out["ci_low"] == pytest.approx(0.1) and out["ci_high"] == pytest.approx(0.1)


def test_bootstrap_is_paired_and_averages_query_kinds():
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, 200)  # large spread between queries...
    noise = rng.normal(0, 0.01, 200)  # ...small, consistent gain per query
    out = paired_bootstrap({"text": base}, {"text": base + 0.02 + noise})
    assert 0 < out["ci_low"] < 0.02 < out["ci_high"] < 0.03  # pairing removes the between-query spread
    # the mean over kinds is the mean of the kinds' mean differences (not pooled over queries)
    two = paired_bootstrap(
        {"text": np.zeros(10), "image": np.zeros(30)}, {"text": np.ones(10), "image": np.zeros(30)}
    )
    assert two["difference"] == pytest.approx(0.5) and two["ci_low"] == pytest.approx(0.5)
    # shifting the candidate shifts the difference and its interval by exactly as much
    shifted = paired_bootstrap({"text": base}, {"text": base + 0.02 + noise + 0.3})
    assert shifted["ci_low"] == pytest.approx(out["ci_low"] + 0.3)
    with pytest.raises(ValueError, match="same query kinds"):
        paired_bootstrap({"text": base}, {"image": base})
    with pytest.raises(ValueError, match="equal non-empty"):
        paired_bootstrap({"text": base}, {"text": base[:-1]})


def test_better_candidate_is_promoted(make_index):
    """Served: a model trained on shuffled pairs. refresh warm-starts a candidate on the true pairs,
    finds it better beyond the noise on the held-out split, and switches the index to it."""
    idx = make_index("bad")
    report = refresh(idx, steps=("train", "evaluate", "promote"))
    ev = report["evaluate"]
    assert ev["against"] == "v1" and report["train"] == {**report["train"], "version": "v2", "parent": "v1"}
    assert ev["kinds"]["text"]["candidate"] > ev["kinds"]["text"]["current"] + 0.1
    assert ev["ci_low"] > 0 and ev["better"] and ev["resamples"] == 1000
    assert report["promote"]["promoted"]
    reg = Registry(idx)
    assert reg.served == "v2"
    assert {v.version: v.status for v in reg.versions()} == {"v1": "retired", "v2": "promoted"}
    assert reg.get("v2").parent == "v1" and reg.get("v2").evaluation["better"]
    with Engine.open(idx) as engine:  # reopened: the index serves v2's model, vectors and fusion
        assert engine.model_version == "v2" and engine.info()["model_version"] == "v2"
        assert engine.manifest.settings["fusion"] == reg.get("v2").fusion
        resp = engine.search("red shirt", k=5, mode="image")
        assert resp.model == "v2"
        assert [engine.get(r.id).attributes["colour"] for r in resp.results] == ["red"] * 5


def test_worse_candidate_is_refused_and_nothing_changes(make_index, registry_env):
    """Served: the true-pairs model. A candidate trained on shuffled pairs loses on the same queries;
    promotion refuses it and the index's files stay byte for byte what they were."""
    _, _, _, bad_run = registry_env
    idx = make_index("good")
    with Engine.open(idx) as engine:
        reg = Registry(idx)
        assert ensure_registered(engine, reg) == "v1"
        before = {p: (idx / p).read_bytes() for p in ("manifest.json", "vectors/joint.json")}
        cand = reg.add(bad_run, status="candidate", parent="v1").version
        ev = compare_versions(engine, cand, reg=reg)
        assert ev["ci_high"] < 0 and not ev["better"]
        assert ev["kinds"]["text"]["candidate"] < ev["kinds"]["text"]["current"] - 0.1
        res = promote_if_better(engine, reg, cand)
        assert res == {"promoted": False, "version": cand, "served": "v1"}
        assert engine.model_version == "v1" and engine.search("red", k=3).model == "v1"
    assert reg.get(cand).status == "rejected" and reg.served == "v1"
    assert {p: (idx / p).read_bytes() for p in before} == before


def test_clicks_join_training_but_never_on_held_out_products(make_index, registry_env, monkeypatch, tmp_path):
    """refresh --interactions: shoppers' clicks become training pairs, except clicks on products of the
    frozen validation/test split (their photos would leak into training through them)."""
    import json

    import prodsearch.training.main as training_main

    idx = make_index("good")
    with Engine.open(idx) as engine:
        ensure_registered(engine)
        ids = [p.id for p in engine.store.iter_products()]
    frozen = Registry(idx).frozen_split()
    log = tmp_path / "clicks.jsonl"
    with open(log, "w") as fh:
        for i, pid in enumerate(ids):
            fh.write(
                json.dumps(
                    {"query": f"item {i}", "product_id": pid, "event": "click", "timestamp": 1.7e9 + i}
                )
                + "\n"
            )
    seen = {}
    real = training_main.train

    def spy(*a, **kw):
        seen["pairs"] = list(kw.get("interactions") or [])
        return real(*a, **kw)

    monkeypatch.setattr(training_main, "train", spy)
    report = refresh(idx, steps=("train",), interactions=log, epochs=1)
    assert report["train"]["version"] == "v2"
    trained_on = {q.product_id for q in seen["pairs"]}
    assert trained_on == {pid for pid in ids if frozen.get(pid, "train") == "train"}
    assert len(trained_on) < len(ids)  # held-out products' clicks were left out
