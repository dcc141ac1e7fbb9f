"""Neighbour titles: a photo's joint embedding borrows the titles of the training photos most like it.

The frozen features of a small ImageNet network tell look-alike photos apart far better than a head
trained on them can name what a photo shows: on the fashion catalog a photo finds its own product
at hit@1 .6 through those features, while the trained head names the article type of a held-out
photo at .74. Photos of one product line, one brand's studio, one style in another colour lie close
together in that space, and their titles say what the head cannot. So once the heads are trained,
each photo's embedding gets, beside the head's output, the joint embeddings of the titles of its
``k`` nearest training photos (cosine of the head's input features), softmax-weighted::

    t(x) = sum_j softmax(cos(x, n_j) / tau) * title(n_j)
    a(x) = normalize(head(x) + beta * t(x))
    photo in the index:  v(x) = [a(x), head(x)] / sqrt(2)
    text query:          u(q) = [text(q), 0]
    photo query:         p(x) = [0, head(x)]

A typed query ranks the index's photos by ``text(q) . a(x)``: Tip-Adapter's cache model (Zhang
et al., ECCV 2022) with titles as the cached values. A photo query ranks them by
``head(x') . head(x)``, the heads alone: the look-alikes' titles would blur one photo against
another (on the fashion catalog the trained space found an augmented photo's product at hit@1 .26
with them in both the query and the index, .38 without). A photo and a typed query together add
the two; similar products (an indexed photo against the others) weigh both halves equally.
Photos identical to the query (cosine above :data:`SAME_PHOTO`), the photo itself included, are left
out, so a training photo is described by its look-alikes, not by its own title, in training's test
report and in the served index alike. ``k``, ``tau`` and ``beta`` are fitted on the validation
split (text -> photo MRR, the leaderboard protocol); the transfer stays off unless it helps there by
at least :data:`MIN_GAIN` on at least :data:`MIN_QUERIES` titles. The bank holds the training split
only: no held-out title reaches the test report or `prodsearch evaluate`.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

#: Cosine above which two photos count as the same photo (left out as each other's neighbour).
SAME_PHOTO = 0.999
#: The grid fitted on the validation split. ``tau`` is on the scale of cosines of the frozen
#: features, whose nearest neighbours lie within a few hundredths of each other.
GRID_K = (10, 20)
GRID_TAU = (0.01, 0.02, 0.03)
GRID_BETA = (0.5, 1.0, 2.0)
#: The transfer is kept only when it lifts validation MRR by this much, over this many titles.
MIN_GAIN = 0.005
MIN_QUERIES = 50

#: The state-dict key prefix of the module inside :class:`~prodsearch.training.model.JointModel`.
PREFIX = "neighbours."


class NeighbourTitles(nn.Module):
    """A bank of training photos (``keys``: unit-norm head-input features, ``(B, F)``) and their
    titles' joint embeddings (``values``, ``(B, D)``), stored in half precision, and the fitted
    ``k``, ``tau`` and ``beta`` (buffers too, so a checkpoint carries everything)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, k: int, tau: float, beta: float):
        super().__init__()
        if len(keys) != len(values):
            raise ValueError(f"{len(keys)} keys but {len(values)} values")
        self.register_buffer("keys", F.normalize(keys.float(), dim=1).half())
        self.register_buffer("values", values.float().half())
        self.register_buffer("params", torch.tensor([float(k), float(tau), float(beta)], dtype=torch.float64))
        self._keys32: torch.Tensor | None = None

    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor], prefix: str = PREFIX) -> NeighbourTitles | None:
        """An empty module shaped like the one saved in ``sd`` (for ``load_state_dict``), or None."""
        keys, values = sd.get(prefix + "keys"), sd.get(prefix + "values")
        if keys is None or values is None:
            return None
        return cls(torch.zeros(keys.shape), torch.zeros(values.shape), 1, 1.0, 0.0)

    @property
    def k(self) -> int:
        return int(self.params[0])

    @property
    def tau(self) -> float:
        return float(self.params[1])

    @property
    def beta(self) -> float:
        return float(self.params[2])

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._keys32 = None
        super()._load_from_state_dict(*args, **kwargs)

    def _bank(self) -> torch.Tensor:
        if self._keys32 is None or self._keys32.device != self.keys.device:
            self._keys32 = self.keys.float()
        return self._keys32

    @torch.no_grad()
    def neighbours(self, feats: torch.Tensor, k: int, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, F)`` features -> cosines ``(N, k)`` and bank rows ``(N, k)`` of the ``k`` nearest
        bank photos that are not the same photo, nearest first."""
        bank = self._bank()
        k = min(k, len(bank))
        sims, rows = [], []
        for s in range(0, len(feats), chunk):
            c = F.normalize(feats[s : s + chunk].float().to(bank.device), dim=1) @ bank.t()
            c = c.masked_fill(c > SAME_PHOTO, -2.0)
            v, i = c.topk(k, dim=1)
            sims.append(v)
            rows.append(i)
        if not sims:
            return torch.zeros(0, k), torch.zeros(0, k, dtype=torch.long)
        return torch.cat(sims), torch.cat(rows)

    def mix(
        self,
        emb: torch.Tensor,
        sims: torch.Tensor,
        rows: torch.Tensor,
        k: int | None = None,
        tau: float | None = None,
        beta: float | None = None,
    ) -> torch.Tensor:
        """The index's ``(N, 2D)`` photo vectors (the module docstring's ``v``): the head's ``(N, D)``
        embeddings plus ``beta`` x the softmax(cos / tau)-weighted titles of the first ``k``
        neighbours (from :meth:`neighbours`), unit norm, beside the head's embeddings alone.
        Neighbours that do not exist (a bank smaller than k, or only identical photos) carry no
        weight."""
        k = self.k if k is None else k
        tau = self.tau if tau is None else tau
        beta = self.beta if beta is None else beta
        s, r = sims[:, :k], rows[:, :k]
        w = torch.softmax(s / tau, dim=1).masked_fill(s <= -2.0, 0.0)
        titles = (w.unsqueeze(-1) * self.values.float()[r]).sum(dim=1).to(emb.device)
        head = F.normalize(emb.float(), dim=-1)
        return torch.cat([F.normalize(head + beta * titles, dim=-1), head], dim=-1) / 2**0.5

    @staticmethod
    def text(emb: torch.Tensor) -> torch.Tensor:
        """Text queries ``(N, D)`` -> ``(N, 2D)``: the first half."""
        emb = F.normalize(emb.float(), dim=-1)
        return torch.cat([emb, torch.zeros_like(emb)], dim=-1)

    @staticmethod
    def photo_query(emb: torch.Tensor) -> torch.Tensor:
        """Photo queries ``(N, D)`` -> ``(N, 2D)``: the second half."""
        emb = F.normalize(emb.float(), dim=-1)
        return torch.cat([torch.zeros_like(emb), emb], dim=-1)

    @staticmethod
    def out_dim(embed_dim: int) -> int:
        """The size of the vectors it gives a ``embed_dim`` space."""
        return 2 * embed_dim

    def forward(self, feats: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        sims, rows = self.neighbours(feats, self.k)
        return self.mix(emb, sims, rows)


def fit_neighbour_titles(
    keys: torch.Tensor,
    values: torch.Tensor,
    gallery_feats: torch.Tensor,
    gallery_emb: torch.Tensor,
    queries: torch.Tensor,
    score: Callable[[torch.Tensor, torch.Tensor], dict[str, float]],
    n_queries: int,
    *,
    grid_k: Sequence[int] | None = None,
    grid_tau: Sequence[float] | None = None,
    grid_beta: Sequence[float] | None = None,
    min_gain: float | None = None,
    min_queries: int | None = None,
) -> tuple[NeighbourTitles | None, dict[str, Any]]:
    """Fit ``k``, ``tau`` and ``beta`` on the validation split.

    ``keys``/``values``: the training photos' head-input features and their titles' joint
    embeddings (the bank); ``gallery_feats``/``gallery_emb``: every catalog photo's features and head
    embedding (the evaluation gallery); ``queries``: the validation titles' joint embeddings;
    ``score(queries, gallery)`` -> validation ``{"mrr", "r10", ...}`` of text -> photo search;
    ``n_queries``: how many validation titles it ranks.
    Returns the module (None when the transfer does not help) and a report of what was tried.
    Omitted arguments take this module's constants (read at call time)."""
    grid_k = GRID_K if grid_k is None else grid_k
    grid_tau = GRID_TAU if grid_tau is None else grid_tau
    grid_beta = GRID_BETA if grid_beta is None else grid_beta
    min_gain = MIN_GAIN if min_gain is None else min_gain
    min_queries = MIN_QUERIES if min_queries is None else min_queries
    report: dict[str, Any] = {"bank": len(keys), "val_queries": n_queries}
    if n_queries < min_queries or len(keys) < 2:
        report["used"] = False
        report["why"] = (
            f"{n_queries} validation titles, {len(keys)} training photos (needs {min_queries} and 2)"
        )
        return None, report
    module = NeighbourTitles(keys, values, max(grid_k), grid_tau[0], 0.0)
    sims, rows = module.neighbours(gallery_feats, max(grid_k))
    base = score(queries, gallery_emb)
    report["val_without"] = {k: round(v, 4) for k, v in base.items()}
    best: tuple[float, int, float, float, dict[str, float]] | None = None
    tried = []
    for k, tau, beta in itertools.product(grid_k, grid_tau, grid_beta):
        m = score(module.text(queries), module.mix(gallery_emb, sims, rows, k, tau, beta))
        tried.append({"k": k, "tau": tau, "beta": beta, "val_mrr": round(m["mrr"], 4)})
        if best is None or m["mrr"] > best[0]:
            best = (m["mrr"], k, tau, beta, m)
    report["tried"] = tried
    assert best is not None
    gain = best[0] - base["mrr"]
    report["val_with"] = {k: round(v, 4) for k, v in best[4].items()}
    report["val_mrr_gain"] = round(gain, 4)
    if gain < min_gain:
        report["used"] = False
        report["why"] = f"validation MRR gain {gain:+.4f} below {min_gain}"
        return None, report
    module.params.copy_(torch.tensor([best[1], best[2], best[3]], dtype=torch.float64))
    report.update(used=True, k=best[1], tau=best[2], beta=best[3])
    return module, report


__all__ = ["NeighbourTitles", "fit_neighbour_titles", "SAME_PHOTO", "PREFIX"]
