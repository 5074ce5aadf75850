"""Tests of g2vlm_core.geometry: normals, back-projection, point-cloud helpers and rendering on exact cases."""
from __future__ import annotations

import numpy as np
import open3d as o3d
import pytest

from g2vlm_core.geometry.camera import CameraIntrinsics, GeometryError, pixel_rays, rotation_angle_deg
from g2vlm_core.frame import RGBDFrame
from g2vlm_core.geometry.ops import (frame_points, from_o3d_pointcloud, normals_from_depth, render_depth,
                                 resolve_device, to_o3d_pointcloud, voxel_downsample)

INTR = CameraIntrinsics(64, 48, 50.0, 52.0, 31.5, 23.5)


def plane_depth(n: np.ndarray, d: float, intr: CameraIntrinsics = INTR) -> np.ndarray:
    """Depth of the plane {X : n.X = d} (camera frame) seen through each pixel: z = d / (n . ray)."""
    return (d / (pixel_rays(intr) @ n)).astype(np.float32)


def test_normals_fronto_parallel_plane():
    depth = np.full(INTR.shape, 2.0, np.float32)
    n = normals_from_depth(depth, INTR)
    inner = n[1:-1, 1:-1]
    np.testing.assert_allclose(inner, np.broadcast_to([0, 0, -1], inner.shape), atol=1e-6)
    assert np.all(n[0] == 0) and np.all(n[:, -1] == 0)  # borders have no central difference


@pytest.mark.parametrize("normal", [[0.3, -0.2, 1.0], [-0.5, 0.4, 0.8], [0.0, 0.6, 1.0]])
def test_normals_tilted_plane_are_exact_and_face_camera(normal):
    n_true = np.asarray(normal, np.float64) / np.linalg.norm(normal)
    depth = plane_depth(n_true, 1.5)
    n = normals_from_depth(depth, INTR, max_rel_jump=0.5)[1:-1, 1:-1].reshape(-1, 3)
    # the plane's normal points away from the camera (n.X = d > 0); the estimate must face the camera
    np.testing.assert_allclose(n, np.broadcast_to(-n_true, n.shape), atol=2e-3)


def test_normals_undefined_at_holes_and_depth_jumps():
    depth = np.full(INTR.shape, 2.0, np.float32)
    depth[:, 32:] = 3.0  # occlusion boundary between columns 31 and 32
    depth[10, 10] = np.nan
    depth[20, 20] = 0.0
    n = normals_from_depth(depth, INTR)
    norms = np.linalg.norm(n, axis=-1)
    assert np.all(norms[1:-1, 31:33] == 0)  # no normal smeared across the jump
    for r, c in ((10, 10), (20, 20)):
        # the hole and its 4-neighbours (whose central differences use it) have no normal; diagonals do
        assert all(norms[r + dr, c + dc] == 0 for dr, dc in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)))
        assert norms[r + 1, c + 1] > 0
    np.testing.assert_allclose(norms[30, 5], 1.0, atol=1e-6)


def test_frame_points_backprojection_lies_on_plane_in_world():
    n_cam = np.array([0.2, -0.1, 1.0])
    n_cam /= np.linalg.norm(n_cam)
    depth = plane_depth(n_cam, 2.0)
    rgb = np.random.default_rng(0).integers(0, 256, INTR.shape + (3,), dtype=np.uint8)
    ang = np.radians(30)
    T = np.eye(4)
    T[:3, :3] = [[np.cos(ang), -np.sin(ang), 0], [np.sin(ang), np.cos(ang), 0], [0, 0, 1]]
    T[:3, 3] = [1.0, -2.0, 0.5]
    pts_c, cols = frame_points(RGBDFrame(rgb, depth, INTR, T), in_world=False)
    np.testing.assert_allclose(pts_c @ n_cam, 2.0, atol=1e-5)
    np.testing.assert_allclose(cols, rgb.reshape(-1, 3) / 255.0, atol=1e-7)
    pts_w, _ = frame_points(RGBDFrame(rgb, depth, INTR, T))
    n_w, d_w = T[:3, :3] @ n_cam, 2.0 + (T[:3, :3] @ n_cam) @ T[:3, 3]
    np.testing.assert_allclose(pts_w @ n_w, d_w, atol=1e-5)


def test_frame_points_validity_and_range():
    depth = np.full(INTR.shape, 1.0, np.float32)
    depth[0, :4] = [np.nan, np.inf, -1.0, 0.0]
    depth[1, :2] = [0.05, 9.0]  # below min, above max
    rgb = np.zeros(INTR.shape + (3,), np.uint8)
    pts, cols = frame_points(RGBDFrame(rgb, depth, INTR, np.eye(4)), depth_min_m=0.1, depth_max_m=5.0)
    assert len(pts) == len(cols) == depth.size - 6
    assert np.all(np.isfinite(pts))
    with pytest.raises(GeometryError):
        frame_points(RGBDFrame(rgb, depth, INTR, None))


def test_voxel_downsample_averages_per_voxel():
    pts = np.array([[0.01, 0.01, 0.01], [0.03, 0.03, 0.03], [0.51, 0.51, 0.51]], np.float32)
    cols = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0]], np.float32)
    p, c = voxel_downsample(pts, 0.1, cols)
    order = np.argsort(p[:, 0])
    np.testing.assert_allclose(p[order], [[0.02, 0.02, 0.02], [0.51, 0.51, 0.51]], atol=1e-6)
    np.testing.assert_allclose(c[order], [[0.5, 0, 0.5], [0, 1, 0]], atol=1e-6)
    with pytest.raises(GeometryError):
        voxel_downsample(pts, 0.0)


def test_open3d_roundtrip_tensor_and_legacy():
    rng = np.random.default_rng(1)
    pts, cols = rng.normal(size=(50, 3)).astype(np.float32), rng.random((50, 3)).astype(np.float32)
    pcd = to_o3d_pointcloud(pts, cols)
    p2, c2 = from_o3d_pointcloud(pcd)
    np.testing.assert_array_equal(p2, pts)
    np.testing.assert_array_equal(c2, cols)
    p3, c3 = from_o3d_pointcloud(pcd.to_legacy())
    np.testing.assert_allclose(p3, pts, atol=1e-6)
    with pytest.raises(GeometryError):
        to_o3d_pointcloud(pts, cols[:10])


def test_render_depth_matches_analytic_plane():
    # a large square at z = 3 in the world, camera at the origin looking along +z (identity pose)
    mesh = o3d.geometry.TriangleMesh.create_box(20.0, 20.0, 0.01).translate([-10.0, -10.0, 3.0])
    depth = render_depth(mesh, INTR, np.eye(4))
    np.testing.assert_allclose(depth, 3.0, atol=1e-5)
    # move the camera 1 m back along its optical axis: depth grows by exactly 1 m
    T = np.eye(4)
    T[2, 3] = -1.0
    np.testing.assert_allclose(render_depth(mesh, INTR, T), 4.0, atol=1e-5)


def test_resolve_device():
    assert resolve_device("CPU:0").get_type() == o3d.core.Device.DeviceType.CPU
    auto = resolve_device("auto")
    expect_cuda = o3d.core.cuda.is_available()
    assert (auto.get_type() == o3d.core.Device.DeviceType.CUDA) == expect_cuda
    if not expect_cuda:
        with pytest.raises(GeometryError):
            resolve_device("CUDA:0")


@pytest.mark.parametrize("model,D", [("plumb_bob", (-0.28, 0.07, 0.001, -0.0005, 0.0)),
                                     ("rational_polynomial", (0.5, -0.1, 0.0, 0.0, 0.01, 0.8, -0.05, 0.02)),
                                     ("equidistant", (-0.05, 0.01, -0.003, 0.0005))])
def test_undistorter_moves_points_to_their_pinhole_pixels(model, D):
    """A 3x3 marker drawn where OpenCV's projection with distortion puts a 3D point lands, after undistortion, at
    the pinhole projection of that point; depth is resampled without mixing values."""
    cv2 = pytest.importorskip("cv2")
    from g2vlm_core.geometry.camera import Undistorter

    intr = CameraIntrinsics(320, 240, 250.0, 250.0, 160.0, 120.0, model, D)
    X = np.array([[0.45, 0.3, 1.0]])
    if model == "equidistant":
        uv_d = cv2.fisheye.projectPoints(X.reshape(1, 1, 3), np.zeros(3), np.zeros(3), intr.K, np.array(D))[0]
    else:
        uv_d = cv2.projectPoints(X, np.zeros(3), np.zeros(3), intr.K, np.array(D))[0]
    u, v = np.round(uv_d.reshape(2)).astype(int)
    uv = (intr.K @ X[0])[:2]
    assert np.hypot(*(uv - (u, v))) > 3.0  # the distortion moves the point visibly
    depth = np.full((240, 320), 3.0, np.float32)
    rgb = np.zeros((240, 320, 3), np.uint8)
    depth[v - 1:v + 2, u - 1:u + 2] = 1.0
    rgb[v - 1:v + 2, u - 1:u + 2] = 255
    rgb_u, depth_u, pinhole = Undistorter()(rgb, depth, intr)
    ys, xs = np.nonzero(depth_u == 1.0)
    assert np.hypot(xs.mean() - uv[0], ys.mean() - uv[1]) < 1.0
    assert set(np.unique(depth_u)) <= {0.0, 1.0, 3.0}  # nearest: no depth between the marker and the wall
    assert rgb_u[int(round(uv[1])), int(round(uv[0]))].min() > 100
    assert pinhole.distortion == () and pinhole.K.tolist() == intr.K.tolist()
    with pytest.raises(GeometryError):
        Undistorter()(rgb, depth, CameraIntrinsics(320, 240, 250.0, 250.0, 160.0, 120.0, "fancy_lens", (0.1,)))


@pytest.mark.parametrize("deg", [0.0, 0.01, 3.0, 90.0, 179.9])
def test_rotation_angle_of_3x3_and_4x4_about_any_axis(deg):
    axis = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    t = np.radians(deg)
    R = np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k  # Rodrigues
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, (5.0, -2.0, 1.0)  # the translation plays no part
    assert rotation_angle_deg(R) == pytest.approx(deg, abs=1e-6)
    assert rotation_angle_deg(T) == pytest.approx(deg, abs=1e-6)
    assert rotation_angle_deg(R.T) == pytest.approx(deg, abs=1e-6)


def test_rotation_angle_answers_for_matrices_that_are_not_rotations():
    assert np.isnan(rotation_angle_deg(np.full((4, 4), np.nan)))  # a failed tracker's pose: NaN, no exception
    assert rotation_angle_deg(np.diag([1.0, 1.0, -1.0])) == pytest.approx(90.0)  # improper: still a number
