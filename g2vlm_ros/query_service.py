"""The SpatialQuery service wiring shared by the perception node and the map server (logic is in g2vlm_core.language.query)."""
from __future__ import annotations

import math
import time
from typing import Callable

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node

from g2vlm_core.predicates import Viewpoint
from g2vlm_core.language.query import QueryEngine
from g2vlm_core.scene_graph import SceneGraph

from g2vlm_ros import conversions as cv
from g2vlm_ros.srv import SpatialQuery


class QueryService:
    """Serves ``name`` against ``snapshot()``, a consistent SceneGraph copy, never the map being updated.

    The service has its own callback group so a query is answered while a multi-threaded executor runs
    the sensor callbacks, and a slow query never delays frame intake.
    """

    def __init__(self, node: Node, engine: QueryEngine, snapshot: Callable[[], SceneGraph],
                 viewpoint: Callable[[str], Viewpoint | None], name: str = "spatial_query"):
        self._node, self._engine, self._snapshot, self._viewpoint = node, engine, snapshot, viewpoint
        self.latencies_ms: list[float] = []
        self.group = MutuallyExclusiveCallbackGroup()
        self.service = node.create_service(SpatialQuery, name, self._handle, callback_group=self.group)

    def _handle(self, req, resp):
        t0 = time.perf_counter()
        graph = self._snapshot()
        try:
            args = cv.query_request_args(req)
            if req.use_search_region and req.search_center.header.frame_id not in ("", graph.frame_id):
                raise cv.ConversionError(f"SpatialQuery.search_center frame {req.search_center.header.frame_id!r} "
                                         f"is not the map frame {graph.frame_id!r}")
            viewpoint = self._viewpoint(req.viewpoint_frame)
            result = self._engine.answer(graph, req.query, viewpoint=viewpoint, **args)
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
        cv.query_result_to_response(result, graph, resp, graph.stamp_s)
        self.latencies_ms = (self.latencies_ms + [(time.perf_counter() - t0) * 1e3])[-1000:]
        return resp
