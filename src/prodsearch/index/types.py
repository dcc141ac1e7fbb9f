"""Result types shared by the vector index, the lexical index and fusion (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Hits:
    """A ranked list of products, best first.

    ``iids``: (N,) int64 internal product ids; ``scores``: (N,) float32, non-increasing.
    What a score means depends on the producer (inner product, BM25, fused score).
    """

    iids: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        iids = np.asarray(self.iids, dtype=np.int64).reshape(-1)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if iids.shape != scores.shape:
            raise ValueError(f"Hits: iids {iids.shape} and scores {scores.shape} must have the same length")
        object.__setattr__(self, "iids", iids)
        object.__setattr__(self, "scores", scores)

    @classmethod
    def empty(cls) -> Hits:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.float32))

    def __len__(self) -> int:
        return int(self.iids.shape[0])

    def to_dict(self) -> dict[int, float]:
        """``{iid: score}`` (insertion order = rank order)."""
        return {int(i): float(s) for i, s in zip(self.iids.tolist(), self.scores.tolist(), strict=True)}

    def ranks(self) -> dict[int, int]:
        """``{iid: 1-based rank}``."""
        return {int(i): r for r, i in enumerate(self.iids.tolist(), start=1)}

    def head(self, k: int) -> Hits:
        return Hits(self.iids[:k], self.scores[:k])


def top_k(iids: np.ndarray, scores: np.ndarray, k: int) -> Hits:
    """The ``k`` best of ``scores`` (N,) as :class:`Hits`; ties broken by smaller iid, so results are deterministic."""
    iids = np.asarray(iids, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float32)
    n = scores.shape[0]
    if k <= 0 or n == 0:
        return Hits.empty()
    if k < n:
        # argpartition alone would break ties arbitrarily at the k-th place; keep every tied candidate
        kth = np.partition(scores, n - k)[n - k]
        cand = np.nonzero(scores >= kth)[0]
    else:
        cand = np.arange(n)
    order = np.lexsort((iids[cand], -scores[cand]))[:k]
    sel = cand[order]
    return Hits(iids[sel], scores[sel])
