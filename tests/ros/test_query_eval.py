"""The through-the-node query evaluation's scoring: responses read as results, answered boxes mapped to the truth,
the map-readiness of a case, and the report (the node run itself is a command: python -m g2vlm_ros.query_eval)."""
from __future__ import annotations

from g2vlm_core.eval.queries import check, gt_graph, scene_cases
from g2vlm_core.language.labels import LabelMatcher
from g2vlm_core.scene_graph import Box3D, SceneObject
from g2vlm_ros import conversions as cv
from g2vlm_ros.query_eval import gt_mapper, map_ready, report, result_of
from g2vlm_ros.srv import SpatialQuery

GT = [SceneObject(16, "sofa", Box3D([1, 1, 0.4], [2, 1, 0.8])),
      SceneObject(17, "mug", Box3D([3, 0, 0.8], [.1, .1, .1]))]


def test_an_answered_object_stands_for_the_true_object_its_box_overlaps():
    resp = SpatialQuery.Response(success=True, query_achievable=True, answer="couch #5 at ...",
                                 numeric_answer=float("nan"), object_ids=[5, 6], query_kind="find", confidence=0.8)
    resp.objects = [cv.scene_object_to_msg(SceneObject(5, "couch", Box3D([1.05, 1, 0.4], [2, 1, 0.8]))),
                    cv.scene_object_to_msg(SceneObject(6, "mug", Box3D([0, 3, 0.8], [.1, .1, .1])))]
    r = result_of(resp)
    gt_id = gt_mapper(resp, GT)
    assert gt_id(5) == 16 and gt_id(6) is None and gt_id(99) is None
    assert not check({"ids": [16]}, r, gt_id) and check({"ids": [17]}, r, gt_id)
    assert check({"all_ids": [16]}, r, gt_id)  # object 6 stands for nothing: the set differs (and no crash)


def test_a_case_is_map_ready_when_its_objects_are_mapped_with_their_label():
    m = LabelMatcher()
    couch = SceneObject(5, "couch", Box3D([1.05, 1, 0.4], [2, 1, 0.8]))
    box = SceneObject(6, "box", Box3D([1.05, 1, 0.4], [2, 1, 0.8]))
    assert map_ready([16], GT, [couch], m)  # "couch" names a sofa
    assert not map_ready([16], GT, [box], m)  # there, but named otherwise
    assert not map_ready([16, 17], GT, [couch], m)  # the mug is missing
    assert map_ready([], GT, [couch], m) is None  # a case that names no object


def test_a_case_names_every_object_of_the_categories_it_mentions():
    table = SceneObject(2, "table", Box3D([0, 0, 0.35], [0.8, 0.8, 0.7]))
    mugs = [SceneObject(3, "mug", Box3D([0, 0.2, 0.75], [.1, .1, .1])),
            SceneObject(4, "mug", Box3D([3, 0, 0.05], [.1, .1, .1]))]
    graph = gt_graph([table, *mugs], [4, 4])
    cases = scene_cases(graph, None, {"nearest": ["the {cat} nearest to the {a}"], "count": ["how many {cats}"],
                                      "count_absent": ["how many {cats}"]}, seed=1)
    by_text = {c.text: c for c in cases}
    assert sorted(by_text["the mug nearest to the table"].names) == [2, 3, 4]  # anchor, target and distractor
    assert sorted(by_text["how many mugs"].names) == [3, 4]
    assert all(not c.names for c in cases if c.family == "count_absent")


def test_the_report_gives_each_group_and_family_its_shares():
    log = [{"group": "question", "family": "count", "node_right": True, "gt_right": True, "map_ready": None},
           {"group": "question", "family": "count", "node_right": False, "gt_right": True, "map_ready": None},
           {"group": "referring", "family": "nearest", "node_right": True, "gt_right": True, "map_ready": True},
           {"group": "referring", "family": "nearest", "node_right": False, "gt_right": True, "map_ready": False}]
    text = report(log)
    assert "| questions | 2 | 50% | 100% | - |" in text
    assert "| referring expressions with relations or superlatives | 2 | 50% | 100% | 100% of 1 |" in text
    assert "| nearest | 2 | 50% | 100% | 100% of 1 |" in text
