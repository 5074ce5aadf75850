"""Task heads of G2VLM; each returns a dict of named outputs (shapes in the docstrings)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .fusion import MASKED, FusionBlock, ObjectContext
from .geometry import (PAIR_FEATURES, VISIBLE_BOX_FEATURES, box_features, box_half_extents, image_positions,
                       pair_features, project_to_pixels, unit, visible_box_features)

BOX_FEATURES = 9


class ReconstructionHead(nn.Module):
    """Refined depth, normals and confidence at full resolution. The refined depth is a bounded relative residual on
    the input depth after hole filling and an edge-preserving 3x3 depth-bilateral pass (which alone removes about
    half of the Kinect-like noise on the synthetic data); coarse features are upsampled and combined per pixel with
    local depth statistics to decide the correction."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.reduce = nn.Sequential(nn.Conv2d(cfg.width, 16, 1), nn.GELU())
        self.pixel = nn.Sequential(nn.Conv2d(16 + 8, 16, 1), nn.GELU(), nn.Conv2d(16, 5, 1))
        nn.init.zeros_(self.pixel[-1].weight)  # start as the identity: refined = filtered input depth
        nn.init.zeros_(self.pixel[-1].bias)

    def forward(self, fine_map: torch.Tensor, prep: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        filled, smooth, valid, rays = prep["filled"], prep["smooth"], prep["valid"], prep["rays"]
        H, W = filled.shape[-2:]
        h = F.interpolate(self.reduce(fine_map), size=(H, W), mode="bilinear", align_corners=False)  # (B, 16, H, W)
        inv = 1.0 / filled.clamp_min(0.05)
        smooth2 = prep["smooth2"]
        local = torch.cat([filled / 4.0 - 0.5, (smooth - filled) * inv * 10, (smooth2 - filled) * inv * 10,
                           valid.to(filled.dtype), (smooth2 - smooth) * inv * 10, prep["normals"]], dim=1)
        o = self.pixel(torch.cat([h, local], dim=1))  # local (B, 8, H, W) -> o (B, 5, H, W)
        residual = torch.tanh(o[:, :1]) * self.cfg.residual_max
        depth = smooth * (1.0 + residual)  # (B, 1, H, W) metres
        normals = unit(o[:, 1:4] + prep["normals"], 1, 1e-6)  # (B, 3, H, W) camera frame
        return {"depth": depth, "depth_residual": residual, "normals": normals, "conf_logit": o[:, 4:5],
                "confidence": torch.sigmoid(o[:, 4:5]), "points_cam": rays * depth}


class InstanceHead(nn.Module):
    """Per-pixel semantic logits and a per-pixel 3D offset (camera frame, metres) voting for the instance centre;
    pixels whose votes agree are grouped into instances (see inference.group_instances)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.S = cfg.num_semantic
        self.net = nn.Sequential(nn.Conv2d(cfg.width, cfg.width, 3, 1, 1, groups=cfg.width), nn.GELU(),
                                 nn.Conv2d(cfg.width, cfg.width, 1), nn.GELU(), nn.Conv2d(cfg.width, self.S + 3, 1))

    def forward(self, fine_map: torch.Tensor, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        o = F.interpolate(self.net(fine_map), size=size, mode="bilinear", align_corners=False)
        return {"semantic_logits": o[:, :self.S], "center_offset": o[:, self.S:]}  # (B, S, H, W), (B, 3, H, W)


def pool_masks(feat: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mask-weighted mean of a feature map ``(B, C, h, w)`` under soft masks ``(B, M, h, w)`` -> ``(B, M, C)``."""
    area = masks.sum((2, 3)).clamp_min(1e-6)[..., None]
    return torch.einsum("bchw,bmhw->bmc", feat, masks) / area


class ObjectHead(nn.Module):
    """Object tokens from mask-pooled features, mean colour and box geometry, contextualised by the geometry tokens
    and by each other; returns object features and L2-normalised language-aligned embeddings."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.inp = nn.Linear(cfg.width + 3, cfg.dim)
        self.box = nn.Sequential(nn.Linear(BOX_FEATURES, cfg.dim), nn.GELU(), nn.Linear(cfg.dim, cfg.dim))
        self.ctx = ObjectContext(cfg)
        self.norm = nn.LayerNorm(cfg.dim)
        self.embed = nn.Linear(cfg.dim, cfg.embed_dim)

    def forward(self, fine_map, rgb_small, masks, boxes, obj_valid, enc, T_world_cam) -> dict[str, torch.Tensor]:
        """fine_map (B, C, h, w), rgb_small (B, 3, h, w), masks (B, M, h, w), boxes (B, M, 7), obj_valid (B, M)."""
        pooled = torch.cat([pool_masks(fine_map, masks), pool_masks(rgb_small, masks) - 0.5], dim=-1)  # (B, M, C+3)
        tok = self.inp(pooled) + self.box(box_features(boxes, T_world_cam))  # (B, M, D)
        centres = boxes[..., :3]
        if enc.get("token_geometry") == "2d":  # ablation: object positions are their projections in the image
            centres = image_positions(project_to_pixels(centres, enc["K"], T_world_cam), enc["W"], T_world_cam)
        tok = self.ctx(tok, centres, box_half_extents(boxes), obj_valid, enc["coarse_tokens"],
                       enc["coarse_xyz"], enc["coarse_valid"], T_world_cam)
        feat = self.norm(tok)
        return {"obj_feat": feat, "obj_embed": F.normalize(self.embed(feat), dim=-1)}  # (B, M, D), (B, M, E)


class AmodalBoxHead(nn.Module):
    """Amodal (whole-object) boxes from the boxes of what a view shows of each object: how far each face of the
    visible part's box (in that box's axes) lies inside the object's full extent, from mask-pooled features and
    colour, the visible box's size and the side the camera sees it from (a cabinet seen from the front is deeper
    than its front face; a lamp's shade implies a pole below). Starts as the identity (the visible box)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cfg.width + 3 + VISIBLE_BOX_FEATURES, cfg.dim), nn.GELU(),
                                 nn.Linear(cfg.dim, cfg.dim), nn.GELU(), nn.Linear(cfg.dim, 6))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, fine_map, rgb_small, masks, visible_boxes, T_world_cam) -> dict[str, torch.Tensor]:
        """fine_map (B, C, h, w), rgb_small (B, 3, h, w), masks (B, M, h, w), visible_boxes (B, M, 7) world ->
        box_faces (B, M, 6): metres each face of the visible box moves outward (-x, -y, -z, +x, +y, +z in its axes;
        scene_graph.Box3D.grown applies them)."""
        pooled = torch.cat([pool_masks(fine_map, masks), pool_masks(rgb_small, masks) - 0.5], dim=-1)
        return {"box_faces": self.net(torch.cat([pooled, visible_box_features(visible_boxes, T_world_cam)], dim=-1))}


class RelationHead(nn.Module):
    """Logits ``(B, M, M, P)`` over the predicates of every ordered object pair from box geometry and (optionally)
    the two objects' embeddings; embeddings are dropped at random in training so boxes alone also work."""

    def __init__(self, cfg: ModelConfig, hidden: int = 128, embed_drop: float = 0.3):
        super().__init__()
        self.embed_drop = embed_drop
        self.geo = nn.Sequential(nn.Linear(PAIR_FEATURES, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.a = nn.Linear(cfg.embed_dim, hidden, bias=False)
        self.b = nn.Linear(cfg.embed_dim, hidden, bias=False)
        self.out = nn.Sequential(nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, len(cfg.predicates)))

    def forward(self, boxes: torch.Tensor, T_world_cam: torch.Tensor,
                obj_embed: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        x = self.geo(pair_features(boxes, T_world_cam))  # (B, M, M, hidden)
        if obj_embed is not None:
            if self.training and self.embed_drop > 0:
                keep = (torch.rand(obj_embed.shape[:2], device=obj_embed.device) > self.embed_drop)
                obj_embed = obj_embed * keep[..., None].to(obj_embed.dtype)
            x = x + self.a(obj_embed)[:, :, None] + self.b(obj_embed)[:, None, :]
        return {"rel_logits": self.out(x)}  # (B, M, M, P)


class QueryFusion(nn.Module):
    """Object tokens (embedding + box) fused with a query's language tokens (FusionBlock stack)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.inp = nn.Linear(cfg.embed_dim, cfg.dim)
        self.box = nn.Sequential(nn.Linear(BOX_FEATURES, cfg.dim), nn.GELU(), nn.Linear(cfg.dim, cfg.dim))
        self.blocks = nn.ModuleList(FusionBlock(cfg) for _ in range(cfg.n_fusion_layers))
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(self, obj_embed, boxes, obj_valid, text_tok, text_valid, T_world_cam) -> torch.Tensor:
        """obj_embed (Q, M, E), boxes (Q, M, 7), text_tok (Q, L, D), T (Q, 4, 4) -> (Q, M, D)."""
        x = self.inp(obj_embed) + self.box(box_features(boxes, T_world_cam))
        for blk in self.blocks:
            x = blk(x, boxes[..., :3], obj_valid, text_tok, text_valid, T_world_cam)
        return self.norm(x)


class GroundingHead(nn.Module):
    """Referring-expression grounding: score of every object for a query = scaled cosine(query embedding, object
    embedding) + a fused cross-modal term (relations and attributes in context). Invalid objects get MASKED."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fusion = QueryFusion(cfg)
        self.score = nn.Linear(cfg.dim, 1)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, query_embed, text_tok, text_valid, obj_embed, boxes, obj_valid, T_world_cam):
        """query_embed (Q, E) normalised; the rest per query as in QueryFusion -> scores (Q, M)."""
        sim = torch.einsum("qe,qme->qm", query_embed, obj_embed) * self.logit_scale.exp().clamp(max=100)
        fused = self.fusion(obj_embed, boxes, obj_valid, text_tok, text_valid, T_world_cam)
        scores = sim + self.score(fused)[..., 0]
        return {"ground_scores": scores.masked_fill(~obj_valid, MASKED), "ground_sim": sim}


class AnswerHead(nn.Module):
    """Short text answers as a classifier over ``answer_vocab``: the question attends over the fused objects."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fusion = QueryFusion(cfg)
        self.relevance = nn.Linear(cfg.dim, 1)
        self.q = nn.Linear(cfg.dim, cfg.dim)
        self.out = nn.Sequential(nn.Linear(2 * cfg.dim + 1, cfg.dim), nn.GELU(), nn.Dropout(cfg.dropout),
                                 nn.Linear(cfg.dim, len(cfg.answer_vocab)))

    def forward(self, query_tok_mean, text_tok, text_valid, obj_embed, boxes, obj_valid, T_world_cam):
        """query_tok_mean (Q, D) pooled question -> answer logits (Q, A)."""
        fused = self.fusion(obj_embed, boxes, obj_valid, text_tok, text_valid, T_world_cam)  # (Q, M, D)
        rel = self.relevance(fused)[..., 0].masked_fill(~obj_valid, MASKED)  # (Q, M)
        att = torch.softmax(rel, dim=-1)
        pooled = torch.einsum("qm,qmd->qd", att, fused)
        count = (torch.sigmoid(rel) * obj_valid).sum(-1, keepdim=True) / 5.0  # soft count of relevant objects
        return {"answer_logits": self.out(torch.cat([pooled, self.q(query_tok_mean), count], dim=-1))}
