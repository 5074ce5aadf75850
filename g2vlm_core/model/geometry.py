"""Batched torch geometry for the model: rays, back-projection, hole filling, normals, viewer frames, box features."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pixel_rays(K: torch.Tensor, H: int, W: int, stride: int = 1) -> torch.Tensor:
    """Unit-z camera rays ``(B, 3, H//stride, W//stride)`` at the centres of ``stride`` x ``stride`` cells."""
    dev, dt = K.device, K.dtype
    off = (stride - 1) / 2.0
    u = torch.arange(W // stride, device=dev, dtype=dt) * stride + off
    v = torch.arange(H // stride, device=dev, dtype=dt) * stride + off
    fx, fy, cx, cy = K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]
    x = (u[None, None, :] - cx[:, None, None]) / fx[:, None, None]  # (B, 1, w)
    y = (v[None, :, None] - cy[:, None, None]) / fy[:, None, None]  # (B, h, 1)
    x, y = torch.broadcast_tensors(x, y)
    return torch.stack([x, y, torch.ones_like(x)], dim=1)  # (B, 3, h, w)


def sanitize_depth(depth: torch.Tensor, max_depth_m: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth with NaN/inf/<=0/too-far values set to 0, and the validity mask (both (B, 1, H, W))."""
    valid = torch.isfinite(depth) & (depth > 1e-3) & (depth <= max_depth_m)
    return torch.where(valid, depth, torch.zeros_like(depth)), valid


def fill_holes(depth: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Fill invalid pixels of ``(B, 1, H, W)`` depth from a validity-normalised image pyramid (coarser = farther)."""
    v = valid.to(depth.dtype)
    levels = [(depth * v, v)]
    while min(levels[-1][0].shape[-2:]) > 1:
        d, w = levels[-1]
        levels.append((F.avg_pool2d(d, 2, ceil_mode=True), F.avg_pool2d(w, 2, ceil_mode=True)))
    d, w = levels[-1]
    filled = d.sum((2, 3), keepdim=True) / w.sum((2, 3), keepdim=True).clamp_min(1e-6)  # global mean fallback
    for d, w in reversed(levels):
        up = F.interpolate(filled, size=d.shape[-2:], mode="nearest")
        filled = torch.where(w > 1e-6, d / w.clamp_min(1e-6), up)
    return filled  # (B, 1, H, W), equal to depth where valid


def box_blur(x: torch.Tensor, k: int) -> torch.Tensor:
    """Separable k x k mean filter of ``(B, C, H, W)`` with replicate padding."""
    p = k // 2
    x = F.avg_pool2d(F.pad(x, (p, p, 0, 0), mode="replicate"), (1, k), stride=1)
    return F.avg_pool2d(F.pad(x, (0, 0, p, p), mode="replicate"), (k, 1), stride=1)


def depth_bilateral(depth: torch.Tensor, valid: torch.Tensor, k: int = 3, sigma_rel: float = 0.03) -> torch.Tensor:
    """Edge-preserving k x k smoothing of ``(B, 1, H, W)`` depth: neighbours weigh exp(-(dz / (sigma_rel z))^2), so
    sensor noise (~1 % of z) is averaged while depth discontinuities (foreground / background) are not blended."""
    H, W = depth.shape[-2:]
    p = k // 2
    dp = F.pad(depth, (p, p, p, p), mode="replicate")
    vp = F.pad(valid.to(depth.dtype), (p, p, p, p))
    inv = 1.0 / (sigma_rel * depth.clamp_min(1e-3))
    num = torch.zeros_like(depth)
    den = torch.zeros_like(depth)
    for dy in range(k):
        for dx in range(k):
            nb = dp[..., dy:dy + H, dx:dx + W]
            w = vp[..., dy:dy + H, dx:dx + W] * torch.exp(-torch.square((nb - depth) * inv))
            num += w * nb
            den += w
    return torch.where(den > 1e-6, num / den.clamp_min(1e-6), depth)


def unit(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """``x`` scaled to unit length along ``dim`` (zero stays zero); several times faster than F.normalize on CPU
    for channel-first images."""
    return x * torch.rsqrt((x * x).sum(dim, keepdim=True).clamp_min(eps * eps))


def normals_from_points(points: torch.Tensor) -> torch.Tensor:
    """Unit normals ``(B, 3, H, W)`` of an organised point image ``(B, 3, H, W)``, facing the camera."""
    p = F.pad(points, (1, 1, 1, 1), mode="replicate")
    dx = p[:, :, 1:-1, 2:] - p[:, :, 1:-1, :-2]
    dy = p[:, :, 2:, 1:-1] - p[:, :, :-2, 1:-1]
    n = torch.cross(dx, dy, dim=1)
    n = n * torch.where((n * points).sum(1, keepdim=True) > 0, -1.0, 1.0)
    return unit(n, 1)


def to_world(points_cam: torch.Tensor, T_world_cam: torch.Tensor) -> torch.Tensor:
    """Camera-frame points ``(B, N, 3)`` -> world frame ``(B, N, 3)``."""
    return points_cam @ T_world_cam[:, :3, :3].transpose(1, 2) + T_world_cam[:, None, :3, 3]


def viewer_rotation(T_world_cam: torch.Tensor) -> torch.Tensor:
    """Rows (right, forward_h, up) ``(B, 3, 3)`` of the gravity-aligned viewer frame (world z up).

    ``R @ v`` expresses a world vector in that frame: rotation about z does not change it, left/right is explicit.
    """
    f = T_world_cam[:, :3, 2].clone()
    f[:, 2] = 0.0
    n = f.norm(dim=1, keepdim=True)
    fallback = torch.tensor([1.0, 0.0, 0.0], device=f.device, dtype=f.dtype).expand_as(f)
    f = torch.where(n > 1e-6, f / n.clamp_min(1e-6), fallback)  # straight down: any horizontal axis will do
    up = torch.zeros_like(f)
    up[:, 2] = 1.0
    right = torch.cross(f, up, dim=1)
    return torch.stack([right, f, up], dim=1)


IMAGE_SPAN_M = 4.0  # "2d" token geometry: the image width maps to this many pseudo-metres


def image_positions(uv: torch.Tensor, W: int, T_world_cam: torch.Tensor) -> torch.Tensor:
    """Pixel coordinates ``(B, N, 2)`` -> pseudo world positions ``(B, N, 3)`` for the "2d" ablation: image right
    maps onto the viewer's right axis and image down onto -up, so viewer-frame offsets are pure image offsets."""
    R = viewer_rotation(T_world_cam)  # rows right, forward, up
    x = uv[..., 0:1] / W * IMAGE_SPAN_M
    y = uv[..., 1:2] / W * IMAGE_SPAN_M
    return x * R[:, None, 0] - y * R[:, None, 2]


def project_to_pixels(points_w: torch.Tensor, K: torch.Tensor, T_world_cam: torch.Tensor) -> torch.Tensor:
    """World points ``(B, N, 3)`` -> pixel coordinates ``(B, N, 2)`` (points behind the camera are clamped)."""
    pc = (points_w - T_world_cam[:, None, :3, 3]) @ T_world_cam[:, :3, :3]  # R^T (p - t)
    z = pc[..., 2:3].clamp_min(1e-3)
    fx, fy, cx, cy = (K[:, i, j][:, None, None] for i, j in ((0, 0), (1, 1), (0, 2), (1, 2)))  # (B, 1, 1)
    return torch.cat([pc[..., 0:1] / z * fx + cx, pc[..., 1:2] / z * fy + cy], dim=-1)


def box_half_extents(boxes: torch.Tensor) -> torch.Tensor:
    """World axis-aligned half extents ``(..., 3)`` of gravity-aligned boxes ``(..., 7)`` (centre, size, yaw)."""
    c, s = torch.cos(boxes[..., 6]).abs(), torch.sin(boxes[..., 6]).abs()
    hx, hy = boxes[..., 3] / 2, boxes[..., 4] / 2
    return torch.stack([c * hx + s * hy, s * hx + c * hy, boxes[..., 5] / 2], dim=-1)


def box_features(boxes: torch.Tensor, T_world_cam: torch.Tensor) -> torch.Tensor:
    """Per-object features ``(B, M, 9)``: centre relative to the camera in the viewer frame (3), world half extents (3),
    log volume, bottom height relative to the camera, horizontal distance (metres)."""
    R = viewer_rotation(T_world_cam)  # (B, 3, 3)
    rel = (boxes[..., :3] - T_world_cam[:, None, :3, 3]) @ R.transpose(1, 2)  # (B, M, 3)
    h = box_half_extents(boxes)
    vol = torch.log((8 * h.prod(-1, keepdim=True)).clamp_min(1e-6))
    bottom = rel[..., 2:3] - h[..., 2:3]
    return torch.cat([rel, h, vol, bottom, rel[..., :2].norm(dim=-1, keepdim=True)], dim=-1)


PAIR_FEATURES = 22


def pair_features(boxes: torch.Tensor, T_world_cam: torch.Tensor) -> torch.Tensor:
    """Geometric features ``(B, M, M, 22)`` of every ordered pair (a, b) of boxes ``(B, M, 7)``.

    The quantities the predicates of g2vlm_core.predicates are defined on (viewer-frame centre offsets, vertical gaps,
    footprint overlap, box separation, volume overlap), each in metres/fractions and as a clamped margin in units of
    5 cm so that the head can learn sharp thresholds.
    """
    R = viewer_rotation(T_world_cam)
    c = boxes[..., :3]
    h = box_half_extents(boxes)
    lo, hi = c - h, c + h
    d = (c[:, None, :, :] - c[:, :, None, :]) @ R[:, None].transpose(-1, -2)  # (B, M, M, 3): c_b - c_a, viewer frame
    inter = (torch.minimum(hi[:, :, None], hi[:, None, :]) - torch.maximum(lo[:, :, None], lo[:, None, :])).clamp_min(0)
    area = 4 * h[..., 0] * h[..., 1]
    overlap = inter[..., 0] * inter[..., 1] / torch.minimum(area[:, :, None], area[:, None, :]).clamp_min(1e-9)
    above_gap = lo[:, :, None, 2] - hi[:, None, :, 2]  # bottom_a - top_b
    below_gap = lo[:, None, :, 2] - hi[:, :, None, 2]  # bottom_b - top_a
    inside_xy = torch.amin(h[:, None, :, :2] - (c[:, :, None, :2] - c[:, None, :, :2]).abs(), dim=-1)
    inside_xy_b = torch.amin(h[:, :, None, :2] - (c[:, :, None, :2] - c[:, None, :, :2]).abs(), dim=-1)
    sep = torch.maximum(lo[:, :, None] - hi[:, None, :], lo[:, None, :] - hi[:, :, None]).clamp_min(0)
    gap = sep.norm(dim=-1)
    vol = 8 * h.prod(-1)
    frac_a = inter.prod(-1) / vol[:, :, None].clamp_min(1e-9)
    frac_b = inter.prod(-1) / vol[:, None, :].clamp_min(1e-9)
    logvol = torch.log(vol[:, None, :].clamp_min(1e-9)) - torch.log(vol[:, :, None].clamp_min(1e-9))
    metric = torch.stack([d[..., 0], d[..., 1], d[..., 2], above_gap, below_gap, inside_xy, inside_xy_b, gap], -1)
    frac = torch.stack([overlap, frac_a, frac_b, logvol.clamp(-5, 5)], -1)
    margins = (metric / 0.05).clamp(-6, 6)
    dist = d.norm(dim=-1, keepdim=True)
    return torch.cat([metric, margins, frac, dist, (dist / 0.05).clamp(max=20) / 20], dim=-1)  # (B, M, M, 22)


_CORNER_SIGNS = torch.tensor([[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)])  # (8, 3)


def _yaw_rotate(v: torch.Tensor, yaw: torch.Tensor) -> torch.Tensor:
    """Vectors ``(..., K, 3)`` rotated by ``yaw (...)`` about +z."""
    c, s = torch.cos(yaw)[..., None], torch.sin(yaw)[..., None]
    return torch.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1], v[..., 2]], dim=-1)


def box_extents_in(boxes: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Extent ``(..., 6)`` = (min xyz, max xyz) of the corners of boxes ``(..., 7)`` in the local axes of the boxes
    ``frames (..., 7)`` (origin at their centres)."""
    half = boxes[..., None, 3:6] / 2 * _CORNER_SIGNS.to(boxes)  # (..., 8, 3)
    world = _yaw_rotate(half, boxes[..., 6]) + boxes[..., None, :3]
    local = _yaw_rotate(world - frames[..., None, :3], -frames[..., 6])
    return torch.cat([local.amin(-2), local.amax(-2)], dim=-1)


VISIBLE_BOX_FEATURES = 8


def visible_box_features(boxes: torch.Tensor, T_world_cam: torch.Tensor) -> torch.Tensor:
    """Per-object features ``(B, M, 8)`` of the boxes of visible parts: log size (3), the direction to the camera in
    the box's axes (3), log distance to the camera, centre height above the camera (metres; world z up)."""
    cam = T_world_cam[:, None, :3, 3]  # (B, 1, 3)
    rel = _yaw_rotate((cam - boxes[..., :3])[..., None, :], -boxes[..., 6])[..., 0, :]  # (B, M, 3)
    dist = rel.norm(dim=-1, keepdim=True).clamp_min(1e-3)
    return torch.cat([torch.log(boxes[..., 3:6].clamp_min(0.01)), rel / dist, torch.log(dist),
                      boxes[..., 2:3] - cam[..., 2:3]], dim=-1)
