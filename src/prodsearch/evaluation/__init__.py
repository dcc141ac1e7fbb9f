"""Retrieval evaluation on a shop's own catalog.

``metrics`` (pure numpy) -> ``qrels`` (judgements, gain matrices) -> ``protocols`` (title->image,
attribute queries, image->product) and ``zeroshot`` -> ``systems`` (BM25, dense text, image,
hybrid; per model run) -> ``slices`` -> ``report`` (metrics.json, report.md, report.html);
``runner.run_evaluation`` is what ``prodsearch evaluate`` calls. Nothing heavy is imported here.
"""
