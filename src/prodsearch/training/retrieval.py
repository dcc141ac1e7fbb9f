"""Validation retrieval metrics (self-contained, multi-relevant): R@k and MRR of text -> image search.

A query is relevant to every document with the same key (the title), as in the Marqo-FashionCLIP
leaderboard protocol. R@k = mean over queries of the share of their relevant documents in the
top k (recall, as ``prodsearch evaluate`` computes it: one protocol, one metric under one name);
MRR = mean of 1 / rank of the first relevant document (0 beyond ``max_rank``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


@torch.no_grad()
def retrieval_metrics(
    queries: torch.Tensor,
    docs: torch.Tensor,
    query_keys: Sequence[int],
    doc_keys: Sequence[int],
    ks: Sequence[int] = (1, 10),
    max_rank: int = 1000,
    chunk: int = 1024,
) -> dict[str, float]:
    """``queries (Q, D)``, ``docs (N, D)`` unit norm; keys are ints. Returns ``{"r1", "r10", ..., "mrr"}``."""
    qk = torch.as_tensor(list(query_keys))
    dk = torch.as_tensor(list(doc_keys))
    depth = min(max_rank, len(docs))
    hits = {k: 0.0 for k in ks}
    rr = 0.0
    for s in range(0, len(queries), chunk):
        sims = queries[s : s + chunk].float() @ docs.float().t()
        # ties go to the smaller document position, as in the evaluation's exact search
        # (evaluation/systems.py exact_topk), so both report the same numbers
        order = torch.arange(len(docs), dtype=torch.float64) * 1e-13
        top = (sims.double() - order).topk(depth, dim=1).indices  # (q, depth)
        rel = dk[top] == qk[s : s + chunk, None]  # (q, depth)
        n_rel = (dk[None, :] == qk[s : s + chunk, None]).sum(dim=1).clamp(min=1)  # (q,)
        any_rel = rel.any(dim=1)
        first = torch.where(
            any_rel, rel.float().argmax(dim=1), torch.full_like(any_rel, depth, dtype=torch.long)
        )
        for k in ks:  # recall@k: the share of the query's relevant documents found in the top k
            hits[k] += float((rel[:, :k].sum(dim=1) / n_rel).sum())
        rr += float(
            torch.where(any_rel, 1.0 / (first.float() + 1), torch.zeros_like(first, dtype=torch.float)).sum()
        )
    n = max(len(queries), 1)
    out = {f"r{k}": hits[k] / n for k in ks}
    out["mrr"] = rr / n
    return out
