"""Tests of g2vlm_core.geometry.fusion: TSDF accuracy on rendered and real frames, input validation, memory, local window."""
from __future__ import annotations

import numpy as np
import open3d as o3d
import pytest

from g2vlm_core.geometry.camera import CameraIntrinsics, GeometryError
from g2vlm_core.datasets import open_dataset
from g2vlm_core.frame import RGBDFrame
from g2vlm_core.geometry.fusion import FusionConfig, TSDFFusion
from g2vlm_core.geometry.ops import depth_to_world, normals_from_depth, render_depth
from g2vlm_core.geometry.metrics import points_to_mesh_distance

INTR = CameraIntrinsics(160, 120, 120.0, 120.0, 79.5, 59.5)
# camera looking along world +x from 1.5 m height: optical z = +x, optical x (right) = -y, optical y (down) = -z
R_LOOK_X = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def room_mesh() -> o3d.geometry.TriangleMesh:
    """A 4 x 4 x 3 m room (z-up) with a 0.6 m cube and a sphere in it."""
    room = o3d.geometry.TriangleMesh.create_box(4.0, 4.0, 3.0).translate([-2.0, -2.0, 0.0])
    cube = o3d.geometry.TriangleMesh.create_box(0.6, 0.6, 0.6).translate([1.0, -0.8, 0.0])
    sphere = o3d.geometry.TriangleMesh.create_sphere(0.3, 20).translate([1.2, 0.7, 1.0])
    return room + cube + sphere


def pose(x: float = 0.0, y: float = 0.0, yaw_deg: float = 0.0) -> np.ndarray:
    c, s = np.cos(np.radians(yaw_deg)), np.sin(np.radians(yaw_deg))
    T = np.eye(4)
    T[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ R_LOOK_X
    T[:3, 3] = [x, y, 1.5]
    return T


def rendered_frame(T: np.ndarray, mesh=None, index: int = 0) -> RGBDFrame:
    depth = render_depth(mesh or room_mesh(), INTR, T)
    rgb = np.full(INTR.shape + (3,), 128, np.uint8)
    rgb[..., 0] = (np.arange(INTR.width) * 255 // INTR.width).astype(np.uint8)[None, :]
    return RGBDFrame(rgb, depth, INTR, T, index=index)


@pytest.fixture(scope="module")
def synthetic_frames():
    mesh = room_mesh()
    return mesh, [rendered_frame(pose(-0.3 + 0.1 * i, 0.05 * i, -10 + 5 * i), mesh, i) for i in range(5)]


@pytest.fixture(scope="module")
def threedmatch(real_data_dir):
    return list(open_dataset(real_data_dir / "3dmatch_seq01_5"))


def cfg(**kw) -> FusionConfig:
    base = dict(voxel_size_m=0.04, depth_max_m=5.0, device="CPU:0", block_count=200)
    base.update(kw)
    return FusionConfig(**base)


def test_fused_surface_of_rendered_room_is_accurate(synthetic_frames):
    mesh, frames = synthetic_frames
    fusion = TSDFFusion(cfg())
    assert all(fusion.integrate(f) for f in frames)
    pts, cols = fusion.extract_point_cloud()
    assert pts.dtype == np.float32 and cols.dtype == np.float32 and pts.shape == cols.shape
    assert cols.min() >= 0.0 and cols.max() <= 1.0
    d = points_to_mesh_distance(pts, mesh)
    assert np.median(d) < 0.25 * 0.04 and np.quantile(d, 0.95) < 0.04
    # the ray-cast model matches the rendered depth where both exist
    view = fusion.raycast(frames[2].T_world_cam, INTR)
    both = (view["depth"] > 0) & (frames[2].depth_m > 0)
    assert both.mean() > 0.9
    assert abs(np.median(view["depth"][both] - frames[2].depth_m[both])) < 0.1 * 0.04  # unbiased
    assert np.median(np.abs(view["depth"][both] - frames[2].depth_m[both])) < 0.25 * 0.04
    n_true = normals_from_depth(frames[2].depth_m, INTR)
    ok = both & (np.linalg.norm(n_true, axis=-1) > 0)
    assert np.median(np.sum(n_true[ok] * view["normal"][ok], axis=-1)) > 0.99  # same, camera-facing normals
    np.testing.assert_allclose(np.median(view["color"][both], axis=0), np.median(frames[2].rgb[both], axis=0) / 255,
                               atol=0.05)


def test_allocation_stride_allocates_the_same_surface():
    # 320x240: two pixels at 4.5 m are 3.75 cm apart, under the 4 cm voxel, so the automatic stride is 2
    intr = CameraIntrinsics(320, 240, 240.0, 240.0, 159.5, 119.5)
    mesh = room_mesh()
    poses = [pose(-0.3 + 0.1 * i, 0.05 * i, -10 + 5 * i) for i in range(3)]
    frames = [RGBDFrame(np.full((240, 320, 3), 128, np.uint8), render_depth(mesh, intr, T), intr, T) for T in poses]
    assert TSDFFusion(cfg(depth_max_m=4.5)).allocation_stride(intr) == 2
    maps = {}
    for stride in (1, None):
        fusion = TSDFFusion(cfg(depth_max_m=4.5, allocation_stride=stride))
        assert all(fusion.integrate(f) for f in frames)
        maps[stride] = (fusion.extract_point_cloud()[0], len(fusion.active_block_coords()))
    (full, n_full), (strided, n_strided) = maps[1], maps[None]
    assert n_strided <= n_full  # only blocks that a single pixel's band reaches go
    d = points_to_mesh_distance(strided, mesh)
    assert np.median(d) < 0.25 * 0.04 and np.quantile(d, 0.95) < 0.04
    # the surface is the same: nearly every point of the full allocation has a point of the strided one within a voxel
    tree = o3d.geometry.KDTreeFlann(o3d.geometry.PointCloud(o3d.utility.Vector3dVector(strided.astype(np.float64))))
    near = [tree.search_knn_vector_3d(p, 1)[2][0] <= 0.04 ** 2 for p in full.astype(np.float64)]
    assert np.mean(near) > 0.99


def test_allocation_stride_is_chosen_from_the_pixel_spacing_at_depth_max():
    vga = CameraIntrinsics(640, 480, 554.3, 554.3, 319.5, 239.5)
    assert TSDFFusion(cfg(voxel_size_m=0.02)).allocation_stride(vga) == 2  # two pixels at 5 m: 1.8 cm apart
    assert TSDFFusion(cfg(voxel_size_m=0.01)).allocation_stride(vga) == 1
    assert TSDFFusion(cfg(voxel_size_m=0.02)).allocation_stride(INTR) == 1  # 160x120: 8 cm apart
    assert TSDFFusion(cfg(voxel_size_m=0.01, allocation_stride=3)).allocation_stride(vga) == 3
    with pytest.raises(GeometryError, match="allocation_stride"):
        cfg(allocation_stride=0)


def test_must_show_3dmatch_frames_reproject_onto_fused_surface(threedmatch):
    """Fuse the five 3DMatch frames with their poses at 1 cm voxels; for each frame back-project its valid depth
    (0.1-4 m) with its pose and measure the unsigned distance of every point to the fused TSDF mesh
    (point-to-surface, Open3D RaycastingScene). Median must be < 1 cm for every frame."""
    fusion = TSDFFusion(FusionConfig(voxel_size_m=0.01, depth_min_m=0.1, depth_max_m=4.0, device="CPU:0",
                                     block_count=8000))
    for f in threedmatch:
        assert fusion.integrate(f)
    mesh = fusion.extract_mesh()
    medians = []
    for f in threedmatch:
        pts = depth_to_world(f.depth_m, f.intrinsics, f.T_world_cam, 0.1, 4.0)
        medians.append(float(np.median(points_to_mesh_distance(pts, mesh))))
    print("3DMatch per-frame median point-to-fused-surface distance (mm):", [round(m * 1e3, 2) for m in medians])
    assert max(medians) < 0.01
    # negative control: the same check with a pose 5 cm / 2 deg off must fail, so the metric can fail
    f = threedmatch[3]
    T_bad = f.T_world_cam.copy()
    c, s = np.cos(np.radians(2)), np.sin(np.radians(2))
    T_bad[:3, :3] = T_bad[:3, :3] @ np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    T_bad[:3, 3] += [0.05, 0.0, 0.0]
    bad = float(np.median(points_to_mesh_distance(depth_to_world(f.depth_m, f.intrinsics, T_bad, 0.1, 4.0), mesh)))
    assert bad > 0.01


def _map_signature(fusion: TSDFFusion):
    pts, _ = fusion.extract_point_cloud()
    return fusion.stats().active_blocks, np.sort(pts.round(5), axis=0)


def test_nan_inf_negative_depth_are_treated_as_missing(synthetic_frames):
    _, frames = synthetic_frames
    f = frames[0]
    rng = np.random.default_rng(0)
    bad_pixels = rng.random(INTR.shape) < 0.2
    noisy = f.depth_m.copy()
    noisy[bad_pixels] = rng.choice([np.nan, np.inf, -np.inf, -1.0, 0.0], size=int(bad_pixels.sum()))
    clean = f.depth_m.copy()
    clean[bad_pixels] = 0.0
    a, b = TSDFFusion(cfg()), TSDFFusion(cfg())
    assert a.integrate(RGBDFrame(f.rgb, noisy, INTR, f.T_world_cam))
    assert b.integrate(RGBDFrame(f.rgb, clean, INTR, f.T_world_cam))
    sa, sb = _map_signature(a), _map_signature(b)
    assert sa[0] == sb[0] and np.array_equal(sa[1], sb[1])
    assert np.all(np.isfinite(sa[1]))
    assert not a.skipped


@pytest.mark.parametrize("depth_value", [0.0, np.nan, -2.0, np.inf])
def test_all_invalid_frame_is_skipped_and_counted(synthetic_frames, depth_value):
    _, frames = synthetic_frames
    fusion = TSDFFusion(cfg())
    fusion.integrate(frames[0])
    before = _map_signature(fusion)
    blank = RGBDFrame(frames[1].rgb, np.full(INTR.shape, depth_value, np.float32), INTR, frames[1].T_world_cam)
    assert fusion.integrate(blank) is False
    assert fusion.skipped["no_valid_depth"] == 1
    after = _map_signature(fusion)
    assert before[0] == after[0] and np.array_equal(before[1], after[1])
    assert fusion.stats().frames_integrated == 1 and fusion.stats().frames_skipped == 1


def _malformed(frame: RGBDFrame):
    T_scaled = frame.T_world_cam.copy()
    T_scaled[:3, :3] *= 1.5
    T_nan = frame.T_world_cam.copy()
    T_nan[0, 3] = np.nan
    return {
        "size_mismatch": (RGBDFrame(frame.rgb[:, :-8], frame.depth_m, INTR, frame.T_world_cam), "malformed_frame"),
        "depth_uint16": (RGBDFrame(frame.rgb, (frame.depth_m * 1000).astype(np.uint16), INTR, frame.T_world_cam),
                         "malformed_frame"),
        "rgb_float": (RGBDFrame(frame.rgb.astype(np.float32), frame.depth_m, INTR, frame.T_world_cam),
                      "malformed_frame"),
        "non_rigid": (RGBDFrame(frame.rgb, frame.depth_m, INTR, T_scaled), "non_rigid_pose"),
        "nan_pose": (RGBDFrame(frame.rgb, frame.depth_m, INTR, T_nan), "non_rigid_pose"),
        "no_pose": (RGBDFrame(frame.rgb, frame.depth_m, INTR, None), "missing_pose"),
        "intrinsics_mismatch": (RGBDFrame(frame.rgb, frame.depth_m, INTR.scaled(0.5), frame.T_world_cam),
                                "malformed_frame"),
        "empty": (RGBDFrame(np.zeros((0, 0, 3), np.uint8), np.zeros((0, 0), np.float32), INTR, frame.T_world_cam),
                  "malformed_frame"),
    }


@pytest.mark.parametrize("case", ["size_mismatch", "depth_uint16", "rgb_float", "non_rigid", "nan_pose",
                                  "no_pose", "intrinsics_mismatch", "empty"])
def test_malformed_frames_raise_or_skip_without_touching_the_map(synthetic_frames, case):
    _, frames = synthetic_frames
    frame, reason = _malformed(frames[1])[case]
    strict = TSDFFusion(cfg())
    strict.integrate(frames[0])
    before = _map_signature(strict)
    with pytest.raises(GeometryError):
        strict.integrate(frame)
    after = _map_signature(strict)
    assert before[0] == after[0] and np.array_equal(before[1], after[1])
    assert strict.skipped[reason] == 1
    lenient = TSDFFusion(cfg(raise_on_invalid=False))
    assert lenient.integrate(frame) is False
    assert lenient.skipped[reason] == 1 and lenient.stats().active_blocks == 0


def test_empty_map_outputs():
    fusion = TSDFFusion(cfg())
    pts, cols = fusion.extract_point_cloud()
    assert pts.shape == (0, 3) and cols.shape == (0, 3)
    mesh = fusion.extract_mesh()
    assert "positions" not in mesh.vertex or mesh.vertex.positions.shape[0] == 0
    assert np.all(fusion.raycast(np.eye(4), INTR)["depth"] == 0)


def test_memory_grows_with_observed_surface(synthetic_frames):
    _, frames = synthetic_frames
    fusion = TSDFFusion(cfg(block_count=16))  # tiny initial capacity: the hash must grow by itself
    fusion.integrate(frames[0])
    s1 = fusion.stats()
    fusion.integrate(frames[0])  # same view again: no new surface, no new blocks
    assert fusion.stats().active_blocks == s1.active_blocks
    fusion.integrate(rendered_frame(pose(0.0, 0.0, 180.0)))  # look the other way: new walls
    s2 = fusion.stats()
    assert s2.active_blocks > s1.active_blocks and s2.capacity_blocks >= s2.active_blocks > 16
    bytes_per_block = 8 ** 3 * (4 + 4 + 12)
    assert s2.active_bytes == s2.active_blocks * bytes_per_block
    assert s2.allocated_bytes == s2.capacity_blocks * bytes_per_block


def test_local_window_prunes_far_blocks_and_restarts_them_clean(synthetic_frames):
    _, frames = synthetic_frames
    fusion = TSDFFusion(cfg())
    for f in frames:
        fusion.integrate(f)
    n0 = fusion.stats().active_blocks
    centre = frames[-1].T_world_cam[:3, 3]
    removed = fusion.prune_far_blocks(centre, 1.6)
    assert 0 < removed < n0 and fusion.stats().active_blocks == n0 - removed
    block_m = 0.04 * 8
    centres = (fusion.active_block_coords() + 0.5) * block_m
    assert np.all(np.linalg.norm(centres - centre, axis=1) <= 1.6)
    # erased buffers are re-used by the hash: a re-observed region must start from weight 0, not stale values
    fusion.prune_far_blocks(centre, 1e-3)
    assert fusion.stats().active_blocks == 0
    fusion.integrate(frames[0])
    assert float(fusion.vbg.attribute("weight").numpy().max()) == pytest.approx(1.0)
    # automatic window in the config
    auto = TSDFFusion(cfg(local_radius_m=1.6, prune_every=1))
    for f in frames:
        auto.integrate(f)
    assert auto.stats().blocks_pruned > 0


def test_save_ply_and_map_roundtrip(synthetic_frames, tmp_path):
    _, frames = synthetic_frames
    fusion = TSDFFusion(cfg())
    for f in frames[:2]:
        fusion.integrate(f)
    mesh_path = fusion.save_ply(tmp_path / "m.ply", "mesh")
    cloud_path = fusion.save_ply(tmp_path / "c.ply", "cloud")
    mesh = o3d.io.read_triangle_mesh(str(mesh_path))
    assert len(mesh.triangles) > 100 and mesh.has_vertex_colors()
    cloud = o3d.io.read_point_cloud(str(cloud_path))
    pts, cols = fusion.extract_point_cloud()
    assert len(cloud.points) == len(pts)
    # colours survive the file within one 8-bit step (they used to come back 255x too dark); extraction order is
    # the hash map's, so pair the points by position
    from scipy.spatial import cKDTree

    dist, idx = cKDTree(pts).query(np.asarray(cloud.points))
    assert dist.max() < 1e-5
    np.testing.assert_allclose(np.asarray(cloud.colors), cols[idx], atol=0.5 / 255 + 1e-6)
    fusion.save_map(tmp_path / "map.npz")
    other = TSDFFusion(cfg())
    other.load_map(tmp_path / "map.npz")
    assert other.stats().active_blocks == fusion.stats().active_blocks
    np.testing.assert_allclose(np.sort(other.extract_point_cloud()[0], 0), np.sort(fusion.extract_point_cloud()[0], 0))
    with pytest.raises(ValueError):
        fusion.save_ply(tmp_path / "x.ply", "voxels")


def test_config_validation():
    with pytest.raises(GeometryError):
        FusionConfig(voxel_size_m=0.0)
    with pytest.raises(GeometryError):
        FusionConfig(depth_min_m=3.0, depth_max_m=2.0)
    with pytest.raises(GeometryError):
        FusionConfig(local_radius_m=-1.0)


@pytest.mark.skipif(not o3d.core.cuda.is_available(), reason="Open3D sees no CUDA device")
def test_cuda_matches_cpu(synthetic_frames):
    _, frames = synthetic_frames
    cpu, gpu = TSDFFusion(cfg(device="CPU:0")), TSDFFusion(cfg(device="CUDA:0"))
    for f in frames:
        cpu.integrate(f)
        gpu.integrate(f)
    assert cpu.stats().active_blocks == gpu.stats().active_blocks
    assert abs(len(cpu.extract_point_cloud()[0]) - len(gpu.extract_point_cloud()[0])) < 0.01 * len(
        cpu.extract_point_cloud()[0])
