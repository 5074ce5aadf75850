"""QueryService plumbing with real rclpy: every call gets a reply, slow queries beyond max_busy_share get an explicit
'busy, retry' at once, an engine error is a reply, not a dead executor, and QueryOffloadExecutor keeps other
callbacks served while a query runs."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from std_msgs.msg import Header

from g2vlm_core.language.query import QueryEngine
from g2vlm_core.scene_graph import Box3D, SceneGraph, SceneObject
from g2vlm_ros.qos import RELIABLE
from g2vlm_ros.query_service import SERVICE_QOS, QueryOffloadExecutor, QueryService
from g2vlm_ros.srv import SpatialQuery

from .conftest import spin_until

GRAPH = SceneGraph(objects=[SceneObject(1, "mug", Box3D([1.0, 0.0, 0.5], [0.1, 0.1, 0.1]))], frame_id="map")


class SlowEngine(QueryEngine):
    def __init__(self, delay_s: float):
        super().__init__()
        self.delay_s = delay_s

    def answer(self, graph, query, **kw):
        if query == "explode":
            raise RuntimeError("engine bug")
        time.sleep(self.delay_s)
        return super().answer(graph, query, **kw)


def _serve(ros_node, engine, share):
    node, ex = ros_node
    service = QueryService(node, engine, lambda: GRAPH, lambda frame: None, name="q_test", max_busy_share=share)
    client = node.create_client(SpatialQuery, "q_test", qos_profile=SERVICE_QOS)
    assert client.wait_for_service(timeout_sec=10.0)
    return service, client, ex


def test_slow_queries_beyond_the_share_are_told_to_retry(ros_node):
    service, client, ex = _serve(ros_node, SlowEngine(0.05), share=0.2)
    futures = [client.call_async(SpatialQuery.Request(query="the mug")) for _ in range(30)]
    assert spin_until(ex, lambda: all(f.done() for f in futures), 30.0)
    replies = [f.result() for f in futures]
    busy = [r for r in replies if r.error_message.startswith("busy, retry in")]
    answered = [r for r in replies if r.success]
    # 0.2 s of query time per second, 50 ms each: about 4 answers before the first 'busy'
    assert 3 <= len(answered) <= 8 and len(answered) + len(busy) == 30, [r.error_message for r in replies]
    assert all(not r.success and not r.query_achievable for r in busy)
    assert service.busy == len(busy) and service.answered == len(answered)
    time.sleep(1.0)  # the window has passed: answers again
    fut = client.call_async(SpatialQuery.Request(query="the mug"))
    assert spin_until(ex, fut.done, 10.0) and fut.result().success and fut.result().object_ids[0] == 1


def test_every_call_of_a_burst_is_answered_and_engine_errors_are_replies(ros_node):
    service, client, ex = _serve(ros_node, SlowEngine(0.0), share=1.0)
    futures = [client.call_async(SpatialQuery.Request(query="explode" if i == 7 else "the mug")) for i in range(60)]
    assert spin_until(ex, lambda: all(f.done() for f in futures), 30.0), sum(f.done() for f in futures)
    replies = [f.result() for f in futures]
    assert sum(r.success for r in replies) == 59 and "engine bug" in replies[7].error_message


@pytest.mark.parametrize("offload", [True, False])
def test_a_slow_query_does_not_hold_up_other_callbacks_with_the_offload_executor(ros_node, offload):
    """A 0.6 s query while messages arrive at 50 Hz: with QueryOffloadExecutor the subscription keeps being served
    (largest gap well under the query time); with a plain SingleThreadedExecutor it waits for the query."""
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    server = rclpy.create_node("slow_query_server", context=ctx)
    service = QueryService(server, SlowEngine(0.6), lambda: GRAPH, lambda frame: None, name="q_slow")
    ticks: list[float] = []
    server.create_subscription(Header, "tick", lambda m: ticks.append(time.monotonic()), RELIABLE)
    executor = QueryOffloadExecutor([service.group], context=ctx) if offload else SingleThreadedExecutor(context=ctx)
    executor.add_node(server)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        node, ex = ros_node
        pub = node.create_publisher(Header, "tick", RELIABLE)
        client = node.create_client(SpatialQuery, "q_slow", qos_profile=SERVICE_QOS)
        assert client.wait_for_service(timeout_sec=10.0)
        assert spin_until(ex, lambda: pub.get_subscription_count() > 0, 10.0)
        fut = None
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.0:  # the query is asked after 0.5 s of ticks
            if fut is None and time.monotonic() - t0 > 0.5:
                fut = client.call_async(SpatialQuery.Request(query="the mug"))
            pub.publish(Header())
            spin_until(ex, lambda: False, 0.02)
        assert fut.done() and fut.result().success
        assert len(ticks) > 20
        gap = float(np.max(np.diff(ticks)))
        if offload:
            assert gap < 0.3, gap
        else:
            assert gap > 0.4, gap  # the contrast: the same test fails without the offload
    finally:
        executor.shutdown()
        rclpy.shutdown(context=ctx)
        spinner.join(5.0)
