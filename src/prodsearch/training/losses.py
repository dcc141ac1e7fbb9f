"""Losses: modules taking features (never the model), as in open_clip.

* :class:`MultiPositiveInfoNCE`: CLIP's symmetric contrastive loss, with soft targets spreading the
  probability mass over every in-batch positive (same title or same photo), so that duplicates in
  a batch are not pushed apart as negatives.
* :class:`MatchingLoss`: the seed's matching objective: a small head scores (text, image) pairs,
  trained with binary cross-entropy on the positives and the hardest in-batch negatives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def positive_mask(title_group: torch.Tensor, image_group: torch.Tensor) -> torch.Tensor:
    """``(B, B)`` bool: ``[i, j]`` is True when items i and j share a title group or an image group.

    ``title_group``, ``image_group``: ``(B,)`` integer ids. The diagonal is always True.
    """
    same_title = title_group[:, None] == title_group[None, :]
    same_image = image_group[:, None] == image_group[None, :]
    return same_title | same_image


class MultiPositiveInfoNCE(nn.Module):
    """Symmetric InfoNCE with multi-positive targets.

    ``logits = scale * text @ image.T``; the target of row i is uniform over its positives
    ``mask[i]``; loss = (CE(text->image) + CE(image->text)) / 2, each averaged over rows.
    With an identity mask it equals CLIP's loss exactly.
    """

    def forward(
        self,
        text: torch.Tensor,
        image: torch.Tensor,
        logit_scale: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``text``, ``image``: ``(B, D)`` L2-normalised; ``logit_scale``: scalar (already exp'd);
        ``mask``: ``(B, B)`` bool positives (defaults to the identity). Returns a scalar."""
        logits = logit_scale * text @ image.t()
        if mask is None:
            mask = torch.eye(len(text), dtype=torch.bool, device=text.device)
        target = mask.float()
        t2i = -(target / target.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1).mean()
        tt = target.t()
        i2t = -(tt / tt.sum(1, keepdim=True) * F.log_softmax(logits.t(), dim=1)).sum(1).mean()
        return (t2i + i2t) / 2


class MatchingHead(nn.Module):
    """Scores a (text, image) embedding pair: MLP over ``[t * i, |t - i|]`` -> one logit."""

    def __init__(self, dim: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * dim, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """``(N, D)``, ``(N, D)`` -> ``(N,)`` logits."""
        return self.net(torch.cat([text * image, (text - image).abs()], dim=-1)).squeeze(-1)


def hardest_negatives(sim: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """For each row, the column index of the most similar non-positive; ``-1`` where every column is positive."""
    masked = sim.masked_fill(mask, float("-inf"))
    idx = masked.argmax(dim=1)
    none = torch.isinf(masked.max(dim=1).values)
    return torch.where(none, torch.full_like(idx, -1), idx)


class MatchingLoss(nn.Module):
    """BCE of a matching head on the B positives and, per text and per image, the hardest in-batch negative.

    Loss = mean BCE over [B positives (label 1), text->hardest image negatives, image->hardest text
    negatives (label 0)]. Negatives are chosen without gradient (as in ALBEF's hard-negative mining).
    """

    def __init__(self, head: MatchingHead):
        super().__init__()
        self.head = head

    def forward(
        self, text: torch.Tensor, image: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        b = len(text)
        if mask is None:
            mask = torch.eye(b, dtype=torch.bool, device=text.device)
        with torch.no_grad():
            sim = text @ image.t()
            neg_img = hardest_negatives(sim, mask)
            neg_txt = hardest_negatives(sim.t(), mask.t())
        rows = torch.arange(b, device=text.device)
        ti, ii, labels = [rows], [rows], [torch.ones(b, device=text.device)]
        keep = neg_img >= 0
        ti.append(rows[keep])
        ii.append(neg_img[keep])
        keep2 = neg_txt >= 0
        ti.append(neg_txt[keep2])
        ii.append(rows[keep2])
        labels.append(torch.zeros(int(keep.sum()) + int(keep2.sum()), device=text.device))
        t_idx, i_idx = torch.cat(ti), torch.cat(ii)
        logits = self.head(text[t_idx], image[i_idx])
        return F.binary_cross_entropy_with_logits(logits, torch.cat(labels))
