from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from prodsearch.training.losses import MatchingLoss, MultiPositiveInfoNCE, hardest_negatives, positive_mask

E = torch.eye(2)


def test_infonce_identity_equals_clip_loss_by_hand():
    loss = MultiPositiveInfoNCE()(E, E, torch.tensor(1.0))
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)


def test_infonce_multi_positive_by_hand():
    t = torch.tensor([[1.0, 0], [0, 1], [1, 0]])
    i = torch.tensor([[1.0, 0], [0, 1], [0, 1]])
    mask = positive_mask(torch.tensor([0, 1, 0]), torch.tensor([0, 1, 2]))  # items 0 and 2 share a title
    assert mask.tolist() == [[True, False, True], [False, True, False], [True, False, True]]
    loss = MultiPositiveInfoNCE()(t, i, torch.tensor(2.0), mask)
    l1, l2 = math.log(math.exp(2) + 2), math.log(1 + 2 * math.exp(2))
    assert float(loss) == pytest.approx((2 * l1 + l2 - 4) / 3, abs=1e-5)


def test_infonce_all_positive_spreads_target():
    # both items share a title: target 0.5/0.5 per row -> loss = log(e + 1) - 0.5 (identity mask: log(e + 1) - 1)
    loss = MultiPositiveInfoNCE()(E, E, torch.tensor(1.0), torch.ones(2, 2, dtype=torch.bool))
    assert float(loss) == pytest.approx(math.log(math.e + 1) - 0.5, abs=1e-6)


def test_positive_mask_same_image():
    m = positive_mask(torch.tensor([0, 1, 2]), torch.tensor([5, 6, 5]))
    assert m.tolist() == [[True, False, True], [False, True, False], [True, False, True]]


def test_hardest_negatives():
    sim = torch.tensor([[0.9, 0.5, 0.7], [0.1, 0.8, 0.2], [0.3, 0.3, 0.9]])
    mask = torch.tensor([[True, False, True], [False, True, False], [True, True, True]])
    assert hardest_negatives(sim, mask).tolist() == [1, 2, -1]


class DotHead(nn.Module):
    def forward(self, t, i):
        return (t * i).sum(-1)


def test_matching_loss_by_hand():
    loss = MatchingLoss(DotHead())(E, E)
    pos, neg = math.log(1 + math.exp(-1)), math.log(2)
    assert float(loss) == pytest.approx((2 * pos + 4 * neg) / 6, abs=1e-6)


def test_matching_loss_skips_rows_without_negatives():
    loss = MatchingLoss(DotHead())(E, E, torch.ones(2, 2, dtype=torch.bool))
    # all pairs positive: only the 2 diagonal positives (logit 1) remain
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
