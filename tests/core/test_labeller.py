"""ModelLabeller: a model's instances become labelled, embedded objects in the map, and queries can name them."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from g2vlm_core.recognition.g2vlm import ModelLabeller, resolve_checkpoint
from g2vlm_core.geometry.metrics import box_iou_3d
from g2vlm_core.model.checkpoint import save_checkpoint
from g2vlm_core.model.inference import InstanceProposal, KeyframeResult
from g2vlm_core.model.model import G2VLM
from g2vlm_core.model.testing import objects_everywhere, tiny_config, write_tiny_text_encoder
from g2vlm_core.pipeline import PerceptionPipeline, PipelineConfig
from g2vlm_core.language.query import QueryEngine
from g2vlm_core.scene_graph import Box3D, visible_box
from g2vlm_core.geometry.segmentation import Segmenter

from ._render import orbit_poses, render

BOXES = [Box3D([0.0, -0.25, 0.06], [0.09, 0.09, 0.12]), Box3D([0.0, 0.25, 0.06], [0.09, 0.09, 0.12]),
         Box3D([0.35, 0.0, 0.1], [0.3, 0.25, 0.2])]
COLORS = [(0.85, 0.1, 0.1), (0.1, 0.2, 0.85), (0.9, 0.8, 0.1)]
LABELS = ["mug", "mug", "box"]


class OracleInference:
    """Stands in for G2VLMInference: the true instances of a rendered frame, with the model's output types."""

    def __init__(self, frames_by_pose, score: float = 0.9, fail: bool = False):
        self.frames, self.score, self.fail = frames_by_pose, score, fail

    def process_keyframe(self, rgb, depth_m, K, T_world_cam):
        if self.fail:
            raise ValueError("depth has no valid pixel")
        frame = self.frames[id(rgb)]
        ids = frame.extras["instance_ids"].astype(np.int32)
        insts = []
        for k, label in enumerate(LABELS, start=1):
            m = ids == k
            emb = np.zeros(8, np.float32)
            emb[k] = 1.0
            insts.append(InstanceProposal(mask=m, label=label, semantic_id=k, score=self.score, box=BOXES[k - 1],
                                          embedding=emb, centroid=BOXES[k - 1].center,
                                          mean_color=np.array(COLORS[k - 1]), pixel_count=int(m.sum())))
        return KeyframeResult(depth_m, np.zeros(depth_m.shape + (3,), np.float32), np.ones_like(depth_m),
                              ids, ids, insts)

    def embed_text(self, text):
        return np.ones(8, np.float32)


def _frames(n=4):
    return [render(BOXES, COLORS, T, stamp_s=0.1 * i, index=i) for i, T in enumerate(orbit_poses(n))]


def test_model_instances_become_labelled_objects_that_queries_can_name():
    frames = _frames()
    oracle = OracleInference({id(f.rgb): f for f in frames})
    cfg = PipelineConfig(keyframe_every_n=1)
    labeller = ModelLabeller(oracle, Segmenter(cfg.segmenter))
    pipe = PerceptionPipeline(cfg, labeller)
    for f in frames:
        assert pipe.process(f).fused
    graph = pipe.snapshot()
    labelled = [o for o in graph.objects if o.label in ("mug", "box")]
    assert sorted(o.label for o in labelled) == ["box", "mug", "mug"]
    assert all(o.embedding is not None and o.embedding.shape == (8,) for o in labelled)
    # each labelled object sits where its true box is
    for o in labelled:
        best = max(box_iou_3d(o.box, b) for b, lab in zip(BOXES, LABELS) if lab == o.label)
        assert best > 0.3, (o.label, o.box)
    res = QueryEngine().answer(graph, "the red mug")
    assert res.achievable
    red = graph.object_by_id(res.object_ids[0])
    assert box_iou_3d(red.box, BOXES[0]) > 0.3 and box_iou_3d(red.box, BOXES[1]) == 0.0


def test_low_score_instances_are_dropped_and_model_errors_fall_back_to_geometry():
    frames = _frames(2)
    seg = Segmenter(PipelineConfig().segmenter)
    weak = ModelLabeller(OracleInference({id(f.rgb): f for f in frames}, score=0.1), seg, min_score=0.3)
    segs = weak(frames[0], frames[0].T_world_cam)
    assert not [s for s in segs if s.label in ("mug", "box")]
    failing = ModelLabeller(OracleInference({}, fail=True), seg)
    assert failing(frames[0], frames[0].T_world_cam) is None  # the pipeline then segments geometrically


def test_real_tiny_model_runs_through_the_labeller(tmp_path):
    text = write_tiny_text_encoder(tmp_path / "bert")
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "ck", G2VLM(tiny_config(text)))
    frames = [render(BOXES, COLORS, T, stamp_s=0.1 * i) for i, T in enumerate(orbit_poses(2))]
    small = [f.__class__(f.rgb[::10, ::10].copy(), f.depth_m[::10, ::10].copy(), f.intrinsics.scaled(0.1),
                         f.T_world_cam, f.stamp_s) for f in frames]
    cfg = PipelineConfig(keyframe_every_n=1)
    labeller = ModelLabeller.from_checkpoint(path, Segmenter(cfg.segmenter), "cpu", min_score=0.0)
    pipe = PerceptionPipeline(cfg, labeller)
    for f in small:
        assert pipe.process(f).fused
    assert labeller.calls == 2
    assert labeller.embed_text("a red mug").shape == (tiny_config(text).embed_dim,)


def test_resolve_checkpoint(tmp_path):
    assert resolve_checkpoint("none") is None
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_checkpoint(str(tmp_path / "missing"))
    assert resolve_checkpoint(str(tmp_path)) == tmp_path


class DownscalingOracle:
    """The true instances at whatever size the labeller hands over (nearest-neighbour of the full-size ids)."""

    def __init__(self, full_ids):
        self.full_ids, self.shapes = full_ids, []

    def process_keyframe(self, rgb, depth_m, K, T_world_cam):
        self.shapes.append(depth_m.shape)
        H, W = self.full_ids.shape
        h, w = depth_m.shape
        ids = self.full_ids[((np.arange(h) + 0.5) * H / h).astype(int)[:, None],
                            ((np.arange(w) + 0.5) * W / w).astype(int)[None, :]].astype(np.int32)
        insts = [InstanceProposal(mask=ids == k, label=lab, semantic_id=k, score=0.9, box=BOXES[k - 1],
                                  embedding=np.eye(8, dtype=np.float32)[k], centroid=BOXES[k - 1].center,
                                  mean_color=np.array(COLORS[k - 1]), pixel_count=int((ids == k).sum()))
                 for k, lab in enumerate(LABELS, start=1)]
        return KeyframeResult(depth_m, np.zeros(depth_m.shape + (3,), np.float32), np.ones_like(depth_m), ids, ids,
                              insts)


def test_input_width_downscales_for_the_model_and_maps_masks_back_to_the_frame():
    frame = _frames(1)[0]
    H, W = frame.depth_m.shape
    seg = Segmenter(PipelineConfig().segmenter)
    full_oracle, small_oracle = DownscalingOracle(frame.extras["instance_ids"]), DownscalingOracle(
        frame.extras["instance_ids"])
    full = ModelLabeller(full_oracle, seg, keep_planes=False)(frame, frame.T_world_cam)
    small = ModelLabeller(small_oracle, seg, keep_planes=False, input_width=W // 2)(frame, frame.T_world_cam)
    assert full_oracle.shapes == [(H, W)] and small_oracle.shapes == [(H // 2, W // 2)]
    assert sorted(s.label for s in small) == sorted(s.label for s in full) == sorted(LABELS)
    for a in full:  # the same objects, the points from full-resolution depth: boxes agree up to mask edges
        b = next(s for s in small if s.instance_id == a.instance_id)
        assert box_iou_3d(Box3D.from_points(a.points_world), Box3D.from_points(b.points_world)) > 0.7
    with pytest.raises(ValueError, match="input_width"):
        ModelLabeller(full_oracle, seg, input_width=-1)


def test_labeller_runs_the_model_at_the_width_it_was_trained_at(tmp_path):
    text = write_tiny_text_encoder(tmp_path / "bert")
    cfg = PipelineConfig()
    plain = save_checkpoint(tmp_path / "plain", G2VLM(tiny_config(text)))
    assert ModelLabeller.from_checkpoint(plain, Segmenter(cfg.segmenter)).input_width == 0  # not recorded: native
    trained = save_checkpoint(tmp_path / "trained", G2VLM(tiny_config(text)), extra={"train": {"image_hw": [120, 160]}})
    assert ModelLabeller.from_checkpoint(trained, Segmenter(cfg.segmenter)).input_width == 160
    assert ModelLabeller.from_checkpoint(trained, Segmenter(cfg.segmenter), input_width=320).input_width == 320


class MissingOneOracle(DownscalingOracle):
    """True instances except the box (label 3), whose pixels the semantics still call "box"; embeds regions."""

    class cfg:
        semantic_names = ("void", "mug", "mug", "box")

    thing_ids = (1, 2, 3)

    def process_keyframe(self, rgb, depth_m, K, T_world_cam, regions=None):
        r = super().process_keyframe(rgb, depth_m, K, T_world_cam)
        self.regions = regions
        r.semantic_ids = r.instance_map.copy()
        r.instances = r.instances[:2]
        r.instance_map = np.where(r.instance_map == 3, 0, r.instance_map)
        if regions is not None:
            r.region_embeddings = {int(i): np.eye(8, dtype=np.float32)[7] for i in np.unique(regions) if i > 0}
        return r


def test_geometry_fill_adds_the_objects_the_model_missed_with_its_semantics():
    frame = _frames(1)[0]
    seg = Segmenter(PipelineConfig().segmenter)
    oracle = MissingOneOracle(frame.extras["instance_ids"])
    without = ModelLabeller(oracle, seg, keep_planes=False)(frame, frame.T_world_cam)
    assert sorted(s.label for s in without) == ["mug", "mug"] and oracle.regions is None
    filled = ModelLabeller(oracle, seg, keep_planes=False, geometry_fill=True)(frame, frame.T_world_cam)
    assert oracle.regions is not None and oracle.regions.shape == frame.depth_m.shape
    added = [s for s in filled if s.source == "geometry"]
    # the box is added once, labelled from the semantics and embedded; the mugs are not added twice
    assert [s.label for s in added] == ["box"] and sorted(s.label for s in filled) == ["box", "mug", "mug"]
    assert added[0].embedding is not None and added[0].embedding[7] == 1.0
    assert box_iou_3d(Box3D.from_points(added[0].points_world), BOXES[2]) > 0.3


def test_whole_object_boxes_of_a_model_with_the_amodal_head_reach_the_segments(tmp_path):
    text = write_tiny_text_encoder(tmp_path / "bert")
    torch.manual_seed(0)
    model = G2VLM(tiny_config(text, amodal_boxes=True))
    torch.nn.init.constant_(model.amodal.net[-1].bias, 0.2)
    path = save_checkpoint(tmp_path / "ck", objects_everywhere(model))
    f = render(BOXES, COLORS, orbit_poses(1)[0])
    small = f.__class__(f.rgb[::10, ::10].copy(), f.depth_m[::10, ::10].copy(), f.intrinsics.scaled(0.1),
                        f.T_world_cam, f.stamp_s)
    labeller = ModelLabeller.from_checkpoint(path, Segmenter(PipelineConfig().segmenter), "cpu", min_score=0.0)
    masks = [s for s in labeller(small, small.T_world_cam) if s.source == "mask"]
    assert masks and all(s.amodal_box is not None for s in masks)
    for s in masks:  # the box of the segment's own points, grown by the head's 0.2 m
        v = visible_box(s.points_world)
        assert np.allclose(s.amodal_box.size, np.maximum(v.size + 0.4, 0.01), atol=1e-3)
        assert np.allclose(s.amodal_box.center, v.center, atol=1e-3)


def test_labeller_grounds_scene_objects_for_the_query_engine(tmp_path):
    from g2vlm_core.predicates import Viewpoint
    from g2vlm_core.scene_graph import SceneObject
    text = write_tiny_text_encoder(tmp_path / "bert")
    torch.manual_seed(0)
    cfg = tiny_config(text)
    labeller = ModelLabeller.from_checkpoint(save_checkpoint(tmp_path / "ck", G2VLM(cfg)),
                                             Segmenter(PipelineConfig().segmenter))
    rng = np.random.default_rng(0)
    objs = [SceneObject(i, "mug", b, embedding=None if i == 1 else rng.normal(size=cfg.embed_dim))
            for i, b in enumerate(BOXES)]
    view = Viewpoint(np.array([-1.0, 0.0, 0.5]), np.array([1.0, 0.0, -0.3]))
    s = labeller.ground("the red mug", objs, view)
    assert s.shape == (3,) and s[1] == -np.inf and np.isfinite(s[[0, 2]]).all()
    # The same scores as the inference API from that camera pose.
    ref = labeller.inference.ground("the red mug", np.stack([objs[0].embedding, objs[2].embedding]),
                                    [objs[0].box, objs[2].box], view.pose())
    assert np.allclose(s[[0, 2]], ref)
    assert labeller.ground("the red mug", objs, None) is None  # no viewpoint: the query engine keeps its rules
    assert labeller.ground("the red mug", [objs[1]], view) is None
    other = [SceneObject(0, "mug", BOXES[0], embedding=np.ones(cfg.embed_dim + 3))]  # a map from another model
    assert labeller.ground("the red mug", other, view) is None
