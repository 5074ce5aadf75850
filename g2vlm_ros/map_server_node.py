"""Map server: publishes a saved scene graph (latched) and answers SpatialQuery on it, with no camera running.

Like nav2's map_server for occupancy maps: a planner can work on a map recorded earlier.
    g2vlm-map-server --ros-args -p map_file:=g2vlm_map/scene_graph.json
"""
from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rclpy.node import Node

from g2vlm_core.predicates import Viewpoint
from g2vlm_core.language.embedding import TextEmbedder
from g2vlm_core.language.query import QueryEngine
from g2vlm_core.scene_graph import SceneGraph

from g2vlm_ros import conversions as cv
from g2vlm_ros.msg import SceneGraph as SceneGraphMsg
from g2vlm_ros.params import ParamSpec, declare_and_read
from g2vlm_ros.process import spin_node
from g2vlm_ros.qos import LATCHED
from g2vlm_ros.query_service import QueryService
from g2vlm_ros.srv import LoadMap

PARAMS = (
    ParamSpec("map_file", "", "Scene-graph JSON written by the perception node's save_map service."),
    ParamSpec("viewpoint", [0.0], "Viewer for left/right/front/behind: [x, y, z, dx, dy, dz] in the map frame "
              "(position and viewing direction); [0.0] for none (view-dependent queries are then refused)."),
)


@dataclass(frozen=True)
class MapServerConfig:
    map_file: str
    viewpoint: tuple[float, ...]


class MapServerNode(Node):
    def __init__(self, **kwargs):
        super().__init__("g2vlm_map_server", **kwargs)
        self.cfg = declare_and_read(self, PARAMS, MapServerConfig)
        vp = self.cfg.viewpoint
        if len(vp) not in (1, 6):
            raise ValueError(f"parameter viewpoint must have 6 numbers (x y z dx dy dz), got {len(vp)}")
        self._viewpoint = Viewpoint(np.array(vp[:3]), np.array(vp[3:]), "map") if len(vp) == 6 else None
        self._lock = threading.Lock()
        self._graph = SceneGraph()
        self._pub = self.create_publisher(SceneGraphMsg, "scene_graph", LATCHED)
        # the MiniLM for nouns no word table relates to a label, loaded in the background (tables meanwhile)
        engine = QueryEngine(text_embedder=TextEmbedder.minilm().background())
        self.query = QueryService(self, engine, self.snapshot, self.viewpoint)
        self.create_service(LoadMap, "load_map", self._on_load)
        if self.cfg.map_file:
            self.load(Path(self.cfg.map_file))

    def snapshot(self) -> SceneGraph:
        with self._lock:
            return self._graph

    def viewpoint(self, frame: str) -> Viewpoint | None:
        if frame not in ("", "map", self._graph.frame_id):
            raise LookupError(f"viewpoint_frame {frame!r}: the map server knows only its configured viewpoint")
        return self._viewpoint

    def load(self, path: Path) -> SceneGraph:
        graph = SceneGraph.from_dict(json.loads(Path(path).read_text()))
        with self._lock:  # swap whole snapshots: a query never sees a half-loaded graph
            graph.sequence = self._graph.sequence + 1
            graph.deleted_ids = sorted({o.id for o in self._graph.objects} - {o.id for o in graph.objects})
            self._graph = graph
        self._pub.publish(cv.scene_graph_to_msg(graph))
        self.get_logger().info(f"serving {len(graph.objects)} objects, {len(graph.relations)} relations from {path}")
        return graph

    def _on_load(self, req, resp):
        path = Path(req.directory or Path(self.cfg.map_file).parent)
        path = path / "scene_graph.json" if path.is_dir() else path
        try:
            resp.object_count = len(self.load(path).objects)
            resp.success, resp.message = True, f"loaded {path}"
        except Exception as e:  # noqa: BLE001  any malformed file: a service callback must never end the node
            resp.success, resp.message = False, f"cannot load {path}: {e!r}"
        return resp


def main(args=None) -> int:
    return spin_node(MapServerNode, num_threads=2, args=args)


if __name__ == "__main__":
    sys.exit(main())
