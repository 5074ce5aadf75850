"""The through-the-node query evaluation's scoring: responses read as results, answered boxes mapped to the truth,
the map-readiness of a case, the report, and the in-process re-answering over saved maps (--from-maps); the node
run itself is a command: python -m g2vlm_ros.query_eval."""
from __future__ import annotations

import json

import yaml

from g2vlm_core.eval.queries import check, gt_graph, scene_cases
from g2vlm_core.language.labels import LabelMatcher
from g2vlm_core.scene_graph import Box3D, SceneObject
from g2vlm_ros import conversions as cv
from g2vlm_ros.demo import ensure_scene
from g2vlm_ros.query_eval import REPO, gt_mapper, main, map_ready, report, result_of, scene_truth
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


def test_the_truth_holds_what_the_replayed_frames_show(tmp_path):
    """By default no case asks about an object the camera never saw (the model card's "seen" rule); with
    seen_only=False every object of the scene."""
    from g2vlm_core.synth.dataset import SynthScene

    seed = 18
    scene = ensure_scene(tmp_path / f"seed_{seed}", seed, 2, 160, 120)
    templates = yaml.safe_load((REPO / "tests" / "core" / "data" / "language_dev_set.yaml").read_text())["gt_templates"]
    every = scene_truth(scene, templates, seed, seen_only=False)
    seen = scene_truth(scene, templates, seed)
    want = {o.id for o in SynthScene(scene).seen_objects()}
    assert {o.id for o in seen.objects} == want and len(want) < len(every.objects)
    assert {o.id for o in every.objects} == {o.id for o in SynthScene(scene).objects}
    assert all(set(c.names) <= want for c in seen.cases)
    assert any(not set(c.names) <= want for c in every.cases)


def test_from_maps_answers_in_process_as_the_node_would(tmp_path):
    """A val scene's ground truth saved as "the node's map": the node's engine (the shipped model's hooks, every query
    from the live camera) answers in process through SpatialQuery responses, scored as through the node; over the
    true objects it must get what the ceiling gets."""
    seed = 8
    data = tmp_path / "data"
    scene = ensure_scene(data / f"seed_{seed}", seed, 2, 80, 60)
    templates = yaml.safe_load((REPO / "tests" / "core" / "data" / "language_dev_set.yaml").read_text())["gt_templates"]
    truth = scene_truth(scene, templates, seed, seen_only=False)  # two tiny frames show few objects: ask about all
    for o in truth.graph.objects:
        o.observation_count = 5  # confirmed, as a map's objects seen in several keyframes
    maps = tmp_path / "maps"
    maps.mkdir()
    (maps / f"{truth.name}.json").write_text(json.dumps(truth.graph.to_dict()))
    out = tmp_path / "log.json"
    assert main(["--split", "val", "--scenes", "1", "--frames", "2", "--width", "80", "--height", "60",
                 "--data", str(data), "--from-maps", str(maps), "--json", str(out), "--all-objects"]) == 0
    log = json.loads(out.read_text())
    assert len(log) == len(truth.cases) > 40
    assert all(r["gt_right"] for r in log)
    assert [r["query"] for r in log if not r["node_right"]] == []
    assert all(r["map_ready"] in (True, None) for r in log)
