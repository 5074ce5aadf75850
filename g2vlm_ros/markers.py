"""RViz MarkerArray of a scene graph: a box and a label per object, an edge per relation (pure message building)."""
from __future__ import annotations

import colorsys

from geometry_msgs.msg import Point, Vector3
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from g2vlm_core.scene_graph import SceneGraph

from g2vlm_ros.conversions import box_pose

NS_BOX, NS_LABEL, NS_REL = "objects", "labels", "relations"


def _id_color(object_id: int, alpha: float) -> ColorRGBA:
    r, g, b = colorsys.hsv_to_rgb((object_id * 0.618034) % 1.0, 0.8, 0.95)  # golden-ratio hues: distinct per id
    return ColorRGBA(r=r, g=g, b=b, a=alpha)


def scene_graph_markers(graph: SceneGraph, header: Header, show_relations: tuple[str, ...] = ("on", "inside"),
                        ) -> MarkerArray:
    """Boxes (CUBE), labels (TEXT_VIEW_FACING) and relation edges (LINE_LIST) for the view-independent support
    relations; a DELETEALL first so objects removed from the graph vanish from RViz."""
    out = MarkerArray(markers=[Marker(header=header, action=Marker.DELETEALL)])
    for o in graph.objects:
        box = Marker(header=header, ns=NS_BOX, id=int(o.id), type=Marker.CUBE, action=Marker.ADD,
                     pose=box_pose(o.box), color=_id_color(o.id, 0.35))
        box.scale = Vector3(x=float(max(o.box.size[0], 1e-3)), y=float(max(o.box.size[1], 1e-3)),
                            z=float(max(o.box.size[2], 1e-3)))
        label = Marker(header=header, ns=NS_LABEL, id=int(o.id), type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                       text=f"{o.label} #{o.id}", color=ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0))
        label.pose = box_pose(o.box)
        label.pose.position.z += float(o.box.size[2]) / 2 + 0.08
        label.scale.z = 0.08
        out.markers += [box, label]
    centers = {o.id: o.box.center for o in graph.objects}
    edges = Marker(header=header, ns=NS_REL, id=0, type=Marker.LINE_LIST, action=Marker.ADD,
                   color=ColorRGBA(r=1.0, g=1.0, b=0.2, a=0.9))
    edges.scale.x = 0.01
    edges.pose.orientation.w = 1.0
    for r in graph.relations:
        if r.predicate in show_relations and r.subject_id in centers and r.object_id in centers:
            for i in (r.subject_id, r.object_id):
                c = centers[i]
                edges.points.append(Point(x=float(c[0]), y=float(c[1]), z=float(c[2])))
    if edges.points:
        out.markers.append(edges)
    return out
