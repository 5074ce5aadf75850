"""Each named loss term is ~0 on perfect predictions and larger on perturbed ones."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from g2vlm_core.model.config import LossConfig
from g2vlm_core.model.data import ToyFrames, collate
from g2vlm_core.model.geometry import pixel_rays
from g2vlm_core.model.losses import G2VLMLoss, instance_targets

BIG = 30.0


@pytest.fixture(scope="module")
def batch():
    ds = ToyFrames(2, 48, 64, seed=5)
    return collate([ds[i] for i in range(2)])


def perfect_outputs(batch) -> dict:
    B, _, H, W = batch["rgb"].shape
    M = batch["obj_boxes"].shape[1]
    rays = pixel_rays(batch["K"], H, W)
    d = batch["depth_gt"]
    out = {"rays": rays, "depth": d.clone(), "points_cam": rays * d, "normals": batch["normals_gt"].clone(),
           "conf_logit": torch.full_like(d, BIG)}
    S = 8
    out["semantic_logits"] = BIG * F.one_hot(batch["semantic_ids"].clamp(0), S).permute(0, 3, 1, 2).float()
    out["center_offset"] = torch.zeros(B, 3, H, W)
    out["center_offset"] = instance_targets(out, batch)[0]
    labels = sorted({t for row in batch["obj_text"] for t in row})
    li = torch.full((B, M), -1, dtype=torch.long)
    for b, row in enumerate(batch["obj_text"]):
        li[b, :len(row)] = torch.tensor([labels.index(t) for t in row])
    out["label_embed"] = torch.eye(len(labels), 16)
    out["label_index"] = li
    out["obj_embed"] = out["label_embed"][li.clamp(0)]
    E = len(batch["expr_text"])
    out["ground_scores"] = BIG * F.one_hot(batch["expr_target"], M).float()
    out["rel_logits"] = BIG * (2 * batch["rel_targets"] - 1)
    out["answer_logits"] = BIG * F.one_hot(batch["qa_answer"], 17).float()
    assert E > 0
    return out


def perturb(out: dict, gen: torch.Generator) -> dict:
    p = dict(out)
    p["depth"] = out["depth"] + 0.05 * torch.randn(out["depth"].shape, generator=gen)
    p["points_cam"] = out["rays"] * p["depth"]
    p["normals"] = F.normalize(out["normals"] + 0.5 * torch.randn(out["normals"].shape, generator=gen), dim=1)
    p["conf_logit"] = -out["conf_logit"]
    for k in ("semantic_logits", "ground_scores", "rel_logits", "answer_logits"):
        p[k] = out[k] + BIG * torch.randn(out[k].shape, generator=gen)
    p["center_offset"] = out["center_offset"] + 0.2 * torch.randn(out["center_offset"].shape, generator=gen)
    p["obj_embed"] = F.normalize(out["obj_embed"] + torch.randn(out["obj_embed"].shape, generator=gen), dim=-1)
    return p


def test_perfect_predictions_give_near_zero_losses(batch):
    losses = G2VLMLoss(LossConfig())(perfect_outputs(batch), batch)
    assert len(losses) == 12
    for name, v in losses.items():
        assert float(v) < 1e-3, f"{name} = {float(v)} on perfect predictions"


def test_perturbed_predictions_give_larger_losses(batch):
    out = perfect_outputs(batch)
    clean = G2VLMLoss(LossConfig())(out, batch)
    noisy = G2VLMLoss(LossConfig())(perturb(out, torch.Generator().manual_seed(0)), batch)
    for name in clean:
        assert float(noisy[name]) > float(clean[name]) + 1e-3, name


def test_weights_compose_and_zero_weight_drops_a_term(batch):
    out = perfect_outputs(batch)
    noisy = perturb(out, torch.Generator().manual_seed(1))
    base = G2VLMLoss(LossConfig())(noisy, batch)
    no_depth = G2VLMLoss(LossConfig(w_depth=0.0))(noisy, batch)
    assert "L_depth" not in no_depth
    assert torch.allclose(no_depth["total"], base["total"] - base["L_depth"], atol=1e-4)
    assert torch.allclose(base["total"], sum(getattr(LossConfig(), "w_" + k[2:].lower()) * v
                                             for k, v in base.items() if k != "total"), atol=1e-4)


def test_box_loss_zero_on_true_faces_and_larger_off_them(batch):
    from g2vlm_core.model.geometry import box_extents_in
    from g2vlm_core.model.losses import box_loss
    from g2vlm_core.scene_graph import Box3D

    vis = batch["obj_visible_boxes"]
    assert batch["obj_visible_valid"][batch["obj_valid"]].any()
    ext = box_extents_in(batch["obj_boxes"], vis)
    faces = torch.cat([-vis[..., 3:6] / 2 - ext[..., :3], ext[..., 3:] - vis[..., 3:6] / 2], dim=-1)
    assert float(box_loss({"box_faces": faces}, batch)) < 1e-6
    assert float(box_loss({"box_faces": faces + 0.1}, batch)) > 0.1
    # Box3D.grown by the true faces gives the tightest box around the true one in the visible box's axes.
    m = batch["obj_valid"] & batch["obj_visible_valid"]
    for v, f, t in zip(vis[m].double().numpy(), faces[m].double().numpy(), batch["obj_boxes"][m].double().numpy()):
        g = Box3D(v[:3], v[3:6], v[6]).grown(f)
        local = (Box3D(t[:3], t[3:6], t[6]).corners() - g.center) @ g.rotation
        assert np.allclose(local.min(0), -g.size / 2, atol=1e-4) and np.allclose(local.max(0), g.size / 2, atol=1e-4)
    terms = G2VLMLoss(LossConfig(w_box=1.0))({**perfect_outputs(batch), "box_faces": faces + 0.1}, batch)
    assert "L_box" in terms and float(terms["L_box"]) > 0.1
