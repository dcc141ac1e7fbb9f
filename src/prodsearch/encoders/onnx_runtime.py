"""Export a torch module to ONNX once, cache it, and run it with onnxruntime.

On a small CPU onnxruntime runs EfficientNet-Lite about 2-3x faster than eager PyTorch (fused
conv+BN+ReLU6, NCHWc layouts). The export is keyed by the encoder's spec hash, written atomically
into ``cache_dir()/onnx`` and reused by later runs; ``onnxruntime`` is optional and callers fall
back to torch when :func:`onnxruntime_available` is False.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from prodsearch.errors import EncoderError, require
from prodsearch.paths import atomic_write_bytes, cache_dir

log = logging.getLogger(__name__)


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def onnx_path(key: str) -> Path:
    """Where the export for spec hash ``key`` lives: ``cache_dir()/onnx/<key>.onnx``."""
    return cache_dir() / "onnx" / f"{key}.onnx"


def export_onnx(module: Any, example: Any, path: Path, *, opset: int = 17) -> Path:
    """Export ``module`` (eval mode) with a dynamic batch axis to ``path`` atomically.

    ``example``: an input tensor ``(N, C, H, W)``; H and W are fixed in the graph (EfficientNet-Lite
    pads statically for one image size). Output name ``features``, input name ``pixels``.
    """
    import torch

    module = module.eval()
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        try:
            # The TorchScript exporter (dynamo=False): ~1 s for EfficientNet-Lite, writes one
            # self-contained file into a buffer, and needs no onnxscript.
            torch.onnx.export(
                module,
                (example,),
                buf,
                input_names=["pixels"],
                output_names=["features"],
                dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        except Exception as err:  # noqa: BLE001 - e.g. a future torch without the legacy exporter
            log.info("legacy ONNX export failed (%s); using the torch.export-based exporter", err)
            buf = io.BytesIO(_export_dynamo(module, example, max(opset, 18)))
    atomic_write_bytes(path, buf.getvalue())
    log.info("exported ONNX model to %s (%d bytes)", path, len(buf.getvalue()))
    return path


def _export_dynamo(module: Any, example: Any, opset: int) -> bytes:
    import tempfile

    import torch

    program = torch.onnx.export(
        module,
        (example,),
        dynamo=True,
        input_names=["pixels"],
        output_names=["features"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        opset_version=opset,
        verbose=False,
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.onnx"
        program.save(str(out), external_data=False)
        return out.read_bytes()


class OnnxSession:
    """A thin onnxruntime session: ``(N, C, H, W) float32 -> (N, D) float32``."""

    def __init__(self, path: str | os.PathLike[str], *, num_threads: int | None = None):
        ort = require("onnxruntime", "onnx")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = int(num_threads or os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own exception types
            raise EncoderError(f"cannot load ONNX model {str(path)!r}: {err}") from err
        self.path = Path(path)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, pixels: np.ndarray, output: str | None = None) -> np.ndarray:
        """``pixels``: (N, C, H, W) float32 -> the named output (default: the first), float32."""
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        names = [output] if output else self.output_names[:1]
        return np.asarray(self.session.run(names, {self.input_name: pixels})[0], dtype=np.float32)


def load_or_export(
    module: Any, example: Any, key: str, *, num_threads: int | None = None, atol: float = 1e-4
) -> OnnxSession:
    """Reuse ``cache_dir()/onnx/<key>.onnx`` if present and loadable, else export it first.

    A fresh export is checked against ``module`` on ``example`` (relative tolerance ``atol`` of
    the output scale); a mismatch removes the file and raises :class:`EncoderError`.
    """
    path = onnx_path(key)
    if path.is_file():
        try:
            return OnnxSession(path, num_threads=num_threads)
        except EncoderError as err:  # a damaged cache file: export again
            log.warning("re-exporting unreadable ONNX cache file %s (%s)", path, err)
    export_onnx(module, example, path)
    session = OnnxSession(path, num_threads=num_threads)
    import torch

    gen = torch.Generator().manual_seed(0)
    probe = torch.randn(example.shape, generator=gen, dtype=torch.float32)
    with torch.no_grad():
        ref = module(probe).float().numpy()
    err = float(np.abs(session.run(probe.numpy()) - ref).max())
    if err > atol * max(1.0, float(np.abs(ref).max())):
        path.unlink(missing_ok=True)
        raise EncoderError(f"ONNX export of {key} differs from torch by {err:.2e} (> {atol:g}); not using it")
    return session


def quantize_int8(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    calibration: list[dict[str, np.ndarray]] | None = None,
) -> Path:
    """An int8 copy of the float32 export ``src`` at ``dst`` (atomically), weights per channel.

    Without ``calibration``: dynamic quantization of the MatMuls (activations quantized at run
    time), what transformers want. With ``calibration`` (input batches, e.g. a few hundred of the
    catalog's own photos): static QDQ quantization with activation ranges fitted on them, what
    conv nets want (dynamic ConvInteger is no faster than float32 on a CPU).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs "consider pre-processing" advice on every call
    try:
        if calibration is None:
            quantize_dynamic(
                src, tmp, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"]
            )
        else:

            class Batches(CalibrationDataReader):
                def __init__(self) -> None:
                    self.it = iter(calibration)

                def get_next(self) -> dict[str, np.ndarray] | None:
                    return next(self.it, None)

            quantize_static(
                src,
                tmp,
                Batches(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
        os.replace(tmp, dst)
    finally:
        root.setLevel(level)
        tmp.unlink(missing_ok=True)
    return dst
