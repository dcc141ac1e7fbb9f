"""The joint model: optional text/image towers, projection heads into a shared space, a learnable temperature.

Towers output L2-normalised features (the same convention as the frozen encoders whose outputs are
cached for the fast path), heads project them into ``embed_dim`` and the result is L2-normalised.
Towers expose ``lock(unlocked_groups, freeze_norm_stats)`` as open_clip does (LiT: locked image
tower); layer groups are found generically (the tower's largest ``nn.ModuleList`` = its layers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class ProjectionHead(nn.Module):
    """``(N, in_dim)`` -> ``(N, out_dim)``; ``linear``: dropout + linear, ``mlp``: linear-GELU-dropout-linear."""

    def __init__(
        self, in_dim: int, out_dim: int, kind: str = "mlp", hidden: int = 1024, dropout: float = 0.1
    ):
        super().__init__()
        if kind == "linear":
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, out_dim))
        else:
            self.net = nn.Sequential(
                nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def layer_groups(module: nn.Module) -> list[list[nn.Parameter]]:
    """Parameter groups bottom -> top: [everything before the layers, layer 0, ..., layer L-1, everything after].

    The layers are the largest ``nn.ModuleList`` inside ``module`` (BERT's ``encoder.layer``,
    EfficientNet's ``_blocks``). Empty groups are dropped. A module without a ModuleList is one group.
    """
    lists = [m for m in module.modules() if isinstance(m, nn.ModuleList) and len(m) > 1]
    params = [p for p in module.parameters()]
    if not lists:
        return [params] if params else []
    layers = max(lists, key=len)
    in_layers = {id(p) for p in layers.parameters()}
    first_layer_param = next(iter(layers.parameters()))
    before, after, seen_layers = [], [], False
    for p in params:
        if p is first_layer_param:
            seen_layers = True
        if id(p) in in_layers:
            continue
        (after if seen_layers else before).append(p)
    groups = [before] + [list(layer.parameters()) for layer in layers] + [after]
    return [g for g in groups if g]


def _lock(module: nn.Module, unlocked_groups: int) -> list[list[nn.Parameter]]:
    groups = layer_groups(module)
    for p in module.parameters():
        p.requires_grad_(False)
    if unlocked_groups > 0:
        for g in groups[-unlocked_groups:]:
            for p in g:
                p.requires_grad_(True)
    return groups


class TextTower(nn.Module):
    """A ``SentenceTransformer``'s own modules (Transformer -> Pooling [-> Normalize]) as a trainable tower.

    ``texts -> (N, dim)`` unit vectors: tokenisation, truncation and pooling are the model's own, so
    the tower computes exactly what the search-time :class:`~prodsearch.encoders.text.SentenceTransformerEncoder`
    computes on the same (tuned) modules. ``model`` is the transformer inside (what :meth:`lock`
    and LoRA act on).
    """

    def __init__(self, st: nn.Module):
        super().__init__()
        self.st = st
        from prodsearch.encoders.text import embedding_dimension

        self.dim = int(embedding_dimension(st))
        # checkpoints written before the tower was the SentenceTransformer held the transformer as `model`
        self._register_load_state_dict_pre_hook(self._old_keys)

    @classmethod
    def from_path(cls, path: str) -> TextTower:
        """A sentence-transformers folder (its modules.json), or a plain HF transformer folder (mean pooling)."""
        from prodsearch.encoders.text import load_sentence_transformer

        return cls(load_sentence_transformer(path).train())

    @property
    def model(self) -> nn.Module:
        return self.st[0].auto_model

    def set_model(self, module: nn.Module) -> None:
        """Replace the transformer inside the pipeline (LoRA wraps it; merging unwraps it). A plain
        ``tower.model = m`` would register a second module (``nn.Module.__setattr__``), not replace it."""
        self.st[0].auto_model = module

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        prep = getattr(self.st, "preprocess", None) or self.st.tokenize  # sentence-transformers < 6: tokenize
        return dict(prep(list(texts)))

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        device = next(self.st.parameters()).device
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in self.tokenize(texts).items()}
        return F.normalize(self.st(batch)["sentence_embedding"].float(), dim=-1)

    def _old_keys(self, state_dict: dict, prefix: str, *args: Any) -> None:
        inner = next(n for n, m in self.st.named_modules() if m is self.model)  # "0.model" or "0.auto_model"
        old = prefix + "model."
        for k in [k for k in state_dict if k.startswith(old)]:
            state_dict[f"{prefix}st.{inner}.{k[len(old) :]}"] = state_dict.pop(k)

    def groups(self) -> list[list[nn.Parameter]]:
        """Layer groups of the transformer without its pooler head, which the sentence embedding never
        uses (BERT's ``pooler``): the top group is the last layer that shapes the features."""
        unused = {
            id(p)
            for n, m in self.model.named_modules()
            if n.split(".")[-1] == "pooler"
            for p in m.parameters()
        }
        groups = [[p for p in g if id(p) not in unused] for g in layer_groups(self.model)]
        return [g for g in groups if g]

    def lock(self, unlocked_groups: int = 0, freeze_norm_stats: bool = False) -> None:
        """Freeze the tower, then unfreeze its top ``unlocked_groups`` layer groups (LayerNorm has no statistics)."""
        for p in self.st.parameters():
            p.requires_grad_(False)
        if unlocked_groups > 0:
            for g in self.groups()[-unlocked_groups:]:
                for p in g:
                    p.requires_grad_(True)


def colour_histogram_torch(pixels: torch.Tensor, bins: int, white: int = 235) -> torch.Tensor:
    """``(N, 3, S, S)`` normalised pixels ``(x - 127) / 128`` -> ``(N, bins**3)``: the batched twin of
    :func:`prodsearch.encoders.image.colour_histogram` (same foreground rule, same cells)."""
    x = (pixels.detach().float() * 128 + 127).round().clamp(0, 255).flatten(2).transpose(1, 2)  # (N, P, 3)
    fg = x.min(dim=2).values < white
    enough = fg.sum(1, keepdim=True) >= torch.clamp(0.02 * torch.tensor(float(x.shape[1])), min=16)
    w = torch.where(enough, fg.float(), torch.ones_like(fg, dtype=torch.float32))
    q = torch.div(x.long() * bins, 256, rounding_mode="floor")
    cell = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    h = torch.zeros(x.shape[0], bins**3, device=x.device).scatter_add_(1, cell, w)
    return torch.sqrt(h / h.sum(1, keepdim=True).clamp(min=1.0))


class ImageTower(nn.Module):
    """A backbone ``(N, 3, S, S) -> (N, F)`` (pooled features), L2-normalised. Locked BatchNorms stay in eval mode.

    A backbone with ``taps`` (the rich features of the EfficientNet encoder) gets the same
    combination as the frozen encoder: pooled top, pooled taps and the colour histogram, each
    normalised and weighted; so heads trained on cached features apply to the tower and back.
    """

    def __init__(self, backbone: nn.Module, dim: int):
        super().__init__()
        self.backbone = backbone
        self.tap_dims = list(getattr(backbone, "tap_dims", []) or [])
        if self.tap_dims:
            from prodsearch.encoders.image import COLOUR_BINS

            dim = 1280 + sum(self.tap_dims) + COLOUR_BINS**3
        self.dim = dim
        self._frozen_norms: list[nn.Module] = []

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if not hasattr(self.backbone, "up_to"):
            return self._combine(self.backbone(pixels).float(), pixels, None)
        return self.top(*self.bottom(pixels, 0))

    def _combine(
        self, raw: torch.Tensor, pixels: torch.Tensor | None, hist: torch.Tensor | None
    ) -> torch.Tensor:
        raw = raw.float()
        if not self.tap_dims:
            return F.normalize(raw, dim=-1)
        from prodsearch.encoders.image import COLOUR_BINS, FEATURE_DIM, RICH_WEIGHTS

        parts = [RICH_WEIGHTS["pooled"] * F.normalize(raw[:, :FEATURE_DIM], dim=-1)]
        start = FEATURE_DIM
        for d in self.tap_dims:
            parts.append(RICH_WEIGHTS["tap"] * F.normalize(raw[:, start : start + d], dim=-1))
            start += d
        if hist is None:
            hist = colour_histogram_torch(pixels, COLOUR_BINS)
        parts.append(RICH_WEIGHTS["colour"] * F.normalize(hist.float(), dim=-1))
        return F.normalize(torch.cat(parts, dim=1), dim=-1)

    # --- the forward pass split at a block, so that a locked bottom runs once and is cached ---
    def first_trainable_block(self) -> int | None:
        """Index of the lowest backbone block with a trainable parameter (``len(blocks)`` when only
        the head trains); ``None`` when the stem trains or the backbone cannot be split."""
        net = getattr(self.backbone, "net", None)
        if net is None or not hasattr(self.backbone, "up_to"):
            return None
        stem = [net._conv_stem, net._bn0]
        if any(p.requires_grad for m in stem for p in m.parameters()):
            return None
        for idx, block in enumerate(net._blocks):
            if any(p.requires_grad for p in block.parameters()):
                return idx
        return len(net._blocks)

    def bottom(
        self, pixels: torch.Tensor, start: int
    ) -> tuple[torch.Tensor, int, list[torch.Tensor], torch.Tensor | None]:
        """``(activation entering block start, start, pooled taps below it, colour histogram)``."""
        from prodsearch.encoders.image import COLOUR_BINS

        x, tapped = self.backbone.up_to(pixels, start)
        hist = colour_histogram_torch(pixels, COLOUR_BINS) if self.tap_dims else None
        return x, start, tapped, hist

    def top(
        self, x: torch.Tensor, start: int, tapped: list[torch.Tensor], hist: torch.Tensor | None
    ) -> torch.Tensor:
        """The rest of :meth:`forward` from :meth:`bottom`'s output (cached or fresh)."""
        return self._combine(self.backbone.from_block(x, start, tapped), None, hist)

    def groups(self) -> list[list[nn.Parameter]]:
        return layer_groups(self.backbone)

    def lock(self, unlocked_groups: int = 0, freeze_norm_stats: bool = False) -> None:
        """Freeze, unfreeze the top ``unlocked_groups`` groups; with ``freeze_norm_stats`` the locked
        parts stay in eval mode during training: BatchNorm layers whose parameters are all frozen keep
        their running statistics, and wholly locked blocks apply no drop-connect. The locked bottom is
        then a fixed function of the photo, which is what lets its activations be cached."""
        _lock(self.backbone, unlocked_groups)
        self._frozen_norms = []
        if freeze_norm_stats:
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    if not any(p.requires_grad for p in m.parameters(recurse=False)):
                        self._frozen_norms.append(m)
            net = getattr(self.backbone, "net", None)
            for block in getattr(net, "_blocks", ()):
                if not any(p.requires_grad for p in block.parameters()):
                    self._frozen_norms.append(block)
        self.train(self.training)

    def train(self, mode: bool = True) -> ImageTower:
        super().train(mode)
        for m in self._frozen_norms:
            m.eval()
        return self


class JointModel(nn.Module):
    """Towers (optional: ``None`` means features come precomputed) + heads + learnable logit scale.

    ``encode_text(feats=(N, text_dim))`` or ``encode_text(texts=[...])`` -> ``(N, out_dim)`` unit norm;
    likewise ``encode_image(feats=...)`` / ``encode_image(pixels=(N, 3, S, S))``; photos used as
    queries with ``query=True``. ``out_dim`` is ``embed_dim``, or ``2 * embed_dim`` with neighbour
    titles (:mod:`prodsearch.training.neighbours`).
    """

    def __init__(
        self,
        text_dim: int,
        image_dim: int,
        embed_dim: int = 256,
        *,
        head: str = "mlp",
        head_hidden: int = 1024,
        dropout: float = 0.1,
        init_temperature: float = 0.07,
        max_logit_scale: float = 100.0,
        text_tower: TextTower | None = None,
        image_tower: ImageTower | None = None,
    ):
        super().__init__()
        self.text_tower = text_tower
        self.image_tower = image_tower
        self.text_head = ProjectionHead(text_dim, embed_dim, head, head_hidden, dropout)
        self.image_head = ProjectionHead(image_dim, embed_dim, head, head_hidden, dropout)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
        self.max_log_scale = math.log(max_logit_scale)
        self.embed_dim = embed_dim
        #: fitted after training (:mod:`prodsearch.training.neighbours`); None until then or when it
        #: did not help on the validation split
        self.neighbours: nn.Module | None = None

    @property
    def out_dim(self) -> int:
        """The served vectors' size: ``embed_dim``, or neighbour titles' ``2 * embed_dim``."""
        return self.embed_dim if self.neighbours is None else self.neighbours.out_dim(self.embed_dim)

    def scale(self) -> torch.Tensor:
        """``exp(logit_scale)`` clamped to ``max_logit_scale`` (CLIP clamps at 100)."""
        return self.logit_scale.clamp(max=self.max_log_scale).exp()

    def clamp_(self) -> None:
        with torch.no_grad():
            self.logit_scale.clamp_(0, self.max_log_scale)

    def encode_text(
        self, feats: torch.Tensor | None = None, texts: Sequence[str] | None = None
    ) -> torch.Tensor:
        if feats is None:
            if self.text_tower is None or texts is None:
                raise ValueError("encode_text needs feats, or texts and a text tower")
            feats = self.text_tower(texts)
        else:
            feats = F.normalize(feats.float(), dim=-1)
        emb = F.normalize(self.text_head(feats).float(), dim=-1)
        return self.neighbours.text(emb) if self.neighbours is not None else emb

    def encode_image(
        self, feats: torch.Tensor | None = None, pixels: torch.Tensor | None = None, query: bool = False
    ) -> torch.Tensor:
        """Photos into the joint space: as the index stores them, or as photo queries (``query``;
        differs only with neighbour titles, whose look-alikes' titles a photo query leaves out)."""
        if feats is None:
            if self.image_tower is None or pixels is None:
                raise ValueError("encode_image needs feats, or pixels and an image tower")
            feats = self.image_tower(pixels)
        else:
            feats = F.normalize(feats.float(), dim=-1)
        emb = F.normalize(self.image_head(feats).float(), dim=-1)
        if self.neighbours is not None:  # the titles of the nearest training photos (neighbours.py)
            emb = self.neighbours.photo_query(emb) if query else self.neighbours(feats, emb)
        return emb

    def head_state_dict(self) -> dict[str, torch.Tensor]:
        """Only the parameters that are not tower weights (heads, temperature, matching head)."""
        return {
            k: v for k, v in self.state_dict().items() if not k.startswith(("text_tower.", "image_tower."))
        }


def count_trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
