"""Map folders: atomic saves with a manifest, loads that check everything before they replace the running map, and
crash recovery; the pipeline's clock-jump handling and depth-rejection details."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from g2vlm_core.mapping import map_store
from g2vlm_core.pipeline import PerceptionPipeline, PipelineConfig

from .._maps import remanifest

from .test_pipeline import _clone, frames  # noqa: F401  (pytest fixture)


def _state(pipe: PerceptionPipeline) -> tuple:
    g = pipe.snapshot()
    return (pipe.fusion.stats().active_blocks, len(pipe.point_cloud()[0]), g.sequence,
            sorted(o.id for o in g.objects))


@pytest.fixture(scope="module")
def mapped(frames, tmp_path_factory):  # noqa: F811
    """(pipeline that mapped frames 0-2, the folder it saved, a second pipeline that mapped frames 3-5)."""
    a = PerceptionPipeline(PipelineConfig(keyframe_every_n=1))
    for f in frames[:3]:
        a.process(f)
    folder = tmp_path_factory.mktemp("pristine") / "map"
    a.save(folder)
    b = PerceptionPipeline(PipelineConfig(keyframe_every_n=1))
    for f in frames[3:]:
        b.process(f)
    return a, folder, b


@pytest.fixture
def saved(mapped, tmp_path):
    """``mapped`` with its own copy of the saved folder (tests may damage it); only refused loads may touch b."""
    a, folder, b = mapped
    shutil.copytree(folder, tmp_path / "map")
    return a, tmp_path / "map", b


def _fresh() -> PerceptionPipeline:
    return PerceptionPipeline(PipelineConfig(keyframe_every_n=1))


def test_a_saved_folder_has_a_manifest_of_every_file(saved):
    a, folder, _ = saved
    m = json.loads((folder / "manifest.json").read_text())
    assert m["format"] == "g2vlm_map" and m["version"] == 1
    assert set(m["files"]) == {"map.ply", "tsdf.npz", "objects.json", "scene_graph.json"}
    for name, entry in m["files"].items():
        assert entry["bytes"] == (folder / name).stat().st_size > 0
        assert entry["sha256"] == hashlib.sha256((folder / name).read_bytes()).hexdigest()
    assert sorted(p.name for p in folder.parent.iterdir()) == ["map"]  # no staging or previous folder left


def _objects(folder: Path) -> dict:
    return json.loads((folder / "objects.json").read_text())


BAD_OBJECTS = {
    "a list": lambda d: [d],
    "an int": lambda d: 7,
    "voxels null": lambda d: d["objects"][0].update(voxels=None),
    "one NaN": lambda d: d["objects"][0]["psum"][0].__setitem__(1, float("nan")),
    "ints for lists": lambda d: d["objects"][0].update(psum=3, csum=3),
    "a string count": lambda d: d["objects"][0].update(cnt=["1"] * len(d["objects"][0]["cnt"])),
    "objects not a list": lambda d: d.update(objects={"1": 2}),
    "unknown version": lambda d: d.update(version=99),
    "boolean id": lambda d: d["objects"][0].update(id=True),
    "wrong shape": lambda d: d["objects"][0].update(psum=[[1.0, 2.0]]),
}


@pytest.mark.parametrize("case", sorted(BAD_OBJECTS))
def test_a_bad_objects_file_is_refused_and_the_running_map_untouched(saved, case):
    _, folder, b = saved
    d = _objects(folder)
    out = BAD_OBJECTS[case](d)
    (folder / "objects.json").write_text(json.dumps(d if out is None else out))
    remanifest(folder)
    before = _state(b)
    with pytest.raises(ValueError):
        b.load(folder)
    assert _state(b) == before


def test_corrupt_and_tampered_grids_are_refused(saved):
    _, folder, b = saved
    before = _state(b)
    data = (folder / "tsdf.npz").read_bytes()
    (folder / "tsdf.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        b.load(folder)
    remanifest(folder)  # the same damage with a manifest that agrees: numpy cannot read it, Open3D never sees it
    with pytest.raises(ValueError, match="not a readable voxel grid"):
        b.load(folder)
    with np.load(saved[0].fusion.save_map(folder.parent / "grid.npz"), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["value_000"] = arrays["value_000"].copy()
    arrays["value_000"].reshape(-1)[0] = np.nan
    np.savez(folder / "tsdf.npz", **arrays)
    remanifest(folder)
    with pytest.raises(ValueError, match="NaN"):
        b.load(folder)
    assert _state(b) == before


def test_size_limit_and_checksum(saved):
    _, folder, b = saved
    size = (folder / "objects.json").stat().st_size
    with pytest.raises(ValueError, match="over the limit"):
        b.load(folder, max_file_bytes=size - 1)
    data = bytearray((folder / "scene_graph.json").read_bytes())
    data[len(data) // 2] ^= 1  # same size, one bit changed
    (folder / "scene_graph.json").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        b.load(folder)


def test_a_good_load_replaces_everything_and_numbers_graphs_after_the_old_ones(saved, frames):  # noqa: F811
    a, folder, _ = saved
    b = _fresh()
    for f in frames[3:5]:
        b.process(f)
    old = b.snapshot()
    assert old.objects
    graph = b.load(folder)
    assert _state(b)[0:2] == _state(a)[0:2]
    assert sorted(o.id for o in graph.objects) == sorted(o.id for o in a.snapshot().objects)
    assert graph.sequence > old.sequence  # subscribers keeping the newest graph take it
    gone = {o.id for o in old.objects} - {o.id for o in graph.objects}
    assert set(graph.deleted_ids) == gone


def test_save_refuses_to_replace_a_folder_that_is_not_a_map(saved, tmp_path):
    a, _, _ = saved
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match="not a map folder"):
        a.save(other)
    assert (other / "holiday.jpg").read_bytes() == b"x"
    a.save(tmp_path / "empty_ok")


def test_a_save_that_fails_half_way_leaves_the_previous_map(saved):
    a, folder, b = saved
    old = (folder / "manifest.json").read_text()

    def fail(path):
        path.write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        map_store.write(folder, {"map.ply": lambda p: p.write_bytes(b"new"), "tsdf.npz": fail})
    assert (folder / "manifest.json").read_text() == old
    assert sorted(p.name for p in folder.parent.iterdir()) == ["map"]
    _fresh().load(folder)


@pytest.mark.parametrize("crash_after", ["staging_written", "old_moved_aside", "staging_partial_old_moved"])
def test_recovery_from_a_crash_between_the_steps_of_a_save(saved, crash_after):
    """The states a kill can leave (the kill test in tests/ros does it for real): a load then finds a whole map."""
    a, folder, b = saved
    old_manifest = (folder / "manifest.json").read_text()
    staging, previous = folder.parent / ".map.saving", folder.parent / ".map.previous"
    b.save(folder.parent / "new")  # a complete new map to stage
    os.rename(folder.parent / "new", staging)
    if crash_after == "staging_partial_old_moved":
        (staging / "manifest.json").unlink()
    if crash_after != "staging_written":
        os.rename(folder, previous)
    c = _fresh()
    c.load(folder)
    now = (folder / "manifest.json").read_text()
    if crash_after == "old_moved_aside":
        assert now != old_manifest and _state(c)[0:2] == _state(b)[0:2]  # the new map was whole: it wins
    else:
        assert now == old_manifest and _state(c)[0:2] == _state(a)[0:2]
    assert sorted(p.name for p in folder.parent.iterdir()) == ["map"]


def test_clock_jump_back_is_a_new_recording_or_a_reset(frames):  # noqa: F811
    late = [_clone(f, stamp_s=f.stamp_s + 100.0) for f in frames[:3]]
    pipe = PerceptionPipeline(PipelineConfig(keyframe_every_n=1, clock_jump_s=1.0))
    for f in late:
        assert pipe.process(f).fused
    blocks = pipe.fusion.stats().active_blocks
    small = pipe.process(_clone(frames[3], stamp_s=late[-1].stamp_s - 0.5))  # a late frame, not a jump
    assert not small.fused and small.skipped_reason == "stamp_backwards" and pipe.clock_jumps == 0
    report = pipe.process(frames[3])  # the source restarted at t=0.3
    assert report.fused and report.clock_jump_s == pytest.approx(late[-1].stamp_s - frames[3].stamp_s)
    assert pipe.clock_jumps == 1 and pipe.fusion.stats().active_blocks >= blocks  # the map was kept
    assert pipe.process(frames[4]).fused and pipe.clock_jumps == 1

    resetting = PerceptionPipeline(PipelineConfig(keyframe_every_n=1, on_clock_jump="reset"))
    for f in late:
        resetting.process(f)
    assert resetting.snapshot().objects
    report = resetting.process(frames[0])
    assert report.fused and resetting.clock_jumps == 1
    assert resetting.fusion.stats().frames_integrated == 1  # only this frame: the map was cleared


@pytest.mark.parametrize("value,words", [(np.nan, "are NaN"), (np.inf, "are infinite"), (0.0, "zero"),
                                         (50.0, "farther than depth_max_m")])
def test_depth_rejections_say_what_was_wrong(frames, value, words):  # noqa: F811
    pipe = PerceptionPipeline(PipelineConfig())
    report = pipe.process(_clone(frames[0], depth_m=np.full_like(frames[0].depth_m, value)))
    assert report.skipped_reason == "no_valid_depth" and words in report.skipped_detail, report.skipped_detail


def test_mapping_goes_on_after_a_load(frames, tmp_path):  # noqa: F811
    """New keyframes update the loaded objects and number graphs after the loaded one."""
    a = PerceptionPipeline(PipelineConfig(keyframe_every_n=1))
    for f in frames[:3]:
        a.process(f)
    a.save(tmp_path / "m")
    b = PerceptionPipeline(PipelineConfig(keyframe_every_n=1))
    g = b.load(tmp_path / "m")
    report = b.process(_clone(frames[3], stamp_s=frames[3].stamp_s))
    assert report.fused and report.keyframe and b.snapshot().sequence == g.sequence + 1
    assert b.keyframes == 1 and b.skipped["keyframe_error"] == 0
