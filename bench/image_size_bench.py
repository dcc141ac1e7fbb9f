"""Photo input size for the untuned index (issue 8: native-resolution inputs): the speed and the
image-search quality of EfficientNet-Lite0's pooled vectors at the size chosen from the catalog's
photos ("native": 1.5x their median longer side, rounded up to 32, within 128..224) against fixed
sizes, side by side in one run on the same products and queries.

Usage::

    python bench/image_size_bench.py [--catalog fashion|grocery] [--products 3000] [--sizes native,128,224]
                                     [--max-queries 1000] [--record]

Quality: the evaluation's image2product protocol (augmented photos -> their own product among every
product's photo: hit@1, hit@10, MRR; and the share of the top 10 with the query's type and colour).
Speed: photos/s encoding the gallery (decoding included), onnxruntime, the encoder's own workers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, brute_rank, protocol_scores, record_run, table  # noqa: E402

SHARED = ROOT.parent / "shared" / "datasets"
CATALOGS = {
    "fashion": SHARED / "fashion-product-images-small" / "styles.csv",
    "grocery": SHARED / "grocery-store" / "products.csv",
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", choices=sorted(CATALOGS), default="fashion")
    ap.add_argument("--products", type=int, default=3000, help="the first N products")
    ap.add_argument("--sizes", default="native,128,224")
    ap.add_argument("--max-queries", type=int, default=1000)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args(argv)

    from prodsearch.catalog.readers import read_catalog
    from prodsearch.encoders.base import l2_normalize
    from prodsearch.encoders.image import EfficientNetLiteEncoder, median_photo_side, size_for_photos
    from prodsearch.evaluation.corpus import Corpus
    from prodsearch.evaluation.fields import resolve_fields
    from prodsearch.evaluation.protocols import image_queries

    products = list(read_catalog(CATALOGS[args.catalog]).products)[: args.products]
    corpus = Corpus(products, test=np.arange(len(products)))
    qs = image_queries(corpus, resolve_fields(products), max_queries=args.max_queries)
    queries = [qs.queries[i] for i in range(len(qs.queries))]
    with_photo = np.flatnonzero(corpus.has_image)
    paths = [products[i].image_path for i in with_photo]
    side = median_photo_side(paths)
    native = size_for_photos("lite0", paths)
    rows = []
    for spec in args.sizes.split(","):
        size = native if spec == "native" else int(spec)
        enc = EfficientNetLiteEncoder(image_size=size, features="pooled", cache=False)
        enc.encode(paths[:8])  # the export and the sessions, outside the timing
        t = time.perf_counter()
        gallery = enc.encode(paths)
        secs = time.perf_counter() - t
        ranked = with_photo[brute_rank(l2_normalize(enc.encode(queries)), gallery)]
        m = protocol_scores(ranked, qs)
        rows.append(
            [
                f"{size}" + (" (native)" if spec == "native" else ""),
                f"{len(paths) / secs:.0f}",
                f"{m['hit@1']:.3f}",
                f"{m['hit@10']:.3f}",
                f"{m['mrr']:.3f}",
                f"{m.get('type_colour_precision@10', float('nan')):.3f}",
            ]
        )
    header = ["input px", "photos/s", "hit@1", "hit@10", "MRR", "type+colour P@10"]
    body = table(rows, header)
    print(body)
    if args.record:
        note = (
            f"Catalog {args.catalog}, first {len(products)} products ({len(paths)} photos, median longer "
            f"side {side} px, so 'native' = {native} px). {len(queries)} augmented photo queries (protocol "
            "image2product: crop, flip, downscale, JPEG), every product's photo as the gallery; "
            "EfficientNet-Lite0 pooled vectors (the untuned index's photo vectors) on onnxruntime."
        )
        record_run(f"Photo input size: {args.catalog}", "image_size_bench.py", argv, note + "\n\n" + body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
