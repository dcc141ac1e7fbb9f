"""How to (re)create the embedder an index was built with.

The manifest stores both the embedder's full ``spec`` (checked on open) and this small recipe
(used to rebuild the embedder), so ``Engine.open(dir)`` needs no arguments and can never pair an
index with the wrong encoder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from prodsearch.encoders.base import Embedder, create_encoder
from prodsearch.errors import EncoderError

DEFAULT_TEXT_ENCODER = "minilm"
DEFAULT_IMAGE_ENCODER = "efficientnet-lite0"


@dataclass
class EmbedderRecipe:
    """``model`` is a ``prodsearch train`` run folder or a ``clip:``/``hf-clip:`` checkpoint; otherwise
    the two named encoders are used side by side (not aligned: no cross-modal ranking)."""

    model: str | None = None
    text_encoder: str = DEFAULT_TEXT_ENCODER
    image_encoder: str | None = DEFAULT_IMAGE_ENCODER
    image_options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sized_for(self, photo_paths: list[str], old: dict[str, Any] | None = None) -> EmbedderRecipe:
        """This recipe with the image input size settled when it gives none: an existing index
        (``old``: its stored recipe) keeps the size it was built with; a new one runs an
        EfficientNet-Lite encoder near its photos' native size (60x80 photos at 128 px instead of
        upscaled to 224: faster, and better image search, bench/image_size_bench.py).

        With a ``prodsearch train`` run as ``model``, the size is that of the index's *untuned*
        photo vectors (the run's image tower, sized as above); the trained ("joint") vectors run at
        the run's own size (:func:`prodsearch.training.embedder.load_index_embedder`)."""
        encoder = self._untuned_image_encoder()
        if encoder is None or "image_size" in self.image_options:
            return self
        if old is not None:
            size = (old.get("image_options") or {}).get("image_size")
            return replace(self, image_options={**self.image_options, "image_size": size}) if size else self
        if not encoder.startswith("efficientnet-lite") or not photo_paths:
            return self
        from prodsearch.encoders.image import size_for_photos

        size = size_for_photos(encoder, photo_paths)
        return replace(self, image_options={**self.image_options, "image_size": size})

    def _untuned_image_encoder(self) -> str | None:
        """The image encoder name of the index's untuned photo vectors (a run's image tower)."""
        if not self.model:
            return self.image_encoder
        run = Path(self.model)
        if self.model.startswith(("clip:", "hf-clip:")) or not (run / "config.json").is_file():
            return None
        import json

        return json.loads((run / "config.json").read_text()).get("image_tower")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmbedderRecipe:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def build(self) -> Embedder:
        if self.model:
            if self.model.startswith(("clip:", "hf-clip:")):
                from prodsearch.encoders.clip import load_clip_embedder

                return load_clip_embedder(self.model)
            run = Path(self.model)
            if not run.is_dir():
                raise EncoderError(
                    f"--model {self.model!r}: not a training run folder nor a clip:/hf-clip: checkpoint"
                )
            from prodsearch.training.embedder import load_index_embedder

            return load_index_embedder(run, untuned_image_size=self.image_options.get("image_size"))
        text = create_encoder(self.text_encoder)
        image = create_encoder(self.image_encoder, **self.image_options) if self.image_encoder else None
        return Embedder(text, image, aligned=False)
