"""PerceptionPipeline: skip reasons that never touch the map, keyframe cadence, save/load, async keyframes."""
from __future__ import annotations

import numpy as np
import pytest

from g2vlm_core.frame import RGBDFrame
from g2vlm_core.pipeline import PerceptionPipeline, PipelineConfig
from g2vlm_core.scene_graph import Box3D

from ._render import orbit_poses, render

BOXES = [Box3D([0.0, -0.25, 0.1], [0.2, 0.2, 0.2]), Box3D([0.0, 0.3, 0.15], [0.25, 0.2, 0.3])]
COLORS = [(0.8, 0.1, 0.1), (0.1, 0.7, 0.2)]


@pytest.fixture(scope="module")
def frames():
    out = []
    for i, T in enumerate(orbit_poses(6)):
        f = render(BOXES, COLORS, T, stamp_s=0.1 * i, index=i)
        out.append(RGBDFrame(f.rgb[::2, ::2].copy(), f.depth_m[::2, ::2].copy(), f.intrinsics.scaled(0.5),
                             f.T_world_cam, f.stamp_s, i))
    return out


def _clone(f: RGBDFrame, **kw) -> RGBDFrame:
    d = dict(rgb=f.rgb, depth_m=f.depth_m, intrinsics=f.intrinsics, T_world_cam=f.T_world_cam, stamp_s=f.stamp_s)
    d.update(kw)
    return RGBDFrame(**d)


def test_bad_frames_are_skipped_with_a_reason_and_leave_the_map_alone(frames):
    pipe = PerceptionPipeline(PipelineConfig(keyframe_every_n=1))
    assert pipe.process(frames[1]).fused
    before = pipe.fusion.stats().active_blocks
    f = frames[2]
    bad_T = f.T_world_cam.copy()
    bad_T[:3, :3] *= 2.0
    cases = {
        "stamp_backwards": _clone(f, stamp_s=0.0),
        "missing_pose": _clone(f, T_world_cam=None),
        "non_rigid_pose": _clone(f, T_world_cam=bad_T),
        "malformed_frame": _clone(f, rgb=f.rgb[:-2]),
        "no_valid_depth": _clone(f, depth_m=np.full_like(f.depth_m, np.nan)),
        "bad_stamp": _clone(f, stamp_s=float("nan")),
    }
    for reason, frame in cases.items():
        report = pipe.process(frame)
        assert not report.fused and report.skipped_reason == reason, (reason, report.skipped_reason)
    assert pipe.skipped == {r: 1 for r in cases}
    assert pipe.fusion.stats().active_blocks == before and pipe.frames_fused == 1
    assert pipe.process(frames[3]).fused  # and good frames fuse afterwards


def test_keyframe_every_n(frames):
    pipe = PerceptionPipeline(PipelineConfig(keyframe_every_n=3, keyframe_translation_m=100.0,
                                             keyframe_rotation_deg=360.0))
    kinds = [pipe.process(f).keyframe for f in frames]
    assert kinds == [True, False, False, True, False, False]
    assert pipe.keyframes == 2


def test_save_and_load_round_trip(frames, tmp_path):
    pipe = PerceptionPipeline(PipelineConfig(keyframe_every_n=1))
    for f in frames[:3]:
        pipe.process(f)
    ply, graph_json = pipe.save(tmp_path / "map")
    assert ply.stat().st_size > 0 and graph_json.is_file()
    other = PerceptionPipeline(PipelineConfig(keyframe_every_n=1))
    graph = other.load(tmp_path / "map")
    assert sorted(o.id for o in graph.objects) == sorted(o.id for o in pipe.snapshot().objects)
    assert other.fusion.stats().active_blocks == pipe.fusion.stats().active_blocks
    with pytest.raises(FileNotFoundError):
        other.load(tmp_path / "nowhere")


def test_async_keyframes_match_inline_ones(frames):
    every2 = dict(keyframe_every_n=2, keyframe_translation_m=100.0, keyframe_rotation_deg=360.0)
    inline = PerceptionPipeline(PipelineConfig(**every2))
    graphs = []
    threaded = PerceptionPipeline(PipelineConfig(**every2, async_keyframes=True), on_keyframe=graphs.append)
    for f in frames:
        inline.process(f)
        threaded.process(f)
        assert threaded.wait_idle(30.0)  # one keyframe at a time: the same work as inline, on another thread
    threaded.close()
    assert threaded.keyframes == inline.keyframes == 3 and threaded.keyframes_dropped == 0
    assert len(graphs) == 3 and graphs[-1] is threaded.snapshot()
    a = sorted(np.round(o.box.center, 3).tolist() for o in inline.snapshot().objects)
    b = sorted(np.round(o.box.center, 3).tolist() for o in threaded.snapshot().objects)
    assert a == b


def test_async_keyframes_drop_the_older_waiting_one_when_busy(frames):
    import threading

    gate = threading.Event()

    def slow_labeller(frame, T):
        gate.wait(10.0)
        return None  # then geometric segmentation

    pipe = PerceptionPipeline(PipelineConfig(keyframe_every_n=1, async_keyframes=True), labeller=slow_labeller)
    for f in frames[:4]:
        assert pipe.process(f).fused  # fusion is never held up by the blocked keyframe
    gate.set()
    assert pipe.wait_idle(30.0)
    pipe.close()
    # frame 0 was being processed, 1 and 2 were replaced while waiting, 3 ran last
    assert pipe.keyframes == 2 and pipe.keyframes_dropped == 2
