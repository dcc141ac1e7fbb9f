"""The training configuration: one dataclass, the single source of defaults for ``prodsearch train``.

Every field carries ``metadata={"help": ...}`` (and, where it applies, ``choices`` / ``min`` / ``max``)
so the CLI can generate flags from it and :func:`validate` can check ranges in one place.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from prodsearch.errors import ConfigError


def _f(default: Any, help: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class TrainConfig:
    """Everything that decides a training run (stored resolved inside the run folder and every checkpoint)."""

    # --- data ---
    mapping: str | None = _f(None, "column-mapping file (same format as ingest); inferred when omitted")
    max_products: int | None = _f(None, "use only the first N valid products (quick runs)", min=1)
    min_pairs: int = _f(8, "refuse catalogs with fewer valid (text, image) pairs", min=2)
    val_fraction: float = _f(0.1, "share of title/photo groups held out for validation", min=0.0, max=0.5)
    test_fraction: float = _f(
        0.1, "share of title/photo groups held out for the test split", min=0.0, max=0.5
    )
    split_seed: int = _f(0, "seed of the group-level train/val/test split")
    text_variants: int = _f(
        4, "texts per product sampled per step: the title + attribute phrases", min=1, max=16
    )
    title_prob: float = _f(
        0.5, "probability of sampling the title rather than an attribute phrase", min=0.0, max=1.0
    )
    # --- model ---
    text_tower: str = _f(
        "minilm",
        "text tower: 'minilm', a local sentence-transformers/HF folder, or a registered text encoder name",
    )
    image_tower: str = _f(
        "efficientnet-lite0",
        "image tower: efficientnet-lite0/lite1/lite2, or a registered image encoder name",
    )
    image_size: int | None = _f(
        None,
        "image input size in pixels; omitted: the tower's own size (224 for lite0) when the image tower "
        "is locked (features computed once), else near the catalog photos' native size (1.5x their "
        "median longer side, rounded up to 32, within 128..the tower's own size), since a training "
        "tower pays for every pixel every epoch",
        min=32,
        max=1024,
    )
    image_features: str = _f(
        "rich",
        "frozen image features: rich (pooled top + 3 intermediate blocks + colour histogram) or pooled",
        choices=("rich", "pooled"),
    )
    embed_dim: int = _f(256, "dimension of the shared embedding space", min=2, max=4096)
    head: str = _f("mlp", "projection head kind", choices=("linear", "mlp"))
    head_hidden: int = _f(1024, "hidden width of the mlp head", min=1)
    dropout: float = _f(0.1, "dropout inside the projection heads", min=0.0, max=0.9)
    init_temperature: float = _f(0.07, "initial softmax temperature (CLIP)", min=1e-3, max=1.0)
    max_logit_scale: float = _f(100.0, "clamp of the learnable logit scale 1/T (CLIP)", min=1.0, max=1000.0)
    # --- freezing ---
    freeze: str = _f(
        "heads",
        "what trains: heads (frozen towers, cached features), top (top-N groups of each tower), full, lora (LoRA on the text tower)",
        choices=("heads", "top", "full", "lora"),
    )
    unlocked_groups: int = _f(2, "with freeze=top: tower layer groups unfrozen from the top", min=0)
    text_unlocked_groups: int | None = _f(
        None,
        "with freeze=top: text-tower groups unfrozen (default unlocked_groups); 0 locks the text tower"
        " and trains on its cached features (LiT, open_clip's lock-text)",
        min=0,
    )
    image_unlocked_groups: int | None = _f(
        None,
        "with freeze=top: image-tower groups unfrozen (default unlocked_groups); 0 locks the image tower"
        " and trains on its cached features (LiT, open_clip's lock-image)",
        min=0,
    )
    freeze_norm_stats: bool = _f(
        True, "keep locked image-tower groups in eval mode (BatchNorm statistics, no drop-connect)"
    )
    cache_activations: bool = _f(
        True,
        "with an unlocked image tower: run its locked bottom once per photo view and cache the activations,"
        " so a step runs only the unlocked blocks (needs freeze_norm_stats)",
    )
    activation_views: int = _f(
        2,
        "views cached per photo with cache_activations: the photo, then colour-safe augmented views"
        " (a step samples one)",
        min=1,
        max=8,
    )
    lora_r: int = _f(8, "LoRA rank", min=1, max=256)
    lora_alpha: float = _f(16.0, "LoRA alpha", min=0.0)
    lora_dropout: float = _f(0.05, "LoRA dropout", min=0.0, max=0.9)
    # --- loss ---
    loss: str = _f(
        "contrastive+attribute",
        "training objective: '+'-joined terms of contrastive (multi-positive InfoNCE), siglip (pairwise "
        "sigmoid), attribute (cross-entropy on the catalog's categorical attribute columns) and "
        "matching (pair-matching head BCE); see training/losses.py",
    )
    attribute_weight: float = _f(0.5, "weight of the attribute cross-entropy term", min=0.0)
    attribute_classifier: str = _f(
        "text",
        "classifier of the attribute term: linear (a learned classifier per column) or text (the "
        "embedded text of each value name, UniCL's image-label contrast: the photo of a navy shirt "
        "must be nearer 'Navy Blue' than any other value's name)",
        choices=("linear", "text"),
    )
    attribute_max_classes: int = _f(
        500,
        "attribute columns with more classes than this are not classified (the fashion catalog's "
        "article type has 121; classifying it lifts zero-shot type .80 -> .85)",
        min=2,
    )
    attribute_min_count: int = _f(
        5, "attribute values seen on fewer training products than this are not a class", min=1
    )
    attribute_min_coverage: float = _f(
        0.5,
        "attribute columns whose classes cover less than this share of the training products that "
        "fill them are not classified (free text, or a long tail of values too rare to learn)",
        min=0.0,
        max=1.0,
    )
    graded_positives: float = _f(
        0.0,
        "GCL-style graded targets: share of each row's contrastive target spread over in-batch "
        "products sharing all its attribute values (0 = only same title / photo)",
        min=0.0,
        max=0.9,
    )
    matching_weight: float = _f(
        0.0, "weight of the (text, image) matching-head BCE loss; 0 disables it", min=0.0
    )
    neighbour_titles: bool = _f(
        True,
        "after training, add to each photo's embedding the titles of its nearest training photos "
        "(frozen-feature cosine; Tip-Adapter's cache with titles as values), with k, temperature and "
        "weight fitted on the validation split and kept only where it lifts validation MRR; needs a "
        "locked image tower. See training/neighbours.py",
    )
    # --- optimisation ---
    epochs: int = _f(20, "maximum number of epochs", min=1)
    batch_size: int = _f(256, "pairs per step (in-batch negatives)", min=2)
    batch_groups: int = _f(
        0,
        "draw each batch from N product types (P x K sampling: in-batch negatives of the same type in"
        " other colours and brands); 0 = random batches. The type column is the evaluation's (detected)",
        min=0,
    )
    grad_accum: int = _f(1, "gradient accumulation steps", min=1)
    lr: float = _f(1e-3, "peak learning rate of heads and temperature", min=0.0, max=1.0)
    tower_lr: float = _f(
        2e-5, "peak learning rate of unfrozen tower layers (top of the tower)", min=0.0, max=1.0
    )
    layer_decay: float = _f(0.8, "layer-wise lr decay per tower group below the top", min=0.0, max=1.0)
    weight_decay: float = _f(0.1, "AdamW weight decay (not on biases, norms, temperature)", min=0.0)
    warmup_fraction: float = _f(
        0.05, "share of steps of linear warm-up before the cosine decay", min=0.0, max=1.0
    )
    grad_clip: float = _f(1.0, "max gradient norm; 0 disables clipping", min=0.0)
    image_augment: bool = _f(True, "colour-safe image augmentation when the image tower trains")
    seed: int = _f(0, "seed for initialisation, sampling and augmentation")
    precision: str = _f(
        "auto", "auto (bf16 on CUDA, fp32 on CPU), fp32 or bf16", choices=("auto", "fp32", "bf16")
    )
    device: str = _f("auto", "auto, cpu or cuda[:N]")
    threads: int | None = _f(
        None,
        "CPU threads for torch (default: torch's own choice); 1 is much faster on a CPU shared with "
        "other jobs, where intra-op threads wait on each other",
        min=1,
    )
    # --- evaluation / stopping ---
    early_stop_metric: str = _f(
        "val_mrr",
        "validation metric for best checkpoint and early stopping",
        choices=("val_mrr", "val_r1", "val_r10", "val_loss"),
    )
    patience: int = _f(4, "epochs without improvement before stopping; 0 disables early stopping", min=0)
    val_max_queries: int = _f(2000, "validation queries (titles) per evaluation", min=1)
    feature_batch_size: int = _f(128, "batch size when computing cached tower features", min=1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def field_help() -> dict[str, dict[str, Any]]:
    """``{name: {"default", "type", "help", "choices"?, "min"?, "max"?}}`` for CLI flag generation."""
    out: dict[str, dict[str, Any]] = {}
    for f in fields(TrainConfig):
        out[f.name] = {"default": f.default, "type": f.type, **dict(f.metadata)}
    return out


def _coerce(name: str, ftype: str, value: Any) -> Any:
    """Coerce CLI strings / JSON values to the field type, or raise ConfigError quoting the value."""
    optional = "None" in ftype
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null", "")):
        if optional:
            return None
        raise ConfigError(f"config field {name!r} may not be empty")
    base = ftype.replace("| None", "").strip()
    try:
        if base == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in (
                "1",
                "true",
                "yes",
                "on",
                "0",
                "false",
                "no",
                "off",
            ):
                return value.lower() in ("1", "true", "yes", "on")
            raise ValueError
        if base == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if base == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if base == "str":
            if not isinstance(value, str):
                raise ValueError
            return value
    except (TypeError, ValueError):
        raise ConfigError(f"config field {name!r} expects {base}, got {value!r}") from None
    return value


def unlocked(cfg: TrainConfig, tower: str) -> int:
    """Layer groups of ``tower`` ("text" or "image") unfrozen with ``freeze=top``."""
    own = cfg.text_unlocked_groups if tower == "text" else cfg.image_unlocked_groups
    return cfg.unlocked_groups if own is None else own


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check every field against its ``choices`` / ``min`` / ``max``; raise one ConfigError listing all problems."""
    problems = []
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        meta = f.metadata
        if v is None:
            continue
        if "choices" in meta and v not in meta["choices"]:
            problems.append(f"{f.name}={v!r} (expected one of {list(meta['choices'])})")
        if "min" in meta and v < meta["min"]:
            problems.append(f"{f.name}={v!r} (expected >= {meta['min']})")
        if "max" in meta and v > meta["max"]:
            problems.append(f"{f.name}={v!r} (expected <= {meta['max']})")
    if cfg.val_fraction + cfg.test_fraction >= 0.9:
        problems.append(
            f"val_fraction + test_fraction = {cfg.val_fraction + cfg.test_fraction} (expected < 0.9)"
        )
    from prodsearch.training.losses import parse_loss

    try:
        parse_loss(cfg.loss)
    except ConfigError as err:
        problems.append(str(err))
    if cfg.freeze == "top" and unlocked(cfg, "text") == 0 and unlocked(cfg, "image") == 0:
        problems.append("freeze=top with no unlocked group in either tower (use freeze=heads)")
    if cfg.val_fraction <= 0 and cfg.patience > 0:
        problems.append("patience > 0 needs val_fraction > 0 (early stopping reads the validation metric)")
    if problems:
        raise ConfigError("invalid training config: " + "; ".join(problems))
    return cfg


def from_dict(data: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """Build a config from ``data`` over ``base`` (defaults); unknown keys raise ConfigError naming them."""
    known = {f.name: f for f in fields(TrainConfig)}
    data = {k.replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown training config fields {unknown}; valid fields: {sorted(known)}")
    values = (base or TrainConfig()).to_dict()
    for k, v in data.items():
        values[k] = _coerce(k, str(known[k].type), v)
    return validate(TrainConfig(**values))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML, YAML or JSON file into a dict (a ``[train]`` table / key is unwrapped if present)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib

            data = tomllib.loads(path.read_text(encoding="utf-8"))
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        elif suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
        else:
            raise ConfigError(f"config file {str(path)!r}: expected a .toml, .yaml/.yml or .json file")
    except ConfigError:
        raise
    except Exception as err:  # parse errors of three libraries
        raise ConfigError(f"config file {str(path)!r} could not be parsed: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(path)!r} must hold a mapping of field -> value, got {type(data).__name__}"
        )
    if set(data) == {"train"} and isinstance(data["train"], dict):
        data = data["train"]
    return data


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults <- config file (optional) <- overrides (e.g. CLI flags; ``None`` values are ignored)."""
    cfg = from_dict(read_config_file(path)) if path is not None else TrainConfig()
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    return from_dict(overrides, base=cfg) if overrides else validate(cfg)
