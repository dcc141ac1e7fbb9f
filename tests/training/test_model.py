from __future__ import annotations

import torch
from helpers import TinyCNN

from prodsearch.training.lora import apply_lora
from prodsearch.training.model import ImageTower, JointModel, TextTower, count_trainable, layer_groups


def _n(params):
    return sum(p.numel() for p in params)


def test_image_tower_lock_counts():
    cnn = TinyCNN()
    tower = ImageTower(cnn, 16)
    groups = layer_groups(cnn)
    assert len(groups) == 5  # stem, 3 blocks, head
    assert _n(groups[0]) == _n(cnn.stem.parameters()) and _n(groups[-1]) == _n(cnn.head.parameters())
    tower.lock(0)
    assert count_trainable(tower) == 0
    tower.lock(2, freeze_norm_stats=True)
    assert count_trainable(tower) == _n(cnn.head.parameters()) + _n(cnn.blocks[2].parameters())
    tower.train()
    # locked BatchNorms keep their statistics, unlocked ones update
    assert not cnn.stem[1].training and not cnn.blocks[1][1].training
    assert cnn.blocks[2][1].training and cnn.head[1].training
    before = cnn.stem[1].running_mean.clone()
    tower(torch.randn(4, 3, 16, 16))
    assert torch.equal(before, cnn.stem[1].running_mean)
    tower.lock(99)
    assert count_trainable(tower) == _n(cnn.parameters())


def test_text_tower_lock_counts(bert_dir):
    tower = TextTower.from_path(str(bert_dir))
    bert = tower.model
    tower.lock(1)
    # the top group is the last layer: BERT's pooler follows the layers but never shapes the
    # mean-pooled sentence embedding, so unlocking it would train nothing
    assert count_trainable(tower) == _n(bert.encoder.layer[1].parameters())
    tower(["red shirt", "blue denim shoes"]).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in tower.parameters() if p.requires_grad)
    tower.lock(2)
    assert count_trainable(tower) == _n(bert.encoder.layer[1].parameters()) + _n(
        bert.encoder.layer[0].parameters()
    )
    tower.lock(0)
    assert count_trainable(tower) == 0
    out = tower(["red shirt", "blue denim shoes"])
    assert out.shape == (2, 32) and torch.allclose(out.norm(dim=-1), torch.ones(2))


def test_lora_trains_only_adapters(bert_dir):
    tower = TextTower.from_path(str(bert_dir))
    apply_lora(tower, r=4, alpha=8, dropout=0.0)
    names = [n for n, p in tower.named_parameters() if p.requires_grad]
    # 2 layers x (query, value) x (A, B)
    assert len(names) == 8 and all("lora_" in n for n in names)
    assert count_trainable(tower) == 2 * 2 * (4 * 32 + 32 * 4)


def test_joint_model_heads_and_temperature():
    m = JointModel(16, 8, 4, head="linear", init_temperature=0.07, max_logit_scale=100)
    assert torch.isclose(m.scale(), torch.tensor(1 / 0.07))
    with torch.no_grad():
        m.logit_scale.fill_(10.0)
    assert torch.isclose(m.scale(), torch.tensor(100.0))
    m.clamp_()
    assert m.logit_scale.item() == torch.log(torch.tensor(100.0)).item()
    m.eval()
    t = m.encode_text(feats=torch.randn(3, 16))
    assert t.shape == (3, 4) and torch.allclose(t.norm(dim=-1), torch.ones(3))
    assert set(m.head_state_dict()) == set(m.state_dict())


def test_efficientnet_backbone_groups_and_lock():
    from prodsearch.encoders.image import build_backbone

    bb = build_backbone("lite0", image_size=32, pretrained=False)
    net = bb.net
    groups = layer_groups(bb)
    assert len(groups) == len(net._blocks) + 2
    assert _n(groups[0]) == _n(net._conv_stem.parameters()) + _n(net._bn0.parameters())
    assert _n(groups[-1]) == _n(net._conv_head.parameters()) + _n(net._bn1.parameters())
    tower = ImageTower(bb, 1280)
    tower.lock(1, freeze_norm_stats=True)
    assert count_trainable(tower) == _n(groups[-1])
    tower.train()
    assert net._bn1.training and not net._bn0.training


def test_text_tower_reads_checkpoints_that_held_the_transformer_as_model(bert_dir):
    """Runs written before the tower was the SentenceTransformer stored ``model.*`` keys."""
    tuned = TextTower.from_path(str(bert_dir)).eval()
    with torch.no_grad():
        tuned.model.encoder.layer[1].output.dense.bias.add_(0.5)  # a "fine-tuned" weight
    old = {"model." + k.split(".", 3)[3]: v for k, v in tuned.state_dict().items()}  # st.0.<model>.*
    assert any(k.startswith("model.") for k in old) and not any(k.startswith("st.") for k in old)
    fresh = TextTower.from_path(str(bert_dir)).eval()
    fresh.load_state_dict(old, strict=True)
    with torch.no_grad():
        assert torch.allclose(fresh(["red shirt"]), tuned(["red shirt"]), atol=1e-6)
