"""Unlocked image tower speed (issue 8): images/s of a training step (forward + backward + AdamW)
through EfficientNet-Lite0 with the rich features, per input size and unlocked depth, side by side
in one run; plus the inference speed of the encoder at the same sizes.

Usage::

    python bench/tower_speed.py [--sizes 128,224] [--unlocked all,4,4c] [--batch 32] [--steps 6] [--record]

"all" unlocks every layer group (full fine-tune); N unlocks the top N groups (LiT-style top
fine-tuning, the lower blocks running without gradients); Nc is the same on cached activations of
the locked bottom (what training does by default, ``cache_activations``): the step runs only the
unlocked blocks, and the bottom runs once per photo view beforehand (its rate is reported too).
The epoch time of a 44,441-photo catalog is extrapolated from the measured rate (stated as such).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import record_run, table  # noqa: E402

CATALOG_SIZE = 44_441


def train_rate(size: int, unlocked: str, batch: int, steps: int) -> tuple[float, float | None]:
    """(images/s of a step, images/s of the cached bottom's one-off pass or None)."""
    import torch

    from prodsearch.encoders.image import COLOUR_BINS, RICH_TAPS, build_backbone
    from prodsearch.training.activations import _bottom_fingerprint, _bottom_runner
    from prodsearch.training.model import ImageTower, ProjectionHead, colour_histogram_torch

    cached = unlocked.endswith("c")
    backbone = build_backbone("lite0", size, taps=RICH_TAPS)
    tower = ImageTower(backbone, 1280)
    if unlocked != "all":
        tower.lock(int(unlocked.rstrip("c")), freeze_norm_stats=True)
    head = ProjectionHead(tower.dim, 256)
    params = [p for p in [*tower.parameters(), *head.parameters()] if p.requires_grad]
    opt = torch.optim.AdamW(params, 1e-4)
    tower.train()
    x = torch.randn(batch, 3, size, size)
    bottom_rate = None
    if cached:  # as training/activations.py: the bottom once, float16 in the cache, the top per step
        start = tower.first_trainable_block()
        tower.eval()
        run = _bottom_runner(tower, start, size, _bottom_fingerprint(tower, start))  # onnxruntime
        bottom_times = []
        with torch.no_grad():
            for _ in range(max(2, steps // 2)):
                t = time.perf_counter()
                act, taps = run(x)
                hist = colour_histogram_torch(x, COLOUR_BINS)
                bottom_times.append(time.perf_counter() - t)
        tower.train()
        bottom_rate = batch / sorted(bottom_times[1:])[len(bottom_times[1:]) // 2]
        act = act.half()
    target = torch.nn.functional.normalize(torch.randn(batch, 256), dim=1)
    times = []
    for i in range(steps):
        t = time.perf_counter()
        feats = tower.top(act.float(), start, taps, hist) if cached else tower(x)
        z = torch.nn.functional.normalize(head(feats), dim=1)
        loss = -(z * target).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:  # the first step pays for allocation
            times.append(time.perf_counter() - t)
    return batch / (sorted(times)[len(times) // 2]), bottom_rate


def infer_rate(size: int, batch: int, steps: int) -> float:
    import numpy as np

    from prodsearch.encoders.image import EfficientNetLiteEncoder

    enc = EfficientNetLiteEncoder(image_size=size, cache=False)
    x = np.random.default_rng(0).normal(size=(batch, 3, size, size)).astype(np.float32)
    enc._forward(x)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        enc._forward(x)
        times.append(time.perf_counter() - t)
    return batch / sorted(times)[len(times) // 2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="128,224")
    ap.add_argument("--unlocked", default="all,4,4c")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        inf = infer_rate(size, args.batch, args.steps)
        rows.append(
            [str(size), "inference (onnxruntime, 1 session)", f"{inf:.1f}", f"{CATALOG_SIZE / inf / 60:.1f}"]
        )
        for unlocked in args.unlocked.split(","):
            r, bottom = train_rate(size, unlocked, args.batch, args.steps)
            n = unlocked.rstrip("c")
            what = "full fine-tune" if unlocked == "all" else f"top {n} groups unlocked"
            if bottom is not None:
                what += ", cached bottom"
                rows.append(
                    [
                        str(size),
                        f"locked bottom (onnxruntime), once per photo view (top {n} unlocked)",
                        f"{bottom:.1f}",
                        f"{CATALOG_SIZE / bottom / 60:.1f}",
                    ]
                )
            rows.append([str(size), f"train step: {what}", f"{r:.1f}", f"{CATALOG_SIZE / r / 60:.1f}"])
    header = ["input px", "what", "images/s", f"min per {CATALOG_SIZE} photos (extrapolated)"]
    body = table(rows, header)
    print(body)
    if args.record:
        note = (
            f"EfficientNet-Lite0 with rich features, batch {args.batch}, median of {args.steps - 1} steps, torch "
            f"threads {torch.get_num_threads()}; random pixels (speed only). The per-epoch minutes are the "
            "measured rate extrapolated to the fashion catalog, not a timed epoch."
        )
        record_run(
            "Image tower speed: training step vs inference", "tower_speed.py", argv, note + "\n\n" + body
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
