"""Measure the query language through the node: synthetic test-split scenes replayed into the perception node.

    python -m g2vlm_ros.query_eval [--split test|val] [--scenes 5] [--frames 60] [--queries FILE] [--json OUT]
                                   [--save-maps DIR | --from-maps DIR]

Per scene (test split by default: seeds 9, 19, 29, ...; develop on --split val: 8, 18, 28, ...): makes (or reuses,
under --data) the scene and its rosbag2 (as ``make demo`` does), starts the perception node with the shipped
model, replays the bag into it at the recorded rate with flow control, then asks the template queries of
``--queries`` (their ``gt_templates``: by default the development set, tests/core/data/language_dev_set.yaml)
instantiated on the scene's ground truth (g2vlm_core.eval.queries) over the SpatialQuery service. The ground truth
is what the replayed frames show (objects one frame shows with >= 200 pixels, as the model card's in-map rows;
``--all-objects``: every object of the scene, also those the camera never saw). Every query is
asked from the live camera, whose last pose is the viewpoint of the view-dependent truths. An answered object
stands for the ground-truth object its box overlaps most at 3D IoU >= 0.25.

Prints the share right per family and per group (referring expressions with relations or superlatives;
questions; impossible or hostile queries, "handled" = refused or not achievable with a reason, the node alive)
beside the same queries answered over the ground-truth graph in process (the ceiling of the language), and the
node's share on the cases whose named objects the map holds with their label (every object of each category the
query names, targets, anchors and distractors alike, at box IoU >= 0.25 with a label that names the category): a
loss outside that subset is the map's, not the language's.

``--save-maps DIR`` keeps each scene's final map; ``--from-maps DIR`` then answers the same cases in process over
those maps with the query engine the node builds (the shipped model's hooks, the live camera as viewpoint): the
language's share through the node in seconds, with no replay (the map is the node's; only the engine is re-run).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from g2vlm_ros.dds import use_local_dds  # noqa: E402

use_local_dds()

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from g2vlm_core.eval.queries import QueryCase, check, gt_graph, scene_cases  # noqa: E402
from g2vlm_core.geometry.metrics import box_iou_matrix  # noqa: E402
from g2vlm_core.language.embedding import TextEmbedder  # noqa: E402
from g2vlm_core.language.labels import LabelMatcher  # noqa: E402
from g2vlm_core.language.query import QueryConfig, QueryEngine, QueryResult  # noqa: E402
from g2vlm_core.predicates import Viewpoint  # noqa: E402
from g2vlm_core.scene_graph import SceneGraph, SceneObject  # noqa: E402
from g2vlm_core.synth.config import split_of_seed  # noqa: E402
from g2vlm_core.synth.dataset import SynthScene  # noqa: E402

from g2vlm_ros import conversions as cv  # noqa: E402
from g2vlm_ros.demo import BAG_TOPICS, REPO, ensure_scene, perception_session, replay  # noqa: E402
from g2vlm_ros.srv import SpatialQuery  # noqa: E402

GROUP_NAMES = {"referring": "referring expressions with relations or superlatives", "question": "questions",
               "impossible": "impossible or hostile queries (handled)"}
MATCH_IOU = 0.25
SPLIT_DIGIT = {"test": 9, "val": 8}  # the first seed of each split (g2vlm_core.synth.config.split_of_seed)


def result_of(resp) -> QueryResult:
    """A SpatialQuery response as the QueryResult the checker reads."""
    return QueryResult(success=resp.success, achievable=resp.query_achievable, answer=resp.answer,
                       numeric=resp.numeric_answer, object_ids=list(resp.object_ids), kind=resp.query_kind,
                       confidence=resp.confidence)


def gt_mapper(resp, gt: list[SceneObject]):
    """Predicted object id -> the ground-truth id whose box overlaps its box most (IoU >= MATCH_IOU), else None;
    the predicted boxes are those the response carries."""
    boxes = {int(m.id): cv.scene_object_from_msg(m).box for m in resp.objects}
    gt_boxes = [o.box for o in gt]

    def gt_id(i: int) -> int | None:
        if i not in boxes or not gt_boxes:
            return None
        iou = box_iou_matrix([boxes[i]], gt_boxes)[0]
        j = int(np.argmax(iou))
        return gt[j].id if iou[j] >= MATCH_IOU else None

    return gt_id


def map_ready(want: list[int], gt: list[SceneObject], pred: list[SceneObject], matcher: LabelMatcher) -> bool | None:
    """Whether every ground-truth object of ``want`` (a case's QueryCase.names: targets, anchors and their
    distractors) has a map object at 3D IoU >= MATCH_IOU whose label names it (None for cases that name no object):
    where this fails, the map, not the language, loses the case."""
    if not want:
        return None
    by_id = {o.id: o for o in gt}
    if not pred:
        return False
    iou = box_iou_matrix([by_id[i].box for i in want], [o.box for o in pred])
    return all(any(iou[k, j] >= MATCH_IOU and matcher.match(by_id[i].label, [pred[j].label])
                   for j in range(len(pred))) for k, i in enumerate(want))


@dataclass
class SceneTruth:
    """One synthetic scene's ground truth and its template cases."""

    name: str
    objects: list[SceneObject]
    graph: SceneGraph  # the ground-truth graph (the language's ceiling)
    view: Viewpoint  # the camera's last pose: the node's live viewpoint once the bag is replayed
    cases: list[QueryCase]


def scene_truth(scene_dir: Path, templates: dict, seed: int, seen_only: bool = True) -> SceneTruth:
    """``seen_only``: the truth holds the objects the replayed frames show (synth.dataset.SEEN_MIN_PIXELS, as the
    model card's in-map rows), so no case asks about an object the camera never saw; else every object."""
    scene = SynthScene(scene_dir)
    meta = scene.meta
    objects = scene.seen_objects() if seen_only else list(scene.objects)
    graph = gt_graph(objects, meta["room"]["size_m"])
    view = Viewpoint.from_pose(np.asarray(meta["frames"][-1]["T_world_cam"], dtype=np.float64), "camera")
    return SceneTruth(meta["name"], objects, graph, view, scene_cases(graph, view, templates, seed, view_key="live"))


def score_case(t: SceneTruth, c: QueryCase, resp, pred: list[SceneObject], ceiling: QueryEngine,
               matcher: LabelMatcher) -> dict:
    """The log record of one case: the node's response ``resp`` (None: no response) scored against the truth,
    beside the ceiling's answer over the ground-truth graph."""
    if resp is None:
        node_bad = ["no response within 30 s"]
        r = QueryResult(success=False, answer="")
    else:
        r = result_of(resp)
        node_bad = check(c.expect, r, gt_mapper(resp, t.objects))
    g = ceiling.answer(t.graph, c.text, viewpoint=t.view if c.viewpoint else None)
    return {"scene": t.name, "family": c.family, "group": c.group, "query": c.text, "expect": c.expect,
            "node_right": not node_bad, "node_answer": r.answer, "node_problems": node_bad,
            "node_ids": list(r.object_ids), "gt_right": not check(c.expect, g), "gt_answer": g.answer,
            "map_ready": map_ready(c.names, t.objects, pred, matcher)}


def run_scene(scene_dir: Path, templates: dict, seed: int, ceiling: QueryEngine, log: list[dict],
              save_maps: Path | None = None, seen_only: bool = True) -> bool:
    """Replay one scene into a fresh node and ask its cases; appends one record per case to ``log``. Returns
    whether the node was alive after the last query."""
    t = scene_truth(scene_dir, templates, seed, seen_only)
    with perception_session("g2vlm_query_eval", timeout_s=120.0) as ses:
        graphs = ses.graphs
        stats = replay(ses.node, ses.ex, scene_dir / "bag", graphs, progress=False)
        resps = [ses.call(ses.query, SpatialQuery.Request(query=c.text)) for c in t.cases]
        # the map as the queries found it: the keyframe thread may publish once more after the replay's end
        pred_graph = cv.scene_graph_from_msg(graphs[-1]) if graphs else None
        pred = pred_graph.objects if pred_graph else []
        if save_maps is not None and pred_graph is not None:  # for re-answering the queries in process
            save_maps.mkdir(parents=True, exist_ok=True)
            (save_maps / f"{t.name}.json").write_text(json.dumps(pred_graph.to_dict()))
        print(f"{t.name}: {len(t.objects)} objects, {stats.published[BAG_TOPICS['depth_topic']]} frames replayed "
              f"in {stats.wall_s:.1f} s, {len(pred)} map objects; {len(t.cases)} queries")
        matcher = LabelMatcher()
        log.extend(score_case(t, c, r, pred, ceiling, matcher) for c, r in zip(t.cases, resps))
        return ses.node_proc.alive()


def node_engine() -> QueryEngine:
    """The query engine as the perception node of ``perception_node_process`` builds it: the shipped model's query
    hooks (its MiniLM, grounding head and vocabulary) and the parameters file's result count."""
    from g2vlm_core.geometry.segmentation import Segmenter, SegmenterConfig
    from g2vlm_core.recognition.factory import make_labeller

    params = yaml.safe_load((REPO / "config" / "perception.yaml").read_text())["/**"]["ros__parameters"]
    labeller = make_labeller("g2vlm", Segmenter(SegmenterConfig()), "cpu", params["model_checkpoint"])
    return QueryEngine(QueryConfig(default_max_results=params["query_max_results"]), **labeller.query_args())


def rescore_scene(scene_dir: Path, templates: dict, seed: int, ceiling: QueryEngine, engine: QueryEngine,
                  maps: Path, log: list[dict], seen_only: bool = True) -> None:
    """Ask one scene's cases in process over the map a node run saved (--save-maps), as the node's query service
    does (the live camera as the viewpoint of every query, the answer through a SpatialQuery response)."""
    t = scene_truth(scene_dir, templates, seed, seen_only)
    graph = SceneGraph.from_dict(json.loads((maps / f"{t.name}.json").read_text()))
    matcher = LabelMatcher()
    for c in t.cases:
        r = engine.answer(graph, c.text, viewpoint=t.view)
        resp = cv.query_result_to_response(r, graph, SpatialQuery.Response(), graph.stamp_s)
        log.append(score_case(t, c, resp, graph.objects, ceiling, matcher))


def report(log: list[dict]) -> str:
    def table(key: str, names: dict | None = None) -> list[str]:
        agg = defaultdict(lambda: [0, 0, 0, 0, 0])
        for r in log:
            a = agg[r[key]]
            a[0] += r["node_right"]
            a[1] += r["gt_right"]
            a[2] += 1
            if r["map_ready"]:
                a[3] += r["node_right"]
                a[4] += 1
        rows = [f"| {(names or {}).get(k, k)} | {a[2]} | {a[0] / a[2]:.0%} | {a[1] / a[2]:.0%} | "
                + (f"{a[3] / a[4]:.0%} of {a[4]}" if a[4] else "-") + " |" for k, a in sorted(agg.items())]
        return [f"| {key} | queries | through the node | over the ground-truth graph | through the node, every "
                f"object it names mapped with its label |", "|---|---|---|---|---|"] + rows

    return "\n".join(table("group", GROUP_NAMES) + [""] + table("family"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--split", choices=tuple(SPLIT_DIGIT), default="test",
                    help="scenes of this split: test (seeds 9, 19, 29, ...) or val (8, 18, 28, ...; develop on it)")
    ap.add_argument("--scenes", type=int, default=5, help="how many scenes of the split, every tenth seed")
    ap.add_argument("--first-seed", type=int, default=None,
                    help="first scene seed (default the split's first; seed %% 10 must be the split's digit)")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--queries", type=Path, default=REPO / "tests" / "core" / "data" / "language_dev_set.yaml",
                    help="YAML with gt_templates (family -> phrasings)")
    ap.add_argument("--data", type=Path, default=REPO / "data" / "query_eval")
    ap.add_argument("--json", type=Path, default=None, help="also write every query's outcome here")
    ap.add_argument("--save-maps", type=Path, default=None, help="also write each scene's final scene graph here")
    ap.add_argument("--from-maps", type=Path, default=None,
                    help="no node: answer the cases in process over the maps a --save-maps run wrote here, with the "
                         "query engine the node builds (seconds instead of minutes per scene)")
    ap.add_argument("--all-objects", action="store_true",
                    help="ask about every object of the scenes, also those the replayed frames never show (by "
                         "default only the objects one frame shows with >= 200 pixels)")
    a = ap.parse_args(argv)
    if a.first_seed is None:
        a.first_seed = SPLIT_DIGIT[a.split]
    if split_of_seed(a.first_seed) != a.split:
        ap.error(f"seed {a.first_seed} is not in the {a.split} split (seed % 10 == {SPLIT_DIGIT[a.split]})")
    templates = yaml.safe_load(a.queries.read_text())["gt_templates"]
    ceiling = QueryEngine(text_embedder=TextEmbedder.minilm())
    engine = node_engine() if a.from_maps else None
    log: list[dict] = []
    alive = True
    for k in range(a.scenes):
        seed = a.first_seed + 10 * k
        scene_dir = ensure_scene(a.data / f"seed_{seed}", seed, a.frames, a.width, a.height)
        if engine is not None:
            rescore_scene(scene_dir, templates, seed, ceiling, engine, a.from_maps, log, not a.all_objects)
        else:
            alive &= run_scene(scene_dir, templates, seed, ceiling, log, a.save_maps, not a.all_objects)
    print()
    print(report(log))
    if engine is None:
        print(f"\nnode alive after every scene's queries: {alive}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(log, indent=1, default=str))
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main())
