"""Training recipes compared on one protocol (issue 8): each recipe trains on the catalog and is
scored on its held-out test split against the WHOLE catalog as gallery.

Usage::

    python bench/recipe_bench.py --catalog fashion [--recipes default,pooled,...] [--epochs 10]
                                 [--max-queries 2000] [--record]
    python bench/recipe_bench.py --catalog grocery [--record]

Per recipe: wall time (features cached beforehand, so the column is training + evaluation), the
leaderboard protocol (test titles -> photos of every product: R@1, R@10, MRR, gallery size),
zero-shot accuracy of the type and colour columns (the evaluation's zeroshot protocol: test photos
classified by their value's text), and image->product (augmented test photos -> their product,
hit@1) for the untuned photo vectors, the trained space alone, and both fused with calibrated
weights (fitted on validation photos, scored on test photos). ``--catalog grocery`` adds the
shared grocery catalog's real shopper photos (its ``test`` split) -> product hit@1 / hit@5 with
the same three systems. Image features are computed once (the shared feature cache) and reused
by every recipe; the "pooled" recipe's features are the rich features' first 1280 dims,
renormalised, which equal the pooled encoder's by construction (tests/encoders/test_rich_features.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, record_run, table  # noqa: E402

SHARED = ROOT.parent / "shared" / "datasets"
CATALOGS = {
    "fashion": SHARED / "fashion-product-images-small" / "styles.csv",
    "grocery": SHARED / "grocery-store" / "products.csv",
}
#: Recipe name -> training config overrides (on top of TrainConfig's defaults).
RECIPES = {
    "default": {},
    "heads": {"neighbour_titles": False},  # the trained heads alone (no neighbour titles)
    "pooled": {"image_features": "pooled", "loss": "contrastive"},  # last round's recipe (at native size)
    "rich-contrastive": {"loss": "contrastive"},
    "graded": {"graded_positives": 0.3},
    "siglip": {"loss": "siglip+attribute"},
    "linear-heads": {"head": "linear"},
    # the default's best epoch is its last (19-20 of 20): longer schedules
    "epochs40": {"epochs": 40},
    "epochs80": {"epochs": 80},
    # more in-batch negatives per step (the cached-feature step is cheap), peak lr scaled with it
    "batch1024": {"batch_size": 1024, "lr": 2e-3},
    "batch1024-e40": {"batch_size": 1024, "lr": 2e-3, "epochs": 40},
    # a wider space and head
    "wide": {"embed_dim": 512, "head_hidden": 2048},
    # a bigger frozen image backbone (ImageNet top-1 77.6% vs lite0's 75.1%), and lite0 on other input
    # sizes (the default runs a locked tower at its own size, 224 px; 128 px was the default before)
    "lite2": {"image_tower": "efficientnet-lite2"},
    "px128": {"image_size": 128},
    "px160": {"image_size": 160},
    "px192": {"image_size": 192},
    "px224": {"image_size": 224},
    "px288": {"image_size": 288},
    "px320": {"image_size": 320},
    # a stronger attribute term (colour, type... of the catalog's own columns)
    "attr1": {"attribute_weight": 1.0},
    # the attribute term on columns of at most 50 classes (the default before: it left out the
    # fashion catalog's articleType, 121 classes)
    "classes50": {"attribute_max_classes": 50},
    # hard in-batch negatives: each batch of 256 drawn from 8 (or 4) product types
    "hard8": {"batch_groups": 8},
    "hard4": {"batch_groups": 4},
    # the image tower's top 4 groups (blocks 13-15 + head conv) fine-tuned on cached activations of
    # its locked bottom; text tower locked (LiT the other way round)
    "top4-cached": {
        "freeze": "top",
        "image_unlocked_groups": 4,
        "text_unlocked_groups": 0,
        "tower_lr": 1e-4,
        "epochs": 5,
    },
    # LP-FT: the default recipe's heads (run first), then the image tower's top fine-tuned from them
    "top4-lpft": {
        "init_from": "default",
        "freeze": "top",
        "image_unlocked_groups": 4,
        "text_unlocked_groups": 0,
        "lr": 1e-4,
        "tower_lr": 1e-4,
        "warmup_fraction": 0.0,
        "epochs": 3,
    },
    # the attribute term classified by the embedded value names (UniCL's image-label contrast; the
    # default since it measured better), and by a learned linear classifier per column (before)
    "attr-text": {"attribute_classifier": "text"},
    "attr-linear": {"attribute_classifier": "linear"},
    "attr-text1": {"attribute_classifier": "text", "attribute_weight": 1.0},
    # LiT (locked image tower on its cached features, the text tower's top 2 layers trained), from
    # scratch and as LP-FT on the default recipe's heads
    "lit2": {
        "freeze": "top",
        "image_unlocked_groups": 0,
        "text_unlocked_groups": 2,
        "tower_lr": 2e-5,
        "epochs": 5,
    },
    "lit2-lpft": {
        "init_from": "default",
        "freeze": "top",
        "image_unlocked_groups": 0,
        "text_unlocked_groups": 2,
        "lr": 1e-4,
        "tower_lr": 2e-5,
        "warmup_fraction": 0.0,
        "epochs": 3,
    },
}


def derive_pooled_cache(products, image_size: int) -> None:
    """Fill the pooled encoder's feature cache from the rich one (its first 1280 dims, renormalised)."""
    from prodsearch.encoders.base import l2_normalize
    from prodsearch.encoders.image import FEATURE_DIM, EfficientNetLiteEncoder

    rich = EfficientNetLiteEncoder(image_size=image_size, features="rich")
    pooled = EfficientNetLiteEncoder(image_size=image_size, features="pooled")
    hashes = [p.image_hash for p in products]
    feats = rich.encode_paths([p.image_path for p in products], hashes, batch_size=64)
    pooled.feature_cache.put_many(
        pooled.spec_hash(), hashes, l2_normalize(feats[:, :FEATURE_DIM]), spec=pooled.spec()
    )


def photo_vectors(emb, items, hashes=None):
    """(untuned vectors, trained-space vectors) of catalog photos: the index's untuned photo encoder
    (the pooled part of the rich features, encoders/image.py PooledView) and the run's joint encoder
    (heads on the same cached features, or a fine-tuned tower's own features under its head)."""
    from prodsearch.encoders.base import l2_normalize
    from prodsearch.encoders.image import FEATURE_DIM

    def run(enc):
        return enc.encode_paths(items, hashes) if hashes is not None else enc.encode(items)

    return l2_normalize(run(emb.image)[:, :FEATURE_DIM]), run(emb.joint.image)


def query_vectors(emb, photos):
    """:func:`photo_vectors` of photos used as search queries (as the engine encodes them)."""
    from prodsearch.encoders.base import l2_normalize
    from prodsearch.encoders.image import FEATURE_DIM

    return l2_normalize(emb.image.encode(photos)[:, :FEATURE_DIM]), emb.joint.encode_image_queries(photos)


def image_systems(run: Path, products, test_ids: set[str], val_ids: set[str], queries=None, max_queries=500):
    """hit@1 / MRR of photo queries for untuned vectors, the joint space alone, and both calibrated.

    ``queries``: ``[(photo path or PIL image, product id)]``; default: augmented photos of test products.
    """
    from prodsearch.evaluation.augment import AugmentedPhotos
    from prodsearch.index.types import Hits
    from prodsearch.search.calibration import Judged, best_weights, fused_metric, signal_stats
    from prodsearch.search.recipe import EmbedderRecipe

    with_photo = [p for p in products if p.image_path]
    # the embedder an index built with the run uses: untuned photo vectors at the index's own size
    emb = EmbedderRecipe(model=str(run)).sized_for([p.image_path for p in with_photo]).build()
    base, joint = photo_vectors(emb, [p.image_path for p in with_photo], [p.image_hash for p in with_photo])
    ids = np.asarray([p.id for p in with_photo])
    photo_of = {p.id: p.image_hash for p in with_photo}

    def judged(pairs):
        q_base, q_joint = query_vectors(emb, [q for q, _ in pairs])
        cands, vals, grades = [], [], []
        for i, (_, pid) in enumerate(pairs):
            s_img, s_joint = base @ q_base[i], joint @ q_joint[i]
            top = np.union1d(np.argsort(-s_img)[:200], np.argsort(-s_joint)[:200])
            v = np.full((2, len(top)), np.nan)
            r_img, r_joint = set(np.argsort(-s_img)[:200].tolist()), set(np.argsort(-s_joint)[:200].tolist())
            for c, t in enumerate(top.tolist()):
                if t in r_img:
                    v[0, c] = s_img[t]
                if t in r_joint:
                    v[1, c] = s_joint[t]
            cands.append(top)
            vals.append(v)
            grades.append(np.asarray([photo_of[ids[t]] == photo_of[pid] for t in top], np.int8))
        return Judged("mrr", ["image", "joint"], cands, vals, grades, np.ones(len(pairs)))

    def augmented(wanted: set[str], seed: int):
        chosen = [p for p in with_photo if p.id in wanted][:max_queries]
        photos = AugmentedPhotos([p.image_path for p in chosen], seed=seed)
        return [(photos[i], p.id) for i, p in enumerate(chosen)]

    val = judged(augmented(val_ids, 1))
    test = judged(queries if queries is not None else augmented(test_ids, 2))
    stats = signal_stats([val])
    w, _ = best_weights(val, stats)

    def hit1(jd, weights):
        hits = []
        for c, v, g in zip(jd.candidates, jd.values, jd.grades, strict=True):
            from prodsearch.index.fusion import calibrated

            lists = {}
            for j, s in enumerate(jd.signals):
                if weights.get(s, 0) > 0:
                    seen = ~np.isnan(v[j])
                    order = np.argsort(-v[j][seen], kind="stable")
                    lists[s] = Hits(c[seen][order], v[j][seen][order])
            top = calibrated(lists, weights, stats).hits.iids[:5].tolist()
            grade = dict(zip(c.tolist(), g.tolist(), strict=True))
            hits.append([grade[t] for t in top])
        h = np.asarray([r + [0] * (5 - len(r)) for r in hits])
        return float(h[:, 0].mean()), float(h.max(1).mean())

    out = {}
    for name, weights in (("untuned", {"image": 1.0}), ("joint", {"joint": 1.0}), ("calibrated", w)):
        h1, h5 = hit1(test, weights)
        out[name] = {"hit@1": h1, "hit@5": h5, "mrr": fused_metric(test, "calibrated", weights, stats)}
    out["weights"] = w
    out["queries"] = len(test)
    return out


def zero_shot_scores(run: Path, products, test_pos: np.ndarray) -> dict[str, float]:
    from prodsearch.evaluation.corpus import Corpus
    from prodsearch.evaluation.fields import resolve_fields
    from prodsearch.evaluation.protocols import ProtocolSkipped
    from prodsearch.evaluation.systems import EmbeddedCorpus
    from prodsearch.evaluation.zeroshot import zero_shot
    from prodsearch.training.embedder import load_index_embedder

    emb = load_index_embedder(run)
    pos = np.asarray([i for i, p in enumerate(products) if p.image_path], dtype=np.int64)
    _, joint = photo_vectors(
        emb, [products[i].image_path for i in pos], [products[i].image_hash for i in pos]
    )
    corpus = Corpus(products, test=test_pos)
    ec = EmbeddedCorpus("run", emb.joint, {"image": (pos, joint)})
    fields = resolve_fields(products)
    out = {}
    for name in (fields.type, fields.colour):
        if name is None:
            continue
        try:
            zs = zero_shot(ec, corpus, name, max_queries=2000)
        except ProtocolSkipped as err:
            out[f"zeroshot {name}"] = f"skipped: {err}"
            continue
        out[f"zeroshot {name}"] = float(zs.metrics()[f"zeroshot/{name}/accuracy"])
    return out


def shopper_queries(products):
    """The grocery catalog's real shopper photos of its test split: ``[(path, product id)]``."""
    import csv

    root = CATALOGS["grocery"].parent
    with open(root / "photos.csv", newline="") as fh:
        return [(str(root / r["photo"]), r["product_id"]) for r in csv.DictReader(fh) if r["split"] == "test"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--catalog",
        default="fashion",
        help=f"one of {sorted(CATALOGS)}, or a catalog file (CSV / JSONL / Parquet)",
    )
    ap.add_argument("--recipes", default="default,pooled,rich-contrastive")
    ap.add_argument("--epochs", type=int, default=None, help="override every recipe's epochs")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-queries", type=int, default=500, help="photo queries per image protocol")
    ap.add_argument("--max-products", type=int, default=None, help="the first N products only (quick runs)")
    ap.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temp folder)")
    ap.add_argument("--record", action="store_true", help="append the table to docs/benchmarks.md")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from prodsearch.catalog.readers import read_catalog
    from prodsearch.training.config import from_dict
    from prodsearch.training.main import train

    if args.catalog not in CATALOGS and not Path(args.catalog).is_file():
        ap.error(f"--catalog: expected one of {sorted(CATALOGS)} or a catalog file, got {args.catalog!r}")
    catalog = CATALOGS.get(args.catalog) or Path(args.catalog)
    products = list(read_catalog(catalog).products)[: args.max_products]
    shoppers = shopper_queries(products) if args.catalog == "grocery" else None
    out_root = args.out or Path(tempfile.mkdtemp(prefix="recipes-"))
    rows, details = [], {}
    for name in args.recipes.split(","):
        overrides = {**RECIPES[name], "threads": args.threads}
        init_from = overrides.pop("init_from", None)  # a recipe run earlier in this bench
        if args.epochs:
            overrides["epochs"] = args.epochs
        cfg = from_dict(overrides)
        if cfg.image_features == "pooled":
            from prodsearch.encoders.image import median_photo_side, native_image_size
            from prodsearch.training.main import TOWER_SIZES

            side = median_photo_side([p.image_path for p in products if p.image_path])
            derive_pooled_cache(
                [p for p in products if p.image_path], native_image_size(side, TOWER_SIZES[cfg.image_tower])
            )
        run = out_root / name
        t0 = time.perf_counter()
        warm = out_root / init_from if init_from else None
        res = train(catalog, run, cfg, products=products, overwrite=True, progress=False, init_from=warm)
        seconds = time.perf_counter() - t0
        split = json.loads((run / "split.json").read_text())
        test_ids, val_ids = set(split["test"]), set(split["val"])
        test_pos = np.asarray([i for i, p in enumerate(products) if p.id in test_ids], dtype=np.int64)
        zs = zero_shot_scores(run, products, test_pos)
        img = image_systems(run, products, test_ids, val_ids, max_queries=args.max_queries)
        tm = res.test_metrics
        row = [
            name,
            json.dumps(RECIPES[name]) if RECIPES[name] else "(defaults)",
            f"{seconds:.0f}",
            str(res.best_epoch),
            f"{tm.get('test_r1', 0):.3f}",
            f"{tm.get('test_r10', 0):.3f}",
            f"{tm.get('test_mrr', 0):.3f}",
            str(tm.get("test_gallery", "")),
            *[(f"{v:.3f}" if isinstance(v, float) else "skip") for v in zs.values()],
            f"{img['untuned']['hit@1']:.3f}",
            f"{img['joint']['hit@1']:.3f}",
            f"{img['calibrated']['hit@1']:.3f}",
        ]
        det = {"test": tm, "zeroshot": zs, "image2product": img}
        if shoppers:
            shop = image_systems(run, products, test_ids, val_ids, queries=shoppers)
            row += [
                f"{shop[s]['hit@1']:.3f} / {shop[s]['hit@5']:.3f}" for s in ("untuned", "joint", "calibrated")
            ]
            det["shoppers"] = shop
        rows.append(row)
        details[name] = det
        print(json.dumps({name: det}, default=str), flush=True)
    header = [
        "recipe",
        "overrides",
        "wall s",
        "best epoch",
        "R@1",
        "R@10",
        "MRR",
        "gallery",
        *list(zs),
        "img->prod hit@1 untuned",
        "joint",
        "calibrated",
    ]
    if shoppers:
        header += ["shopper->prod hit@1/@5 untuned", "joint", "calibrated"]
    body = table(rows, header)
    print(body)
    if args.record:
        note = (
            f"Catalog {args.catalog} ({len(products)} products). R@k/MRR: the leaderboard protocol (test-split "
            "titles -> photos of every product, identical titles relevant), gallery = whole catalog. "
            "Zero-shot: test photos classified by their value's text. img->prod: augmented test photos "
            f"(max {args.max_queries}); calibrated = untuned + joint photo similarities fused with weights fitted "
            "on validation photos."
            + (" Shopper photos: the grocery catalog's real in-store test photos." if shoppers else "")
        )
        record_run(f"Training recipes: {args.catalog}", "recipe_bench.py", argv, note + "\n\n" + body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
