"""Two OS processes over real DDS: a map server publishes a SceneGraph and serves SpatialQuery; this test
process receives the graph and calls the service (real rclpy, no mocks)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from g2vlm_core.scene_graph import Box3D, SceneGraph, SceneObject
from g2vlm_ros import conversions as cv
from g2vlm_ros.msg import SceneGraph as SceneGraphMsg
from g2vlm_ros.qos import LATCHED
from g2vlm_ros.srv import SpatialQuery

from .conftest import NodeProcess, call, child_env, spin_until


def _graph() -> SceneGraph:
    objs = [SceneObject(11, "table", Box3D([2.0, 0.0, 0.375], [1.2, 0.8, 0.75])),
            SceneObject(12, "mug", Box3D([2.0, 0.3, 0.8], [0.08, 0.08, 0.1]), attributes={"color": "red"}),
            SceneObject(13, "mug", Box3D([2.0, -0.3, 0.8], [0.08, 0.08, 0.1]), attributes={"color": "red"}),
            SceneObject(14, "laptop", Box3D([2.0, 0.0, 0.76], [0.3, 0.25, 0.02])),
            SceneObject(15, "sofa", Box3D([0.0, -2.0, 0.4], [2.0, 0.9, 0.8]))]
    return SceneGraph(objects=objs, frame_id="map", stamp_s=5.0)


@pytest.fixture(scope="module")
def map_server(tmp_path_factory):
    path = tmp_path_factory.mktemp("map") / "scene_graph.json"
    path.write_text(json.dumps(_graph().to_dict()))
    # the viewer stands at the origin looking along +x, so +y is on its left
    proc = NodeProcess("g2vlm_ros.map_server_node", ["-p", f"map_file:={path}",
                        "-p", "viewpoint:=[0.0, 0.0, 1.2, 1.0, 0.0, 0.0]"], child_env())
    yield proc
    rc, out = proc.stop()
    assert rc == 0, f"map server exited with {rc}:\n{out}"


def test_graph_and_query_across_processes(map_server, ros_node):
    node, ex = ros_node
    got: list[SceneGraphMsg] = []
    node.create_subscription(SceneGraphMsg, "scene_graph", got.append, LATCHED)
    assert spin_until(ex, lambda: got, 30.0), "no latched SceneGraph received from the other process"
    graph = cv.scene_graph_from_msg(got[0])
    assert graph.frame_id == "map" and graph.sequence == 1
    assert sorted(o.id for o in graph.objects) == [11, 12, 13, 14, 15]
    assert {o.id: o.label for o in graph.objects}[12] == "mug"

    client = node.create_client(SpatialQuery, "spatial_query")
    assert client.wait_for_service(timeout_sec=20.0)
    for text, expected in [("the red mug on the table left of the laptop", 12),
                           ("the mug to the right of the laptop", 13), ("where is the couch", 15)]:
        resp = call(ex, client, SpatialQuery.Request(query=text))
        assert resp.success and resp.query_achievable, resp.answer
        assert resp.object_ids[0] == expected, (text, list(resp.object_ids), resp.answer)
        assert resp.objects[0].id == expected
        best = next(o for o in _graph().objects if o.id == expected)
        p = resp.target_pose.pose.position
        np.testing.assert_allclose([p.x, p.y, p.z], best.box.center, atol=1e-6)
        assert resp.target_pose.header.frame_id == "map"

    resp = call(ex, client, SpatialQuery.Request(query="the red mug on the table left of the laptop"))
    assert {(r.predicate, r.object_id) for r in resp.supporting_relations} == {("on", 11), ("left_of", 14)}
    # excluded ids are never returned
    resp = call(ex, client, SpatialQuery.Request(query="the red mug", excluded_ids=[12]))
    assert 12 not in resp.object_ids and resp.object_ids[0] == 13
    resp = call(ex, client, SpatialQuery.Request(query="how many mugs are there"))
    assert resp.success and resp.numeric_answer == 2.0
    resp = call(ex, client, SpatialQuery.Request(query="how far is the laptop from the sofa"))
    assert resp.numeric_answer == pytest.approx(np.linalg.norm([2.0, 2.0, 0.36]), abs=1e-6)


@pytest.mark.parametrize("query,reason", [("", "empty"), ("   ", "empty"), ("x" * 100_000, "characters long"),
                                          ("the mug\x07", "control characters"),
                                          ("the \x1b[31mmug", "control characters")])
def test_bad_queries_fail_cleanly_and_server_survives(map_server, ros_node, query, reason):
    node, ex = ros_node
    client = node.create_client(SpatialQuery, "spatial_query")
    assert client.wait_for_service(timeout_sec=20.0)
    resp = call(ex, client, SpatialQuery.Request(query=query))
    assert not resp.success and reason in resp.error_message
    assert map_server.alive()
    ok = call(ex, client, SpatialQuery.Request(query="the sofa"))
    assert ok.success and ok.object_ids[0] == 15


def test_unknown_object_is_not_achievable(map_server, ros_node):
    node, ex = ros_node
    client = node.create_client(SpatialQuery, "spatial_query")
    assert client.wait_for_service(timeout_sec=20.0)
    resp = call(ex, client, SpatialQuery.Request(query="the giraffe next to the sofa"))
    assert resp.success and not resp.query_achievable and "giraffe" in resp.answer
