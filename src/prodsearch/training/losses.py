"""Losses: modules taking features (never the model), as in open_clip.

* :class:`MultiPositiveInfoNCE`: CLIP's symmetric contrastive loss, with soft targets spreading the
  probability mass over every in-batch positive (same title or same photo), so that duplicates in
  a batch are not pushed apart as negatives.
* :class:`MatchingLoss`: the seed's matching objective: a small head scores (text, image) pairs,
  trained with binary cross-entropy on the positives and the hardest in-batch negatives.
* :class:`SigLIPLoss`: pairwise sigmoid loss (Zhai et al. 2023), every (text, image) pair an
  independent binary decision; a learnable bias lives in the loss module.
* :class:`AttributeCE`: cross-entropy of shared linear classifiers on both embeddings, one per
  categorical attribute column of the catalog (the seed's joint loss: the space must also sort
  products by type, colour, gender... whatever the shop's columns say).

:func:`parse_loss` reads the config's ``loss`` string ("contrastive+attribute"); the trainer builds
the terms it names. :func:`graded_targets` spreads part of a row's contrastive target over
products sharing all its attribute values (Marqo's GCL: graded rather than binary relevance).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from prodsearch.errors import ConfigError

#: Loss terms a config may join with "+"; exactly one of the alignment terms must be present.
LOSS_TERMS = ("contrastive", "siglip", "attribute", "matching")
ALIGNMENT_TERMS = ("contrastive", "siglip")


def parse_loss(spec: str) -> tuple[str, ...]:
    """``"contrastive+attribute"`` -> ``("contrastive", "attribute")``; errors name the bad term."""
    terms = tuple(t.strip().lower() for t in str(spec).split("+") if t.strip())
    bad = [t for t in terms if t not in LOSS_TERMS]
    if bad:
        raise ConfigError(
            f"loss={spec!r}: unknown term(s) {bad}; expected '+'-joined terms of {list(LOSS_TERMS)}"
        )
    aligned = [t for t in terms if t in ALIGNMENT_TERMS]
    if len(aligned) != 1:
        raise ConfigError(
            f"loss={spec!r}: name exactly one of {list(ALIGNMENT_TERMS)} (the term that aligns text and photos)"
        )
    if len(set(terms)) != len(terms):
        raise ConfigError(f"loss={spec!r}: a term is repeated")
    return terms


def graded_targets(mask: torch.Tensor, same_attributes: torch.Tensor, share: float) -> torch.Tensor:
    """``(B, B)`` float targets: ``(1 - share)`` spread uniformly over each row's positives (``mask``)
    plus ``share`` spread uniformly over positives and products with the same attribute values.

    ``share = 0`` gives the uniform-over-positives target of :class:`MultiPositiveInfoNCE`.
    """
    pos = mask.float()
    wider = (mask | same_attributes).float()
    return (1 - share) * pos / pos.sum(1, keepdim=True) + share * wider / wider.sum(1, keepdim=True)


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
        ``mask``: ``(B, B)`` bool positives (defaults to the identity), or float target weights
        (e.g. :func:`graded_targets`; each row and column is renormalised). Returns a scalar."""
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


class SigLIPLoss(nn.Module):
    """``-mean_ij log sigmoid(z_ij * (scale * t_i . v_j + bias))``, ``z_ij = +1`` for positives
    (``mask``), ``-1`` otherwise, averaged over rows as in the paper (sum over the row's pairs / B)."""

    def __init__(self, init_bias: float = -10.0):
        super().__init__()
        self.bias = nn.Parameter(torch.tensor(float(init_bias)))

    def forward(
        self,
        text: torch.Tensor,
        image: torch.Tensor,
        logit_scale: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        logits = logit_scale * text @ image.t() + self.bias
        if mask is None:
            mask = torch.eye(len(text), dtype=torch.bool, device=text.device)
        z = mask.bool().float() * 2 - 1
        return -F.logsigmoid(z * logits).sum() / len(text)


class AttributeCE(nn.Module):
    """One classifier per categorical attribute column, shared by both towers' embeddings.

    ``classes``: ``{column: [class names]}``. ``forward(text, image, labels)`` with ``labels``
    ``{column: (B,) long}`` (``-1`` = unknown / rare value, ignored) returns the mean over columns
    of ``(CE(text) + CE(image)) / 2``; columns with no known label in the batch are skipped.
    A shared classifier pulls a title and its photo towards the same class region, so the space is
    organised by the shop's own attributes (zero-shot colour and type improve with it).

    ``by_text=False``: a learned linear classifier per column. ``by_text=True`` (UniCL's image-label
    contrast): the classifier of a column is the embedded text of its value names, passed to
    :meth:`forward` as ``class_embeddings`` ``{column: (C, D)}`` unit rows, with logits
    ``scale * embedding @ class_embeddings.T``. The space then learns that the photo of a navy shirt
    is nearer the text "Navy Blue" than any other colour's name, which is what a shopper's short
    query and the zero-shot protocol ask of it; gradients reach the text head (and tower) too.
    """

    def __init__(self, dim: int, classes: Mapping[str, Sequence[str]], by_text: bool = False):
        super().__init__()
        self.classes = {c: list(v) for c, v in classes.items()}
        self.columns = list(self.classes)
        self.by_text = by_text
        self.heads = nn.ModuleList([] if by_text else [nn.Linear(dim, len(v)) for v in self.classes.values()])
        # embeddings are unit norm: a fixed scale lets the logits reach confident values (NormFace)
        self.scale = math.sqrt(dim)

    def forward(
        self,
        text: torch.Tensor,
        image: torch.Tensor,
        labels: Mapping[str, torch.Tensor],
        class_embeddings: Mapping[str, torch.Tensor] | None = None,
        logit_scale: torch.Tensor | float | None = None,
    ) -> torch.Tensor:
        if self.by_text and class_embeddings is None:
            raise ValueError("AttributeCE(by_text=True) needs the class_embeddings of the value names")
        terms = []
        for i, col in enumerate(self.columns):
            y = labels[col]
            if not bool((y >= 0).any()):
                continue
            if self.by_text:
                w = class_embeddings[col]  # (C, D), unit rows
                scale = self.scale if logit_scale is None else logit_scale
                lt, li = scale * text @ w.T, scale * image @ w.T
            else:
                head = self.heads[i]
                lt, li = head(self.scale * text), head(self.scale * image)
            terms.append(
                (F.cross_entropy(lt, y, ignore_index=-1) + F.cross_entropy(li, y, ignore_index=-1)) / 2
            )
        if not terms:
            return text.new_zeros(())
        return torch.stack(terms).mean()
