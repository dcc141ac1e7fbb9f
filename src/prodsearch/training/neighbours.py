"""Neighbour titles: a photo's joint embedding borrows the titles of the training photos most like it.

The frozen features of a small ImageNet network tell look-alike photos apart far better than a head
trained on them can describe a photo: on the fashion catalog a photo finds its own product at
hit@1 .6 through those features, while the trained heads can only learn what the catalog's
attribute columns and short titles teach them (type, colour, gender). Photos of one product line,
one brand's studio, one style in another colour lie close together in that space, and their
titles say what the heads cannot: the brand, the line, the style. So once the heads are trained,
each photo's embedding gets, beside the head's output, the joint embeddings of the titles of its
``k`` nearest training photos (cosine of the head's input features), softmax-weighted::

    t(x) = sum_j softmax(cos(x, n_j) / tau) * title(n_j)
    a(x) = normalize(head(x) + beta * t(x))
    photo in the index:  v(x) = [a(x), head(x)] / sqrt(2)
    text query:          u(q) = [text(q), gamma * text(q)]
    photo query:         p(x) = [0, head(x)]

A typed query ranks the index's photos by ``text(q) . a(x) + gamma * text(q) . head(x)``:
Tip-Adapter's cache model (Zhang et al., ECCV 2022) with titles as the cached values, plus a small
share (:data:`TEXT_HEAD_SHARE`) of the heads' own match. The look-alikes' titles name the brand
and style; the heads name colour better (on the whole fashion catalog, gamma .2 vs 0: zero-shot
baseColour .603 vs .578, title -> photo test MRR .222 either way, recall@10 .353 vs .348). A
photo query ranks them by ``head(x') . head(x)``, the heads alone: the look-alikes' titles would blur one photo against
another (on the fashion catalog the trained space found an augmented photo's product at hit@1 .26
with them in both the query and the index, .38 without). A photo and a typed query together add
the two; similar products (an indexed photo against the others) weigh both halves equally.
Photos identical to the query (cosine above :data:`SAME_PHOTO`), the photo itself included, are left
out, so a training photo is described by its look-alikes, not by its own title, in training's test
report and in the served index alike.

Which photos count as look-alikes depends on what the features weigh. An encoder that says where
the parts of its features lie (``feature_parts``: the rich EfficientNet features' pooled top, pooled
intermediate blocks and colour histogram) gets its parts re-weighted for the search of neighbours,
one of :data:`KEY_MIXES`: on the fashion catalog the intermediate blocks (shape, pattern, the
studio's framing of one product line) find photos whose titles match far better than the top's
ImageNet classes or the colour histogram do (validation MRR .226 vs .204 with the encoder's own
weights). The mix is fitted with ``k``, ``tau`` and ``beta`` on the validation
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
#: gamma: the share of the heads' half a text query reads beside the neighbour mix.
TEXT_HEAD_SHARE = 0.2
#: Candidate weightings of the key features' parts for the neighbour search, fitted with the grid:
#: a multiplier per part named by the encoder's ``feature_parts`` (1 where not named). "encoded"
#: keeps the encoder's own weights; "mid-level" leans on the intermediate blocks, without colour.
KEY_MIXES: dict[str, dict[str, float]] = {"encoded": {}, "mid-level": {"taps": 4.0, "colour": 0.0}}

#: The state-dict key prefix of the module inside :class:`~prodsearch.training.model.JointModel`.
PREFIX = "neighbours."


def key_weights(dim: int, parts: dict[str, tuple[int, int]] | None, mix: dict[str, float]) -> torch.Tensor:
    """The ``(dim,)`` per-feature multipliers of ``mix`` (part name -> multiplier) over ``parts``
    (part name -> ``(start, stop)``); ones where no part is named."""
    w = torch.ones(dim)
    for name, mult in mix.items():
        if parts and name in parts:
            start, stop = parts[name]
            w[start:stop] = mult
    return w


def key_mixes(dim: int, parts: dict[str, tuple[int, int]] | None) -> dict[str, torch.Tensor]:
    """The :data:`KEY_MIXES` that differ on features laid out as ``parts``, as multipliers."""
    out: dict[str, torch.Tensor] = {}
    for name, mix in KEY_MIXES.items():
        w = key_weights(dim, parts, mix)
        if not any(torch.equal(w, seen) for seen in out.values()):
            out[name] = w
    return out


class NeighbourTitles(nn.Module):
    """A bank of training photos (``keys``: their head-input features, ``(B, F)``) and their titles'
    joint embeddings (``values``, ``(B, D)``), stored in half precision, and the fitted ``k``,
    ``tau`` and ``beta`` and key weights (buffers too, so a checkpoint carries everything). Features
    are compared as ``normalize(feats * key_weights)`` (ones: as they are); the bank is stored so."""

    def __init__(
        self,
        keys: torch.Tensor,
        values: torch.Tensor,
        k: int,
        tau: float,
        beta: float,
        key_weights: torch.Tensor | None = None,
    ):
        super().__init__()
        if len(keys) != len(values):
            raise ValueError(f"{len(keys)} keys but {len(values)} values")
        w = torch.ones(keys.shape[1]) if key_weights is None else key_weights.float().flatten()
        if len(w) != keys.shape[1]:
            raise ValueError(f"{len(w)} key weights for {keys.shape[1]}-d keys")
        self.register_buffer("key_weights", w)
        self.register_buffer("keys", F.normalize(keys.float() * w, dim=1).half())
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

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        self._keys32 = None
        if prefix + "keys" in state_dict and prefix + "key_weights" not in state_dict:
            # a bank saved before key weights existed compared the features as they are
            state_dict[prefix + "key_weights"] = torch.ones(state_dict[prefix + "keys"].shape[1])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

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
            x = feats[s : s + chunk].float().to(bank.device) * self.key_weights.to(bank.device)
            c = F.normalize(x, dim=1) @ bank.t()
            c = c.masked_fill(c > SAME_PHOTO, -2.0)
            v, i = c.topk(k, dim=1)
            sims.append(v)
            rows.append(i)
        if not sims:
            return torch.zeros(0, k), torch.zeros(0, k, dtype=torch.long)
        return torch.cat(sims), torch.cat(rows)

    def titles(
        self, sims: torch.Tensor, rows: torch.Tensor, k: int | None = None, tau: float | None = None
    ) -> torch.Tensor:
        """``(N, D)``: the softmax(cos / tau)-weighted titles of each photo's first ``k`` neighbours
        (from :meth:`neighbours`), as one sparse ``(N, bank)`` x ``(bank, D)`` product. Neighbours
        that do not exist (a bank smaller than k, or only identical photos) carry no weight."""
        k = self.k if k is None else k
        tau = self.tau if tau is None else tau
        s, r = sims[:, :k], rows[:, :k]
        w = torch.softmax(s / tau, dim=1).masked_fill(s <= -2.0, 0.0)
        values = self.values.float().to(w.device)
        n, kk = r.shape
        index = torch.stack([torch.arange(n, device=r.device).repeat_interleave(kk), r.reshape(-1)])
        weights = torch.sparse_coo_tensor(
            index.to(w.device), w.reshape(-1), (n, len(values)), check_invariants=False
        )
        return torch.sparse.mm(weights, values)

    @staticmethod
    def combine(emb: torch.Tensor, titles: torch.Tensor, beta: float) -> torch.Tensor:
        """The index's ``(N, 2D)`` photo vectors (the module docstring's ``v``) from the head's
        ``(N, D)`` embeddings and :meth:`titles`: ``normalize(head + beta * titles)`` beside the head
        alone, unit norm."""
        head = F.normalize(emb.float(), dim=-1)
        return torch.cat([F.normalize(head + beta * titles.to(head.device), dim=-1), head], dim=-1) / 2**0.5

    def mix(
        self,
        emb: torch.Tensor,
        sims: torch.Tensor,
        rows: torch.Tensor,
        k: int | None = None,
        tau: float | None = None,
        beta: float | None = None,
    ) -> torch.Tensor:
        """The index's ``(N, 2D)`` photo vectors: :meth:`combine` of :meth:`titles` (``k``, ``tau``)
        with ``beta`` (each the fitted one when omitted)."""
        return self.combine(emb, self.titles(sims, rows, k, tau), self.beta if beta is None else beta)

    @staticmethod
    def text(emb: torch.Tensor) -> torch.Tensor:
        """Text queries ``(N, D)`` -> ``(N, 2D)``: the first half, and :data:`TEXT_HEAD_SHARE` x the
        query in the second."""
        emb = F.normalize(emb.float(), dim=-1)
        return torch.cat([emb, TEXT_HEAD_SHARE * emb], dim=-1)

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
    mixes: dict[str, torch.Tensor | None] | None = None,
    grid_k: Sequence[int] | None = None,
    grid_tau: Sequence[float] | None = None,
    grid_beta: Sequence[float] | None = None,
    min_gain: float | None = None,
    min_queries: int | None = None,
) -> tuple[NeighbourTitles | None, dict[str, Any]]:
    """Fit the key mix, ``k``, ``tau`` and ``beta`` on the validation split.

    ``keys``/``values``: the training photos' head-input features and their titles' joint
    embeddings (the bank); ``gallery_feats``/``gallery_emb``: every catalog photo's features and head
    embedding (the evaluation gallery); ``queries``: the validation titles' joint embeddings;
    ``score(queries, gallery)`` -> validation ``{"mrr", "r10", ...}`` of text -> photo search;
    ``n_queries``: how many validation titles it ranks; ``mixes``: candidate key weights by name
    (:func:`key_mixes`; default: the features as they are).
    Returns the module (None when the transfer does not help) and a report of what was tried.
    Omitted arguments take this module's constants (read at call time)."""
    grid_k = GRID_K if grid_k is None else grid_k
    grid_tau = GRID_TAU if grid_tau is None else grid_tau
    grid_beta = GRID_BETA if grid_beta is None else grid_beta
    min_gain = MIN_GAIN if min_gain is None else min_gain
    min_queries = MIN_QUERIES if min_queries is None else min_queries
    mixes = mixes or {"encoded": None}
    report: dict[str, Any] = {"bank": len(keys), "val_queries": n_queries}
    if n_queries < min_queries or len(keys) < 2:
        report["used"] = False
        report["why"] = (
            f"{n_queries} validation titles, {len(keys)} training photos (needs {min_queries} and 2)"
        )
        return None, report
    base = score(queries, gallery_emb)
    report["val_without"] = {k: round(v, 4) for k, v in base.items()}
    best: tuple[float, str, int, float, float, dict[str, float]] | None = None
    chosen: NeighbourTitles | None = None
    tried = []
    for name, weights in mixes.items():
        module = NeighbourTitles(keys, values, max(grid_k), grid_tau[0], 0.0, key_weights=weights)
        sims, rows = module.neighbours(gallery_feats, max(grid_k))
        text = module.text(queries)
        for k, tau in itertools.product(grid_k, grid_tau):
            titles = module.titles(sims, rows, k, tau)  # beta only scales them: mixed once per (k, tau)
            for beta in grid_beta:
                m = score(text, module.combine(gallery_emb, titles, beta))
                tried.append({"keys": name, "k": k, "tau": tau, "beta": beta, "val_mrr": round(m["mrr"], 4)})
                if best is None or m["mrr"] > best[0]:
                    best, chosen = (m["mrr"], name, k, tau, beta, m), module
            del titles
        del sims, rows
    report["tried"] = tried
    assert best is not None and chosen is not None
    gain = best[0] - base["mrr"]
    report["val_with"] = {k: round(v, 4) for k, v in best[5].items()}
    report["val_mrr_gain"] = round(gain, 4)
    if gain < min_gain:
        report["used"] = False
        report["why"] = f"validation MRR gain {gain:+.4f} below {min_gain}"
        return None, report
    chosen.params.copy_(torch.tensor([best[2], best[3], best[4]], dtype=torch.float64))
    report.update(used=True, keys=best[1], k=best[2], tau=best[3], beta=best[4])
    return chosen, report


__all__ = [
    "NeighbourTitles",
    "fit_neighbour_titles",
    "key_mixes",
    "key_weights",
    "KEY_MIXES",
    "SAME_PHOTO",
    "PREFIX",
]
