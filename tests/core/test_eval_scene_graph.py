"""Scene-graph evaluation on hand-built scenes with exact expected values."""
from __future__ import annotations

import numpy as np
import pytest

from g2vlm_core.eval.scene_graph import (SceneGraphEvalConfig, evaluate_scene_graph, match_objects, relation_metrics,
                                         relation_triplets)
from g2vlm_core.predicates import Viewpoint
from g2vlm_core.scene_graph import Box3D, SceneGraph, SceneObject, SpatialRelation
from g2vlm_core.synth.records import ReferringExpression


def obj(i: int, label: str, center, size, yaw: float = 0.0) -> SceneObject:
    return SceneObject(i, label, Box3D(center, size, yaw))


# GT: a mug standing on a table and a chair 1.25 m away from the table.
TABLE = obj(1, "table", (0, 0, 0.4), (1, 1, 0.8))
MUG = obj(2, "mug", (0, 0, 0.85), (0.1, 0.1, 0.1))
CHAIR = obj(3, "chair", (2, 0, 0.45), (0.5, 0.5, 0.9))
GT = [TABLE, MUG, CHAIR]
# Prediction: the table exactly; the mug 5 cm too high (IoU 1/3, and a 5 cm gap breaks "on"); no chair.
PRED = [obj(10, "table", (0, 0, 0.4), (1, 1, 0.8)), obj(11, "mug", (0, 0, 0.9), (0.1, 0.1, 0.1))]


def test_match_objects_thresholds_and_iou():
    m25 = match_objects(GT, PRED, 0.25)
    assert sorted((g, p) for g, p, _ in m25.pairs) == [(0, 0), (1, 1)]
    ious = {g: iou for g, _, iou in m25.pairs}
    assert ious[0] == pytest.approx(1.0) and ious[1] == pytest.approx(1 / 3)
    assert [(g, p) for g, p, _ in match_objects(GT, PRED, 0.5).pairs] == [(0, 0)]
    assert match_objects([], PRED, 0.25).pairs == [] and match_objects(GT, [], 0.25).pairs == []


def test_match_objects_is_optimal_not_greedy():
    # greedy would take (0, 0) = 0.9 and leave GT 1 unmatched; the assignment takes 0.8 + 0.85
    iou = np.array([[0.9, 0.8], [0.85, 0.0]])
    m = match_objects(GT[:2], PRED, 0.25, iou=iou)
    assert sorted((g, p) for g, p, _ in m.pairs) == [(0, 1), (1, 0)]
    # below-threshold pairs never displace an above-threshold one
    m = match_objects(GT[:2], PRED, 0.5, iou=np.array([[0.6, 0.3], [0.3, 0.0]]))
    assert [(g, p) for g, p, _ in m.pairs] == [(0, 0)]


def test_relation_triplets_of_the_hand_built_scene():
    assert relation_triplets(GT, {}) == {(2, "on", 1, ""), (1, "under", 2, ""), (2, "above", 1, ""),
                                         (1, "below", 2, ""), (2, "near", 1, ""), (1, "near", 2, "")}
    # mug 5 cm above the table: still above / near, no longer on / under
    assert relation_triplets(PRED, {}) == {(11, "above", 10, ""), (10, "below", 11, ""), (11, "near", 10, ""),
                                           (10, "near", 11, "")}
    # view-dependent predicates per reference view, tagged with its id: viewer at y = -3 looking along +y
    vp = Viewpoint(np.array([0.0, -3.0, 1.0]), np.array([0.0, 1.0, 0.0]), "frame_000000")
    t = relation_triplets(GT, {"frame_000000": vp})
    assert (1, "left_of", 3, "frame_000000") in t and (3, "right_of", 1, "frame_000000") in t
    assert relation_triplets(GT[:1], {}) == set()


def test_relation_metrics_exact():
    gt_t = relation_triplets(GT, {})
    pred_t = relation_triplets(PRED, {})
    m = match_objects(GT, PRED, 0.25)
    acc, rec, rec_m = relation_metrics(GT, gt_t, PRED, pred_t, m, [])
    # 2 matched objects -> 2 ordered pairs x 6 view-independent predicates = 12 decisions; on and under wrong
    assert acc == pytest.approx(10 / 12)
    assert rec == pytest.approx(4 / 6) and rec_m == pytest.approx(4 / 6)
    # no matches: nothing to decide, every GT triplet missed
    acc0, rec0, _ = relation_metrics(GT, gt_t, PRED, pred_t, match_objects(GT, PRED, 0.99), [])
    assert np.isnan(acc0) and rec0 == 0.0


def test_evaluate_scene_graph_exact_values():
    expressions = [ReferringExpression("the table", 1, "category"), ReferringExpression("the mug", 2, "category"),
                   ReferringExpression("the chair", 3, "category")]
    gt_rel_objs = relation_triplets(GT, {})
    gt_relations = [SpatialRelation(s, p, o, 1.0, ref) for s, p, o, ref in sorted(gt_rel_objs)]
    r = evaluate_scene_graph("hand", SceneGraph(objects=PRED), GT, gt_relations, {}, expressions,
                             SceneGraphEvalConfig())
    m = r.metrics()
    assert m["matched@0.25"] == pytest.approx(2 / 3) and m["matched@0.5"] == pytest.approx(1 / 3)
    assert m["mean_matched_iou"] == pytest.approx((1 + 1 / 3) / 2)
    assert m["predicate_accuracy"] == pytest.approx(10 / 12) and m["triplet_recall"] == pytest.approx(4 / 6)
    # table: IoU 1; mug: IoU 1/3 (hit at 0.25, miss at 0.5); chair: not in the map -> not achievable
    assert m["acc@0.25"] == pytest.approx(2 / 3) and m["acc@0.5"] == pytest.approx(1 / 3)
    assert m["r@1"] == pytest.approx(2 / 3) and m["r@5"] == pytest.approx(2 / 3)
    q = {e.text: e for e in r.queries}
    assert q["the table"].answered_id == 10 and q["the table"].rank == 1
    assert q["the mug"].iou == pytest.approx(1 / 3)
    assert not q["the chair"].achievable and q["the chair"].answered_id is None and q["the chair"].rank is None
    d = r.to_dict()
    assert d["n_gt"] == 3 and d["n_pred"] == 2 and len(d["queries"]) == 3


def test_perfect_prediction_scores_one():
    expressions = [ReferringExpression("the mug on the table", 2, "relation")]
    rels = [SpatialRelation(s, p, o, 1.0, ref) for s, p, o, ref in relation_triplets(GT, {})]
    r = evaluate_scene_graph("same", SceneGraph(objects=GT), GT, rels, {}, expressions)
    assert all(v == pytest.approx(1.0) for v in r.metrics().values())
