"""Faults against the perception node in its own process over real DDS (issue 18): bad and half-valid map files,
unpaired frames, distortion / quaternion / depth details, high-rate stamps with a
lost image, RSS, map paths, image and map-file size limits. (Clock: test_clock.py; kills during saves:
test_kill_save.py; query bursts: test_query_burst.py: they start nodes of their own, and two nodes must not share a
domain.)"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from g2vlm_core.geometry.camera import CameraIntrinsics
from g2vlm_ros import conversions as cv
from g2vlm_ros.srv import LoadMap, SaveMap, SpatialQuery

from .._maps import remanifest

from .conftest import spin_until
from .node_rig import Rig, start_node, wait_exit
from .test_perception_node import INTR, T_LEVEL, H, W

MAX_MAP_FILE_MB = 16


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One node for the tests that reset it first (a node start costs seconds on the CI machine)."""
    from .conftest import child_env

    map_dir = tmp_path_factory.mktemp("faults") / "maps"
    proc = start_node(child_env(), map_dir, f"max_map_file_mb:={MAX_MAP_FILE_MB}")
    yield proc, map_dir
    rc, out = proc.stop()
    assert rc == 0, out


@pytest.fixture
def rig(shared, ros_node):
    proc, _ = shared
    assert proc.alive(), "the shared node died in an earlier test"
    node, ex = ros_node
    r = Rig(node, ex, proc)
    r.wait_up()
    r.reset()
    return r


def _shifted(dy: float) -> np.ndarray:
    T = T_LEVEL.copy()
    T[1, 3] += dy
    return T


def _mapped(rig: Rig, name: str, map_dir: Path, n: int = 2) -> Path:
    for _ in range(n):
        assert rig.send() in ("fused", "keyframe")
    # absolute (inside map_dir) so that a node reading relative paths from its working directory saves here too
    resp = rig.call("save_map", SaveMap.Request(directory=str(map_dir / name)))
    assert resp.success, resp.message
    return map_dir / name


# ------------------------------------------------------------------------------------------------- item 1
def test_loading_bad_map_files_is_answered_and_the_node_lives(rig, shared):
    proc, map_dir = shared
    good = _mapped(rig, "good", map_dir)

    def variant(name, change, manifest=True):
        d = map_dir / name
        shutil.copytree(good, d)
        change(d)
        if manifest:
            remanifest(d)
        return d

    objects = json.loads((good / "objects.json").read_text())
    cases = [
        variant("list", lambda d: (d / "objects.json").write_text(json.dumps([objects]))),
        variant("ints", lambda d: (d / "objects.json").write_text("5")),
        variant("voxels_null", lambda d: (d / "objects.json").write_text(
            json.dumps({**objects, "objects": [{**objects["objects"][0], "voxels": None}]}))),
        variant("not_json", lambda d: (d / "objects.json").write_text("{\"version\": 1, ")),
        variant("tsdf_truncated", lambda d: (d / "tsdf.npz").write_bytes((d / "tsdf.npz").read_bytes()[:5000]),
                manifest=False),
        variant("tsdf_garbage", lambda d: (d / "tsdf.npz").write_bytes(b"PK\x03\x04" + bytes(4000))),
    ]
    for d in cases:
        # absolute paths (inside map_dir) so that a node without path rules tries the same files
        resp = rig.call("load_map", LoadMap.Request(directory=str(d)))
        assert not resp.success and resp.message.startswith("cannot load"), (d.name, resp.message)
        assert proc.alive(), f"node died loading {d.name}"
    resp = rig.call("spatial_query", SpatialQuery.Request(query="how many objects are there"))
    assert resp.success
    resp = rig.call("load_map", LoadMap.Request(directory=str(good)))
    assert resp.success and resp.object_count >= 1, resp.message


# ------------------------------------------------------------------------------------------------- item 2
def test_a_failed_load_leaves_the_running_map_untouched_and_mapping_goes_on(rig, shared):
    _, map_dir = shared
    saved = _mapped(rig, "small", map_dir)
    for dy in (1.0, 2.0):
        assert rig.send(pose=_shifted(dy)) in ("fused", "keyframe")
    points = rig.cloud_points()
    graph = rig.graphs[-1]
    bad = map_dir / "small_nan"
    shutil.copytree(saved, bad)
    objects = json.loads((bad / "objects.json").read_text())
    objects["objects"][0]["psum"][0][0] = float("nan")
    (bad / "objects.json").write_text(json.dumps(objects))
    remanifest(bad)
    resp = rig.call("load_map", LoadMap.Request(directory=str(bad)))
    assert not resp.success, resp.message
    assert rig.cloud_points() == points  # the TSDF was not replaced
    assert rig.graphs[-1].sequence == graph.sequence  # nor the objects
    assert "NaN" in resp.message, resp.message
    n = len(rig.graphs)
    for dy in (2.5, 3.0):
        assert rig.send(pose=_shifted(dy)) == "keyframe"
    assert spin_until(rig.ex, lambda: len(rig.graphs) > n, 10.0)  # keyframes still update the graph
    assert rig.graphs[-1].sequence > graph.sequence
    assert rig.diag()["keyframe_errors"] == "0"


# ------------------------------------------------------------------------------------------------- item 6
def test_unpaired_frames_are_counted_and_reported(rig):
    assert rig.send() == "keyframe"
    t_rgb_alone = rig.cam.send(images=(True, False))  # rgb without depth
    assert rig.send() == "keyframe"
    assert rig.outcome(t_rgb_alone) == "unpaired_rgb"
    t = rig.cam.send(images=(True, False))  # depth 50 ms late, beyond the 20 ms slop
    rig.cam.send(stamp=t + 0.05, images=(False, True))
    assert rig.send() == "keyframe"
    assert rig.outcome(t) == "unpaired_rgb" and rig.outcome(t + 0.05) == "unpaired_depth"
    t_last = rig.cam.send(images=(True, False))  # a stream that stops: flushed after a second
    assert rig.outcome(t_last, timeout_s=10.0) == "unpaired_rgb"
    kv = rig.diag()
    assert kv["rejected_unpaired_rgb"] == "3" and kv["rejected_unpaired_depth"] == "1", kv
    assert "no depth within sync_slop_s" in kv["detail_unpaired_rgb"] or "no partner" in kv["detail_unpaired_rgb"]


# ------------------------------------------------------------------------------------------------- item 7
def test_distortion_quaternions_and_depth_problems_are_named(rig):
    assert rig.send() == "keyframe"
    fancy = CameraIntrinsics(W, H, INTR.fx, INTR.fy, INTR.cx, INTR.cy, "fancy_lens", (0.1, 0.02, 0.0, 0.0))
    assert rig.send(info=fancy) == "unsupported_distortion"
    assert "fancy_lens" in rig.diag()["detail_unsupported_distortion"]
    zero = CameraIntrinsics(W, H, INTR.fx, INTR.fy, INTR.cx, INTR.cy, "fancy_lens", (0.0, 0.0, 0.0, 0.0))
    assert rig.send(info=zero) in ("fused", "keyframe")  # no distortion to apply: the model name does not matter
    barrel = CameraIntrinsics(W, H, INTR.fx, INTR.fy, INTR.cx, INTR.cy, "plumb_bob", (-0.2, 0.05, 0.0, 0.0, 0.0))
    assert rig.send(info=barrel) in ("fused", "keyframe")  # undistorted (OpenCV), then fused

    assert rig.send(quat_scale=2.0) in ("fused", "keyframe")
    assert int(rig.diag()["poses_normalised"]) >= 1

    for value, words in ((np.nan, "NaN"), (np.inf, "infinite"), (0.0, "zero")):
        depth = cv.depth_to_image(np.full((H, W), value, np.float32))
        assert rig.send(depth_msg=depth) == "no_valid_depth"
        assert words in rig.diag()["detail_no_valid_depth"]


# ------------------------------------------------------------------------------------------------- item 8
def test_high_rate_stamps_with_a_lost_image_are_never_called_stamp_backwards(rig):
    """158 Hz stamps (6.3 ms apart, under the 20 ms slop) and one rgb lost: every depth image gets one report, the
    orphan depth 'unpaired_depth', the others their own rgb, and none says stamp_backwards (before, the rgb after the
    loss took the orphan depth and the frames after it were all 'stamp_backwards')."""
    t0 = rig.cam.t + 1.0
    stamps = [t0 + k / 158 for k in range(12)]
    for k, t in enumerate(stamps):
        rig.cam.send(stamp=t, images=(k != 4, True))
        rig.spin(0.03)
    outcomes = [rig.outcome(t) for t in stamps]
    assert "stamp_backwards" not in outcomes and outcomes[4] == "unpaired_depth", outcomes
    assert set(outcomes[:4] + outcomes[5:]) <= {"fused", "keyframe", "dropped_busy"}, outcomes
    assert outcomes.count("fused") + outcomes.count("keyframe") >= 5, outcomes


def _proc_status_mb(pid: int, key: str) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{key}:\s+(\d+) kB", text, re.M).group(1)) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs procfs")
def test_diagnostics_report_current_and_peak_rss(rig, shared):
    proc, _ = shared
    assert rig.send() == "keyframe"
    kv = rig.diag()
    rss, hwm = _proc_status_mb(proc.pid, "VmRSS"), _proc_status_mb(proc.pid, "VmHWM")
    assert abs(float(kv["rss_mb"]) - rss) < 0.15 * rss, (kv["rss_mb"], rss)
    assert abs(float(kv["rss_peak_mb"]) - hwm) < 0.15 * hwm, (kv["rss_peak_mb"], hwm)
    assert float(kv["rss_mb"]) <= float(kv["rss_peak_mb"]) + 2.0  # the kernel updates the peak lazily


def test_save_and_load_stay_inside_map_dir(rig, shared):
    _, map_dir = shared
    assert rig.send() == "keyframe"
    outside = map_dir.parent / "escape"
    for directory in ("../escape", str(outside), "/tmp/g2vlm_escape_test"):
        resp = rig.call("save_map", SaveMap.Request(directory=directory))
        assert not resp.success and "outside map_dir" in resp.message, resp.message
        resp = rig.call("load_map", LoadMap.Request(directory=directory))
        assert not resp.success and "outside map_dir" in resp.message, resp.message
    assert not outside.exists() and not Path("/tmp/g2vlm_escape_test").exists()
    resp = rig.call("save_map", SaveMap.Request(directory="site/floor1"))
    assert resp.success and Path(resp.graph_path).parent == map_dir / "site" / "floor1"
    assert rig.call("load_map", LoadMap.Request(directory="site/floor1")).success


def test_a_huge_frame_is_refused_with_a_reason(rig):
    big_w, big_h = 3000, 2000  # 6 MP: over max_image_pixels (4 MP by default)
    big = CameraIntrinsics(big_w, big_h, 2000.0, 2000.0, big_w / 2, big_h / 2)
    rgb = cv.numpy_to_image(np.full((big_h, big_w, 3), 90, np.uint8), "rgb8")
    depth = cv.depth_to_image(np.full((big_h, big_w), 2.0, np.float32))
    assert rig.send(rgb_msg=rgb, depth_msg=depth, info=big) == "image_too_large"
    assert "max_image_pixels" in rig.diag()["detail_image_too_large"]
    # then it fuses again (on a loaded machine the big samples can hold DDS up for a second: the frame right behind
    # them may be reported unpaired)
    assert any(rig.send() in ("fused", "keyframe") for _ in range(5))


def test_an_oversized_map_file_is_refused(rig, shared):
    _, map_dir = shared
    good = _mapped(rig, "to_pad", map_dir)
    padded = map_dir / "padded"
    shutil.copytree(good, padded)
    with open(padded / "objects.json", "a") as f:
        f.write(" " * ((MAX_MAP_FILE_MB + 4) << 20))  # still valid JSON
    remanifest(padded)
    resp = rig.call("load_map", LoadMap.Request(directory=str(padded)))
    assert not resp.success and "over the limit" in resp.message, resp.message
    assert rig.call("load_map", LoadMap.Request(directory=str(good))).success


def test_save_refuses_to_replace_what_is_not_a_map_and_the_node_lives(rig, shared):
    """save_map into a folder that is not a map (it would be replaced) and onto a file: refused, node alive."""
    proc, map_dir = shared
    (map_dir / "photos").mkdir(parents=True, exist_ok=True)
    (map_dir / "photos" / "a.jpg").write_bytes(b"x")
    (map_dir / "a_file").write_text("x")
    assert rig.send() == "keyframe"
    for name in ("photos", "a_file"):
        resp = rig.call("save_map", SaveMap.Request(directory=str(map_dir / name)))
        assert not resp.success and resp.message.startswith("cannot save"), resp.message
    assert (map_dir / "photos" / "a.jpg").read_bytes() == b"x"
    assert proc.alive() and wait_exit(proc, 0.1) is None
