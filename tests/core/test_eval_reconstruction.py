"""Reconstruction evaluation: fast IoU equivalences and a noise-free synthetic sequence with known answers."""
from __future__ import annotations

import dataclasses

import numpy as np
import open3d as o3d
import pytest

from g2vlm_core.eval.reconstruction import (GRID_OFFSET, ReconstructionEvalConfig, evaluate_reconstruction,
                                            surface_iou, track_sequence, voxel_centres)
from g2vlm_core.geometry.metrics import mesh_iou, occupancy_iou


def test_voxel_centres_give_the_same_occupancy_iou():
    # same IoU as metrics.occupancy_iou on the half-voxel-shifted grid
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (4000, 3))
    b = a + np.array([0.03, -0.02, 0.01])
    for v in (0.05, 0.1):
        shift = GRID_OFFSET * v
        assert occupancy_iou(voxel_centres(a, v), voxel_centres(b, v), v) == occupancy_iou(a + shift, b + shift, v)


def test_shifted_grid_keeps_a_surface_on_a_voxel_boundary_together():
    # a plane at z = 0 (a synthetic floor) and its 1 mm lower reconstruction: origin-anchored they share no
    # voxel, on the shifted grid every voxel
    xy = np.stack(np.meshgrid(np.linspace(0, 1, 50), np.linspace(0, 1, 50)), -1).reshape(-1, 2)
    gt = np.c_[xy, np.zeros(len(xy))]
    rec = gt - [0, 0, 0.001]
    assert occupancy_iou(gt, rec, 0.05) == 0.0
    assert occupancy_iou(voxel_centres(gt, 0.05), voxel_centres(rec, 0.05), 0.05) == 1.0
    assert voxel_centres(np.zeros((0, 3)), 0.1).shape == (0, 3)


def test_surface_iou_matches_metrics_mesh_iou():
    box_a = o3d.geometry.TriangleMesh.create_box(1.0, 0.6, 0.4).translate((0.013, 0.007, 0.021))
    box_b = o3d.geometry.TriangleMesh.create_box(1.0, 0.6, 0.4).translate((0.133, 0.007, 0.021))
    shift = (GRID_OFFSET * 0.05,) * 3
    expected = mesh_iou(o3d.geometry.TriangleMesh(box_a).translate(shift),
                        o3d.geometry.TriangleMesh(box_b).translate(shift), 0.05, mode="surface")
    assert surface_iou(box_a, box_b, 0.05) == pytest.approx(expected)
    assert surface_iou(box_a, box_a, 0.05) == pytest.approx(1.0)
    # restricted to an observed region that covers only the box's bottom face, the rest of GT does not count
    bottom = np.stack(np.meshgrid(np.linspace(0, 1, 41), np.linspace(0, 0.6, 25), [0.0]), -1).reshape(-1, 3)
    bottom += (0.013, 0.007, 0.021)
    full = surface_iou(box_a, box_a, 0.05, observed=bottom)
    assert 0.0 < full < 1.0  # prediction has all faces, GT only the observed bottom


@pytest.fixture(scope="module")
def clean_frames():
    from g2vlm_core.synth import SceneGenerator, SynthConfig

    # 60 frames along the trajectory so the first five are close together (odometry-sized motion)
    gen = SceneGenerator(SynthConfig(num_scenes=1, frames_per_scene=60, width=160, height=120, noise="none",
                                     seed=9, split="test"))
    scene = gen.scene(9)
    return scene, [scene.render_frame(i) for i in range(5)]


def test_noise_free_sequence_reconstructs_close_to_gt(clean_frames):
    scene, frames = clean_frames
    cfg = ReconstructionEvalConfig(voxel_size_m=0.02)
    res = evaluate_reconstruction(frames, scene.name, cfg, gt_mesh=scene.mesh.to_open3d(), gt_poses=scene.poses[:5])
    m = res.metrics()
    assert res.n_fused == 5 and len(res.consistency) == 5
    # noise-free depth at GT poses: errors are TSDF discretisation only (under half a 2 cm voxel)
    assert m["chamfer_m"] < 0.012 and m["fscore_5cm"] > 0.97
    assert m["consistency_median_m"] < 0.01
    assert 0.0 < m["mesh_iou"] <= 1.0 and m["mesh_iou_full"] < m["mesh_iou"]  # the full GT room was not all seen
    assert m["occupancy_iou"] > 0.8 and m["mesh_iou"] > 0.7
    assert res.tracking is not None and res.tracking.n_tracked == 5 and m["ate_rmse_m"] < 0.02
    assert res.cloud is not None and len(res.cloud) == len(res.cloud_error_m)
    d = res.to_dict()
    assert d["frames"][0]["n_points"] > 0 and d["tracking"]["n_frames"] == 5


def test_real_style_sequence_without_gt_surface(clean_frames):
    _, frames = clean_frames
    res = evaluate_reconstruction(frames[:2], "no_gt", ReconstructionEvalConfig(run_tracker=False))
    m = res.metrics()
    assert np.isnan(m["chamfer_m"]) and np.isnan(m["mesh_iou"]) and "ate_rmse_m" not in m
    assert m["consistency_median_m"] < 0.01 and res.cloud_error_kind.startswith("frame point")


def test_tracking_failure_is_counted_never_filled_in(clean_frames):
    scene, frames = clean_frames
    blank = dataclasses.replace(frames[2], depth_m=np.zeros_like(frames[2].depth_m))
    tr = track_sequence([frames[0], frames[1], blank, frames[3]], scene.poses[[0, 1, 2, 3]])
    assert tr.n_frames == 4 and tr.n_tracked == 3 and sum(tr.failures.values()) == 1
