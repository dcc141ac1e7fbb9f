"""Zero-shot classification: predict an attribute column from the photo by matching the product's
image vector against text prompts of the column's values (CLIP's zero-shot protocol).

Needs an aligned embedder (CLIP or a ``prodsearch train`` run). Image vectors are the corpus's
stored ones (never recomputed). Reports accuracy, weighted F1 and the confusion matrix.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from prodsearch.evaluation import metrics as M
from prodsearch.evaluation.corpus import Corpus
from prodsearch.evaluation.protocols import ProtocolSkipped
from prodsearch.evaluation.systems import EmbeddedCorpus

#: Language-neutral default prompt: the value itself (an English "a photo of {value}" would be wrong
#: for a German or French catalog).
DEFAULT_PROMPT = "{value}"
#: A value is a class when at least this many catalog products carry it (rarer values are not
#: queried: a handful of examples is noise, and free text never repeats).
MIN_CLASS_COUNT = 20
#: Fields with more classes than this (after dropping rare values) are not classification columns.
MAX_CLASSES = 100


@dataclass
class ZeroShotResult:
    field: str
    labels: list[str]  # class names, index = class id
    source: np.ndarray  # (Q,) corpus positions classified
    y_true: np.ndarray  # (Q,) class ids
    y_pred: np.ndarray  # (Q,) class ids
    prompt: str = DEFAULT_PROMPT
    extra: dict = field(default_factory=dict)

    @property
    def confusion(self) -> np.ndarray:
        return M.confusion_matrix(self.y_true, self.y_pred, len(self.labels))

    def metrics(self) -> dict[str, float]:
        conf = self.confusion
        return {
            f"zeroshot/{self.field}/accuracy": M.accuracy(conf),
            f"zeroshot/{self.field}/f1_weighted": M.weighted_f1(conf),
        }

    def correct(self) -> np.ndarray:
        """(Q,) 1.0 where the prediction is right (per-query accuracy, for slicing)."""
        return (self.y_true == self.y_pred).astype(np.float64)

    def confusion_summary(self, top: int = 20) -> dict:
        """The confusion matrix restricted to the ``top`` most frequent true classes (for JSON / plots)."""
        counts = Counter(self.y_true.tolist())
        keep = [c for c, _ in counts.most_common(top)]
        conf = self.confusion[np.ix_(keep, keep)]
        return {
            "labels": [self.labels[c] for c in keep],
            "matrix": conf.tolist(),
            "classes": len(self.labels),
            "shown": len(keep),
        }


def zero_shot(
    emb: EmbeddedCorpus,
    corpus: Corpus,
    field_name: str,
    *,
    max_queries: int = 2000,
    seed: int = 0,
    prompt: str = DEFAULT_PROMPT,
) -> ZeroShotResult:
    """Classify up to ``max_queries`` test-split products with a photo by ``field_name``."""
    if not emb.aligned:
        raise ProtocolSkipped(
            f"zeroshot: embedder {emb.name!r} is not aligned (text prompts cannot be compared "
            "with image vectors); pass a `prodsearch train` run or CLIP with --model"
        )
    if "image" not in emb.vectors:
        raise ProtocolSkipped(f"zeroshot: embedder {emb.name!r} has no image vectors")
    values = corpus.attribute(field_name)
    counts: dict[str, int] = {}
    for v in values:
        if v is not None:
            counts[v] = counts.get(v, 0) + 1
    min_count = min(MIN_CLASS_COUNT, max(1, len(values) // 100))  # small catalogs: 1% of products
    labels = sorted(v for v, n in counts.items() if n >= min_count)
    if len(labels) < 2:
        raise ProtocolSkipped(
            f"zeroshot: field {field_name!r} has {len(labels)} value(s) on >= {min_count} products; needs >= 2"
        )
    if len(labels) > MAX_CLASSES:
        raise ProtocolSkipped(
            f"zeroshot: field {field_name!r} has {len(labels)} values on >= {min_count} products "
            f"(> {MAX_CLASSES}); not a classification column (free text or identifiers)"
        )
    values = [v if v in set(labels) else None for v in values]  # rare values are not queried
    pos_of_vec, vecs = emb.vectors["image"]
    row_of = {int(p): r for r, p in enumerate(pos_of_vec.tolist())}
    cand = [int(p) for p in np.sort(corpus.test) if values[p] is not None and int(p) in row_of]
    if not cand:
        raise ProtocolSkipped(f"zeroshot: no test product with a photo has a value in {field_name!r}")
    rng = np.random.default_rng([seed, 5])
    src = np.asarray(cand, dtype=np.int64)[rng.permutation(len(cand))][:max_queries]
    class_of = {v: i for i, v in enumerate(labels)}
    prompts = [prompt.format(value=v, field=field_name) for v in labels]
    text_vecs = np.asarray(emb.embedder.encode_text(prompts), dtype=np.float32)  # (C, D)
    img = vecs[[row_of[int(p)] for p in src]]  # (Q, D)
    y_pred = np.argmax(img @ text_vecs.T, axis=1).astype(np.int64)
    y_true = np.asarray([class_of[values[p]] for p in src.tolist()], dtype=np.int64)
    return ZeroShotResult(field_name, labels, src, y_true, y_pred, prompt=prompt)
