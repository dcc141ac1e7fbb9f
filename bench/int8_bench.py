"""int8 encoders on onnxruntime (issue 8): the speed they gain and the retrieval quality they cost,
float32 and int8 side by side in one run on the same products and queries.

Usage::

    python bench/int8_bench.py [--catalog fashion|grocery] [--products 5000] [--max-queries 1000]
                               [--image-size 128] [--record]

Text: MiniLM's transformer quantized dynamically (int8 weights per channel, MatMuls), scored on the
evaluation's attribute queries ("{colour} {type}" from the catalog's columns, graded qrels) against
the products' text vectors: nDCG@10 and recall@50, plus texts/s. Image: EfficientNet-Lite0 quantized
statically (QDQ, int8 weights per channel, activation ranges fitted on 256 of the catalog's own
photos that are not queries), scored on the evaluation's image2product protocol (augmented photos ->
their product among every product's photo): hit@1 and MRR, plus photos/s. Both sessions run one
intra-op thread (how the encoders run them on a small CPU). Also: cosine of each int8 vector to its
float32 twin, and the share of each query's float32 top 10 that int8 keeps.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
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


def _timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def _overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    return float(np.mean([len(set(x[:k]) & set(y[:k])) / k for x, y in zip(a, b, strict=True)]))


def text_rows(products, corpus, fields, max_queries: int, workdir: Path) -> list[list[str]]:
    from prodsearch.encoders.base import create_encoder
    from prodsearch.encoders.onnx_runtime import OnnxSession, quantize_int8
    from prodsearch.evaluation.protocols import attribute_queries

    qs = attribute_queries(corpus, fields, max_queries=max_queries)
    docs = [p.full_text() for p in products]
    enc = create_encoder("minilm", backend="onnx")
    enc.encode(["warm-up"])
    fp32_session = enc._session
    int8_path = quantize_int8(fp32_session.path, workdir / "minilm-int8.onnx")
    int8_session = OnnxSession(int8_path, num_threads=1)
    rows, runs = [], {}
    for name, session in (("float32", fp32_session), ("int8", int8_session)):
        enc._session = session
        d, secs = _timed(enc.encode, docs)
        q = enc.encode(list(qs.queries))
        runs[name] = (d, brute_rank(q, d))
        m = protocol_scores(runs[name][1], qs)
        rows.append(
            [
                "text (MiniLM)",
                name,
                f"{len(docs) / secs:.0f}",
                f"{Path(session.path).stat().st_size / 1e6:.0f}",
                f"{m['ndcg@10']:.3f}",
                f"{m['recall@50']:.3f}",
                "",
                "",
            ]
        )
    cos = (runs["float32"][0] * runs["int8"][0]).sum(1)
    rows[1][6] = f"{cos.mean():.4f} (min {cos.min():.3f})"
    rows[1][7] = f"{_overlap(runs['float32'][1], runs['int8'][1]):.3f}"
    return rows, len(qs.queries)


def image_rows(products, corpus, fields, max_queries: int, size: int, workdir: Path):
    from prodsearch.catalog.images import load_image
    from prodsearch.encoders.base import l2_normalize
    from prodsearch.encoders.image import EfficientNetLiteEncoder, ImagePreprocessor
    from prodsearch.encoders.onnx_runtime import OnnxSession, quantize_int8
    from prodsearch.evaluation.protocols import image_queries

    qs = image_queries(corpus, fields, max_queries=max_queries)
    with_photo = np.flatnonzero(corpus.has_image)
    query_pos = set(np.asarray(qs.source).tolist())
    calib_pos = [int(i) for i in with_photo if int(i) not in query_pos][:256]
    pre = ImagePreprocessor(size)
    calib = np.stack([pre(load_image(products[i].image_path)).numpy() for i in calib_pos])
    enc = EfficientNetLiteEncoder(image_size=size, features="pooled", cache=False)
    enc.encode([load_image(products[calib_pos[0]].image_path)])
    fp32_session = enc._session
    int8_path = quantize_int8(
        fp32_session.path,
        workdir / "efficientnet-int8.onnx",
        calibration=[{"pixels": calib[i : i + 32]} for i in range(0, len(calib), 32)],
    )
    int8_session = OnnxSession(int8_path, num_threads=1)
    paths = [products[i].image_path for i in with_photo]
    queries = [qs.queries[i] for i in range(len(qs.queries))]
    rows, runs = [], {}
    for name, session in (("float32", fp32_session), ("int8", int8_session)):
        enc._session = session
        d, secs = _timed(enc.encode, paths)
        q = l2_normalize(enc.encode(queries))
        ranked = with_photo[brute_rank(q, d)]
        runs[name] = (d, ranked)
        m = protocol_scores(ranked, qs)
        rows.append(
            [
                f"image (EfficientNet-Lite0, {size} px)",
                name,
                f"{len(paths) / secs:.0f}",
                f"{Path(session.path).stat().st_size / 1e6:.0f}",
                f"hit@1 {m['hit@1']:.3f}",
                f"MRR {m['mrr']:.3f}",
                "",
                "",
            ]
        )
    cos = (runs["float32"][0] * runs["int8"][0]).sum(1)
    rows[1][6] = f"{cos.mean():.4f} (min {cos.min():.3f})"
    rows[1][7] = f"{_overlap(runs['float32'][1], runs['int8'][1]):.3f}"
    return rows, len(queries), len(calib_pos)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", choices=sorted(CATALOGS), default="fashion")
    ap.add_argument("--products", type=int, default=5000, help="the first N products")
    ap.add_argument("--max-queries", type=int, default=1000)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args(argv)

    from prodsearch.catalog.readers import read_catalog
    from prodsearch.evaluation.corpus import Corpus
    from prodsearch.evaluation.fields import resolve_fields

    products = list(read_catalog(CATALOGS[args.catalog]).products)[: args.products]
    corpus = Corpus(products, test=np.arange(len(products)))
    fields = resolve_fields(products)
    with tempfile.TemporaryDirectory() as tmp:
        t_rows, n_text = text_rows(products, corpus, fields, args.max_queries, Path(tmp))
        i_rows, n_img, n_calib = image_rows(
            products, corpus, fields, args.max_queries, args.image_size, Path(tmp)
        )
    header = [
        "encoder",
        "weights",
        "items/s (1 thread)",
        "model MB",
        "quality",
        "",
        "cosine to float32",
        "float32 top-10 kept",
    ]
    body = table(t_rows + i_rows, header)
    print(body)
    if args.record:
        note = (
            f"Catalog {args.catalog}, first {len(products)} products, all of them queries' gallery. Text: "
            f"{n_text} attribute queries (evaluation protocol 'attributes', graded), quality = nDCG@10 and "
            f"recall@50 against the products' text vectors. Image: {n_img} augmented photos "
            f"(protocol 'image2product'), quality = hit@1 / MRR of the photo's own product; int8 "
            f"activation ranges from {n_calib} other catalog photos. items/s: encoding the gallery "
            "(tokenising / decoding included) on one onnxruntime thread per session, as the encoders "
            "run; the same machine and run for both rows of a pair, so read the ratio."
        )
        record_run("int8 encoders: speed vs quality", "int8_bench.py", argv, note + "\n\n" + body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
