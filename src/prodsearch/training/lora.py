"""LoRA adapters on the text tower (peft): only the low-rank adapters train, the transformer stays frozen."""

from __future__ import annotations

from torch import nn

from prodsearch.errors import ConfigError, require
from prodsearch.training.model import TextTower

# attention projections by architecture family: BERT/MiniLM, DistilBERT, LLaMA/XLM-R-like
_TARGETS = (("query", "value"), ("q_lin", "v_lin"), ("q_proj", "v_proj"))


def lora_targets(model: nn.Module) -> list[str]:
    """The attention query/value projection names present in ``model`` (first family that matches)."""
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    for fam in _TARGETS:
        if all(t in names for t in fam):
            return list(fam)
    raise ConfigError(
        f"freeze='lora': no attention projections named {[list(f) for f in _TARGETS]} in the text tower; "
        "use freeze=top or freeze=full for this model"
    )


def apply_lora(tower: TextTower, r: int = 8, alpha: float = 16.0, dropout: float = 0.05) -> TextTower:
    """Wrap ``tower.model`` with LoRA adapters (in place); afterwards only ``lora_`` parameters are trainable."""
    peft = require("peft", "train")
    config = peft.LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=lora_targets(tower.model)
    )
    tower.set_model(peft.get_peft_model(tower.model, config))
    for n, p in tower.model.named_parameters():
        p.requires_grad_("lora_" in n)
    return tower
