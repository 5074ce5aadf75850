"""G2VLM forward: output shapes, gradients reaching every head, configs from YAML, NaN-free outputs on bad depth."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from g2vlm_core.model import G2VLM, load_config  # noqa: E402
from g2vlm_core.model.data import ToyFrames, collate  # noqa: E402
from g2vlm_core.model.testing import tiny_config, write_tiny_text_encoder  # noqa: E402
from g2vlm_core.predicates import PREDICATES  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory):
    return write_tiny_text_encoder(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="module")
def batch():
    ds = ToyFrames(3, 48, 64, seed=3)
    return collate([ds[i] for i in range(3)])


def test_output_shapes(text_dir, batch):
    torch.manual_seed(0)
    cfg = tiny_config(text_dir)
    model = G2VLM(cfg)
    out, losses = model(batch)
    B, _, H, W = batch["rgb"].shape
    M = batch["obj_boxes"].shape[1]
    E, Q = len(batch["expr_text"]), len(batch["qa_text"])
    assert out["depth"].shape == (B, 1, H, W)
    assert out["normals"].shape == (B, 3, H, W)
    assert out["confidence"].shape == (B, 1, H, W)
    assert out["points_cam"].shape == (B, 3, H, W)
    assert out["semantic_logits"].shape == (B, cfg.num_semantic, H, W)
    assert out["center_offset"].shape == (B, 3, H, W)
    assert out["obj_embed"].shape == (B, M, cfg.embed_dim)
    assert out["rel_logits"].shape == (B, M, M, len(PREDICATES))
    assert out["ground_scores"].shape == (E, M)
    assert out["answer_logits"].shape == (Q, len(cfg.answer_vocab))
    assert torch.allclose(out["normals"].norm(dim=1), torch.ones(1), atol=1e-4)
    assert torch.allclose(out["obj_embed"].norm(dim=-1), torch.ones(1), atol=1e-4)
    expected = {"L_depth", "L_normal", "L_surface_smoothness", "L_reconstruction", "L_confidence", "L_semantic",
                "L_instance", "L_align", "L_ground", "L_spatial", "L_text", "total"}
    assert set(losses) == expected
    assert all(torch.isfinite(v) for v in losses.values())


def test_gradients_reach_every_head(text_dir, batch):
    torch.manual_seed(0)
    model = G2VLM(tiny_config(text_dir, dropout=0.0))
    _, losses = model(batch)
    losses["total"].backward()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert name.startswith("text.backbone."), name  # only the frozen text encoder is frozen
            continue
        assert p.grad is not None, f"no gradient reaches {name}"
    for head in ("recon", "instance", "objects", "relation", "ground", "answer", "geometry.points", "text_tok"):
        g = sum(p.grad.abs().sum() for n, p in model.named_parameters()
                if n.startswith(head + ".") and p.grad is not None)
        assert g > 0, f"zero gradient in {head}"


def test_amodal_box_head_shapes_gradients_and_identity_start(text_dir, batch):
    torch.manual_seed(0)
    model = G2VLM(tiny_config(text_dir, dropout=0.0, amodal_boxes=True))
    out, losses = model(batch)
    B, M = batch["obj_boxes"].shape[:2]
    assert out["box_faces"].shape == (B, M, 6)
    # Untrained, the head leaves the visible boxes as they are (its last layer starts at zero) ...
    assert torch.count_nonzero(out["box_faces"]) == 0
    # ... and L_box reaches every one of its parameters (once its last layer is off zero).
    torch.nn.init.normal_(model.amodal.net[-1].weight, std=0.01)
    model.criterion.cfg.w_box = 1.0
    _, losses = model(batch)
    assert "L_box" in losses
    losses["L_box"].backward()
    for name, p in model.amodal.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert G2VLM(tiny_config(text_dir)).amodal is None  # off by default: checkpoints without it still load


def test_unfrozen_text_encoder_gets_gradients(text_dir, batch):
    model = G2VLM(tiny_config(text_dir, freeze_text=False))
    _, losses = model(batch)
    losses["total"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters()
               if n.startswith("text.backbone."))


def test_nan_and_missing_depth_give_finite_outputs(text_dir, batch):
    model = G2VLM(tiny_config(text_dir)).eval()
    b = dict(batch)
    depth = b["depth"].clone()
    depth[:, :, :10] = float("nan")
    depth[:, :, 10:20] = 0.0
    depth[:, :, 20:22] = float("inf")
    b["depth"] = depth
    rgb = b["rgb"].clone()
    rgb[:, :, :5] = float("nan")
    b["rgb"] = rgb
    with torch.no_grad():
        out, losses = model(b)
    for k, v in out.items():
        assert torch.isfinite(v).all(), k
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.mark.parametrize("name", ["train_stage1.yaml", "train_stage2.yaml", "train_stage3_box.yaml",
                                  "train_stage1_large.yaml", "train_stage2_large.yaml", "train_stage3_box_large.yaml"])
def test_yaml_configs_load(name):
    cfg = load_config(REPO / "config" / name)
    assert cfg.train.stage in (1, 2, 3)
    if cfg.train.stage == 3:  # only the new head trains, on the stage-2 model
        assert cfg.model.amodal_boxes and cfg.train.trainable == ("amodal.",) and cfg.loss.w_box > 0
    assert cfg.model.width == (128 if "large" in name else 48)  # model_large.yaml / model_small.yaml
    if cfg.train.stage == 1:
        assert cfg.loss.w_align == cfg.loss.w_ground == cfg.loss.w_text == 0


def test_unknown_config_key_is_rejected(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("model:\n  widht: 3\n")
    with pytest.raises(ValueError, match="widht"):
        load_config(p)


@pytest.mark.parametrize("kw", [{"geometry_bias": False}, {"token_geometry": "2d"}])
def test_ablations_build_and_train(text_dir, batch, kw):
    model = G2VLM(tiny_config(text_dir, **kw))
    _, losses = model(batch)
    losses["total"].backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)
    if kw.get("geometry_bias") is False:
        assert not any("bias.mlp" in n for n, _ in model.named_parameters())


def test_bad_token_geometry_is_rejected(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("model:\n  token_geometry: 4d\n")
    with pytest.raises(ValueError, match="token_geometry"):
        load_config(p)


@pytest.mark.parametrize("hw,size", [((48, 64), (12, 16)), ((50, 64), (12, 16))])  # equal cells, and not
def test_object_masks_are_the_area_fractions_of_each_slot(hw, size):
    import torch.nn.functional as F

    from g2vlm_core.model.model import object_masks
    ids = torch.randint(0, 6, (2, *hw))  # slots 1..4 kept (M = 4), 5 dropped as out of range
    onehot = F.one_hot(ids.clamp(0, 5), 6)[..., 1:5].permute(0, 3, 1, 2).float()
    assert torch.allclose(object_masks(ids, 4, size), F.adaptive_avg_pool2d(onehot, size), atol=1e-6)
