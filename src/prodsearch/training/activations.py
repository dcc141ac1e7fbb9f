"""Cached activations below an image tower's unlocked blocks (issue 8).

With ``freeze=top`` only the top few blocks of the image tower train; the locked bottom (stem and
the blocks below the first unlocked one) is a fixed function of the photo, because locked blocks
run in eval mode (:meth:`ImageTower.lock` with ``freeze_norm_stats``). So it runs once per photo
*view* and its output is cached: the activation entering the first unlocked block (float16), the
pooled taps below it and the colour histogram. A training step then runs only the unlocked blocks
and the head on the cached activation (:meth:`ImageTower.top`); the result equals the full forward
pass up to float16 rounding of the cached activation (tested).

Augmentation moves into the cache: view 0 is the photo itself (what evaluation uses), views
1..V-1 are colour-safe augmented copies drawn once with a seed; a step samples one view per photo.
Fewer distinct augmentations than a live tower sees, for a step that skips most of the network.

The arrays are written to ``cache_dir()/train-activations/<key>/`` (memory-mapped on load), keyed by
the tower, image size, split block, views, seed and the photos' content hashes: a second run with
the same recipe (``--resume``, another loss) starts without re-running the bottom.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prodsearch.encoders.image import COLOUR_BINS
from prodsearch.paths import cache_dir
from prodsearch.training.model import ImageTower, colour_histogram_torch

log = logging.getLogger(__name__)


@dataclass
class TowerActivations:
    """Per photo view: ``act (V, N, C, H, W)`` float16, ``taps`` list of ``(V, N, d)``, ``hist (V, N, B)``."""

    start: int
    act: np.ndarray
    taps: list[np.ndarray]
    hist: np.ndarray | None

    @property
    def views(self) -> int:
        return int(self.act.shape[0])

    def __len__(self) -> int:
        return int(self.act.shape[1])

    def batch(
        self, idx: Sequence[int], views: Sequence[int], device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, int, list[torch.Tensor], torch.Tensor | None]:
        """The cached :meth:`ImageTower.bottom` output for photos ``idx`` (view ``views[i]`` of each)."""
        v, i = np.asarray(views, dtype=np.int64), np.asarray(idx, dtype=np.int64)
        act = torch.from_numpy(np.ascontiguousarray(self.act[v, i])).to(device).float()
        taps = [torch.from_numpy(np.ascontiguousarray(t[v, i])).to(device).float() for t in self.taps]
        hist = (
            None if self.hist is None else torch.from_numpy(np.ascontiguousarray(self.hist[v, i])).to(device)
        )
        return act, self.start, taps, hist


def can_cache(tower: ImageTower | None, freeze_norm_stats: bool) -> tuple[int | None, str]:
    """``(first unlocked block, "")`` when the tower's bottom can be cached, else ``(None, why not)``."""
    if tower is None:
        return None, "the image tower is locked (its features are cached whole)"
    if not freeze_norm_stats:
        return None, "freeze_norm_stats is off: locked blocks use batch statistics, not a fixed function"
    start = tower.first_trainable_block()
    if start is None:
        return None, "the stem trains (nothing below the unlocked blocks to cache)"
    if start == 0:
        return None, "every block trains (nothing below the unlocked blocks to cache)"
    return start, ""


def _bottom_fingerprint(tower: ImageTower, start: int) -> str:
    """Hash of everything the locked bottom computes with: the stem's and blocks ``[0, start)``'s
    parameters and BatchNorm statistics (pretrained and randomly initialised towers differ)."""
    net = tower.backbone.net
    h = hashlib.sha256(
        json.dumps(
            {
                "backbone": getattr(tower.backbone, "variant", type(tower.backbone).__name__),
                "taps": list(getattr(tower.backbone, "taps", ())),
                "image_size": int(getattr(tower.backbone, "image_size", 0) or 0),
                "start": start,
                "format": 1,
            },
            sort_keys=True,
        ).encode()
    )
    for module in (net._conv_stem, net._bn0, *list(net._blocks)[:start]):
        for name, t in module.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


def _key(bottom: str, views: int, seed: int, keys: Sequence[str]) -> str:
    h = hashlib.sha256(f"{bottom}:{views}:{seed}".encode())
    for k in keys:
        h.update(k.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:24]


class _BottomModule(torch.nn.Module):
    """``pixels -> [activation entering block start (flattened), pooled taps below it]`` as one
    ``(N, D)`` output, the shape the ONNX export path takes."""

    def __init__(self, backbone: torch.nn.Module, start: int):
        super().__init__()
        self.backbone, self.start = backbone, start

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x, tapped = self.backbone.up_to(pixels, self.start)
        return torch.cat([x.flatten(1), *tapped], dim=1)


def _bottom_runner(tower: ImageTower, start: int, image_size: int, key: str) -> Callable[[torch.Tensor], Any]:
    """``pixels -> (activation, taps)`` of the locked bottom: on onnxruntime when it is installed
    (several times faster than eager torch on a CPU; the export is checked against torch), else torch."""
    from prodsearch.encoders.onnx_runtime import load_or_export, onnxruntime_available
    from prodsearch.errors import EncoderError

    module = _BottomModule(tower.backbone, start).eval()
    example = torch.zeros(2, 3, image_size, image_size)
    with torch.no_grad():
        act_shape = tuple(tower.backbone.up_to(example[:1], start)[0].shape[1:])
    n_act = int(np.prod(act_shape))
    tap_dims = [d for t, d in zip(tower.backbone.taps, tower.tap_dims, strict=True) if t < start]
    session = None
    if onnxruntime_available() and torch.device(next(tower.parameters()).device).type == "cpu":
        try:
            session = load_or_export(module, example, f"bottom-{key}", num_threads=torch.get_num_threads())
        except EncoderError as err:
            log.warning("tower bottom runs on torch: %s", err)

    def run(pixels: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if session is None:
            out = module(pixels)
        else:
            out = torch.from_numpy(session.run(pixels.numpy()))
        act = out[:, :n_act].reshape(len(out), *act_shape)
        taps, at = [], n_act
        for d in tap_dims:
            taps.append(out[:, at : at + d])
            at += d
        return act, taps

    return run


def _load(folder: Path, n_taps: int) -> TowerActivations | None:
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    act = np.load(folder / "act.npy", mmap_mode="r")
    taps = [np.load(folder / f"tap{t}.npy", mmap_mode="r") for t in range(n_taps)]
    hist = np.load(folder / "hist.npy", mmap_mode="r") if meta["hist"] else None
    return TowerActivations(int(meta["start"]), act, taps, hist)


def cached_activations(
    tower: ImageTower,
    preprocess: Callable[[Any], torch.Tensor],
    paths: Sequence[str],
    keys: Sequence[str],
    *,
    start: int,
    views: int,
    seed: int,
    augment: Callable[[Any, random.Random], Any] | None,
    batch_size: int = 64,
    progress: bool = False,
    use_cache: bool = True,
) -> TowerActivations:
    """Run ``tower.bottom`` over every photo view (or load the cached result)."""
    from prodsearch.catalog.images import load_image
    from prodsearch.encoders.base import progress_bar

    if augment is None:
        views = 1
    image_size = int(getattr(tower.backbone, "image_size", 0) or 0)
    fingerprint = _bottom_fingerprint(tower, start)
    folder = cache_dir() / "train-activations" / _key(fingerprint, views, seed, keys)
    n_taps = sum(1 for t in getattr(tower.backbone, "taps", ()) if t < start)
    if use_cache:
        found = _load(folder, n_taps)
        if found is not None and len(found) == len(paths) and found.views == views:
            log.info(
                "loaded cached image-tower activations (%d photos x %d views) from %s",
                len(paths),
                views,
                folder,
            )
            return found
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    was_training = tower.training
    tower.eval()
    bottom = _bottom_runner(tower, start, image_size, fingerprint)
    arrays: dict[str, np.ndarray] = {}
    n = len(paths)
    try:
        with torch.no_grad(), progress_bar(views * n, progress, "tower bottom", "img") as bar:
            for v in range(views):
                for s in range(0, n, batch_size):
                    pixels = []
                    for i in range(s, min(n, s + batch_size)):
                        img = load_image(paths[i])
                        if v > 0:
                            img = augment(img, random.Random(f"{seed}:{v}:{keys[i]}"))
                        pixels.append(preprocess(img))
                    batch = torch.stack(pixels)
                    x, tapped = bottom(batch)
                    hist = colour_histogram_torch(batch, COLOUR_BINS) if tower.tap_dims else None
                    parts = {"act": x.half(), **{f"tap{t}": tp for t, tp in enumerate(tapped)}}
                    if hist is not None:
                        parts["hist"] = hist
                    for name, value in parts.items():
                        if name not in arrays:
                            dtype = np.float16 if name == "act" else np.float32
                            arrays[name] = np.lib.format.open_memmap(
                                tmp / f"{name}.npy",
                                mode="w+",
                                dtype=dtype,
                                shape=(views, n, *value.shape[1:]),
                            )
                        arrays[name][v, s : s + len(pixels)] = value.numpy()
                    bar.update(len(pixels))
        for a in arrays.values():
            a.flush()
        (tmp / "meta.json").write_text(json.dumps({"start": start, "views": views, "hist": "hist" in arrays}))
        arrays.clear()
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        tower.train(was_training)
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("cached image-tower activations below block %d: %d photos x %d views", start, n, views)
    found = _load(folder, n_taps)
    assert found is not None
    return found
