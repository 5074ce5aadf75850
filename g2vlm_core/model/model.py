"""The G2VLM network: geometry encoder, text encoder, fusion and heads; ``forward(batch)`` -> (outputs, losses)."""
from __future__ import annotations

import logging

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import LossConfig, ModelConfig
from .encoders import GeometryEncoder, TextEncoder
from .heads import AmodalBoxHead, AnswerHead, GroundingHead, InstanceHead, ObjectHead, ReconstructionHead, RelationHead
from .losses import G2VLMLoss

log = logging.getLogger(__name__)

FINE_STRIDE = 4


def object_masks(instance_ids: torch.Tensor, M: int, size: tuple[int, int]) -> torch.Tensor:
    """Soft per-object masks ``(B, M, h, w)`` (area fractions at feature resolution ``size``) from instance ids
    ``(B, H, W)`` where id k >= 1 is object slot k - 1 and 0 is no object."""
    ids = instance_ids.long().clamp(0, M + 1)
    B, H, W = ids.shape
    h, w = size
    if H % h == 0 and W % w == 0:  # equal cells: count ids per cell (a one-hot of a 640x480 map is ~60 MB)
        cell = ((torch.arange(H, device=ids.device) // (H // h))[:, None] * w
                + (torch.arange(W, device=ids.device) // (W // w))[None, :])  # (H, W)
        key = (torch.arange(B, device=ids.device)[:, None, None] * (M + 2) + ids) * (h * w) + cell
        counts = torch.bincount(key.flatten(), minlength=B * (M + 2) * h * w).view(B, M + 2, h, w)
        return counts[:, 1:M + 1].float() / float((H // h) * (W // w))
    onehot = F.one_hot(ids, M + 2)[..., 1:M + 1].permute(0, 3, 1, 2).float()  # (B, M, H, W)
    return F.adaptive_avg_pool2d(onehot, size)


class G2VLM(nn.Module):
    """Geometry-grounded vision-language model for one RGB-D keyframe and its objects.

    ``forward(batch)`` returns ``(outputs, losses)``; which outputs exist depends on what the batch holds (see
    g2vlm_core.model.data for the batch contract): dense outputs always, object outputs when ``obj_boxes`` is given,
    grounding when ``expr_text`` is given, answers when ``qa_text`` is given; losses for every target present.
    """

    def __init__(self, cfg: ModelConfig, loss_cfg: LossConfig | None = None):
        super().__init__()
        self.cfg = cfg
        self.criterion = G2VLMLoss(loss_cfg or LossConfig())
        self.geometry = GeometryEncoder(cfg)
        self.recon = ReconstructionHead(cfg)
        self.instance = InstanceHead(cfg)
        self.objects = ObjectHead(cfg)
        self.relation = RelationHead(cfg)
        self.text = TextEncoder(cfg)
        self.text_tok = nn.Linear(self.text.hidden, cfg.dim)  # language tokens -> model width
        self.text_embed = nn.Linear(self.text.hidden, cfg.embed_dim)  # pooled query -> shared embedding space
        self.ground = GroundingHead(cfg)
        self.answer = AnswerHead(cfg)
        self.amodal = AmodalBoxHead(cfg) if cfg.amodal_boxes else None
        n = sum(p.numel() for n_, p in self.named_parameters() if not n_.startswith("text.backbone."))
        log.info("G2VLM: %.2fM trainable-side parameters (text backbone excluded)", n / 1e6)

    # ---- pieces usable on their own (inference and the node) ----
    def encode_frame(self, rgb, depth, K, T_world_cam) -> tuple[dict, dict]:
        """Dense outputs of keyframes: rgb (B, 3, H, W) in [0, 1], depth (B, 1, H, W) metres (0/NaN invalid)."""
        prep = self.geometry.prepare(rgb, depth, K)
        enc = self.geometry(prep, T_world_cam)
        out = {"rays": prep["rays"], "input_valid": prep["valid"]}
        out.update(self.recon(enc["fine_map"], prep))
        out.update(self.instance(enc["fine_map"], depth.shape[-2:]))
        enc["rgb_small"] = F.avg_pool2d(prep["rgb"], FINE_STRIDE, ceil_mode=True)
        enc.update(K=K, W=depth.shape[-1], token_geometry=self.cfg.token_geometry)
        return out, enc

    def encode_objects(self, enc, masks, boxes, obj_valid, T_world_cam) -> dict:
        """masks (B, M, h, w) at stride 4, boxes (B, M, 7) world -> obj_feat (B, M, D), obj_embed (B, M, E)."""
        fm = enc["fine_map"]
        masks = masks[..., :fm.shape[-2], :fm.shape[-1]].to(fm.dtype)
        return self.objects(fm, enc["rgb_small"][..., :fm.shape[-2], :fm.shape[-1]], masks, boxes, obj_valid, enc,
                            T_world_cam)

    def amodal_faces(self, enc, masks, visible_boxes, T_world_cam) -> dict:
        """masks (B, M, h, w) at stride 4, visible_boxes (B, M, 7) world -> box_faces (B, M, 6), how far each face
        of the visible box moves out to the whole object; needs ``amodal_boxes`` in the model config."""
        if self.amodal is None:
            raise RuntimeError("this model has no amodal box head (model config amodal_boxes: false)")
        fm = enc["fine_map"]
        masks = masks[..., :fm.shape[-2], :fm.shape[-1]].to(fm.dtype)
        return self.amodal(fm, enc["rgb_small"][..., :fm.shape[-2], :fm.shape[-1]], masks, visible_boxes, T_world_cam)

    def encode_text(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Strings -> projected tokens (N, L, D), token mask (N, L), normalised embeddings (N, E)."""
        device = self.text_tok.weight.device
        hid, mask, pooled = self.text(texts, device)
        dt = self.text_tok.weight.dtype
        return {"tokens": self.text_tok(hid.to(dt)), "mask": mask,
                "embed": F.normalize(self.text_embed(pooled.to(dt)), dim=-1)}

    def ground_queries(self, text: dict, obj_embed, boxes, obj_valid, T_world_cam) -> dict:
        """Per query (already gathered to its frame): scores (Q, M)."""
        return self.ground(text["embed"], text["tokens"], text["mask"], obj_embed, boxes, obj_valid, T_world_cam)

    def answer_queries(self, text: dict, obj_embed, boxes, obj_valid, T_world_cam) -> dict:
        m = text["mask"].to(text["tokens"].dtype)[..., None]
        q = (text["tokens"] * m).sum(1) / m.sum(1).clamp_min(1)
        return self.answer(q, text["tokens"], text["mask"], obj_embed, boxes, obj_valid, T_world_cam)

    # ---- training / full forward ----
    def forward(self, batch: dict, compute_loss: bool = True) -> tuple[dict, dict]:
        T = batch["T_world_cam"]
        out, enc = self.encode_frame(batch["rgb"], batch["depth"], batch["K"], T)
        if "obj_boxes" in batch:
            boxes, valid = batch["obj_boxes"], batch["obj_valid"]
            masks = batch.get("obj_masks")
            if masks is None:
                masks = object_masks(batch["instance_ids"], boxes.shape[1], enc["fine_map"].shape[-2:])
            out.update(self.encode_objects(enc, masks, boxes, valid, T))
            out.update(self.relation(boxes, T, out["obj_embed"]))
            if self.amodal is not None and "obj_visible_boxes" in batch:
                out.update(self.amodal_faces(enc, masks, batch["obj_visible_boxes"], T))
            if batch.get("obj_text"):
                labels = list(dict.fromkeys(t for row in batch["obj_text"] for t in row))
                index = {t: i for i, t in enumerate(labels)}
                li = torch.full(valid.shape, -1, dtype=torch.long, device=valid.device)
                for b, row in enumerate(batch["obj_text"]):
                    li[b, :len(row)] = torch.tensor([index[t] for t in row], dtype=torch.long)
                out["label_embed"] = self.encode_text(labels)["embed"]  # (U, E)
                out["label_index"] = li  # (B, M)
            for key, fn, name in (("expr", self.ground_queries, "expr_text"), ("qa", self.answer_queries, "qa_text")):
                if batch.get(name):
                    f = batch[f"{key}_frame"].long()
                    text = self.encode_text(list(batch[name]))
                    out.update(fn(text, out["obj_embed"][f], boxes[f], valid[f], T[f]))
        losses = self.criterion(out, batch) if compute_loss else {}
        return out, losses
