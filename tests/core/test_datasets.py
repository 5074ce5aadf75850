"""Tests of g2vlm_core.datasets on the shared real samples and on tiny TUM / ScanNet / 3DMatch folders built here."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from g2vlm_core.geometry.camera import GeometryError, check_rigid
from g2vlm_core.datasets import (RedwoodSequence, ScanNetSequence, ThreeDMatchSequence, TUMSequence, associate,
                                 detect_layout, open_dataset, read_depth)


def write_png16(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint16)).save(path)


def write_rgb(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8)).save(path, quality=95)


# ------------------------------------------------------------------------------------------- real samples

def test_3dmatch_sample(real_data_dir):
    root = real_data_dir / "3dmatch_seq01_5"
    seq = open_dataset(root)
    assert isinstance(seq, ThreeDMatchSequence) and len(seq) == 5
    K = np.loadtxt(root / "camera-intrinsics.txt")
    assert seq.intrinsics.fx == pytest.approx(K[0, 0]) and seq.intrinsics.cy == pytest.approx(K[1, 2])
    ids = [int(Path(f.extras["depth_path"]).name.split("-")[1].split(".")[0]) for f in seq]
    assert ids == [0, 1, 2, 116, 422]
    f = seq[3]
    raw = np.asarray(Image.open(root / "seq-01" / "frame-000116.depth.png"))
    np.testing.assert_allclose(f.depth_m, raw / 1000.0, rtol=1e-6)  # millimetres -> metres
    assert f.depth_m.dtype == np.float32 and f.rgb.dtype == np.uint8 and f.rgb.shape == (480, 640, 3)
    np.testing.assert_allclose(f.T_world_cam, np.loadtxt(root / "seq-01" / "frame-000116.pose.txt"))
    check_rigid(f.T_world_cam)
    assert f.extras["sequence"] == "seq-01"
    assert len(open_dataset(root / "seq-01")) == 5  # a sequence folder on its own works too


def test_icl_nuim_redwood_sample(real_data_dir):
    root = real_data_dir / "icl_nuim_livingroom1_5"
    seq = open_dataset(root)
    assert isinstance(seq, RedwoodSequence) and len(seq) == 5
    cam = json.loads((root / "camera_primesense.json").read_text())
    K_colmajor = np.asarray(cam["intrinsic_matrix"]).reshape(3, 3).T
    assert (seq.intrinsics.fx, seq.intrinsics.cx, seq.intrinsics.cy) == pytest.approx(
        (K_colmajor[0, 0], K_colmajor[0, 2], K_colmajor[1, 2]))
    assert seq.intrinsics.cx == pytest.approx(319.5)
    lines = (root / "trajectory.log").read_text().split("\n")
    T2 = np.array([ln.split() for ln in lines[11:15]], float)  # frame 2's matrix follows its 'i j n' header
    np.testing.assert_allclose(seq[2].T_world_cam, T2)
    raw = np.asarray(Image.open(root / "depth" / "00002.png"))
    np.testing.assert_allclose(seq[2].depth_m, raw / 1000.0, rtol=1e-6)
    assert 0.5 < np.median(seq[2].depth_m[seq[2].depth_m > 0]) < 5.0  # a living room, in metres


def test_tum_native_depth_encoding(real_data_dir):
    path = real_data_dir / "icl_nuim_livingroom1_5" / "other_formats" / "TUM_depth.png"
    raw = np.asarray(Image.open(path))
    d = read_depth(path, 5000.0)
    np.testing.assert_allclose(d[raw > 0], raw[raw > 0] / 5000.0, rtol=1e-6)
    assert 0.3 < np.median(d[d > 0]) < 6.0


# ------------------------------------------------------------------------------------------- tiny synthetic layouts

def make_tum(root: Path, with_assoc: bool = False) -> dict:
    root.mkdir(parents=True)
    rgb_t = [1.000, 1.033, 1.066, 1.100]
    dep_t = [1.004, 1.031, 1.070, 1.150]  # the last depth has no rgb within 20 ms
    rgb_lines, dep_lines = ["# color images", "# file: 'x'", "# timestamp filename"], ["# depth"]
    for i, t in enumerate(rgb_t):
        write_rgb(root / "rgb" / f"{t:.6f}.png", np.full((8, 10, 3), 40 * i, np.uint8))
        rgb_lines.append(f"{t:.6f} rgb/{t:.6f}.png")
    for i, t in enumerate(dep_t):
        write_png16(root / "depth" / f"{t:.6f}.png", np.full((8, 10), 5000 * (i + 1)))  # (i + 1) metres
        dep_lines.append(f"{t:.6f} depth/{t:.6f}.png")
    (root / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
    (root / "depth.txt").write_text("\n".join(dep_lines) + "\n")
    q0 = Rotation.identity().as_quat()  # (x, y, z, w), TUM's order too
    q1 = Rotation.from_euler("z", 90, degrees=True).as_quat()
    (root / "groundtruth.txt").write_text(
        "# timestamp tx ty tz qx qy qz qw\n"
        f"0.99 0 0 0 {' '.join(map(str, q0))}\n"
        f"1.07 1 2 0 {' '.join(map(str, q1))}\n")
    if with_assoc:
        (root / "associations.txt").write_text(
            f"{rgb_t[0]:.6f} rgb/{rgb_t[0]:.6f}.png {dep_t[0]:.6f} depth/{dep_t[0]:.6f}.png\n"
            f"{rgb_t[2]:.6f} rgb/{rgb_t[2]:.6f}.png {dep_t[2]:.6f} depth/{dep_t[2]:.6f}.png\n")
    return {"rgb_t": rgb_t, "dep_t": dep_t}


def test_tum_association_depth_factor_and_pose_interpolation(tmp_path):
    root = tmp_path / "rgbd_dataset_freiburg1_xyz"
    make_tum(root)
    assert detect_layout(root) == "tum"
    seq = open_dataset(root)
    assert isinstance(seq, TUMSequence) and len(seq) == 3  # depth at 1.150 s has no partner
    assert seq.intrinsics.fx == pytest.approx(517.3)  # freiburg1 calibration picked from the folder name
    np.testing.assert_allclose(seq[1].depth_m, 2.0)  # 10000 / 5000
    assert seq[1].rgb[0, 0, 0] == 40
    # depth at 1.031 s lies 51.25 % of the way from 0.99 to 1.07 s
    a = (1.031 - 0.99) / 0.08
    T = seq[1].T_world_cam
    np.testing.assert_allclose(T[:3, 3], [a * 1.0, a * 2.0, 0.0], atol=1e-9)
    yaw = Rotation.from_matrix(T[:3, :3]).as_euler("zyx", degrees=True)[0]
    assert yaw == pytest.approx(90 * a, abs=1e-6)
    assert seq[1].stamp_s == pytest.approx(1.031)
    np.testing.assert_allclose(seq[2].T_world_cam[:3, 3], [1, 2, 0], atol=1e-12)  # exactly on a sample
    short = TUMSequence(root, max_pose_gap_s=0.05)  # samples 80 ms apart are too far to interpolate
    assert short[1].T_world_cam is None


def test_tum_associations_file_and_missing_groundtruth(tmp_path):
    root = tmp_path / "seq"
    make_tum(root, with_assoc=True)
    (root / "groundtruth.txt").unlink()
    seq = open_dataset(root)
    assert len(seq) == 2 and seq.intrinsics.fx == pytest.approx(525.0)  # ROS default without a freiburg name
    np.testing.assert_allclose(seq[1].depth_m, 3.0)
    assert seq[0].T_world_cam is None


def test_associate_is_one_to_one_nearest():
    pairs = associate([0.0, 0.1, 0.2], [0.01, 0.09, 0.095, 0.5], 0.02)
    assert pairs == [(0, 0), (1, 2)]  # 0.09 loses to the closer 0.095; 0.2 and 0.5 find nobody


def test_scannet_export_resizes_colour_to_depth(tmp_path):
    root = tmp_path / "scene0000_00"
    for i in range(2):
        rgb = np.zeros((97, 130, 3), np.uint8)
        rgb[:, :65] = [255, 0, 0]
        write_rgb(root / "color" / f"{i}.jpg", rgb)
        write_png16(root / "depth" / f"{i}.png", np.full((48, 64), 1500))
    (root / "pose").mkdir()
    T = np.eye(4)
    T[:3, 3] = [1, 2, 3]
    np.savetxt(root / "pose" / "0.txt", T)
    (root / "pose" / "1.txt").write_text("-inf -inf -inf -inf\n" * 4)  # ScanNet marks lost frames this way
    (root / "intrinsic").mkdir()
    K = np.eye(4)
    K[0, 0], K[1, 1], K[0, 2], K[1, 2] = 60.0, 61.0, 31.5, 23.5
    np.savetxt(root / "intrinsic" / "intrinsic_depth.txt", K)
    np.savetxt(root / "intrinsic" / "intrinsic_color.txt", K * 2)
    assert detect_layout(root) == "scannet"
    seq = open_dataset(root)
    assert isinstance(seq, ScanNetSequence) and len(seq) == 2
    f = seq[0]
    assert f.rgb.shape == (48, 64, 3) and f.depth_m.shape == (48, 64)
    assert f.rgb[24, 5, 0] > 200 and f.rgb[24, 60, 0] < 50  # left half red survives the resize
    np.testing.assert_allclose(f.depth_m, 1.5)
    assert seq.intrinsics.fx == 60.0 and seq.intrinsics.cy == 23.5
    np.testing.assert_allclose(f.T_world_cam, T)
    assert seq[1].T_world_cam is None


def test_3dmatch_invalid_depth_codes_and_7scenes_default(tmp_path):
    seq_dir = tmp_path / "chess" / "seq-01"
    depth = np.full((6, 8), 2000)
    depth[0, 0] = 65535  # 7-Scenes' invalid marker
    depth[0, 1] = 0
    write_png16(seq_dir / "frame-000000.depth.png", depth)
    write_rgb(seq_dir / "frame-000000.color.png", np.zeros((6, 8, 3)))
    np.savetxt(seq_dir / "frame-000000.pose.txt", np.eye(4))
    seq = open_dataset(tmp_path / "chess")
    assert isinstance(seq, ThreeDMatchSequence)
    d = seq[0].depth_m
    assert d[0, 0] == 0 and d[0, 1] == 0 and d[1, 1] == pytest.approx(2.0)
    assert seq.intrinsics.fx == 585.0  # no camera-intrinsics.txt: 7-Scenes calibration


def test_redwood_without_json_and_with_bad_pose(tmp_path):
    root = tmp_path / "redwood"
    for i in range(2):
        write_rgb(root / "image" / f"{i:06d}.jpg", np.zeros((4, 6, 3)))
        write_png16(root / "depth" / f"{i:06d}.png", np.full((4, 6), 1000))
    bad = np.eye(4)
    bad[:3, :3] *= 2.0
    text = "0 0 2\n" + "\n".join(" ".join(map(str, r)) for r in np.eye(4)) + "\n1 1 2\n" + \
        "\n".join(" ".join(map(str, r)) for r in bad) + "\n"
    (root / "trajectory.log").write_text(text)
    seq = open_dataset(root)
    assert isinstance(seq, RedwoodSequence)
    assert seq.intrinsics.fx == 525.0 and seq.intrinsics.cx == pytest.approx(2.5)
    np.testing.assert_allclose(seq[0].T_world_cam, np.eye(4))
    assert seq[1].T_world_cam is None  # a non-rigid pose is dropped, not passed on


def test_unknown_layout_and_index_errors(tmp_path, real_data_dir):
    (tmp_path / "junk").mkdir()
    with pytest.raises(GeometryError):
        open_dataset(tmp_path / "junk")
    with pytest.raises(GeometryError):
        open_dataset(tmp_path / "missing")
    seq = open_dataset(real_data_dir / "icl_nuim_livingroom1_5")
    with pytest.raises(IndexError):
        seq[5]
    assert seq[-1].index == 4
