"""Written synthetic datasets: byte determinism, reader round trip, splits, and rosbag2 read-back (mcap, sqlite3)."""
from __future__ import annotations

import filecmp
from collections import Counter
from pathlib import Path

import numpy as np
import open3d as o3d
import pytest

from g2vlm_core.geometry.camera import backproject, transform_points
from g2vlm_core.synth import SceneGenerator, SynthConfig, SynthDataset
from g2vlm_core.synth.writer import write_dataset

SMALL = dict(num_scenes=2, frames_per_scene=3, width=160, height=120, seed=7, min_objects=6, max_objects=10)


@pytest.fixture(scope="module")
def mcap_root(tmp_path_factory) -> Path:
    return write_dataset(SynthConfig(output_dir=str(tmp_path_factory.mktemp("a")), bag="mcap", **SMALL))


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_same_seed_same_bytes(mcap_root, tmp_path):
    again = write_dataset(SynthConfig(output_dir=str(tmp_path / "b"), bag="mcap", **SMALL))
    files = _files(mcap_root)
    assert files == _files(again)
    assert any(f.suffix == ".mcap" for f in files) and any(f.suffix == ".ply" for f in files)
    _, mismatch, errors = filecmp.cmpfiles(mcap_root, again, [str(f) for f in files], shallow=False)
    assert mismatch == [] and errors == []
    other = write_dataset(SynthConfig(output_dir=str(tmp_path / "c"), **{**SMALL, "seed": 9, "num_scenes": 1}))
    a, b = (np.asarray(o3d.io.read_triangle_mesh(str(r / n / "mesh.ply")).vertices)
            for r, n in ((mcap_root, "scene_000007"), (other, "scene_000009")))
    assert a.shape != b.shape or not np.allclose(a, b)


def test_seen_objects_are_those_one_frame_shows_enough_of(mcap_root):
    scene = SynthDataset(mcap_root, "all")[0]
    most = Counter()
    for f in scene:
        ids, counts = np.unique(f.extras["instance_ids"], return_counts=True)
        for i, c in zip(ids.tolist(), counts.tolist()):
            most[i] = max(most[i], c)
    assert scene.visible_pixels() == dict(most)
    seen = scene.seen_objects(min_pixels=50)
    assert [o.id for o in seen] == [o.id for o in scene.objects if most[o.id] >= 50]
    assert 0 < len(seen) < len(scene.objects) or len({most[o.id] >= 50 for o in scene.objects}) == 1
    assert scene.seen_objects(min_pixels=10 ** 9) == []


def test_reader_round_trip(mcap_root):
    ds = SynthDataset(mcap_root, "all")
    assert [s.name for s in ds] == ["scene_000007", "scene_000008"]
    assert [s.split for s in ds] == ["train", "val"]
    assert len(SynthDataset(mcap_root, "train")) == 1 and len(SynthDataset(mcap_root, "test")) == 0
    assert ds.num_frames == 6
    scene = ds[0]
    gen = SceneGenerator(SynthConfig(**SMALL)).scene(7)
    for i, f in enumerate(scene):
        g = gen.render_frame(i)
        f.validate()
        assert np.array_equal(f.rgb, g.rgb)
        assert np.allclose(f.extras["depth_gt_m"], g.extras["depth_gt_m"], atol=5.1e-4)
        assert np.allclose(f.depth_m, g.depth_m, atol=5.1e-4)
        assert np.array_equal(f.extras["instance_ids"], g.extras["instance_ids"])
        assert np.array_equal(f.extras["semantic_ids"], g.extras["semantic_ids"])
        assert np.allclose(f.extras["normals"], g.extras["normals"], atol=2e-3)
        assert np.allclose(f.T_world_cam, g.T_world_cam)
        assert f.intrinsics == g.intrinsics
    assert scene.poses().shape == (3, 4, 4)
    clean = scene.frame(1, noisy=False)
    assert np.array_equal(clean.depth_m, clean.extras["depth_gt_m"])
    graph = scene.scene_graph(scene.reference_views[0]["frame_id"])
    assert {r.reference_frame for r in graph.relations} <= {"", scene.reference_views[0]["frame_id"]}
    assert scene.viewpoint(scene.reference_views[0]["frame_id"]).frame_id == scene.reference_views[0]["frame_id"]
    inst, sem = scene.mesh_labels()
    assert len(inst) == len(scene.load_mesh().triangles) == len(sem)
    assert scene.expressions and scene.qa and scene.captions


def test_written_depth_lies_on_written_mesh(mcap_root):
    scene = SynthDataset(mcap_root, "all")[1]
    rs = o3d.t.geometry.RaycastingScene()
    rs.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(scene.load_mesh()))
    for f in scene:
        d = f.extras["depth_gt_m"]
        pts = transform_points(f.T_world_cam, backproject(d, f.intrinsics)[d > 0])
        dist = rs.compute_distance(o3d.core.Tensor(pts.astype(np.float32))).numpy()
        assert np.median(dist) < 0.002


def _read_bag(path: Path):
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    with Reader(path) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        counts = Counter()
        first = {}
        for conn, stamp, raw in reader.messages():
            counts[conn.topic] += 1
            first.setdefault(conn.topic, (stamp, ts.deserialize_cdr(raw, conn.msgtype)))
    return types, counts, first


EXPECTED_TYPES = {"/camera/color/image_raw": "sensor_msgs/msg/Image",
                  "/camera/depth/image_raw": "sensor_msgs/msg/Image",
                  "/camera/color/camera_info": "sensor_msgs/msg/CameraInfo",
                  "/camera/depth/camera_info": "sensor_msgs/msg/CameraInfo",
                  "/ground_truth/pose": "geometry_msgs/msg/PoseStamped", "/tf": "tf2_msgs/msg/TFMessage"}


def test_mcap_bag_reads_back(mcap_root):
    scene = SynthDataset(mcap_root, "all")[0]
    types, counts, first = _read_bag(mcap_root / scene.name / "bag")
    assert types == EXPECTED_TYPES
    assert all(counts[t] == len(scene) for t in EXPECTED_TYPES)
    stamp, img = first["/camera/color/image_raw"]
    f0 = scene.frame(0)
    assert img.encoding == "rgb8" and (img.height, img.width) == f0.rgb.shape[:2]
    assert img.header.frame_id == "camera_color_optical_frame" and stamp == 1_000_000_000
    assert np.array_equal(img.data.reshape(f0.rgb.shape), f0.rgb)
    _, depth = first["/camera/depth/image_raw"]
    assert depth.encoding == "16UC1" and depth.step == 2 * depth.width
    mm = depth.data.view("<u2").reshape(f0.depth_m.shape)
    assert np.allclose(mm / 1000.0, f0.depth_m, atol=1e-6)
    _, info = first["/camera/color/camera_info"]
    assert np.allclose(info.k.reshape(3, 3), f0.intrinsics.K)
    _, pose = first["/ground_truth/pose"]
    assert pose.header.frame_id == "map"
    assert np.allclose([pose.pose.position.x, pose.pose.position.y, pose.pose.position.z], f0.T_world_cam[:3, 3])
    _, tf = first["/tf"]
    assert tf.transforms[0].child_frame_id == "camera_color_optical_frame"
    assert tf.transforms[0].header.frame_id == "map"


def test_sqlite3_bag_32fc1(tmp_path):
    cfg = dict(bag="sqlite3", depth_encoding="32FC1", **{**SMALL, "num_scenes": 1})
    root = write_dataset(SynthConfig(output_dir=str(tmp_path / "a"), **cfg))
    again = write_dataset(SynthConfig(output_dir=str(tmp_path / "b"), **cfg))
    bag = root / "scene_000007" / "bag"
    files = [str(f) for f in _files(root)]
    assert filecmp.cmpfiles(root, again, files, shallow=False)[0] == files  # sqlite3 bags are deterministic too
    assert any(p.suffix == ".db3" for p in bag.iterdir())
    types, counts, first = _read_bag(bag)
    assert types == EXPECTED_TYPES and all(counts[t] == 3 for t in EXPECTED_TYPES)
    _, depth = first["/camera/depth/image_raw"]
    assert depth.encoding == "32FC1" and depth.step == 4 * depth.width
    f0 = SynthDataset(root, "all")[0].frame(0)
    d = depth.data.view("<f4").reshape(f0.depth_m.shape)
    assert np.allclose(d, f0.depth_m, atol=5.1e-4)  # the PNG holds millimetres, the bag float metres
