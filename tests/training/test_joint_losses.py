"""The joint loss terms against hand-computed values: attribute CE, graded targets, SigLIP, the factory."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from prodsearch.errors import ConfigError
from prodsearch.training.data import PairSet, attribute_labels, same_attributes
from prodsearch.training.losses import (
    AttributeCE,
    MultiPositiveInfoNCE,
    SigLIPLoss,
    graded_targets,
    parse_loss,
)


def test_parse_loss_terms_and_errors():
    assert parse_loss("contrastive+attribute") == ("contrastive", "attribute")
    assert parse_loss(" SigLIP + matching ") == ("siglip", "matching")
    with pytest.raises(ConfigError, match="unknown term"):
        parse_loss("contrastive+colour")
    with pytest.raises(ConfigError, match="exactly one"):
        parse_loss("attribute")
    with pytest.raises(ConfigError, match="exactly one"):
        parse_loss("contrastive+siglip")


def test_attribute_ce_matches_hand_computed_value():
    ce = AttributeCE(2, {"colour": ["red", "blue"]})
    with torch.no_grad():
        ce.heads[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        ce.heads[0].bias.zero_()
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    image = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    labels = {"colour": torch.tensor([0, -1])}  # second item unknown: ignored
    s = ce.scale  # sqrt(2)
    # item 0, label 0: text logits (s, 0) -> -log softmax = log(1 + e^-s); image logits (0, s) -> log(1 + e^s)
    expect = (math.log(1 + math.exp(-s)) + math.log(1 + math.exp(s))) / 2
    assert ce(text, image, labels).item() == pytest.approx(expect, rel=1e-6)


def test_attribute_ce_by_value_text_matches_hand_computed_value():
    """UniCL-style: the classifier rows are the embedded value names, logits scaled by the model's scale."""
    ce = AttributeCE(2, {"colour": ["red", "blue", "green"]}, by_text=True)
    assert len(list(ce.parameters())) == 0  # nothing of its own to learn: the text side is the classifier
    names = {"colour": torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])}
    text = torch.tensor([[1.0, 0.0]])
    image = torch.tensor([[0.0, 1.0]])
    labels = {"colour": torch.tensor([2])}  # green
    k = 5.0
    # text logits k*(1, 0, .6), image logits k*(0, 1, .8); CE at class 2 = logsumexp - logit_2
    ct = math.log(math.exp(k) + 1 + math.exp(0.6 * k)) - 0.6 * k
    ci = math.log(1 + math.exp(k) + math.exp(0.8 * k)) - 0.8 * k
    assert ce(text, image, labels, names, torch.tensor(k)).item() == pytest.approx((ct + ci) / 2, rel=1e-6)
    # gradients reach the class embeddings (the text side that produced them)
    w = names["colour"].clone().requires_grad_(True)
    ce(text, image, labels, {"colour": w}, k).backward()
    assert w.grad is not None and w.grad[2].abs().sum() > 0
    with pytest.raises(ValueError, match="class_embeddings"):
        ce(text, image, labels)


def test_attribute_ce_skips_columns_without_known_labels():
    ce = AttributeCE(2, {"a": ["x", "y"], "b": ["u", "v"]})
    t = torch.randn(3, 2)
    only_a = ce(t, t, {"a": torch.tensor([0, 1, 0]), "b": torch.tensor([-1, -1, -1])})
    ce_b_off = AttributeCE(2, {"a": ["x", "y"]})
    ce_b_off.heads[0].load_state_dict(ce.heads[0].state_dict())
    assert only_a.item() == pytest.approx(ce_b_off(t, t, {"a": torch.tensor([0, 1, 0])}).item())


def test_graded_targets_by_hand():
    mask = torch.tensor([[True, False, False], [False, True, False], [False, False, True]])
    same = torch.tensor([[True, True, False], [True, True, False], [False, False, True]])
    t = graded_targets(mask, same, 0.5)
    # row 0: 0.5 on itself + 0.5 spread over {0, 1}
    assert t[0].tolist() == pytest.approx([0.75, 0.25, 0.0])
    assert t[2].tolist() == pytest.approx([0.0, 0.0, 1.0])
    assert torch.allclose(graded_targets(mask, same, 0.0), mask.float())


def test_graded_targets_reduce_to_multi_positive_infonce_at_zero_share():
    torch.manual_seed(0)
    a, b = F.normalize(torch.randn(4, 3), dim=1), F.normalize(torch.randn(4, 3), dim=1)
    mask = torch.eye(4, dtype=torch.bool)
    mask[0, 1] = mask[1, 0] = True
    loss = MultiPositiveInfoNCE()
    same = torch.zeros(4, 4, dtype=torch.bool)
    scale = torch.tensor(10.0)
    assert loss(a, b, scale, graded_targets(mask, same, 0.0)).item() == pytest.approx(
        loss(a, b, scale, mask).item(), rel=1e-6
    )


def test_siglip_by_hand():
    loss = SigLIPLoss(init_bias=0.0)
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # logits = 2 * t @ v.T = [[2, 2], [0, 0]]; z = eye*2-1
    expect = (
        -(
            F.logsigmoid(torch.tensor(2.0))
            + F.logsigmoid(torch.tensor(-2.0))
            + F.logsigmoid(torch.tensor(-0.0))
            + F.logsigmoid(torch.tensor(0.0))
        )
        / 2
    )
    assert loss(t, v, torch.tensor(2.0)).item() == pytest.approx(expect.item(), rel=1e-6)


def _pairs(attrs):
    n = len(attrs)
    return PairSet(
        ids=[str(i) for i in range(n)],
        titles=["t"] * n,
        texts=[["t"]] * n,
        image_paths=["x"] * n,
        image_hashes=[str(i) for i in range(n)],
        title_group=list(range(n)),
        image_group=list(range(n)),
        attributes=attrs,
    )


def test_attribute_labels_from_training_items_only():
    # notes: free text with two boilerplate values (2 products each) among 8 one-off texts
    notes = ["fragile", "fragile", "gift", "gift"] + [f"note {i}" for i in range(8)]
    attrs = [{"colour": "Red", "sku": f"s{i}", "size": str(i // 2), "notes": notes[i]} for i in range(6)] + [
        {"colour": "blue ", "sku": f"s{i}", "size": str(i // 2), "notes": notes[i]} for i in range(6, 12)
    ]
    for i, a in enumerate(attrs):  # origin: blank on 8 products, one country on 4
        a["origin"] = "Italy" if i >= 8 else " "
    attrs.append({"colour": "Green", "sku": "s12"})  # only outside training
    pairs = _pairs(attrs)
    lab = attribute_labels(pairs, train=list(range(12)), max_classes=5, min_count=2, min_coverage=0.5)
    assert lab.classes == {"colour": ["blue", "red"]}
    assert "cover 33%" in lab.skipped["notes"] and "too rare to learn" in lab.skipped["notes"]
    assert lab.skipped["origin"].startswith("1 value(s)")  # a blank is unknown, not a class
    # at a lower bar the two boilerplate values are classes
    loose = attribute_labels(pairs, train=list(range(12)), max_classes=5, min_count=2, min_coverage=0.3)
    assert loose.classes["notes"] == ["fragile", "gift"]
    assert lab.labels["colour"][:2] == [1, 1] and lab.labels["colour"][6] == 0
    assert lab.labels["colour"][12] == -1  # unseen class -> unknown
    assert lab.skipped["sku"].startswith("0 value(s)")  # identifiers: every value unique
    assert "attribute_max_classes=5" in lab.skipped["size"]  # 6 classes > 5
    same = same_attributes(lab.labels, [0, 1, 6, 12])
    assert same == [
        [True, True, False, False],
        [True, True, False, False],
        [False, False, True, False],
        [False, False, False, False],
    ]
