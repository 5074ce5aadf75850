"""Inference API: keyframe outputs, cached text embeddings, relation scoring, grounding, and bad-input errors."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from g2vlm_core.geometry.camera import GeometryError  # noqa: E402
from g2vlm_core.model import G2VLM  # noqa: E402
from g2vlm_core.model.checkpoint import save_checkpoint  # noqa: E402
from g2vlm_core.model.data import toy_frame  # noqa: E402
from g2vlm_core.model.inference import G2VLMInference, group_components, group_instances  # noqa: E402
from g2vlm_core.model.testing import objects_everywhere, tiny_config, write_tiny_text_encoder  # noqa: E402
from g2vlm_core.predicates import PREDICATES  # noqa: E402


@pytest.fixture(scope="module")
def inf(tmp_path_factory):
    text = write_tiny_text_encoder(tmp_path_factory.mktemp("tiny_bert"))
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path_factory.mktemp("ck") / "m", G2VLM(tiny_config(text)))
    return G2VLMInference.from_checkpoint(path, "cpu")


def test_keyframe_outputs(inf):
    frame, objs = toy_frame(1, 48, 64)
    r = inf.process_frame(frame)
    assert r.depth_m.shape == (48, 64) and r.normals_cam.shape == (48, 64, 3) and r.confidence.shape == (48, 64)
    assert np.isfinite(r.depth_m).all() and (r.depth_m > 0).all()
    assert r.instance_map.shape == (48, 64)
    for k, inst in enumerate(r.instances):
        assert inst.mask.shape == (48, 64) and inst.mask.sum() == inst.pixel_count > 0
        assert (r.instance_map[inst.mask] == k + 1).all()
        assert inst.embedding.shape == (inf.cfg.embed_dim,)
        assert abs(np.linalg.norm(inst.embedding) - 1) < 1e-4
        assert inst.label in inf.cfg.semantic_names
    pts, cols = r.points(frame.intrinsics.K, frame.T_world_cam, frame.rgb)
    assert pts.shape == cols.shape and pts.shape[1] == 3


def test_batch_matches_single(inf):
    f1, _ = toy_frame(1, 48, 64)
    f2, _ = toy_frame(2, 48, 64)
    rs = inf.process_batch([f1.rgb, f2.rgb], [f1.depth_m, f2.depth_m], [f1.intrinsics.K] * 2,
                           [f1.T_world_cam, f2.T_world_cam])
    r2 = inf.process_frame(f2)
    np.testing.assert_allclose(rs[1].depth_m, r2.depth_m, atol=1e-5)


def test_text_embedding_is_cached(inf):
    e1 = inf.embed_text("the red mug")
    misses = inf.model.text.misses
    e2 = inf.embed_text("the red mug")
    assert e1 is e2 and inf.model.text.misses == misses
    assert abs(np.linalg.norm(e1) - 1) < 1e-5
    with pytest.raises(ValueError):
        inf.embed_text("  ")


def test_relations_and_grounding_over_boxes(inf):
    frame, objs = toy_frame(3, 48, 64)
    boxes = [o.box for o in objs]
    rel = inf.score_relations(boxes, frame.T_world_cam)
    assert set(rel) == set(PREDICATES)
    for m in rel.values():
        assert m.shape == (len(boxes), len(boxes)) and (np.diag(m) == 0).all() and ((m >= 0) & (m <= 1)).all()
    emb = np.random.default_rng(0).normal(size=(len(boxes), inf.cfg.embed_dim))
    s = inf.ground("the red mug", emb, boxes, frame.T_world_cam)
    assert s.shape == (len(boxes),) and np.isfinite(s).all()
    ans, p = inf.answer("is there a mug?", emb, boxes, frame.T_world_cam)
    assert ans in inf.cfg.answer_vocab and abs(p.sum() - 1) < 1e-4


def test_bad_inputs(inf):
    frame, _ = toy_frame(1, 48, 64)
    K, T = frame.intrinsics.K, frame.T_world_cam
    with pytest.raises(ValueError, match="no valid pixel"):
        inf.process_keyframe(frame.rgb, np.full((48, 64), np.nan, np.float32), K, T)
    with pytest.raises(ValueError, match="no valid pixel"):
        inf.process_keyframe(frame.rgb, np.zeros((48, 64), np.float32), K, T)
    with pytest.raises(GeometryError):
        inf.process_keyframe(frame.rgb, frame.depth_m[:40], K, T)
    with pytest.raises(GeometryError):
        inf.process_keyframe(frame.rgb, frame.depth_m, K, np.full((4, 4), np.nan))
    with pytest.raises(ValueError):
        inf.score_relations([], T)
    # Mostly-NaN depth and NaN colour still give finite outputs.
    depth = frame.depth_m.copy()
    depth[:, :50] = np.nan
    rgb = frame.rgb.astype(np.float32) / 255
    rgb[:10] = np.nan
    r = inf.process_keyframe(rgb, depth, K, T)
    assert np.isfinite(r.depth_m).all() and np.isfinite(r.normals_cam).all() and np.isfinite(r.confidence).all()


def test_group_instances_separates_votes():
    S, h, w = 5, 8, 8
    prob = torch.zeros(S, h, w)
    prob[4] = 1.0
    votes = torch.zeros(3, h, w)
    votes[:, :, 4:] = torch.tensor([1.0, 0, 0])[:, None, None]  # right half votes for another centre
    imap, info = group_instances(prob, votes, torch.ones(h, w, dtype=torch.bool), [4], 0.2, 3, 10)
    assert len(info) == 2 and info[0][0] == 4
    assert len(imap[:, :4].unique()) == 1 and len(imap[:, 4:].unique()) == 1 and imap[0, 0] != imap[0, 7]


def test_group_components_cuts_at_depth_jumps_and_drops_small_regions():
    S, h, w = 5, 10, 12
    prob = torch.zeros(S, h, w)
    prob[0] = 1.0  # background
    prob[:, 2:8, 1:11] = 0.0
    prob[3, 2:8, 1:11] = 1.0  # one class over a 6 x 10 block ...
    prob[:, 0, 0], prob[3, 0, 0] = 0.0, 1.0  # ... and a one-pixel speck of it
    depth = torch.full((h, w), 3.0)
    depth[2:8, 1:6] = 1.0  # ... made of two objects: a near left half and a far right half
    depth[2:8, 6:11] = 1.6
    imap, info = group_components(prob, depth, torch.ones(h, w, dtype=torch.bool), [3], 0.05, 4, 10)
    assert [c for c, _ in info] == [3, 3]
    left, right = imap[2:8, 1:6], imap[2:8, 6:11]
    assert len(left.unique()) == 1 and left[0, 0] > 0
    assert (right[:, 1:] == right[0, 1]).all() and right[0, 1] > 0 and right[0, 1] != left[0, 0]
    assert imap[0, 0] == 0  # below min_px
    # Without a depth jump the block is one instance; invalid depth is never part of one.
    valid = torch.ones(h, w, dtype=torch.bool)
    valid[2:8, 1] = False
    imap, info = group_components(prob, torch.full((h, w), 1.0), valid, [3], 0.05, 4, 10)
    assert len(info) == 1 and (imap[2:8, 2:11] == 1).all() and (imap[2:8, 1] == 0).all()


def test_component_grouping_runs_through_the_inference_api(tmp_path):
    text = write_tiny_text_encoder(tmp_path / "bert")
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "m", G2VLM(tiny_config(text)))
    inf = G2VLMInference.from_checkpoint(path, "cpu", instance_grouping="components")
    frame, _ = toy_frame(1, 48, 64)
    r = inf.process_frame(frame)
    assert r.instance_map.shape == (48, 64)
    for k, p in enumerate(r.instances, start=1):
        assert (r.instance_map == k).sum() == p.pixel_count and np.isfinite(p.box.size).all()
    with pytest.raises(ValueError, match="instance_grouping"):
        G2VLMInference.from_checkpoint(path, "cpu", instance_grouping="nope")


def test_amodal_box_head_sets_instance_and_region_boxes(tmp_path):
    text = write_tiny_text_encoder(tmp_path / "bert")
    torch.manual_seed(0)
    model = objects_everywhere(G2VLM(tiny_config(text, amodal_boxes=True)))
    torch.nn.init.constant_(model.amodal.net[-1].bias, 0.1)  # every face 0.1 m outside the visible part's box
    path = save_checkpoint(tmp_path / "m", model)
    inf = G2VLMInference.from_checkpoint(path, "cpu")
    frame, _ = toy_frame(1, 48, 64)
    regions = np.zeros((48, 64), np.int32)
    regions[10:30, 10:30] = 3
    r = inf.process_keyframe(frame.rgb, frame.depth_m, frame.intrinsics.K, frame.T_world_cam, regions=regions)
    assert r.instances
    for p in r.instances:
        v = p.visible_box
        assert np.allclose(p.box.size, v.size + 0.2, atol=1e-4) and np.allclose(p.box.center, v.center, atol=1e-4)
        assert p.box.yaw == pytest.approx(v.yaw, abs=1e-6) and np.allclose(p.box_faces, 0.1, atol=1e-5)
    assert set(r.region_faces) == {3} and set(r.region_embeddings) == {3}
    # A model without the head: boxes are those of the visible parts, no region boxes.
    plain = objects_everywhere(G2VLM(tiny_config(text)))
    plain = G2VLMInference.from_checkpoint(save_checkpoint(tmp_path / "p", plain), "cpu")
    r = plain.process_keyframe(frame.rgb, frame.depth_m, frame.intrinsics.K, frame.T_world_cam, regions=regions)
    assert r.instances and all(p.box is not None and np.allclose(p.box.size, p.visible_box.size) for p in r.instances)
    assert r.region_faces == {} and all(p.box_faces is None for p in r.instances)
