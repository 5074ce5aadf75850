"""The SpatialQuery service wiring shared by the perception node and the map server (logic is in g2vlm_core.language.query)."""
from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from typing import Callable, Iterable

from rclpy.callback_groups import CallbackGroup, MutuallyExclusiveCallbackGroup
from rclpy.executors import ConditionReachedException, ShutdownException, SingleThreadedExecutor, TimeoutException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from g2vlm_core.predicates import Viewpoint
from g2vlm_core.language.query import QueryEngine
from g2vlm_core.scene_graph import SceneGraph

from g2vlm_ros import conversions as cv
from g2vlm_ros.srv import SpatialQuery


# Requests and replies are never dropped by DDS: the default service QoS keeps the last 10 requests, so of 30
# simultaneous calls about 11 were answered and the rest waited forever. KEEP_ALL holds every request until the
# executor takes it (reliable flow control), and every reply until the client has it.
SERVICE_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
BUSY_WINDOW_S = 1.0


log = logging.getLogger(__name__)


class QueryOffloadExecutor(SingleThreadedExecutor):
    """A SingleThreadedExecutor that runs the callbacks of ``groups`` (the query service's) on a thread of their own.

    The perception node spins one thread on purpose: rclpy's MultiThreadedExecutor busy-loops in Python over
    callbacks it has handed to its pool and cut fusion 3x (see perception_node.main). But on that one thread a query
    held up frame intake for as long as it ran (a grounded query takes hundreds of ms on a CPU). Here the executor
    thread hands a ready query to the query thread and goes back to the camera; the group is mutually exclusive, so
    queries run one at a time and the service leaves the wait set until the running one has replied (no spinning)."""

    def __init__(self, groups: Iterable[CallbackGroup], *, context=None):
        super().__init__(context=context)
        self._groups = set(groups)
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._handed: set = set()  # tasks given to the query thread that it has not finished
        # not a daemon: one still waiting at interpreter exit made the exit code 1; it ends with the context
        self._thread = threading.Thread(target=self._run, name="g2vlm_queries")
        self._thread.start()

    def spin_once(self, timeout_sec: float | None = None) -> None:
        try:
            handler, entity, _ = self.wait_for_ready_callbacks(timeout_sec=timeout_sec)
        except (ShutdownException, TimeoutException, ConditionReachedException):
            return
        if handler in self._handed:  # offered again before the query thread started it: let that thread run
            time.sleep(0.0005)
            return
        if entity is not None and entity.callback_group in self._groups:
            self._handed.add(handler)
            self._jobs.put(handler)
            return
        handler()
        exception = handler.exception()
        if exception is not None:
            raise exception

    def _run(self) -> None:
        while True:
            try:
                handler = self._jobs.get(timeout=0.2)
            except queue.Empty:
                if self._context.ok():
                    continue
                return
            if handler is None:
                return
            try:
                handler()
            finally:
                self._handed.discard(handler)
            if handler.exception() is not None:  # QueryService answers its own errors: this is a bug
                log.error("query callback raised %r", handler.exception())

    def shutdown(self, timeout_sec: float | None = None) -> bool:
        self._jobs.put(None)
        return super().shutdown(timeout_sec)


class QueryService:
    """Serves ``name`` against ``snapshot()``, a consistent SceneGraph copy, never the map being updated.

    Every call is answered. The service has its own callback group: the perception node's QueryOffloadExecutor runs
    it on a query thread, so a query never holds up frame intake; a multi-threaded executor can serve it beside the
    sensor callbacks too. ``max_busy_share`` (1: no limit) bounds the share of the last second queries may take:
    beyond it a call is answered at once with success false and "busy, retry".
    """

    def __init__(self, node: Node, engine: QueryEngine, snapshot: Callable[[], SceneGraph],
                 viewpoint: Callable[[str], Viewpoint | None], name: str = "spatial_query",
                 max_busy_share: float = 1.0):
        self._node, self._engine, self._snapshot, self._viewpoint = node, engine, snapshot, viewpoint
        self.max_busy_share = max_busy_share
        self.latencies_ms: list[float] = []
        self.answered = 0
        self.busy = 0
        self._recent: deque[tuple[float, float]] = deque()  # (end time, duration) of the calls of the last window
        self.group = MutuallyExclusiveCallbackGroup()
        self.service = node.create_service(SpatialQuery, name, self._handle, qos_profile=SERVICE_QOS,
                                           callback_group=self.group)

    def _busy_for_s(self, now: float) -> float:
        """How long to wait before the queries' share of the last window is below max_busy_share (0: not busy)."""
        while self._recent and self._recent[0][0] < now - BUSY_WINDOW_S:
            self._recent.popleft()
        excess = sum(d for _, d in self._recent) - self.max_busy_share * BUSY_WINDOW_S
        if self.max_busy_share >= 1.0 or excess <= 0:
            return 0.0
        spent = 0.0  # the window slides past the oldest calls first
        for end, d in self._recent:
            spent += d
            if spent >= excess:
                return max(end + BUSY_WINDOW_S - now, 0.001)
        return BUSY_WINDOW_S

    def _handle(self, req, resp):
        t0 = time.perf_counter()
        wait_s = self._busy_for_s(t0)
        if wait_s > 0:
            self.busy += 1
            resp.success, resp.query_achievable, resp.numeric_answer = False, False, math.nan
            resp.error_message = resp.answer = (f"busy, retry in {wait_s * 1e3:.0f} ms: queries took more than "
                                                f"{self.max_busy_share:.0%} of the last second")
            return resp
        try:
            return self._answer(req, resp)
        finally:
            t1 = time.perf_counter()
            self._recent.append((t1, t1 - t0))
            self.answered += 1

    def _answer(self, req, resp):
        t0 = time.perf_counter()
        graph = self._snapshot()
        try:
            args = cv.query_request_args(req)
            if req.use_search_region and req.search_center.header.frame_id not in ("", graph.frame_id):
                raise cv.ConversionError(f"SpatialQuery.search_center frame {req.search_center.header.frame_id!r} "
                                         f"is not the map frame {graph.frame_id!r}")
            viewpoint = self._viewpoint(req.viewpoint_frame)
            result = self._engine.answer(graph, req.query, viewpoint=viewpoint, **args)
            cv.query_result_to_response(result, graph, resp, graph.stamp_s)
        except (cv.ConversionError, LookupError) as e:
            resp.success, resp.query_achievable, resp.error_message = False, False, str(e)
            resp.answer, resp.numeric_answer = str(e), math.nan
            return resp
        except Exception as e:  # a query must never take the node down: report it to the caller
            self._node.get_logger().error(f"query {req.query[:80]!r} failed: {e!r}")
            resp.success, resp.query_achievable = False, False
            resp.error_message = resp.answer = f"internal error: {e!r}"
            resp.numeric_answer = math.nan
            return resp
        self.latencies_ms = (self.latencies_ms + [(time.perf_counter() - t0) * 1e3])[-1000:]
        return resp
