"""``prodsearch train``: catalog -> pairs -> split -> (cached features) -> fit -> run folder.

Run folder contents: ``config.json`` (resolved config), ``split.json`` (product ids per split),
``metrics.jsonl`` (one row per epoch), ``tb/`` (TensorBoard), ``best.pt`` / ``last.pt``
(checkpoint dicts), ``run.json`` (summary: catalog fingerprint, tower specs, result).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from prodsearch.catalog.schema import Product
from prodsearch.distributed.ddp import DistInfo, init_from_env, main_first, on_main, share_from_main
from prodsearch.encoders.image import VARIANTS, median_photo_side, native_image_size
from prodsearch.errors import ConfigError
from prodsearch.paths import atomic_write_text
from prodsearch.training.activations import cached_activations, can_cache
from prodsearch.training.augment import ColourSafeAugment
from prodsearch.training.checkpoint import load_checkpoint, save_checkpoint
from prodsearch.training.config import TrainConfig, from_dict, load_config, unlocked, validate
from prodsearch.training.data import PairSet, attribute_labels, build_pairs, split_pairs, type_groups
from prodsearch.training.features import encode_cached
from prodsearch.training.loop import TrainData, Trainer, resolve_device
from prodsearch.training.lora import apply_lora
from prodsearch.training.losses import MatchingHead, parse_loss
from prodsearch.training.model import JointModel
from prodsearch.training.neighbours import PREFIX as NEIGHBOURS
from prodsearch.training.towers import TowerFactory

log = logging.getLogger(__name__)

RUN_FILES = ("config.json", "split.json", "metrics.jsonl", "best.pt", "last.pt", "model.pt", "run.json", "tb")
# fields a resumed run may change (everything else must match the stored config)
RESUMABLE = {"epochs", "patience", "device", "precision", "val_max_queries", "feature_batch_size", "threads"}


@dataclass
class RunResult:
    """What a training run produced."""

    run_dir: Path
    best_metric: float | None
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    step: int
    history: list[dict[str, Any]] = field(default_factory=list)
    test_metrics: dict[str, float] = field(default_factory=dict)
    #: the neighbour-titles fit on the validation split (training/neighbours.py): used or why not
    neighbour_titles: dict[str, Any] = field(default_factory=dict)
    pairs: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["run_dir"] = str(self.run_dir)
        return d


def live_sides(cfg: TrainConfig) -> tuple[bool, bool]:
    """(text tower trains, image tower trains) for a freezing strategy; with ``freeze=top`` a tower
    with no unlocked group is locked (its features are cached, LiT)."""
    if cfg.freeze == "top":
        return unlocked(cfg, "text") > 0, unlocked(cfg, "image") > 0
    return cfg.freeze in ("full", "lora"), cfg.freeze == "full"


def build_model(
    cfg: TrainConfig, factory: TowerFactory, text_dim: int | None = None, image_dim: int | None = None
):
    """The joint model for ``cfg``: live towers where they train (locked / LoRA-wrapped), heads, temperature.

    Returns ``(model, preprocess or None)``. ``text_dim`` / ``image_dim`` are the cached-feature dims
    of the frozen sides.
    """
    live_text, live_image = live_sides(cfg)
    text_tower = image_tower = preprocess = None
    if live_text:
        text_tower = factory.text_tower(cfg)
        if cfg.freeze == "lora":
            text_tower.lock(0)
            apply_lora(text_tower, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout)
        elif cfg.freeze == "top":
            text_tower.lock(unlocked(cfg, "text"))
        text_dim = text_tower.dim
    if live_image:
        image_tower, preprocess, _ = factory.image_tower(cfg)
        if cfg.freeze == "top":
            image_tower.lock(unlocked(cfg, "image"), cfg.freeze_norm_stats)
        image_dim = image_tower.dim
    torch.manual_seed(cfg.seed)
    model = JointModel(
        int(text_dim),
        int(image_dim),
        cfg.embed_dim,
        head=cfg.head,
        head_hidden=cfg.head_hidden,
        dropout=cfg.dropout,
        init_temperature=cfg.init_temperature,
        max_logit_scale=cfg.max_logit_scale,
        text_tower=text_tower,
        image_tower=image_tower,
    )
    if cfg.matching_weight > 0 or "matching" in parse_loss(cfg.loss):
        model.matching_head = MatchingHead(cfg.embed_dim)
    return model, preprocess


#: Config fields added since runs were first stored, with the behaviour runs without them trained with.
STORED_BEFORE = {"attribute_classifier": "linear", "attribute_min_coverage": 0.0}

#: Native input sizes of the image towers that can pick a size (the EfficientNet-Lite family).
TOWER_SIZES = {f"efficientnet-{k}": v.native_size for k, v in VARIANTS.items()}


def resolve_image_size(cfg: TrainConfig, pairs: PairSet, factory: TowerFactory) -> TrainConfig:
    """Fix ``image_size`` (stored in the run's config) when the config leaves it to the catalog.

    A locked image tower (its features computed once and cached) runs at the tower's own size: on
    the fashion catalog's 60x80 photos, heads trained on features at 224 px beat 128 px on every
    text -> photo measure (whole 44k gallery: R@10 .214 vs .188, MRR .123 vs .109, zero-shot type
    .685 vs .670 and colour .380 vs .356; docs/benchmarks.md, "Training recipes: fashion"). An
    image tower that trains runs near the photos' native size, since it pays for every pixel in
    every epoch. The index's untuned photo vectors keep their own (native) size either way
    (:meth:`prodsearch.search.recipe.EmbedderRecipe.sized_for`)."""
    if cfg.image_size is not None or cfg.image_tower not in TOWER_SIZES:
        return cfg
    if not live_sides(cfg)[1]:
        size = TOWER_SIZES[cfg.image_tower]
        log.info("image_size: %d px (the locked image tower's own size)", size)
        return dataclasses.replace(cfg, image_size=size)
    side = median_photo_side(pairs.image_paths)
    size = native_image_size(side, TOWER_SIZES[cfg.image_tower])
    log.info("image_size: %d px (photos' median longer side %s px; the image tower trains)", size, side)
    return dataclasses.replace(cfg, image_size=size)


def catalog_fingerprint(pairs: PairSet) -> str:
    h = hashlib.sha256()
    for i in range(len(pairs)):
        h.update(f"{pairs.ids[i]}\0{pairs.titles[i]}\0{pairs.image_hashes[i]}\n".encode())
    return h.hexdigest()[:16]


def _prepare_run_dir(
    out: Path, cfg: TrainConfig, resume: bool, overwrite: bool, overrides: dict[str, Any]
) -> TrainConfig:
    """Guard the run folder; on resume return the stored config with the allowed overrides applied."""
    holds_run = (out / "config.json").is_file()
    if resume:
        if not holds_run or not (out / "last.pt").is_file():
            raise ConfigError(
                f"--resume: {str(out)!r} holds no training run to resume (no config.json / last.pt)"
            )
        raw = json.loads((out / "config.json").read_text())
        # runs stored before a field existed trained with its old behaviour, not today's default
        for k, v in STORED_BEFORE.items():
            raw.setdefault(k, v)
        stored = from_dict(raw)
        changed = sorted(
            k
            for k, v in overrides.items()
            if v is not None and k not in RESUMABLE and getattr(stored, k) != v
        )
        if changed:
            raise ConfigError(
                f"--resume cannot change {changed} of the stored run (only {sorted(RESUMABLE)}); start a new run instead"
            )
        return from_dict(
            {k: v for k, v in overrides.items() if k in RESUMABLE and v is not None}, base=stored
        )
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            what = "a training run" if holds_run else "other files"
            raise ConfigError(
                f"run folder {str(out)!r} already holds {what}; pass --overwrite to replace it or --resume to continue it"
            )
        if not holds_run and any(p.name not in RUN_FILES for p in out.iterdir()):
            raise ConfigError(
                f"--overwrite refuses to empty {str(out)!r}: it holds files that are not a prodsearch run"
            )
        for name in RUN_FILES:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return cfg


def _read_products(catalog: str | Path, cfg: TrainConfig, progress: bool = False) -> list[Product]:
    try:
        from prodsearch.catalog import read_catalog
    except ImportError:
        from prodsearch.catalog.readers import read_catalog

    mapping = None
    if cfg.mapping:
        from prodsearch.catalog.mapping import load_mapping

        mapping = load_mapping(cfg.mapping)
    result = read_catalog(catalog, mapping=mapping, progress=progress)
    if getattr(result, "problems", None):
        log.warning(
            "%d catalog rows were skipped (see `prodsearch ingest` for details)", len(result.problems)
        )
    return list(result.products)


def prepare_data(
    pairs: PairSet, split: dict[str, list[int]], cfg: TrainConfig, factory: TowerFactory, progress: bool
) -> tuple[TrainData, int | None, int | None]:
    """Cached features for the frozen sides. Returns (data, text_dim, image_dim) of the cached sides."""
    live_text, live_image = live_sides(cfg)
    data = TrainData(pairs=pairs, split=split)
    data.attributes = attribute_labels(
        pairs,
        split["train"],
        max_classes=cfg.attribute_max_classes,
        min_count=cfg.attribute_min_count,
        min_coverage=cfg.attribute_min_coverage,
    )
    if data.attributes.skipped:
        log.info(
            "attribute columns not classified: %s",
            "; ".join(f"{c} ({why})" for c, why in data.attributes.skipped.items()),
        )
    text_dim = image_dim = None
    if not live_text:
        enc = factory.text_encoder(cfg)
        flat, offsets = [], []
        for texts in pairs.texts:
            offsets.append(len(flat))
            flat.extend(texts)
        data.text_feats = torch.from_numpy(
            encode_cached(enc, flat, batch_size=cfg.feature_batch_size, progress=progress)
        )
        data.text_offsets = offsets
        text_dim = data.text_feats.shape[1]
        if cfg.attribute_classifier == "text" and data.attributes.classes:
            names = [(c, v) for c, values in data.attributes.classes.items() for v in values]
            feats = torch.from_numpy(
                encode_cached(enc, [v for _, v in names], batch_size=cfg.feature_batch_size)
            )
            for c in data.attributes.classes:
                data.attribute_text_feats[c] = feats[[i for i, (col, _) in enumerate(names) if col == c]]
    if not live_image:
        enc = factory.image_encoder(cfg)
        feats = encode_cached(
            enc,
            pairs.image_paths,
            keys=pairs.image_hashes,
            batch_size=cfg.feature_batch_size,
            progress=progress,
        )
        data.image_feats = torch.from_numpy(feats)
        data.image_parts = enc.feature_parts() if hasattr(enc, "feature_parts") else None
        image_dim = data.image_feats.shape[1]
    return data, text_dim, image_dim


def tower_activations(model: JointModel, data: TrainData, cfg: TrainConfig, progress: bool):
    """The cached bottom of a partly unlocked image tower (:mod:`prodsearch.training.activations`),
    or ``None`` (logged why) when the tower runs whole."""
    if model.image_tower is None or not cfg.cache_activations:
        return None
    start, why = can_cache(model.image_tower, cfg.freeze_norm_stats)
    if start is None:
        log.info("image-tower activations not cached: %s", why)
        return None
    return cached_activations(
        model.image_tower,
        data.preprocess,
        data.pairs.image_paths,
        data.pairs.image_hashes,
        start=start,
        views=cfg.activation_views,
        seed=cfg.seed,
        augment=ColourSafeAugment() if cfg.image_augment else None,
        batch_size=cfg.feature_batch_size,
        progress=progress,
    )


def warm_start(model: JointModel, run_dir: str | Path) -> None:
    """Start ``model`` from a run's release weights: heads, temperature and whatever towers the run
    fine-tuned. A tower the run kept frozen starts from its pretrained weights, so heads trained on
    frozen features can start a fine-tune of a tower's top (LP-FT: linear probe, then fine-tune)."""
    from prodsearch.training.embedder import checkpoint_path

    path = checkpoint_path(run_dir)
    if not path.is_file():
        raise ConfigError(f"--init-from {str(run_dir)!r}: no model.pt or best.pt in it")
    # the neighbour-titles bank belongs to the run that fitted it; this run fits its own
    state = {k: v for k, v in load_checkpoint(path)["model"].items() if not k.startswith(NEIGHBOURS)}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shapes differ
        raise ConfigError(
            f"--init-from {str(run_dir)!r}: its weights do not fit this config ({err})"
        ) from err
    missing = [k for k in missing if not k.startswith(("text_tower.", "image_tower."))]
    if missing or unexpected:
        raise ConfigError(
            f"--init-from {str(run_dir)!r}: its weights do not fit this config (missing {missing[:5]}, "
            f"unexpected {list(unexpected)[:5]})"
        )
    log.info("warm start from %s", path)


def _log_neighbours(report: dict[str, Any]) -> None:
    if report.get("used"):
        log.info(
            "neighbour titles: %s keys, k=%d tau=%.3f beta=%.1f lift validation MRR %.4f -> %.4f (%d titles)",
            report.get("keys", "encoded"),
            report["k"],
            report["tau"],
            report["beta"],
            report["val_without"]["mrr"],
            report["val_with"]["mrr"],
            report["val_queries"],
        )
    else:
        log.info("neighbour titles not used: %s", report.get("why"))


def train(
    catalog: str | Path | None,
    out: str | Path,
    config: TrainConfig | dict[str, Any] | None = None,
    *,
    products: Sequence[Product] | None = None,
    factory: TowerFactory | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    resume_overrides: dict[str, Any] | None = None,
    interactions: Sequence[Any] | None = None,
    init_from: str | Path | None = None,
    frozen_split: Mapping[str, str] | None = None,
) -> RunResult:
    """Train a joint text-image model on a catalog's own (title, photo) pairs; write everything to ``out``.

    ``products`` bypasses reading ``catalog`` (tests, benchmarks); ``factory`` supplies the towers.
    ``interactions``: shoppers' graded query -> product pairs
    (:func:`prodsearch.interactions.signals.graded_pairs`) trained alongside the catalog's pairs.
    ``init_from``: a run folder whose release weights start the model (warm start, same config:
    ``prodsearch refresh``); ``frozen_split``: an earlier split this one keeps (``split_pairs``).
    """
    t_start = time.perf_counter()
    out = Path(out)
    cfg = config if isinstance(config, TrainConfig) else from_dict(config or {})
    validate(cfg)
    dist = join_process_group(cfg)  # one process unless launched by torchrun (DDP)
    progress = progress and dist.is_main
    cfg = on_main(dist, lambda: _prepare_run_dir(out, cfg, resume, overwrite, resume_overrides or {}))
    factory = factory or TowerFactory()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if products is None:
        if catalog is None:
            raise ConfigError("train() needs a catalog path or products")
        products = _read_products(catalog, cfg, progress)
    if cfg.max_products:
        products = list(products)[: cfg.max_products]
    pairs = build_pairs(products, n_variants=cfg.text_variants, seed=cfg.split_seed, min_pairs=cfg.min_pairs)
    split = split_pairs(pairs, cfg.val_fraction, cfg.test_fraction, cfg.split_seed, frozen=frozen_split)
    fingerprint = catalog_fingerprint(pairs)
    if resume:
        stored = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {}
        if stored.get("catalog_fingerprint") not in (None, fingerprint):
            raise ConfigError(f"--resume: the catalog differs from the one run {str(out)!r} was trained on")
    if not resume:
        cfg = resolve_image_size(cfg, pairs, factory)
    # rank 0 encodes the frozen sides' features into the cache; the other ranks then read them
    data, text_dim, image_dim = main_first(dist, lambda: prepare_data(pairs, split, cfg, factory, progress))
    model, data.preprocess = build_model(cfg, factory, text_dim, image_dim)
    if cfg.batch_groups:
        data.groups = type_groups(products, pairs)
    if init_from is not None and not resume:  # before the trainer: DDP broadcasts rank 0's weights
        warm_start(model, init_from)
    if interactions:
        from prodsearch.interactions.training import prepare_extra

        data.extra = prepare_extra(pairs, interactions, cfg, factory, progress)
    # rank 0 runs the locked bottom of a partly unlocked image tower into the cache; the others read it
    data.activations = main_first(dist, lambda: tower_activations(model, data, cfg, progress))
    trainer = Trainer(model, cfg, data, out, progress=progress, dist=dist)
    if resume:
        trainer.load_state(load_checkpoint(out / "last.pt"))
        log.info("resumed %s at epoch %d, step %d", out, trainer.epoch, trainer.step)
    elif dist.is_main:
        atomic_write_text(out / "config.json", json.dumps(cfg.to_dict(), indent=2))
        atomic_write_text(
            out / "split.json", json.dumps({k: [pairs.ids[i] for i in v] for k, v in split.items()})
        )
    if dist.is_main:
        _write_run_json(out, cfg, catalog, fingerprint, split, data, status="running")
    history, stopped = trainer.fit()
    test: dict[str, float] = {}
    neighbours: dict[str, Any] = {}
    if dist.is_main and (out / "best.pt").is_file():
        best = load_checkpoint(out / "best.pt")
        trainer.model.load_state_dict(best["model"], strict=not trainer._towers_frozen())
        # the release checkpoint: weights + config only (no optimizer state), what search loads
        release = {k: v for k, v in best.items() if k not in ("optimizer", "scheduler", "format", "version")}
        if cfg.neighbour_titles:
            neighbours = trainer.fit_neighbours()
            _log_neighbours(neighbours)
            if trainer.model.neighbours is not None:
                state = trainer.model.neighbours.state_dict()
                release["model"] = {**best["model"], **{NEIGHBOURS + k: v.cpu() for k, v in state.items()}}
        save_checkpoint(out / "model.pt", release)
        if len(split["test"]) >= 2:
            test = trainer.evaluate("test")
    test = share_from_main(dist, test)
    result = RunResult(
        run_dir=out,
        best_metric=trainer.best_metric,
        best_epoch=trainer.best_epoch,
        epochs_run=trainer.epoch,
        stopped_early=stopped,
        step=trainer.step,
        history=history,
        test_metrics=test,
        neighbour_titles=neighbours,
        pairs={k: len(v) for k, v in split.items()},
        seconds=round(time.perf_counter() - t_start, 2),
    )
    if dist.is_main:
        _write_run_json(out, cfg, catalog, fingerprint, split, data, status="done", result=result)
    leave_process_group(dist)
    return result


def join_process_group(cfg: TrainConfig) -> DistInfo:
    """Under ``torchrun``: join the job's process group (NCCL when this run trains on CUDA, else gloo)
    and check that the global batch splits over the ranks; rank > 0 logs errors only (rank 0
    logs, shows progress and writes the run folder). Otherwise a single process."""
    dist = init_from_env("nccl" if resolve_device(cfg).type == "cuda" else "gloo")
    if not dist.distributed:
        return dist
    if cfg.batch_size % dist.world_size:
        raise ConfigError(
            f"batch_size {cfg.batch_size} (the global batch) does not split over {dist.world_size} "
            f"processes; use a multiple of {dist.world_size}"
        )
    if not dist.is_main:
        logging.getLogger("prodsearch").setLevel(logging.ERROR)
    return dist


def leave_process_group(dist: DistInfo) -> None:
    if dist.distributed and torch.distributed.is_initialized():
        torch.distributed.barrier()  # rank 0 has written the run folder before any rank returns
        torch.distributed.destroy_process_group()


def _write_run_json(
    out: Path,
    cfg: TrainConfig,
    catalog,
    fingerprint: str,
    split,
    data: TrainData,
    status: str,
    result: RunResult | None = None,
) -> None:
    summary = {
        "status": status,
        "catalog": str(catalog) if catalog is not None else None,
        "catalog_fingerprint": fingerprint,
        "split_sizes": {k: len(v) for k, v in split.items()},
        "freeze": cfg.freeze,
    }
    if data.attributes is not None:  # which columns the attribute term classifies, and why not the others
        summary["attribute_columns"] = {
            "classified": {c: len(v) for c, v in data.attributes.classes.items()},
            "skipped": dict(data.attributes.skipped),
        }
    if result is not None:
        summary["result"] = {k: v for k, v in result.to_dict().items() if k != "history"}
    atomic_write_text(out / "run.json", json.dumps(summary, indent=2, default=str))


def train_from_cli(
    catalog: str | Path,
    out: str | Path,
    config_path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> RunResult:
    """Entry point of ``prodsearch train CATALOG --out RUN [--config FILE] [flags] [--resume] [--overwrite]``.

    ``overrides``: CLI flag values keyed by config field name (``None`` = flag not given).
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if resume:
        if config_path is not None:
            raise ConfigError("--resume reads the run's stored config; do not pass --config with it")
        return train(catalog, out, TrainConfig(), resume=True, resume_overrides=overrides, progress=progress)
    cfg = load_config(config_path, overrides)
    return train(catalog, out, cfg, overwrite=overwrite, progress=progress)
