"""Torch geometry helpers of the model against the numpy contracts in g2vlm_core.geometry.camera / predicates."""
from __future__ import annotations

import numpy as np
import torch

from g2vlm_core.geometry.camera import CameraIntrinsics
from g2vlm_core.geometry.camera import pixel_rays as np_rays
from g2vlm_core.model.geometry import (depth_bilateral, fill_holes, normals_from_points, pair_features, pixel_rays,
                                       sanitize_depth, viewer_rotation)


def test_pixel_rays_match_camera_module():
    intr = CameraIntrinsics(40, 30, 35.0, 36.0, 19.2, 14.7)
    K = torch.tensor(intr.K, dtype=torch.float32)[None]
    np.testing.assert_allclose(pixel_rays(K, 30, 40)[0].permute(1, 2, 0).numpy(), np_rays(intr), atol=1e-5)


def test_sanitize_and_fill_holes():
    d = torch.full((1, 1, 8, 8), 2.0)
    d[0, 0, 2:4, 2:4] = float("nan")
    d[0, 0, 5, 5] = 0.0
    d[0, 0, 6, 6] = 50.0  # beyond max depth
    clean, valid = sanitize_depth(d, 10.0)
    assert valid.sum() == 64 - 6 and torch.isfinite(clean).all()
    filled = fill_holes(clean, valid)
    assert torch.allclose(filled, torch.full_like(filled, 2.0))


def test_bilateral_denoises_but_keeps_edges():
    g = torch.Generator().manual_seed(0)
    gt = torch.full((1, 1, 32, 32), 3.0)
    gt[..., 16:] = 1.0  # a 2 m step
    noisy = gt * (1 + 0.01 * torch.randn(gt.shape, generator=g))
    out = depth_bilateral(noisy, torch.ones_like(noisy, dtype=torch.bool), 3)
    assert (out - gt).pow(2).mean() < 0.5 * (noisy - gt).pow(2).mean()
    assert (out[..., 15] - 3.0).abs().max() < 0.15 and (out[..., 16] - 1.0).abs().max() < 0.05


def test_normals_of_a_plane_face_the_camera():
    K = torch.tensor([[[30.0, 0, 16], [0, 30, 12], [0, 0, 1]]])
    pts = pixel_rays(K, 24, 32) * 2.0  # fronto-parallel plane z = 2
    n = normals_from_points(pts)
    assert torch.allclose(n[0, :, 2:-2, 2:-2], torch.tensor([0, 0, -1.0])[:, None, None].expand(3, 20, 28), atol=1e-5)


def test_viewer_frame_and_pair_features():
    T = torch.eye(4)[None]
    T[0, :3, :3] = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # camera looking along world +y
    R = viewer_rotation(T)[0]
    assert torch.allclose(R, torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]]), atol=1e-6)  # right=x, fwd=y, up=z
    boxes = torch.tensor([[[0.0, 2, 0.5, 0.2, 0.2, 0.2, 0], [1.0, 2, 0.5, 0.2, 0.2, 0.2, 0]]])
    f = pair_features(boxes, T)
    assert f.shape == (1, 2, 2, 22)
    assert torch.isclose(f[0, 0, 1, 0], torch.tensor(1.0))  # b is 1 m to the right of a
