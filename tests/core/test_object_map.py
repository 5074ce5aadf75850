"""Tests of the object map: association, stable ids, merging, pruning, labels, boxes, snapshots, save/load."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ._render import INTR, look_at, orbit_poses, render, box_iou
from g2vlm_core.geometry.camera import GeometryError
from g2vlm_core.mapping.object_map import ObjectMap, ObjectMapConfig, gravity_box
from g2vlm_core.predicates import Viewpoint, compute_relations
from g2vlm_core.scene_graph import Box3D
from g2vlm_core.geometry.segmentation import Segment, Segmenter

BOXES = [Box3D([0.3, -0.2, 0.125], [0.3, 0.2, 0.25], 0.3), Box3D([-0.25, 0.3, 0.2], [0.2, 0.2, 0.4], -0.5)]
COLORS = [(0.8, 0.1, 0.1), (0.1, 0.2, 0.8)]
POSES = orbit_poses(4)


@pytest.fixture(scope="module")
def frames():
    return [render(BOXES, COLORS, T, noise_m=0.002, seed=k, stamp_s=0.1 * k, index=k) for k, T in enumerate(POSES)]


@pytest.fixture(scope="module")
def geometric_segments(frames):
    seg = Segmenter()
    return [seg.segment_frame(f) for f in frames]


def _blob(center, n=200, size=0.1, color=(0.5, 0.5, 0.5), seed=0, **kw) -> Segment:
    rng = np.random.default_rng(seed)
    pts = np.asarray(center) + rng.uniform(-size / 2, size / 2, (n, 3))
    return Segment(pts, np.tile(color, (n, 1)), **kw)


def _truth_index(box: Box3D) -> int:
    return int(np.argmax([box_iou(box, b) for b in BOXES]))


def test_two_boxes_stable_ids_and_accurate_boxes(frames, geometric_segments):
    m = ObjectMap()
    per_frame = []
    for f, segs in zip(frames, geometric_segments):
        r = m.update(segs, f.stamp_s, f.T_world_cam, f.intrinsics)
        per_frame.append(sorted(i for i in r.object_ids if i >= 0))
        assert r.skipped == {"kind_floor": 1}
    assert all(ids == per_frame[0] for ids in per_frame) and len(per_frame[0]) == 2
    g = m.snapshot(Viewpoint.from_pose(POSES[-1]))
    assert sorted(o.id for o in g.objects) == per_frame[0]
    matched = sorted(_truth_index(o.box) for o in g.objects)
    assert matched == [0, 1]
    for o in g.objects:
        k = _truth_index(o.box)
        assert box_iou(o.box, BOXES[k]) > 0.7
        assert o.attributes["color"] == ("red", "blue")[k]
        assert o.observation_count == len(frames)
        assert o.first_seen_s == 0.0 and o.last_seen_s == pytest.approx(0.1 * (len(frames) - 1))
        assert o.label == "object" and o.label_confidence == 0.0
        np.testing.assert_allclose(o.mean_color, COLORS[k], atol=0.02)
        assert BOXES[k].contains(o.centroid[None], 0.0).all()


def test_relations_agree_with_predicates(frames, geometric_segments):
    m = ObjectMap()
    for f, segs in zip(frames, geometric_segments):
        m.update(segs, f.stamp_s, f.T_world_cam, f.intrinsics)
    vp = Viewpoint.from_pose(POSES[0])
    g = m.snapshot(vp)
    expected = compute_relations([o.id for o in g.objects], [o.box for o in g.objects], vp)
    as_set = lambda rels: {(r.subject_id, r.predicate, r.object_id, r.reference_frame) for r in rels}
    assert as_set(g.relations) == as_set(expected) and g.relations
    # And the geometry is right: the relations between the estimated boxes are those between the true boxes.
    ids = {_truth_index(o.box): o.id for o in g.objects}
    truth = compute_relations([ids[0], ids[1]], BOXES, vp)
    assert {(r.subject_id, r.predicate, r.object_id) for r in truth} == \
        {(r.subject_id, r.predicate, r.object_id) for r in g.relations}


def test_view_dependent_relations_are_local_unless_disabled():
    segs = [_blob([0, 0, 0.1], seed=0), _blob([0, 0.5, 0.1], seed=1), _blob([0, 3.0, 0.1], seed=2)]
    vp = Viewpoint(np.array([-3.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0]))
    key = lambda rels: {(r.subject_id, r.predicate, r.object_id, r.reference_frame, round(r.confidence, 9))
                        for r in rels}
    m_all = ObjectMap(ObjectMapConfig(relation_max_gap_m=None, publish_unnamed_min_observations=1))
    m_all.update(segs, 0.0)
    g = m_all.snapshot(vp)
    boxes = [o.box for o in g.objects]
    assert key(g.relations) == key(compute_relations([o.id for o in g.objects], boxes, vp))
    m = ObjectMap(ObjectMapConfig(relation_max_gap_m=1.0, publish_unnamed_min_observations=1))
    ids = m.update(segs, 0.0).created
    local = m.snapshot(vp).relations
    view_dep = ("left_of", "right_of", "in_front_of", "behind")
    # The third blob is 2.3 m from the others: its view-dependent relations go, everything else stays.
    expected = {k for k in key(g.relations) if not (k[1] in view_dep and ids[2] in (k[0], k[2]))}
    assert key(local) == expected and len(expected) < len(g.relations)
    # Viewer on -x looking along +x: its right is -y, so the blob at y = 0.5 is left of the one at y = 0.
    assert (ids[1], "left_of", ids[0], "camera") in {k[:4] for k in key(local)}


def test_stacked_objects_from_instance_masks_give_on_relation_and_labels():
    big = Box3D([0.0, 0.0, 0.15], [0.5, 0.5, 0.3], 0.2)
    small = Box3D([0.05, 0.0, 0.36], [0.12, 0.12, 0.12], 0.2)
    seg, m = Segmenter(), ObjectMap()
    labels = [{1: "crate", 2: "cup"}, {1: "crate", 2: "mug"}, {1: "crate", 2: "cup"}]
    scores = [{1: 0.9, 2: 0.6}, {1: 0.9, 2: 0.9}, {1: 0.9, 2: 0.6}]
    for k, T in enumerate(orbit_poses(3, radius=1.5, height=1.2)):
        f = render([big, small], [(0.6, 0.4, 0.2), (0.1, 0.7, 0.1)], T, stamp_s=float(k))
        segs = seg.segments_from_instances(f, f.extras["instance_ids"], labels[k], scores[k])
        m.update(segs, f.stamp_s, T, f.intrinsics)
    g = m.snapshot()
    by_label = {o.label: o for o in g.objects}
    assert set(by_label) == {"crate", "cup"}
    cup = by_label["cup"]
    # cup: 0.6 + 0.6 = 1.2 votes over 3 observations; mug: 0.9.
    assert cup.label_confidence == pytest.approx(0.4)
    assert [lab for lab, _ in cup.label_candidates] == ["cup", "mug"]
    assert cup.label_candidates[1][1] == pytest.approx(0.3)
    rels = {(r.subject_id, r.predicate, r.object_id) for r in g.relations}
    assert (cup.id, "on", by_label["crate"].id) in rels and (by_label["crate"].id, "under", cup.id) in rels
    assert not any(r.reference_frame for r in g.relations)  # no viewpoint -> no view-dependent relations
    assert cup.attributes == {"color": "green", "size": "small"}


def test_transient_is_pruned_and_deletion_reported_once():
    cfg = ObjectMapConfig(min_observations=2, prune_after_frames=4, merge_every=0)
    m = ObjectMap(cfg)
    stable = lambda k: _blob([0.0, 0.0, 0.1], seed=k, color=(0.8, 0.1, 0.1))
    T = look_at([1.5, 0.0, 1.0], [0.0, 0.0, 0.1])
    r = m.update([stable(0), _blob([0.3, 0.3, 0.1], seed=9, color=(0.1, 0.8, 0.1))], 0.0, T, INTR)
    keep, transient = r.created
    assert m.snapshot().deleted_ids == []
    for k in range(1, 3):
        r = m.update([stable(k)], float(k), T, INTR)
        assert r.object_ids == [keep] and r.pruned == []
    r = m.update([stable(3)], 3.0, T, INTR)  # 4th frame with the transient in view, seen once: pruned
    assert r.pruned == [transient]
    assert m.ids == [keep]
    g1, g2 = m.snapshot(), m.snapshot()
    assert g1.deleted_ids == [transient] and g2.deleted_ids == []
    assert g2.sequence == g1.sequence + 1


def test_a_tentative_object_two_views_missed_is_held_back_until_seen_again():
    """Seen once, then missed by one keyframe that looks at it (maybe occluded): still published; missed by a
    second one: held back (kept in the map, but reported in deleted_ids so subscribers drop it); seen again:
    published, confirmed, under the same id."""
    m = ObjectMap(ObjectMapConfig(min_observations=2, prune_after_frames=10, merge_every=0))
    T = look_at([1.5, 0.0, 1.0], [0.0, 0.0, 0.1])
    blob = lambda k: _blob([0.0, 0.0, 0.1], seed=k, color=(0.8, 0.1, 0.1), label="mug", label_score=0.9)
    oid = m.update([blob(0)], 0.0, T, INTR).created[0]
    m.update([], 1.0, T, INTR)
    assert [o.id for o in m.snapshot().objects] == [oid]
    m.update([], 2.0, T, INTR)
    g = m.snapshot()
    assert g.objects == [] and m.ids == [oid] and g.deleted_ids == [oid]
    assert m.snapshot().deleted_ids == []  # reported once
    m.update([blob(1)], 3.0, T, INTR)
    g = m.snapshot()
    assert [(o.id, o.observation_count) for o in g.objects] == [(oid, 2)] and g.deleted_ids == []


def test_object_out_of_view_is_not_pruned():
    m = ObjectMap(ObjectMapConfig(min_observations=2, prune_after_frames=3))
    oid = m.update([_blob([0.0, 0.0, 0.1])], 0.0, look_at([1.5, 0, 1], [0, 0, 0.1]), INTR).created[0]
    away = look_at([1.5, 0, 1], [3.0, 0, 1])  # looking away from the object
    for k in range(10):
        m.update([], float(k + 1), away, INTR)
    assert m.ids == [oid]
    # Without intrinsics the map cannot tell and counts every update.
    m2 = ObjectMap(ObjectMapConfig(min_observations=2, prune_after_frames=3))
    m2.update([_blob([0.0, 0.0, 0.1])], 0.0)
    m2.update([], 1.0)
    assert m2.update([], 2.0).pruned == [1] and len(m2) == 0


def test_ratio_rule_prunes_rarely_seen_objects():
    m = ObjectMap(ObjectMapConfig(min_observations=1, min_observation_ratio=0.5, ratio_min_expected=6,
                                  merge_every=0))
    oid = None
    for k in range(6):
        segs = [_blob([0, 0, 0.1], seed=k)] if k < 2 else []
        r = m.update(segs, float(k))
        oid = oid or r.created[0]
    assert oid not in m.ids and r.pruned == [oid]  # seen 2 of 6 frames < 0.5


def test_fragments_merge_into_one_object():
    m = ObjectMap(ObjectMapConfig(merge_every=1, publish_unnamed_min_observations=1))
    full = _blob([0.0, 0.0, 0.1], n=400, size=0.2, color=(0.9, 0.9, 0.1))
    left = Segment(full.points_world[:250], full.colors[:250])
    right = Segment(full.points_world[150:], full.colors[150:])
    # The two overlapping fragments arrive in the same frame: neither can match the other, both are created,
    # and the merge pass joins them.
    r = m.update([left, right], 0.0)
    assert len(r.created) == 2 and len(r.merged) == 1 and len(m) == 1
    removed, kept = r.merged[0]
    assert kept == min(r.created) and r.object_ids == [kept, kept]
    g = m.snapshot()
    assert g.deleted_ids == [removed]
    assert g.objects[0].box.contains(full.points_world, 0.011).all()
    # Fragments with orthogonal embeddings are different things: no merge.
    m2 = ObjectMap(ObjectMapConfig(merge_every=1))
    e1, e2 = np.eye(4)[0], np.eye(4)[1]
    left.embedding, right.embedding = e1, e2
    r = m2.update([left, right], 0.0)
    assert len(m2) == 2 and r.merged == []


def test_separate_fragments_merge_once_a_full_view_bridges_them():
    m = ObjectMap(ObjectMapConfig(merge_every=1))
    rng = np.random.default_rng(4)
    full = rng.uniform([-0.2, -0.05, 0.0], [0.2, 0.05, 0.2], (1200, 3))  # a 40 cm long box-shaped cloud
    col = np.tile([0.1, 0.1, 0.9], (1200, 1))
    left, right = full[:, 0] < -0.08, full[:, 0] > 0.08  # 16 cm apart: no overlap, two objects
    r = m.update([Segment(full[left], col[left]), Segment(full[right], col[right])], 0.0)
    assert len(r.created) == 2 and r.merged == [] and len(m) == 2
    r = m.update([Segment(full, col)], 1.0)
    # The full view joins fragment 1 (first of two equal matches), which then has more observations and
    # absorbs fragment 2.
    assert r.created == [] and len(m) == 1 and r.merged == [(2, 1)] and r.object_ids == [1]
    assert m.snapshot().deleted_ids == [2]


def _face(x0, x1, y0, y1, z0, z1, n=600, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform([x0, y0, z0], [x1, y1, z1], (n, 3))


def test_views_of_one_labelled_object_from_opposite_sides_merge_by_nested_boxes():
    # A desk (1.2 x 0.6 x 0.75 m): its top seen from one side, its back panel from the other. The surfaces share
    # no voxel, but the panel's box lies inside the top-and-front's box.
    front = np.concatenate([_face(-0.6, 0.6, -0.3, 0.3, 0.74, 0.76), _face(-0.6, 0.6, -0.31, -0.29, 0.0, 0.75, seed=1)])
    back = _face(-0.55, 0.55, 0.26, 0.28, 0.1, 0.7, seed=2)
    col = lambda p: np.full((len(p), 3), 0.5)  # noqa: E731
    m = ObjectMap(ObjectMapConfig(merge_every=1))
    r = m.update([Segment(front, col(front), label="desk", label_score=0.9),
                  Segment(back, col(back), label="desk", label_score=0.9)], 0.0)
    assert len(r.created) == 2 and len(r.merged) == 1 and len(m) == 1
    assert m.snapshot().objects[0].label == "desk"
    # The same geometry unlabelled (no model), or labelled differently: two objects.
    for la, lb in ((None, None), ("desk", "chair")):
        m = ObjectMap(ObjectMapConfig(merge_every=1))
        m.update([Segment(front, col(front), label=la, label_score=0.9),
                  Segment(back, col(back), label=lb, label_score=0.9)], 0.0)
        assert len(m) == 2, (la, lb)
    # Two chairs side by side with the same label: their boxes do not nest, so they stay two objects.
    m = ObjectMap(ObjectMapConfig(merge_every=1))
    a, b = _face(0.0, 0.45, 0.0, 0.45, 0.0, 0.9, seed=3), _face(0.5, 0.95, 0.0, 0.45, 0.0, 0.9, seed=4)
    m.update([Segment(a, col(a), label="chair", label_score=0.9), Segment(b, col(b), label="chair", label_score=0.9)],
             0.0)
    assert len(m) == 2


def test_partial_views_associate_and_far_segments_do_not():
    m = ObjectMap()
    base = _blob([0, 0, 0.1], n=300, size=0.2, seed=1)
    oid = m.update([base], 0.0).created[0]
    shifted = Segment(base.points_world + [0.01, 0.0, 0.0], base.colors)  # same surface, 1 cm of drift
    far = _blob([1.0, 0, 0.1], n=300, size=0.2, seed=2)
    r = m.update([shifted, far], 1.0)
    assert r.object_ids[0] == oid and r.created == [r.object_ids[1]] and r.object_ids[1] > oid


def test_ids_are_never_reused():
    m = ObjectMap(ObjectMapConfig(min_observations=2, prune_after_frames=2, publish_unnamed_min_observations=1))
    seen = set()
    for k in range(6):
        r = m.update([_blob([3.0 * k, 0, 0.1], seed=k)], float(k))  # a new, never re-seen object per frame
        assert not (set(r.created) & seen)
        seen |= set(r.created)
    assert len(seen) == 6 and m.snapshot().deleted_ids
    m.reset()
    assert len(m) == 0
    new = m.update([_blob([0, 0, 0.1])], 10.0).created[0]
    assert new > max(seen)
    g = m.snapshot()
    assert new in [o.id for o in g.objects] and new not in g.deleted_ids


def test_reset_reports_all_ids_deleted():
    m = ObjectMap()
    ids = m.update([_blob([0, 0, 0.1]), _blob([2, 0, 0.1])], 0.0).created
    s1 = m.snapshot()
    m.reset()
    s2 = m.snapshot()
    assert s2.objects == [] and sorted(s2.deleted_ids) == sorted(ids) and s2.sequence == s1.sequence + 1


def test_memory_is_bounded_and_means_are_kept():
    cap = 500
    m = ObjectMap(ObjectMapConfig(max_voxels_per_object=cap, min_overlap=0.0))
    rng = np.random.default_rng(3)
    all_pts = []
    for k in range(8):
        pts = rng.uniform([-0.5, -0.5, 0.0], [0.5, 0.5, 0.02], (3000, 3))  # a 1 m table top, dense
        all_pts.append(pts)
        r = m.update([Segment(pts, np.tile([0.2, 0.4, 0.6], (3000, 1)))], float(k))
        assert len(r.object_ids) == 1
    assert len(m) == 1
    pts, cols = m.object_points(m.ids[0])
    assert len(pts) <= cap
    o = m.snapshot().objects[0]
    np.testing.assert_allclose(o.centroid, np.concatenate(all_pts).mean(axis=0), atol=1e-4)
    np.testing.assert_allclose(o.mean_color, [0.2, 0.4, 0.6], atol=1e-6)


def test_bad_input_never_corrupts_the_map():
    m = ObjectMap()
    m.update([_blob([0, 0, 0.1])], 0.0)
    assert m.update([], 1.0).object_ids == []
    before = json.dumps(m.to_dict())
    bad_pose = np.eye(4)
    bad_pose[0, 0] = 2.0
    with pytest.raises(GeometryError):
        m.update([_blob([0, 0, 0.1])], 2.0, bad_pose, INTR)
    with pytest.raises(ValueError):
        m.update([_blob([0, 0, 0.1])], float("nan"))
    with pytest.raises(TypeError):
        m.update(None, 2.0)
    assert json.dumps(m.to_dict()) == before  # failed calls changed nothing, not even the frame counter

    nan_seg = Segment(np.full((50, 3), np.nan), np.zeros((50, 3)))
    partly = _blob([0, 0, 0.1], seed=5)
    partly.points_world[:20] = np.nan
    tiny = _blob([0, 0, 0.1], n=3)
    floor = Segment(np.zeros((100, 3)), np.zeros((100, 3)), kind="floor")
    bad_emb = _blob([0, 0, 0.1], seed=6, embedding=np.full(4, np.nan))
    far = Segment(np.full((50, 3), 1e9), np.zeros((50, 3)))
    r = m.update([nan_seg, partly, tiny, "junk", floor, bad_emb, far], 3.0)
    assert [r.object_ids[k] for k in (0, 2, 3, 4, 6)] == [-1] * 5
    assert r.object_ids[1] == r.object_ids[5] == 1
    assert r.skipped == {"non_finite_or_out_of_range": 2, "too_few_points": 1, "not_a_segment": 1, "kind_floor": 1,
                         "bad_embedding_ignored": 1}
    pts, _ = m.object_points(1)
    assert np.isfinite(pts).all()
    assert m.skipped_total["too_few_points"] == 1


def test_save_load_round_trip(frames, geometric_segments):
    m = ObjectMap()
    for f, segs in zip(frames[:3], geometric_segments[:3]):
        m.update(segs, f.stamp_s, f.T_world_cam, f.intrinsics)
    text = json.dumps(m.to_dict())
    m2 = ObjectMap.from_dict(json.loads(text))
    g1, g2 = m.snapshot(), m2.snapshot()
    assert json.dumps(g1.to_dict()) == json.dumps(g2.to_dict())
    # The loaded map goes on associating to the same ids, and new ids continue past the old ones.
    f = frames[3]
    r1 = m.update(geometric_segments[3], f.stamp_s, f.T_world_cam, f.intrinsics)
    r2 = m2.update(geometric_segments[3], f.stamp_s, f.T_world_cam, f.intrinsics)
    assert r1.object_ids == r2.object_ids
    assert m2.update([_blob([5, 5, 0.1])], 9.0).created[0] > max(m.ids)
    with pytest.raises(ValueError):
        ObjectMap.from_dict({"version": 99})


def test_unknown_up_axis_gives_axis_aligned_boxes_and_gravity_free_relations():
    m = ObjectMap(ObjectMapConfig(up_axis=None, publish_unnamed_min_observations=1))
    m.update([_blob([0, 0, 0.1], size=0.2), _blob([0, 0, 0.3], size=0.2, seed=1, color=(1, 0, 0))], 0.0)
    g = m.snapshot(Viewpoint(np.array([2.0, 0, 0]), np.array([-1.0, 0, 0])))
    assert all(o.box.yaw == 0.0 for o in g.objects)
    assert {r.predicate for r in g.relations} <= {"near", "inside"} and g.relations


def test_gravity_box_exact_rectangle():
    yaw, size = 0.5, np.array([0.6, 0.2, 0.3])
    truth = Box3D([1.0, -2.0, 0.15], size, yaw)
    box = gravity_box(truth.corners())
    np.testing.assert_allclose(box.center, truth.center, atol=1e-9)
    np.testing.assert_allclose(box.size, size, atol=1e-9)
    assert box.yaw == pytest.approx(yaw)
    # A yaw beyond pi/4 is reported as the equivalent rectangle with swapped sides.
    box = gravity_box(Box3D([0, 0, 0], size, 1.2).corners())
    assert box.yaw == pytest.approx(1.2 - np.pi / 2) and np.allclose(box.size, [0.2, 0.6, 0.3])
    # Degenerate footprints fall back to axis-aligned boxes.
    line = np.array([[0, 0, 0], [1, 1, 0], [2, 2, 1.0]])
    assert gravity_box(line).yaw == 0.0 and gravity_box(line).contains(line, 1e-9).all()


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(3, 60))
def test_gravity_box_contains_points_and_beats_axis_aligned(seed, n):
    pts = np.random.default_rng(seed).normal(size=(n, 3)) * [1.0, 0.3, 0.5]
    box = gravity_box(pts)
    assert box.contains(pts, 1e-7).all()
    aabb = Box3D.from_points(pts)
    assert box.size[0] * box.size[1] <= aabb.size[0] * aabb.size[1] + 1e-9
    assert -np.pi / 4 - 1e-12 <= box.yaw < np.pi / 4


def test_amodal_estimates_extend_boxes_never_shrink_them_and_persist():
    """Only the front face of a 0.6 m deep cabinet is seen; the model's whole-object boxes reach back."""
    rng = np.random.default_rng(4)
    face = np.c_[np.full(400, 1.0), rng.uniform(-0.4, 0.4, 400), rng.uniform(0.0, 0.7, 400)]  # x = 1 plane
    whole = Box3D([1.3, 0.0, 0.35], [0.6, 0.8, 0.7], 0.0)
    tiny = Box3D([1.0, 0.0, 0.35], [0.01, 0.01, 0.01], 0.0)  # an estimate inside the seen points
    turned = Box3D([1.3, 0.0, 0.35], [0.8, 0.6, 0.7], np.pi / 2 + 0.1)  # the same box, described a quarter turn on
    views = [face + rng.normal(0, 0.002, face.shape) for _ in range(3)]
    maps = {}
    for name, cfg, est in (("plain", ObjectMapConfig(), None), ("amodal", ObjectMapConfig(), whole),
                           ("off", ObjectMapConfig(amodal_boxes=False), whole), ("tiny", ObjectMapConfig(), tiny),
                           ("turned", ObjectMapConfig(), turned)):
        m = ObjectMap(cfg)
        for k, pts in enumerate(views):
            m.update([Segment(pts, np.full((400, 3), 0.5), label="cabinet",
                              label_score=0.9, source="mask", amodal_box=est)], 0.1 * k)
        maps[name] = m
    box = {k: m.snapshot().objects[0].box for k, m in maps.items()}
    assert box["plain"].size.min() < 0.05  # a slab: IoU with the cabinet about 0.05
    assert box_iou(box["amodal"], whole) > 0.85 > 0.1 > box_iou(box["plain"], whole)
    assert box_iou(box["off"], box["plain"]) > 0.99
    assert box_iou(box["turned"], box["amodal"]) > 0.97  # quarter turns and small yaw differences do not inflate
    lo, hi = box["plain"].aabb()
    assert np.all(box["tiny"].aabb()[0] <= lo + 1e-6) and np.all(box["tiny"].aabb()[1] >= hi - 1e-6)
    again = ObjectMap.from_dict(json.loads(json.dumps(maps["amodal"].to_dict())))
    assert box_iou(again.snapshot().objects[0].box, box["amodal"]) > 0.999


def test_fragments_whose_whole_object_boxes_nest_merge():
    """A lamp seen as a shade and a base (its thin pole not segmented): the points are 1 m apart, but each part's
    whole-object estimate is the lamp, so the two same-label objects merge; without estimates they stay apart."""
    rng = np.random.default_rng(5)
    shade = np.c_[rng.uniform(-0.15, 0.15, (300, 2)), rng.uniform(1.2, 1.5, 300)]
    base = np.c_[rng.uniform(-0.12, 0.12, (300, 2)), rng.uniform(0.0, 0.08, 300)]
    lamp = Box3D([0.0, 0.0, 0.75], [0.3, 0.3, 1.5], 0.0)
    counts = {}
    for name, est in (("estimates", lamp), ("none", None)):
        m = ObjectMap(ObjectMapConfig(merge_every=1))
        for k in range(3):
            m.update([Segment(p + rng.normal(0, 0.002, p.shape), np.full((300, 3), 0.6), label="lamp",
                              label_score=0.9, source="mask", amodal_box=est) for p in (shade, base)], 0.1 * k)
        counts[name] = [o.box for o in m.snapshot().objects]
    assert len(counts["none"]) == 2 and len(counts["estimates"]) == 1
    assert box_iou(counts["estimates"][0], lamp) > 0.8


def test_amodal_estimate_budget_must_be_positive():
    with pytest.raises(ValueError, match="max_amodal_estimates"):
        ObjectMapConfig(max_amodal_estimates=0)


def _box_points(box: Box3D, n: int = 400, seed: int = 0) -> np.ndarray:
    return box.center + (np.random.default_rng(seed).uniform(-0.5, 0.5, (n, 3)) * box.size) @ box.rotation.T


@pytest.mark.parametrize("gap, rests", [(0.08, True), (-0.03, True), (0.3, False)])
def test_objects_rest_on_their_support_in_snapshots(gap, rests):
    """A mug whose seen points stop 8 cm above a table top (its bottom occluded) or dip 3 cm into it rests on it;
    one 30 cm above does not (it floats on a shelf we have not seen)."""
    from g2vlm_core.predicates import holds
    table = Box3D([0.0, 0.0, 0.375], [1.2, 0.8, 0.75], 0.2)
    mug = Box3D([0.1, 0.05, 0.75 + gap + 0.05], [0.08, 0.08, 0.1], 0.0)
    m = ObjectMap(ObjectMapConfig(amodal_boxes=False))
    for _ in range(2):
        m.update([Segment(_box_points(table), np.full((400, 3), 0.5), label="table", label_score=0.9),
                  Segment(_box_points(mug, 200, 1), np.full((200, 3), 0.9), label="mug", label_score=0.9)], 0.0)
    g = m.snapshot()
    t, u = (next(o for o in g.objects if o.label == lab) for lab in ("table", "mug"))
    assert holds("on", u.box, t.box) == rests
    top = u.box.center[2] + u.box.size[2] / 2
    assert top == pytest.approx(mug.center[2] + 0.05, abs=0.02)  # the top face stays where it was seen
    assert t.box.center[2] - t.box.size[2] / 2 == pytest.approx(0.0, abs=0.02)  # the table is not moved


def _slab(lo, hi, n, seed):
    return np.asarray(lo) + np.random.default_rng(seed).uniform(0, 1, (n, 3)) * (np.asarray(hi) - np.asarray(lo))


def test_a_supports_box_top_is_its_surface_not_the_bleed_above_it():
    """A table whose segments carry a few points of the bottle standing on it (a mask reaching over it) keeps its
    box top at its surface, so the bottle is on it; a chair's back, a large share of its points, stays in its box."""
    from g2vlm_core.predicates import holds
    table = np.concatenate([_slab([-0.6, -0.4, 0.70], [0.6, 0.4, 0.74], 1500, 0),  # top
                            _slab([-0.6, -0.4, 0.0], [-0.55, -0.35, 0.70], 150, 1),  # a leg
                            _slab([0.0, 0.0, 0.74], [0.06, 0.06, 0.95], 60, 2)])  # bleed of the bottle
    bottle = _slab([0.0, 0.0, 0.74], [0.06, 0.06, 0.98], 200, 3)
    chair = np.concatenate([_slab([2.0, 0.0, 0.43], [2.45, 0.45, 0.47], 600, 4),  # seat
                            _slab([2.0, 0.42, 0.47], [2.45, 0.45, 0.9], 500, 5)])  # back
    m = ObjectMap(ObjectMapConfig(amodal_boxes=False))
    for k in range(2):
        m.update([Segment(table, np.full((len(table), 3), 0.5), label="table", label_score=0.9),
                  Segment(bottle, np.full((len(bottle), 3), 0.9), label="bottle", label_score=0.9),
                  Segment(chair, np.full((len(chair), 3), 0.2), label="chair", label_score=0.9)], float(k))
    g = m.snapshot()
    t, b, c = (next(o for o in g.objects if o.label == lab) for lab in ("table", "bottle", "chair"))
    assert t.box.center[2] + t.box.size[2] / 2 == pytest.approx(0.74, abs=0.02)
    assert holds("on", b.box, t.box)
    assert c.box.center[2] + c.box.size[2] / 2 == pytest.approx(0.9, abs=0.02)
    m2 = ObjectMap(ObjectMapConfig(amodal_boxes=False, top_layer_share=0))  # the rule off: the bleed lifts the top
    for k in range(2):
        m2.update([Segment(table, np.full((len(table), 3), 0.5), label="table", label_score=0.9)], float(k))
    t2 = m2.snapshot().objects[0]
    assert t2.box.center[2] + t2.box.size[2] / 2 > 0.9


def test_an_unnamed_support_plane_is_published_as_structure():
    """A table top found only as a plane (no recognizer named it) is an anchor, not an object answer."""
    top = _slab([-0.6, -0.4, 0.72], [0.6, 0.4, 0.74], 800, 0)
    m = ObjectMap()
    for k in range(2):
        m.update([Segment(top, np.full((800, 3), 0.5), kind="support")], float(k))
    o = m.snapshot().objects[0]
    assert o.kind == "structure" and o.label == "surface"
    m = ObjectMap(ObjectMapConfig(unnamed_supports_as_structure=False))
    for k in range(2):
        m.update([Segment(top, np.full((800, 3), 0.5), kind="support")], float(k))
    assert m.snapshot().objects[0].kind == "object"


def test_touching_views_of_one_object_merge_when_their_embeddings_agree():
    """A desk's two ends seen from two sides (no shared voxels, boxes that touch but do not nest) become one desk
    when the model embeds them alike; with disagreeing embeddings (two different desks) they stay two."""
    left = _slab([0.0, 0.0, 0.0], [0.6, 0.6, 0.75], 800, 0)
    right = _slab([0.62, 0.0, 0.0], [1.2, 0.6, 0.75], 800, 1)

    def run(e_right):
        m = ObjectMap(ObjectMapConfig(merge_every=1, amodal_boxes=False))
        for k in range(2):
            m.update([Segment(left, np.full((800, 3), 0.4), label="desk", label_score=0.9, embedding=np.eye(4)[0]),
                      Segment(right, np.full((800, 3), 0.4), label="desk", label_score=0.9, embedding=e_right)],
                     float(k))
        return m.snapshot().objects

    one = run(np.array([0.9, 0.43, 0.0, 0.0]))  # cosine 0.9
    assert len(one) == 1 and one[0].id == 1 and one[0].box.size[0] == pytest.approx(1.2, abs=0.05)
    assert len(run(np.array([0.5, 0.0, 0.866, 0.0]))) == 2  # cosine 0.5


def test_overlapping_objects_with_disjoint_labels_merge_only_when_their_embeddings_agree():
    """A table whose mask bled over the vase on it shares the vase's voxels; a vase is not a table unless the model
    embeds them alike (then it is one object the model named two ways)."""
    top = _slab([0.0, 0.0, 0.70], [0.8, 0.8, 0.74], 1500, 0)
    vase = _slab([0.35, 0.35, 0.74], [0.45, 0.45, 0.94], 300, 1)

    def run(e_vase):
        m = ObjectMap(ObjectMapConfig(merge_every=1, amodal_boxes=False, support_snap_m=0.0))
        table = lambda: Segment(np.concatenate([top, vase]), np.full((1800, 3), 0.4), label="table", label_score=0.9,
                                label_scores={"table": 0.9, "vase": 0.05}, embedding=np.eye(4)[0])
        m.update([table()], 0.0)  # a view in which the table's mask covers the vase
        for k in range(1, 3):
            m.update([table(), Segment(vase, np.full((300, 3), 0.8), label="vase", label_score=0.8,
                                       embedding=e_vase)], float(k))
        return sorted(o.label for o in m.snapshot().objects)

    assert run(np.array([0.5, 0.0, 0.866, 0.0])) == ["table", "vase"]  # cosine 0.5
    assert run(np.array([0.9, 0.43, 0.0, 0.0])) == ["table"]  # cosine 0.9: one object


@pytest.mark.parametrize("x0, x1, merged", [(0.1, 1.1, True), (-1.2, 2.3, False)])
def test_a_support_plane_is_an_objects_top_only_within_its_footprint(x0, x1, merged):
    """A plane at a desk's top height over the desk is its top (merged into it); one reaching far beyond it (over
    the desk and the bed beside it) is not."""
    desk = _slab([0.0, 0.0, 0.0], [1.2, 0.6, 0.75], 1500, 0)
    plane = _slab([x0, 0.05, 0.74], [x1, 0.55, 0.76], 800, 1)  # centred over the desk either way
    m = ObjectMap(ObjectMapConfig(merge_every=1, amodal_boxes=False, touch_merge_cos=1.0))
    for k in range(2):
        m.update([Segment(desk, np.full((1500, 3), 0.4), label="desk", label_score=0.9),
                  Segment(plane, np.full((800, 3), 0.6), kind="support")], float(k))
    assert (len(m) == 1) == merged


def test_colour_names_divide_by_the_maps_white_point():
    """A room lit at 70 %: the white wall reads (0.7, 0.7, 0.7), a white cabinet (0.6, 0.6, 0.6) and an orange chair
    (0.55, 0.3, 0.0), which read gray and brown by themselves; against the map's white point they are white and
    orange, and their mean colours stay as observed."""
    wall = _slab([0.0, 3.0, 0.0], [3.0, 3.02, 2.0], 3000, 0)
    cabinet = _slab([0.5, 2.0, 0.0], [1.1, 2.5, 0.8], 800, 1)
    chair = _slab([2.0, 1.0, 0.0], [2.5, 1.5, 0.9], 800, 2)

    def names(**kw):
        m = ObjectMap(ObjectMapConfig(merge_every=0, **kw))
        for k in range(2):
            m.update([Segment(wall, np.full((3000, 3), 0.7), kind="structure", label="wall"),
                      Segment(cabinet, np.full((800, 3), 0.6), label="cabinet", label_score=0.9),
                      Segment(chair, np.tile([0.55, 0.3, 0.0], (800, 1)), label="chair", label_score=0.9)], float(k))
        g = m.snapshot()
        return {o.label: o.attributes["color"] for o in g.objects}, {o.label: o.mean_color for o in g.objects}

    named, colours = names()
    assert named["cabinet"] == "white" and named["chair"] == "orange" and named["wall"] == "white"
    assert np.allclose(colours["cabinet"], 0.6, atol=1e-3)
    assert names(white_point_percentile=0.0)[0] == {"wall": "gray", "cabinet": "gray", "chair": "brown"}
    with pytest.raises(ValueError):
        ObjectMapConfig(white_point_min=0.0)


@pytest.mark.parametrize("bleed_over_book, lowered", [(True, True), (False, False)])
def test_a_supports_top_comes_down_to_what_rests_on_it_when_the_points_above_are_its_bleed(bleed_over_book, lowered):
    """A desk (top 0.74) whose masks reached over the book on it in some views (points up to 0.86 over the book's
    footprint) has its top at the book's bottom, so the book is on it; the same points elsewhere over the desk (a
    thing the map does not hold) leave the top where its points are."""
    from g2vlm_core.predicates import holds

    desk = _slab([0.0, 0.0, 0.0], [1.2, 0.6, 0.74], 3000, 0)
    xy = ([0.5, 0.2], [0.7, 0.4]) if bleed_over_book else ([0.0, 0.0], [0.2, 0.2])
    bleed = _slab([*xy[0], 0.76], [*xy[1], 0.86], 150, 1)
    book = _slab([0.5, 0.2, 0.745], [0.7, 0.4, 0.80], 300, 2)
    m = ObjectMap(ObjectMapConfig(merge_every=0, amodal_boxes=False, top_layer_share=0.0))
    for k in range(2):
        m.update([Segment(np.concatenate([desk, bleed]), np.full((3150, 3), 0.5), label="desk", label_score=0.9,
                          embedding=np.eye(4)[0]),
                  Segment(book, np.full((300, 3), 0.2), label="book", label_score=0.9, embedding=np.eye(4)[1])],
                 float(k))
    g = m.snapshot()
    d, b = (next(o for o in g.objects if o.label == lab) for lab in ("desk", "book"))
    top = d.box.center[2] + d.box.size[2] / 2
    assert (top == pytest.approx(0.74, abs=0.03)) == lowered and (top > 0.8) != lowered
    assert holds("on", b.box, d.box) == lowered
