"""Tests of g2vlm_core.geometry.metrics on cases with closed-form answers, and rotated-box IoU against Monte Carlo."""
from __future__ import annotations

import numpy as np
import open3d as o3d
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from g2vlm_core.geometry.metrics import (absolute_trajectory_error, box_iou_3d, box_iou_bev, box_iou_matrix, chamfer_distance,
                                clip_convex_polygon, grid_iou, mesh_iou, occupancy_iou, points_to_mesh_distance,
                                polygon_area, precision_recall_fscore, relative_pose_error, surface_metrics,
                                umeyama_alignment)
from g2vlm_core.scene_graph import Box3D


def plane_grid(n=20, spacing=0.1, z=0.0):
    g = np.arange(n) * spacing
    x, y = np.meshgrid(g, g)
    return np.stack([x.ravel(), y.ravel(), np.full(x.size, z)], 1)


def test_chamfer_zero_and_exact_offset():
    a = plane_grid()
    assert chamfer_distance(a, a) == 0.0
    # shifting a grid along its normal by less than half the spacing: every nearest neighbour is straight across
    assert chamfer_distance(a, a + [0, 0, 0.03]) == pytest.approx(0.03)
    assert chamfer_distance(a, a + [0, 0, 0.03], squared=True) == pytest.approx(0.03 ** 2)


def test_precision_recall_fscore_fractions():
    gt = plane_grid(10)  # 100 points
    pred = np.concatenate([gt[:50], gt[:30] + [0, 0, 1.0]])  # half the gt found, 30 outliers
    p, r, f = precision_recall_fscore(pred, gt, 0.05)
    assert p == pytest.approx(50 / 80) and r == pytest.approx(0.5)
    assert f == pytest.approx(2 * p * r / (p + r))
    m = surface_metrics(pred, gt, 0.05)
    assert (m.precision, m.recall, m.fscore) == pytest.approx((p, r, f))
    assert m.accuracy == pytest.approx(30 * 1.0 / 80)  # outliers are 1 m off, inliers 0
    assert precision_recall_fscore(np.zeros((0, 3)), gt, 0.05) == (0.0, 0.0, 0.0)


def test_points_to_mesh_distance_plane():
    mesh = o3d.geometry.TriangleMesh.create_box(1.0, 1.0, 0.001)
    d = points_to_mesh_distance(np.array([[0.5, 0.5, 0.201], [0.5, 0.5, -0.3]]), mesh)
    np.testing.assert_allclose(d, [0.2, 0.3], atol=1e-5)


def test_occupancy_iou_counts_voxels():
    a = np.array([[0.05, 0.05, 0.05], [0.15, 0.05, 0.05], [0.06, 0.04, 0.02]])  # voxels (0,0,0), (1,0,0)
    b = np.array([[0.15, 0.05, 0.05], [0.25, 0.05, 0.05]])  # voxels (1,0,0), (2,0,0)
    assert occupancy_iou(a, b, 0.1) == pytest.approx(1 / 3)
    assert occupancy_iou(a, a, 0.1) == 1.0
    assert occupancy_iou(a, a + 10.0, 0.1) == 0.0
    g1, g2 = np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool)
    g1[:2], g2[1:3] = True, True
    assert grid_iou(g1, g2) == pytest.approx(1 / 3)
    assert grid_iou(np.zeros(3, bool), np.zeros(3, bool)) == 1.0


def test_mesh_iou_of_offset_cubes():
    a = o3d.geometry.TriangleMesh.create_box(1.0, 1.0, 1.0)
    b = o3d.geometry.TriangleMesh.create_box(1.0, 1.0, 1.0).translate([0.5, 0.0, 0.0])
    assert mesh_iou(a, b, 0.05) == pytest.approx(1 / 3, abs=0.02)
    assert mesh_iou(a, a, 0.05) == pytest.approx(1.0)
    # surface mode: same surface -> 1, disjoint surfaces -> 0
    assert mesh_iou(a, a, 0.05, mode="surface") == pytest.approx(1.0)
    far = o3d.geometry.TriangleMesh(a).translate([3.0, 0, 0])  # translate() works in place: copy first
    assert mesh_iou(a, far, 0.05, mode="surface") == 0.0


def random_trajectory(n=30, seed=0):
    rng = np.random.default_rng(seed)
    T = np.tile(np.eye(4), (n, 1, 1))
    T[:, :3, 3] = np.cumsum(rng.normal(scale=0.1, size=(n, 3)), axis=0)
    T[:, :3, :3] = Rotation.from_rotvec(rng.normal(scale=0.3, size=(n, 3))).as_matrix()
    return T


def test_umeyama_recovers_similarity():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 3))
    R = Rotation.from_rotvec([0.3, -0.5, 0.9]).as_matrix()
    t, s = np.array([1.0, -2.0, 0.5]), 2.5
    y = s * x @ R.T + t
    R2, t2, s2 = umeyama_alignment(x, y, with_scale=True)
    np.testing.assert_allclose(R2, R, atol=1e-9)
    np.testing.assert_allclose(t2, t, atol=1e-9)
    assert s2 == pytest.approx(s)
    with pytest.raises(ValueError):
        umeyama_alignment(x[:2], y[:2])


def test_ate_alignment_modes():
    gt = random_trajectory()
    G = np.eye(4)
    G[:3, :3] = Rotation.from_rotvec([0.1, 0.2, -0.4]).as_matrix()
    G[:3, 3] = [3.0, -1.0, 2.0]
    est = G @ gt  # the same trajectory in another world frame
    assert absolute_trajectory_error(est, gt, "se3").rmse == pytest.approx(0.0, abs=1e-9)
    assert absolute_trajectory_error(est, gt, "none").rmse > 1.0
    scaled = est.copy()
    scaled[:, :3, 3] *= 0.5
    assert absolute_trajectory_error(scaled, gt, "se3").rmse > 0.05
    sim = absolute_trajectory_error(scaled, gt, "sim3")
    assert sim.rmse == pytest.approx(0.0, abs=1e-9) and sim.scale == pytest.approx(2.0)
    # a known position error on one pose: rmse = sqrt(d^2 / N) without alignment
    noisy = gt.copy()
    noisy[5, :3, 3] += [0.0, 0.3, 0.0]
    assert absolute_trajectory_error(noisy, gt, "none").rmse == pytest.approx(np.sqrt(0.09 / len(gt)))
    # non-finite poses are dropped
    noisy[7] = np.nan
    assert np.isfinite(absolute_trajectory_error(noisy, gt, "se3").rmse)


def test_relative_pose_error_of_constant_drift():
    gt = random_trajectory(10)
    est = gt.copy()
    assert relative_pose_error(est, gt) == pytest.approx((0.0, 0.0), abs=1e-6)
    # a constant body-frame step error of 1 cm per frame
    step = np.eye(4)
    step[0, 3] = 0.01
    drift = [gt[0]]
    for i in range(1, len(gt)):
        drift.append(drift[-1] @ np.linalg.inv(gt[i - 1]) @ gt[i] @ step)
    assert relative_pose_error(np.stack(drift), gt)[0] == pytest.approx(0.01, abs=1e-9)


def test_polygon_clip_and_area():
    sq = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)
    assert polygon_area(sq) == pytest.approx(1.0)
    inter = clip_convex_polygon(sq, sq + [0.5, 0.5])
    assert polygon_area(inter) == pytest.approx(0.25)
    assert len(clip_convex_polygon(sq, sq + [2.0, 0.0])) == 0


def test_box_iou_exact_cases():
    a = Box3D([0, 0, 0], [1, 1, 1], 0.0)
    assert box_iou_3d(a, a) == pytest.approx(1.0)
    assert box_iou_3d(a, Box3D([0.5, 0, 0], [1, 1, 1])) == pytest.approx(0.5 / 1.5)
    assert box_iou_3d(a, Box3D([0, 0, 0.5], [1, 1, 1])) == pytest.approx(0.5 / 1.5)  # vertical overlap only
    assert box_iou_3d(a, Box3D([0, 0, 2], [1, 1, 1])) == 0.0
    assert box_iou_3d(a, Box3D([0, 0, 0], [1, 1, 1], np.pi / 2)) == pytest.approx(1.0)  # square turned 90 deg
    # unit square vs the same square turned 45 deg: the overlap is a regular octagon of area 2(sqrt2 - 1)
    oct_area = 2 * (np.sqrt(2) - 1)
    rot = Box3D([0, 0, 0], [1, 1, 1], np.pi / 4)
    assert box_iou_bev(a, rot) == pytest.approx(oct_area / (2 - oct_area))
    assert box_iou_3d(a, rot) == pytest.approx(oct_area / (2 - oct_area))
    # a 2 x 1 box turned 90 deg about the same centre: overlap 1 x 1
    assert box_iou_3d(Box3D([0, 0, 0], [2, 1, 1]), Box3D([0, 0, 0], [2, 1, 1], np.pi / 2)) == pytest.approx(1 / 3)
    assert box_iou_3d(a, Box3D([0, 0, 0], [0, 1, 1])) == 0.0


box_st = st.builds(lambda c, s, yaw: Box3D(c, s, yaw),
                   st.lists(st.floats(-0.5, 0.5), min_size=3, max_size=3),
                   st.lists(st.floats(0.3, 1.5), min_size=3, max_size=3),
                   st.floats(-np.pi, np.pi))


@settings(max_examples=15, deadline=None)
@given(box_st, box_st)
def test_box_iou_matches_monte_carlo(a, b):
    """Independent estimate: sample the union of the two AABBs uniformly and test membership with Box3D.contains."""
    lo = np.minimum(a.aabb()[0], b.aabb()[0])
    hi = np.maximum(a.aabb()[1], b.aabb()[1])
    pts = np.random.default_rng(0).uniform(lo, hi, size=(60000, 3))
    ia, ib = a.contains(pts), b.contains(pts)
    union = np.count_nonzero(ia | ib)
    mc = np.count_nonzero(ia & ib) / union if union else 0.0
    iou = box_iou_3d(a, b)
    assert iou == pytest.approx(box_iou_3d(b, a), abs=1e-9)  # symmetric
    assert abs(iou - mc) < 0.02


def test_box_iou_matrix():
    boxes = [Box3D([0, 0, 0], [1, 1, 1]), Box3D([0.5, 0, 0], [1, 1, 1]), Box3D([5, 5, 5], [1, 1, 1])]
    m = box_iou_matrix(boxes, boxes)
    np.testing.assert_allclose(np.diag(m), 1.0)
    assert m[0, 1] == pytest.approx(1 / 3) and m[0, 2] == 0.0 and m[1, 0] == m[0, 1]
