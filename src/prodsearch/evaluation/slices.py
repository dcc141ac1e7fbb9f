"""Per-slice metrics: every per-query metric averaged within each value of one attribute of the
product a query was made from (e.g. gender, master category), to show which shoppers a system
serves worse than others."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from prodsearch.errors import ConfigError
from prodsearch.evaluation import metrics as M
from prodsearch.evaluation.corpus import Corpus
from prodsearch.evaluation.fields import attribute_names

#: Label of queries whose source product has no value in the slice field.
MISSING = "(missing)"


def check_slice_field(corpus: Corpus, name: str) -> None:
    """Raise :class:`ConfigError` naming ``name`` and the valid fields if it is not an attribute column."""
    names = attribute_names(corpus.products)
    if name not in names:
        raise ConfigError(
            f"slice field {name!r} is not an attribute column of this catalog; attribute columns: {names}"
        )


def slice_labels(corpus: Corpus, name: str, source: np.ndarray) -> list[str]:
    """Slice value of each query's source product (``MISSING`` when empty)."""
    values = corpus.attribute(name)
    return [values[int(p)] or MISSING for p in np.asarray(source).tolist()]


def slice_means(per_query: Mapping[str, np.ndarray], labels: Sequence[str]) -> dict[str, dict[str, float]]:
    """``{slice_value: {metric: mean over that slice's queries}}`` (NaN-skipping means).

    ``per_query``: ``{metric: (Q,)}``; ``labels``: (Q,) slice value per query. Slices are ordered by size.
    """
    labels_arr = np.asarray(labels, dtype=object)
    order = sorted(set(labels), key=lambda v: (-int((labels_arr == v).sum()), str(v)))
    out: dict[str, dict[str, float]] = {}
    for v in order:
        sel = labels_arr == v
        out[str(v)] = {m: M.mean(np.asarray(vals)[sel]) for m, vals in per_query.items()}
    return out


def slice_counts(labels: Sequence[str]) -> dict[str, int]:
    values, counts = np.unique(np.asarray(labels, dtype=object).astype(str), return_counts=True)
    pairs = sorted(zip(values.tolist(), counts.tolist(), strict=True), key=lambda x: (-x[1], x[0]))
    return {v: int(c) for v, c in pairs}
