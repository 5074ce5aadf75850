"""Attention with a geometry-aware bias, and the blocks that fuse geometry tokens, object tokens and text tokens."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .geometry import viewer_rotation

MASKED = -1e4  # finite "minus infinity": a query with every key masked attends uniformly instead of giving NaN


class GeoBias(nn.Module):
    """Learned attention bias ``(B, H, Nq, Nk)`` from relative positions (viewer frame, metres) of query/key pairs."""

    def __init__(self, n_in: int, hidden: int, n_heads: int, enabled: bool = True):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(n_in + 1, hidden), nn.GELU(), nn.Linear(hidden, n_heads)) if enabled else None

    def forward(self, rel: torch.Tensor) -> torch.Tensor | None:
        """rel (B, Nq, Nk, n_in), its first 3 entries a metric offset -> (B, H, Nq, Nk); None when disabled."""
        if self.mlp is None:
            return None
        d = rel[..., :3].norm(dim=-1, keepdim=True)
        return self.mlp(torch.cat([rel, d], dim=-1)).permute(0, 3, 1, 2)


class Attention(nn.Module):
    """Multi-head attention (self or cross) with an optional additive bias and key padding mask."""

    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.h = n_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, bias: torch.Tensor | None = None,
                key_valid: torch.Tensor | None = None) -> torch.Tensor:
        B, Nq, C = x.shape  # x (B, Nq, C), ctx (B, Nk, C)
        Nk = ctx.shape[1]
        q = self.q(x).reshape(B, Nq, self.h, C // self.h).transpose(1, 2)  # (B, H, Nq, c)
        k, v = self.kv(ctx).reshape(B, Nk, 2, self.h, C // self.h).permute(2, 0, 3, 1, 4)  # (B, H, Nk, c) each
        mask = bias
        if key_valid is not None:
            pad = torch.where(key_valid, 0.0, MASKED).to(q.dtype)[:, None, None, :]  # (B, 1, 1, Nk)
            mask = pad if mask is None else mask + pad
        if mask is not None:
            mask = mask.to(q.dtype).expand(B, self.h, Nq, Nk)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, Nq, C))


class MLP(nn.Module):
    def __init__(self, dim: int, ratio: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, ratio * dim), nn.GELU(), nn.Linear(ratio * dim, dim),
                                 nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def relative_positions(q_xyz: torch.Tensor, k_xyz: torch.Tensor, T_world_cam: torch.Tensor) -> torch.Tensor:
    """World positions (B, Nq, 3), (B, Nk, 3) -> offsets k - q in the viewer frame (B, Nq, Nk, 3)."""
    R = viewer_rotation(T_world_cam)  # (B, 3, 3)
    return (k_xyz[:, None, :, :] - q_xyz[:, :, None, :]) @ R[:, None].transpose(-1, -2)


class GeoBlock(nn.Module):
    """Pre-norm transformer block over geometry tokens; attention biased by their relative 3D positions."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(cfg.dim), nn.LayerNorm(cfg.dim)
        self.attn = Attention(cfg.dim, cfg.n_heads, cfg.dropout)
        self.bias = GeoBias(3, cfg.bias_hidden, cfg.n_heads, cfg.geometry_bias)
        self.mlp = MLP(cfg.dim, cfg.mlp_ratio, cfg.dropout)

    def forward(self, x: torch.Tensor, xyz: torch.Tensor, T_world_cam: torch.Tensor,
                valid: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, N, D), xyz (B, N, 3) world metres -> (B, N, D)."""
        h = self.n1(x)
        x = x + self.attn(h, h, self.bias(relative_positions(xyz, xyz, T_world_cam)), valid)
        return x + self.mlp(self.n2(x))


class ObjectContext(nn.Module):
    """Object tokens read the geometry tokens around them (bias from token position relative to the object's box)
    and then each other (bias from relative object centres)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D = cfg.dim
        self.n1, self.n2, self.n3, self.nk = nn.LayerNorm(D), nn.LayerNorm(D), nn.LayerNorm(D), nn.LayerNorm(D)
        self.cross = Attention(D, cfg.n_heads, cfg.dropout)
        self.cross_bias = GeoBias(6, cfg.bias_hidden, cfg.n_heads, cfg.geometry_bias)
        self.self_attn = Attention(D, cfg.n_heads, cfg.dropout)
        self.self_bias = GeoBias(3, cfg.bias_hidden, cfg.n_heads, cfg.geometry_bias)
        self.mlp = MLP(D, cfg.mlp_ratio, cfg.dropout)

    def forward(self, obj: torch.Tensor, centres: torch.Tensor, half: torch.Tensor, obj_valid: torch.Tensor,
                tokens: torch.Tensor, tok_xyz: torch.Tensor, tok_valid: torch.Tensor,
                T_world_cam: torch.Tensor) -> torch.Tensor:
        """obj (B, M, D), centres/half (B, M, 3), tokens (B, N, D), tok_xyz (B, N, 3) -> (B, M, D)."""
        rel = relative_positions(centres, tok_xyz, T_world_cam)  # (B, M, N, 3)
        R = viewer_rotation(T_world_cam)
        half_v = (half @ R.transpose(1, 2)).abs().clamp_min(0.02)  # (B, M, 3) extents along viewer axes
        rel_n = (rel / half_v[:, :, None]).clamp(-5, 5)
        bias = self.cross_bias(torch.cat([rel, rel_n], -1))
        obj = obj + self.cross(self.n1(obj), self.nk(tokens), bias, tok_valid)
        h = self.n2(obj)
        obj = obj + self.self_attn(h, h, self.self_bias(relative_positions(centres, centres, T_world_cam)), obj_valid)
        return obj + self.mlp(self.n3(obj))


class FusionBlock(nn.Module):
    """Cross-modal block: object tokens attend to the language tokens of a query, then to each other with a
    geometry-aware bias (relative object centres in the viewer frame), so "left of the laptop" can be resolved."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D = cfg.dim
        self.n1, self.n2, self.n3, self.nt = nn.LayerNorm(D), nn.LayerNorm(D), nn.LayerNorm(D), nn.LayerNorm(D)
        self.cross = Attention(D, cfg.n_heads, cfg.dropout)
        self.self_attn = Attention(D, cfg.n_heads, cfg.dropout)
        self.bias = GeoBias(3, cfg.bias_hidden, cfg.n_heads, cfg.geometry_bias)
        self.mlp = MLP(D, cfg.mlp_ratio, cfg.dropout)

    def forward(self, obj: torch.Tensor, centres: torch.Tensor, obj_valid: torch.Tensor, text: torch.Tensor,
                text_valid: torch.Tensor, T_world_cam: torch.Tensor) -> torch.Tensor:
        """obj (E, M, D), centres (E, M, 3), text (E, L, D) -> (E, M, D)."""
        obj = obj + self.cross(self.n1(obj), self.nt(text), None, text_valid)
        h = self.n2(obj)
        obj = obj + self.self_attn(h, h, self.bias(relative_positions(centres, centres, T_world_cam)), obj_valid)
        return obj + self.mlp(self.n3(obj))
