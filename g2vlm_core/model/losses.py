"""Named, composable loss terms of G2VLM; ``G2VLMLoss`` returns each term under its name plus their weighted sum.

Every term takes the model outputs and the batch (see data.py for the batch contract), is skipped when its targets
are absent, and is zero for perfect predictions.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import LossConfig
from .geometry import box_extents_in


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp_min(1.0)


def gt_depth_mask(batch: dict) -> torch.Tensor:
    d = batch["depth_gt"]
    return torch.isfinite(d) & (d > 1e-3)  # (B, 1, H, W)


def depth_loss(out: dict, batch: dict) -> torch.Tensor:
    """L1 (metres) between refined and true depth."""
    m = gt_depth_mask(batch)
    return _masked_mean((out["depth"] - torch.nan_to_num(batch["depth_gt"])).abs(), m)


def normal_loss(out: dict, batch: dict) -> torch.Tensor:
    """1 - cosine between predicted and true camera-frame normals where the true normal is defined."""
    n_gt = torch.nan_to_num(batch["normals_gt"])
    m = (n_gt.norm(dim=1, keepdim=True) > 0.5) & gt_depth_mask(batch)
    return _masked_mean(1.0 - (out["normals"] * n_gt).sum(1, keepdim=True), m)


def surface_smoothness_loss(out: dict, batch: dict) -> torch.Tensor:
    """Depth-gradient matching: neighbouring-pixel depth differences of the refined depth must equal the true ones,
    which removes the high-frequency noise of the sensor on smooth surfaces while keeping true edges."""
    d, g = out["depth"], torch.nan_to_num(batch["depth_gt"])
    m = gt_depth_mask(batch)
    terms = []
    for dim in (2, 3):
        n = d.shape[dim] - 1
        dd = d.narrow(dim, 1, n) - d.narrow(dim, 0, n)
        dg = g.narrow(dim, 1, n) - g.narrow(dim, 0, n)
        terms.append(_masked_mean((dd - dg).abs(), m.narrow(dim, 1, n) & m.narrow(dim, 0, n)))
    return sum(terms) / 2


def _point_error(out: dict, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    gt_pts = out["rays"] * torch.nan_to_num(batch["depth_gt"])
    return (out["points_cam"] - gt_pts).norm(dim=1, keepdim=True), gt_depth_mask(batch)  # (B, 1, H, W)


def reconstruction_loss(out: dict, batch: dict) -> torch.Tensor:
    """Mean 3D distance (metres) between the refined dense points and the true points."""
    err, m = _point_error(out, batch)
    return _masked_mean(err, m)


def confidence_loss(out: dict, batch: dict, tol_m: float) -> torch.Tensor:
    """BCE teaching the confidence map which points are within ``tol_m`` of the truth."""
    err, m = _point_error(out, batch)
    target = (err.detach() < tol_m).to(out["conf_logit"].dtype)
    return _masked_mean(F.binary_cross_entropy_with_logits(out["conf_logit"], target, reduction="none"), m)


def semantic_loss(out: dict, batch: dict, balance: float = 0.0) -> torch.Tensor:
    """Per-pixel cross entropy (label -1 ignored), classes weighted by their batch frequency ** -balance so that
    small objects are not drowned by floor and walls."""
    logits, labels = out["semantic_logits"], batch["semantic_ids"].long()
    weight = None
    if balance > 0:
        S = logits.shape[1]
        freq = torch.bincount(labels[labels >= 0].flatten(), minlength=S)[:S].to(logits.dtype)
        weight = torch.where(freq > 0, (freq / freq.sum().clamp_min(1)).clamp_min(1e-6) ** -balance, 0.0)
        weight = weight / (weight * freq).sum().clamp_min(1e-12) * freq.sum()  # mean pixel weight 1
    return F.cross_entropy(logits, labels, weight=weight, ignore_index=-1)


def instance_targets(out: dict, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """True centre offsets (B, 3, H, W) camera frame and their mask (B, 1, H, W) from instance ids and boxes."""
    ids = batch["instance_ids"].long()  # (B, H, W), k >= 1 -> object slot k - 1
    T = batch["T_world_cam"]
    c_w = batch["obj_boxes"][..., :3]  # (B, M, 3)
    c_cam = (c_w - T[:, None, :3, 3]) @ T[:, :3, :3]  # (B, M, 3) = R^T (c - t)
    M = c_cam.shape[1]
    idx = (ids - 1).clamp(0, max(M - 1, 0))
    centre = torch.gather(c_cam, 1, idx.flatten(1)[..., None].expand(-1, -1, 3)).transpose(1, 2)
    centre = centre.reshape(ids.shape[0], 3, *ids.shape[1:])  # (B, 3, H, W)
    gt_pts = out["rays"] * torch.nan_to_num(batch["depth_gt"])
    mask = ((ids > 0) & (ids <= M))[:, None] & gt_depth_mask(batch)
    return centre - gt_pts, mask


def instance_loss(out: dict, batch: dict) -> torch.Tensor:
    """L1 (metres, summed over xyz) between predicted and true centre-vote offsets on object pixels."""
    target, m = instance_targets(out, batch)
    return _masked_mean((out["center_offset"] - target).abs().sum(1, keepdim=True), m)


def align_loss(out: dict, batch: dict, temperature: float) -> torch.Tensor:
    """InfoNCE: each object's embedding against the distinct label-text embeddings of the batch."""
    valid = batch["obj_valid"]
    obj = out["obj_embed"][valid]  # (N, E)
    logits = obj @ out["label_embed"].T / temperature  # (N, U)
    return F.cross_entropy(logits, out["label_index"][valid])


def ground_loss(out: dict, batch: dict) -> torch.Tensor:
    """Cross entropy of each referring expression over the objects of its frame."""
    return F.cross_entropy(out["ground_scores"], batch["expr_target"].long())


def spatial_loss(out: dict, batch: dict) -> torch.Tensor:
    """BCE over every predicate of every valid ordered pair (a != b)."""
    logits, target = out["rel_logits"], batch["rel_targets"].to(out["rel_logits"].dtype)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(-1)  # (B, M, M)
    return _masked_mean(bce, batch["rel_valid"])


def text_loss(out: dict, batch: dict) -> torch.Tensor:
    """Cross entropy over the answer vocabulary (answer -1 ignored)."""
    return F.cross_entropy(out["answer_logits"], batch["qa_answer"].long(), ignore_index=-1)


def box_loss(out: dict, batch: dict, beta: float = 0.05) -> torch.Tensor:
    """Amodal boxes, in the axes of each object's visible-part box (objects with one): smooth L1 (metres) between the
    predicted faces and those of the true box, plus 1 - IoU of the two boxes in those axes. The IoU term makes a
    centimetre count as much on a mug as a decimetre on a sofa (L1 alone inflates small objects' boxes)."""
    vis = batch["obj_visible_boxes"]
    ext = box_extents_in(batch["obj_boxes"], vis)  # (B, M, 6) true box in the visible box's axes
    half = vis[..., 3:6] / 2
    target = torch.cat([-half - ext[..., :3], ext[..., 3:] - half], dim=-1)
    m = batch["obj_valid"] & batch["obj_visible_valid"]
    faces = out["box_faces"]
    if not m.any():
        return faces.sum() * 0.0
    faces, target, half, ext = faces[m].float(), target[m], half[m], ext[m]
    l1 = F.smooth_l1_loss(faces, target, beta=beta, reduction="none").sum(-1)
    lo, hi = -half - faces[:, :3], half + faces[:, 3:]
    inter = (torch.minimum(hi, ext[:, 3:]) - torch.maximum(lo, ext[:, :3])).clamp_min(0).prod(-1)
    union = (hi - lo).clamp_min(1e-3).prod(-1) + (ext[:, 3:] - ext[:, :3]).prod(-1) - inter
    return (l1 + 1.0 - inter / union.clamp_min(1e-9)).mean()


class G2VLMLoss:
    """Weighted sum of the named terms whose outputs and targets are present and whose weight is non-zero."""

    def __init__(self, cfg: LossConfig):
        self.cfg = cfg

    def __call__(self, out: dict, batch: dict) -> dict[str, torch.Tensor]:
        c = self.cfg
        has = lambda *k: all(x in out or x in batch for x in k)  # noqa: E731
        spec = [
            ("L_depth", c.w_depth, ("depth_gt",), lambda: depth_loss(out, batch)),
            ("L_normal", c.w_normal, ("depth_gt", "normals_gt"), lambda: normal_loss(out, batch)),
            ("L_surface_smoothness", c.w_surface_smoothness, ("depth_gt",),
             lambda: surface_smoothness_loss(out, batch)),
            ("L_reconstruction", c.w_reconstruction, ("depth_gt",), lambda: reconstruction_loss(out, batch)),
            ("L_confidence", c.w_confidence, ("depth_gt",), lambda: confidence_loss(out, batch, c.conf_tol_m)),
            ("L_semantic", c.w_semantic, ("semantic_ids",), lambda: semantic_loss(out, batch, c.semantic_balance)),
            ("L_instance", c.w_instance, ("instance_ids", "obj_boxes", "depth_gt"), lambda: instance_loss(out, batch)),
            ("L_align", c.w_align, ("label_embed", "obj_embed"), lambda: align_loss(out, batch, c.align_temperature)),
            ("L_ground", c.w_ground, ("ground_scores", "expr_target"), lambda: ground_loss(out, batch)),
            ("L_spatial", c.w_spatial, ("rel_logits", "rel_targets"), lambda: spatial_loss(out, batch)),
            ("L_box", c.w_box, ("box_faces", "obj_visible_boxes"), lambda: box_loss(out, batch)),
            ("L_text", c.w_text, ("answer_logits", "qa_answer"), lambda: text_loss(out, batch)),
        ]
        losses: dict[str, torch.Tensor] = {}
        total = None
        for name, w, keys, fn in spec:
            if w == 0 or not has(*keys):
                continue
            v = fn()
            losses[name] = v
            total = w * v if total is None else total + w * v
        if total is not None:
            losses["total"] = total
        return losses
