"""CLIP-family checkpoints as prodsearch encoders: one checkpoint gives aligned text and image towers.

Two formats, chosen by the prefix given to :func:`~prodsearch.encoders.base.create_encoder`:

* ``hf-clip:PATH[#text|#image]``: a transformers ``CLIPModel`` folder (``save_pretrained``) or a hub
  id already in the local Hugging Face cache (nothing is downloaded). Images are preprocessed
  with PIL + numpy from the folder's ``preprocessor_config.json`` (mean, std, size), no torchvision.
* ``clip:PATH[#text|#image]``: open_clip (optional, needs ``open_clip_torch`` and torchvision).
  ``PATH`` is a local folder holding ``open_clip_config.json`` + weights, or ``MODEL@PRETRAINED``
  (e.g. ``ViT-B-32@/models/vit_b32.pt``), or anything ``open_clip.create_model_and_transforms``
  accepts as a model name (``hf-hub:org/repo``).

Photos are padded to a square on white before CLIP's resize + centre crop, so the crop removes
nothing (the same whole-product policy as the EfficientNet encoders). The default tower is text.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from prodsearch.catalog.images import load_image, pad_to_square
from prodsearch.encoders.base import Embedder, Encoder, l2_normalize, register_encoder, weights_fingerprint
from prodsearch.errors import EncoderError, require

log = logging.getLogger(__name__)

#: OpenAI CLIP pixel statistics, used when a folder has no preprocessor config.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
TOWERS = ("text", "image")


def parse_clip_spec(spec: str) -> tuple[str, str, str]:
    """``"hf-clip:PATH#image"`` -> ``("hf-clip", "PATH", "image")``; the prefix is optional (default hf-clip)."""
    fmt = "hf-clip"
    for prefix in ("hf-clip:", "clip:"):
        if spec.startswith(prefix):
            fmt, spec = prefix[:-1], spec[len(prefix) :]
            break
    path, _, tower = spec.partition("#")
    tower = tower or "text"
    if tower not in TOWERS:
        raise EncoderError(f"CLIP tower must be '#text' or '#image', got {'#' + tower!r} in {spec!r}")
    if not path:
        raise EncoderError(f"empty CLIP checkpoint in {spec!r}; expected {fmt}:PATH[#text|#image]")
    return fmt, path, tower


class ClipImagePreprocessor:
    """PIL image -> ``(3, S, S)`` float32: pad square on white, bicubic resize to S, ``(x/255 - mean) / std``."""

    def __init__(
        self, image_size: int, mean: Sequence[float] = OPENAI_MEAN, std: Sequence[float] = OPENAI_STD
    ):
        self.image_size = int(image_size)
        self.mean_list, self.std_list = [float(v) for v in mean], [float(v) for v in std]
        if len(self.mean_list) != 3 or len(self.std_list) != 3:
            raise EncoderError(f"CLIP image mean/std need 3 values each, got {list(mean)} and {list(std)}")
        self.mean = np.asarray(mean, np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(3, 1, 1)

    @classmethod
    def from_folder(cls, folder: Path, default_size: int) -> ClipImagePreprocessor:
        """Read ``preprocessor_config.json`` (transformers) when present; CLIP defaults otherwise."""
        cfg_path = folder / "preprocessor_config.json"
        cfg: dict[str, Any] = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
        size = _size_of(cfg.get("crop_size")) or _size_of(cfg.get("size")) or default_size
        return cls(size, cfg.get("image_mean", OPENAI_MEAN), cfg.get("image_std", OPENAI_STD))

    def array(self, img: Image.Image) -> np.ndarray:
        s = self.image_size
        img = pad_to_square(img.convert("RGB")).resize((s, s), Image.Resampling.BICUBIC)
        x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return np.ascontiguousarray((x - self.mean) / self.std, dtype=np.float32)

    def spec(self) -> dict[str, Any]:
        return {
            "size": self.image_size,
            "fit": "pad-square-white",
            "resize": "bicubic",
            "mean": self.mean_list,
            "std": self.std_list,
        }


def _size_of(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        for key in ("height", "shortest_edge", "width"):
            if key in value:
                return int(value[key])
    return None


class ClipTower(Encoder):
    """One tower of a loaded CLIP checkpoint; the text and image towers share ``dim``.

    ``backend`` is a :class:`_HFClip` or :class:`_OpenClip` holding the model.
    """

    def __init__(self, backend: Any, tower: str):
        self.backend = backend
        self.modality = tower  # type: ignore[assignment]
        self.dim = backend.dim
        self.name = f"{backend.fmt}:{backend.label}#{tower}"

    def encode(self, items: Sequence[Any], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        items = list(items)
        if not items:
            return np.zeros((0, self.dim), np.float32)
        from tqdm.auto import tqdm

        fn = self.backend.text_features if self.modality == "text" else self.backend.image_features
        out = []
        for s in tqdm(
            range(0, len(items), batch_size), disable=not progress, desc=f"encoding {self.modality}"
        ):
            batch = items[s : s + batch_size]
            if self.modality == "image":
                batch = [it if isinstance(it, Image.Image) else load_image(it) for it in batch]
            else:
                batch = ["" if t is None else str(t) for t in batch]
            out.append(fn(batch))
        return l2_normalize(np.concatenate(out))

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tower": self.modality,
            "dim": self.dim,
            "normalize": True,
            **self.backend.spec(self.modality),
        }


class _HFClip:
    """A transformers ``CLIPModel`` + tokenizer + :class:`ClipImagePreprocessor`."""

    fmt = "hf-clip"

    def __init__(self, path: str):
        import torch  # noqa: F401
        import transformers
        from transformers import AutoTokenizer, CLIPModel

        folder = Path(path)
        self.label = folder.name if folder.is_dir() else path
        try:
            self.model = CLIPModel.from_pretrained(path, local_files_only=True).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as err:
            raise EncoderError(
                f"cannot load a transformers CLIP checkpoint from {path!r} (a local folder or a hub id already "
                f"in the local cache; nothing is downloaded): {err}"
            ) from err
        if folder.is_dir():
            self.preprocessor = ClipImagePreprocessor.from_folder(
                folder, self.model.config.vision_config.image_size
            )
        else:
            from transformers import CLIPImageProcessor

            try:
                p = CLIPImageProcessor.from_pretrained(path, local_files_only=True)
                self.preprocessor = ClipImagePreprocessor(
                    _size_of(p.crop_size) or _size_of(p.size), p.image_mean, p.image_std
                )
            except OSError:
                self.preprocessor = ClipImagePreprocessor(self.model.config.vision_config.image_size)
        self.dim = int(self.model.config.projection_dim)
        self.max_length = int(self.model.config.text_config.max_position_embeddings)
        self.version = f"transformers=={transformers.__version__}"
        self._fp: str | None = None

    def text_features(self, texts: list[str]) -> np.ndarray:
        import torch

        tok = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        with torch.inference_mode():
            out = self.model.get_text_features(
                input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]
            )
        return _tensor(out).float().numpy()

    def image_features(self, images: list[Image.Image]) -> np.ndarray:
        import torch

        pixels = torch.from_numpy(np.stack([self.preprocessor.array(im) for im in images]))
        with torch.inference_mode():
            out = self.model.get_image_features(pixel_values=pixels)
        return _tensor(out).float().numpy()

    def spec(self, tower: str) -> dict[str, Any]:
        if self._fp is None:
            self._fp = weights_fingerprint(self.model)
        spec: dict[str, Any] = {"library": self.version, "weights": self._fp}
        if tower == "image":
            spec["preprocess"] = self.preprocessor.spec()
        else:
            spec["max_length"] = self.max_length
        return spec


def _tensor(out: Any) -> Any:
    # transformers < 5 returns the projected tensor; >= 5 a BaseModelOutputWithPooling.
    return out if hasattr(out, "numpy") else out.pooler_output


class _OpenClip:
    """An open_clip model (``create_model_and_transforms``) with its tokenizer and eval transform."""

    fmt = "clip"

    def __init__(self, path: str):
        open_clip = require("open_clip", "clip")
        model_name, pretrained, extra = _open_clip_args(open_clip, path)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=pretrained, **extra
            )
            self.tokenizer = open_clip.get_tokenizer(model_name)
        except Exception as err:  # noqa: BLE001 - open_clip raises many types
            raise EncoderError(
                f"cannot load open_clip checkpoint {path!r} ({model_name} @ {pretrained}): {err}"
            ) from err
        self.model = model.eval()
        self.preprocess = preprocess
        self.label = Path(path).name if Path(path).is_dir() else path
        self.model_name, self.pretrained = model_name, pretrained
        self.dim = int(_open_clip_dim(model))
        self.version = f"open_clip=={getattr(open_clip, '__version__', '?')}"
        self._fp: str | None = None

    def text_features(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model.encode_text(self.tokenizer(texts)).float().numpy()

    def image_features(self, images: list[Image.Image]) -> np.ndarray:
        import torch

        pixels = torch.stack([self.preprocess(pad_to_square(im.convert("RGB"))) for im in images])
        with torch.inference_mode():
            return self.model.encode_image(pixels).float().numpy()

    def spec(self, tower: str) -> dict[str, Any]:
        if self._fp is None:
            self._fp = weights_fingerprint(self.model)
        return {"library": self.version, "architecture": self.model_name, "weights": self._fp}


def _open_clip_args(open_clip: Any, path: str) -> tuple[str, str | None, dict[str, Any]]:
    """``(model_name, pretrained, extra kwargs)`` for ``create_model_and_transforms``."""
    folder = Path(path)
    if folder.is_dir() and (folder / "open_clip_config.json").is_file():
        cfg = json.loads((folder / "open_clip_config.json").read_text())
        model_cfg = cfg.get("model_cfg")
        if not isinstance(model_cfg, dict):
            raise EncoderError(f"{str(folder / 'open_clip_config.json')!r} has no 'model_cfg' object")
        # Register the architecture under a name derived from its config, so open_clip can build it.
        name = (
            cfg.get("model_name")
            or "prodsearch-" + hashlib.sha256(json.dumps(model_cfg, sort_keys=True).encode()).hexdigest()[:12]
        )
        from prodsearch.paths import atomic_write_text, cache_dir

        cfg_file = cache_dir() / "open_clip_configs" / f"{name}.json"
        atomic_write_text(cfg_file, json.dumps(model_cfg))
        open_clip.add_model_config(cfg_file)
        weights = next(
            (
                folder / f
                for f in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
                if (folder / f).is_file()
            ),
            None,
        ) or next(
            iter(
                sorted(folder.glob("*.safetensors"))
                + sorted(folder.glob("*.pt"))
                + sorted(folder.glob("*.bin"))
            ),
            None,
        )
        if weights is None:
            raise EncoderError(
                f"no weights file (*.safetensors, *.bin, *.pt) in open_clip folder {str(folder)!r}"
            )
        pre = cfg.get("preprocess_cfg", {})
        extra = {k: pre[k] for k in ("image_mean", "image_std") if k in pre}
        return name, str(weights), extra
    if "@" in path:
        name, _, pretrained = path.partition("@")
        return name, pretrained, {}
    return path, None, {}


def _open_clip_dim(model: Any) -> int:
    proj = getattr(model, "text_projection", None)
    if proj is not None and hasattr(proj, "shape"):
        return int(proj.shape[-1])
    import torch

    with torch.inference_mode():
        return int(model.encode_text(torch.zeros(1, 77, dtype=torch.long)).shape[-1])


_LOADED: dict[tuple[str, str], Any] = {}


def _backend(fmt: str, path: str) -> Any:
    """Load each checkpoint once per process, so its two towers share one model in memory."""
    key = (fmt, os.path.abspath(path) if Path(path).exists() else path)
    if key not in _LOADED:
        _LOADED[key] = (_HFClip if fmt == "hf-clip" else _OpenClip)(path)
    return _LOADED[key]


def clear_loaded() -> None:
    """Forget loaded checkpoints (tests; or to free memory)."""
    _LOADED.clear()


def load_clip_tower(spec: str) -> ClipTower:
    """``"hf-clip:PATH#image"`` -> the image tower (``#text`` or nothing: the text tower)."""
    fmt, path, tower = parse_clip_spec(spec)
    return ClipTower(_backend(fmt, path), tower)


def load_clip_embedder(spec: str) -> Embedder:
    """Both towers of one CLIP checkpoint as an aligned :class:`Embedder` (any ``#tower`` suffix is ignored)."""
    fmt, path, _ = parse_clip_spec(spec)
    backend = _backend(fmt, path)
    return Embedder(
        ClipTower(backend, "text"), ClipTower(backend, "image"), aligned=True, name=f"{fmt}:{backend.label}"
    )


@register_encoder("hf-clip", "text", "transformers CLIP checkpoint: hf-clip:PATH[#text|#image]")
def _hf_clip(path: str | None = None, **kwargs: Any) -> ClipTower:
    if not path:
        raise EncoderError("give the checkpoint as 'hf-clip:PATH[#text|#image]'")
    if kwargs:
        raise EncoderError(f"hf-clip encoders take no options, got {sorted(kwargs)}")
    return load_clip_tower("hf-clip:" + path)


@register_encoder("clip", "text", "open_clip checkpoint (needs open_clip_torch): clip:PATH[#text|#image]")
def _open_clip(path: str | None = None, **kwargs: Any) -> ClipTower:
    if not path:
        raise EncoderError("give the checkpoint as 'clip:PATH[#text|#image]'")
    if kwargs:
        raise EncoderError(f"clip encoders take no options, got {sorted(kwargs)}")
    return load_clip_tower("clip:" + path)
