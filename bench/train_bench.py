"""Joint-learning benchmark: train on a catalog, evaluate text -> image retrieval on the test split.

Protocol (Marqo-FashionCLIP leaderboard style): queries = up to 2,000 distinct titles of the
test split; documents = the image vectors of the whole catalog (every usable product);
relevant = every product with the identical (normalised) title. Reports R@1, R@10, MRR and
training time per epoch, per freezing strategy.

    PYTHONPATH=src python bench/train_bench.py [--catalog styles.csv] [--modes heads,top] [--record]

Tower modes (top/full) run live towers on CPU: give them ``--tower-max-products`` (a subset of
the catalog, evaluated against that subset's photos) unless a GPU is present.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_CATALOG, machine, record, table  # noqa: E402

from prodsearch.training.config import load_config  # noqa: E402
from prodsearch.training.data import build_pairs, normalize_title, split_pairs  # noqa: E402
from prodsearch.training.embedder import load_trained_embedder, load_trained_model  # noqa: E402
from prodsearch.training.main import _read_products, prepare_data, train  # noqa: E402
from prodsearch.training.retrieval import retrieval_metrics  # noqa: E402
from prodsearch.training.towers import TowerFactory  # noqa: E402

ANCHOR = {"r1": 0.179, "r10": 0.489, "mrr": 0.293}  # Marqo-FashionSigLIP zero-shot, published


@torch.no_grad()
def protocol_eval(
    run_dir: Path, products, cfg, factory: TowerFactory, max_queries: int = 2000, seed: int = 0
) -> dict[str, float]:
    pairs = build_pairs(products, n_variants=cfg.text_variants, seed=cfg.split_seed, min_pairs=cfg.min_pairs)
    split = split_pairs(pairs, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    model, cfg, _ = load_trained_model(run_dir, factory)
    test_titles: dict[str, int] = {}
    for i in split["test"]:
        test_titles.setdefault(normalize_title(pairs.titles[i]), i)
    q_items = sorted(test_titles.values())
    random.Random(seed).shuffle(q_items)
    q_items = sorted(q_items[:max_queries])
    if model.image_tower is None and model.text_tower is None:
        data, _, _ = prepare_data(pairs, split, cfg, factory, progress=True)  # cached features: instant
        docs = torch.cat(
            [model.encode_image(feats=data.image_feats[s : s + 4096]) for s in range(0, len(pairs), 4096)]
        )
        rows = torch.as_tensor([data.text_offsets[i] for i in q_items])
        queries = model.encode_text(feats=data.text_feats[rows])
    else:
        emb = load_trained_embedder(run_dir, factory)
        docs = torch.from_numpy(emb.encode_images(pairs.image_paths, batch_size=64))
        queries = torch.from_numpy(emb.encode_text([pairs.titles[i] for i in q_items]))
    m = retrieval_metrics(queries, docs, [pairs.title_group[i] for i in q_items], pairs.title_group)
    m["queries"], m["documents"] = len(q_items), len(pairs)
    return m


def _factory() -> TowerFactory:
    try:
        import prodsearch.encoders.image  # noqa: F401
        import prodsearch.encoders.text  # noqa: F401

        return TowerFactory()
    except ImportError:
        from train_standalone import StandaloneFactory

        logging.getLogger(__name__).warning(
            "prodsearch.encoders not available: using the bench's standalone encoders"
        )
        return StandaloneFactory()


def _products(catalog: str, cfg):
    try:
        return _read_products(catalog, cfg)
    except ImportError:
        from train_standalone import read_shared_catalog

        logging.getLogger(__name__).warning(
            "prodsearch.catalog.read_catalog not available: bench-only CSV reader"
        )
        return read_shared_catalog(catalog)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--catalog", default=str(SHARED_CATALOG))
    ap.add_argument("--out", default="/tmp/prodsearch-bench-train")
    ap.add_argument("--modes", default="heads", help="comma list of heads,top,full,lora")
    ap.add_argument("--config", default=None, help="base config file")
    ap.add_argument("--set", nargs="*", default=[], help="overrides field=value for every mode")
    ap.add_argument("--tower-max-products", type=int, default=2000)
    ap.add_argument("--tower-epochs", type=int, default=1)
    ap.add_argument("--record", action="store_true", help="append the table to docs/benchmarks.md")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    overrides = dict(kv.split("=", 1) for kv in args.set)
    rows = []
    all_products = None
    factory = _factory()
    for mode in args.modes.split(","):
        ov = {**overrides, "freeze": mode}
        if mode != "heads" and not torch.cuda.is_available():
            ov.setdefault("max_products", str(args.tower_max_products))
            ov.setdefault("epochs", str(args.tower_epochs))
            ov.setdefault("batch_size", "64")
        cfg = load_config(args.config, ov)
        if all_products is None:
            all_products = _products(args.catalog, cfg)
        products = all_products[: cfg.max_products] if cfg.max_products else all_products
        run_dir = Path(args.out) / mode
        t0 = time.perf_counter()
        res = train(args.catalog, run_dir, cfg, products=products, factory=factory, overwrite=True)
        wall = time.perf_counter() - t0
        m = protocol_eval(run_dir, products, cfg, factory)
        per_epoch = sum(r["epoch_seconds"] for r in res.history) / max(1, len(res.history))
        rows.append(
            [
                mode,
                len(products),
                f"{res.epochs_run} (best {res.best_epoch})",
                f"{per_epoch:.1f}",
                f"{wall:.0f}",
                m["queries"],
                m["documents"],
                f"{m['r1']:.3f}",
                f"{m['r10']:.3f}",
                f"{m['mrr']:.3f}",
            ]
        )
        print(json.dumps({"mode": mode, "result": res.to_dict(), "protocol": m}, default=str)[:2000])
    header = [
        "freeze",
        "products",
        "epochs",
        "s/epoch",
        "total s (incl. features)",
        "queries",
        "docs",
        "R@1",
        "R@10",
        "MRR",
    ]
    rows.append(
        [
            "anchor: Marqo-FashionSigLIP (zero-shot)",
            "",
            "",
            "",
            "",
            "",
            "",
            ANCHOR["r1"],
            ANCHOR["r10"],
            ANCHOR["mrr"],
        ]
    )
    body = table(rows, header)
    print(body)
    print(machine())
    if args.record:
        record(
            "Joint learning (text -> image, test split)",
            "python bench/train_bench.py " + " ".join(argv or sys.argv[1:]),
            body,
        )


if __name__ == "__main__":
    main()
