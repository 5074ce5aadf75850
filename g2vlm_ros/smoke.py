"""Smoke run of the whole stack over real DDS: start the perception node in its own process, stream a synthetic
RGB-D scene into it (rgb8 + 16UC1 depth + camera_info + camera pose), then print what came back: the scene
graph, the fused cloud, diagnostics and the answers to spatial queries.

    python -m g2vlm_ros.smoke [--frames 40] [--seed 3] [--width 320 --height 240] [--out outputs/smoke]

DDS stays on loopback (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) in the ROS_DOMAIN_ID of the environment.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from g2vlm_ros.dds import use_local_dds  # noqa: E402

use_local_dds()

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from tqdm import tqdm  # noqa: E402

from g2vlm_core.synth.config import SynthConfig  # noqa: E402
from g2vlm_core.synth.generator import SceneGenerator  # noqa: E402

from g2vlm_ros import conversions as cv  # noqa: E402
from g2vlm_ros.msg import SceneGraph as SceneGraphMsg  # noqa: E402
from g2vlm_ros.process import perception_node_process  # noqa: E402
from g2vlm_ros.qos import LATCHED, RELIABLE  # noqa: E402
from g2vlm_ros.srv import SaveMap, SpatialQuery  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _call(ex, client, req, timeout_s=30.0):
    fut = client.call_async(req)
    ex.spin_until_future_complete(fut, timeout_sec=timeout_s)
    if not fut.done():
        raise TimeoutError(f"{client.srv_name} did not answer in {timeout_s} s")
    return fut.result()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--seed", type=int, default=3, help="synthetic scene seed")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--rate", type=float, default=8.0, help="frames per second sent to the node")
    ap.add_argument("--out", type=Path, default=REPO / "outputs" / "smoke")
    a = ap.parse_args(argv)

    scene = SceneGenerator(SynthConfig(num_scenes=1, frames_per_scene=a.frames, width=a.width, height=a.height,
                                       seed=a.seed)).scene(a.seed)
    node_proc = perception_node_process({"keyframe_every_n": 3, "cloud_period_s": 1.0, "recognizer": "g2vlm",
                                         "map_dir": a.out.resolve()}, capture=False)
    rclpy.init()
    node = rclpy.create_node("g2vlm_smoke")
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    got = {"graph": None, "cloud": None, "diag": None, "poses": 0}
    node.create_subscription(SceneGraphMsg, "scene_graph", lambda m: got.__setitem__("graph", m), LATCHED)
    node.create_subscription(PointCloud2, "cloud", lambda m: got.__setitem__("cloud", m), RELIABLE)
    node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: got.__setitem__("diag", m), RELIABLE)
    node.create_subscription(PoseStamped, "camera_pose", lambda m: got.__setitem__("poses", got["poses"] + 1),
                             RELIABLE)
    pubs = {n: node.create_publisher(t, n, RELIABLE) for n, t in
            (("color/image_raw", Image), ("depth/image_raw", Image), ("color/camera_info", CameraInfo),
             ("camera_pose_in", PoseStamped))}
    try:
        query = node.create_client(SpatialQuery, "spatial_query")
        if not query.wait_for_service(timeout_sec=60.0):
            raise RuntimeError("the perception node did not come up (see its log above)")
        while pubs["color/image_raw"].get_subscription_count() == 0:
            ex.spin_once(timeout_sec=0.1)
        t0 = time.monotonic()
        for i in tqdm(range(a.frames), desc="streaming frames", unit="frame"):
            f = scene.render_frame(i)
            h = Header(frame_id="camera_color_optical_frame", stamp=cv.sec_to_stamp(f.stamp_s))
            pubs["camera_pose_in"].publish(PoseStamped(header=Header(frame_id="map", stamp=h.stamp),
                                                       pose=cv.matrix_to_pose(f.T_world_cam)))
            pubs["color/camera_info"].publish(cv.intrinsics_to_camera_info(f.intrinsics, h))
            pubs["color/image_raw"].publish(cv.numpy_to_image(f.rgb, "rgb8", h))
            pubs["depth/image_raw"].publish(cv.depth_to_image(f.depth_m, "16UC1", h))
            end = t0 + (i + 1) / a.rate
            while time.monotonic() < end:
                ex.spin_once(timeout_sec=max(0.0, end - time.monotonic()))
        def drained() -> bool:  # the node has handled (fused or skipped) every frame it received
            if got["diag"] is None or got["cloud"] is None or got["graph"] is None:
                return False
            kv = {v.key: v.value for v in got["diag"].status[0].values}
            handled = int(kv["frames_fused"]) + sum(int(v) for k, v in kv.items() if k.startswith("rejected_"))
            return handled >= int(kv["frames_received"]) > 0 and got["poses"] >= int(kv["frames_fused"])

        end = time.monotonic() + 30.0
        while time.monotonic() < end and not drained():
            ex.spin_once(timeout_sec=0.1)

        graph = cv.scene_graph_from_msg(got["graph"]) if got["graph"] else None
        print(f"\ncamera poses back: {got['poses']} of {a.frames} frames")
        if got["cloud"] is not None:
            pts, _ = cv.pointcloud2_to_xyz(got["cloud"])
            print(f"fused cloud: {len(pts)} points")
        if graph is not None:
            print(f"scene graph #{graph.sequence}: {len(graph.objects)} objects, {len(graph.relations)} relations")
            for o in graph.objects[:12]:
                c = o.box.center
                print(f"  #{o.id:<3} {o.label:<10} {o.attributes.get('color', ''):<7} at ({c[0]:5.2f}, {c[1]:5.2f}, "
                      f"{c[2]:5.2f}) size {o.box.size.round(2).tolist()} seen {o.observation_count}x")
        if got["diag"] is not None:
            kv = {v.key: v.value for v in got["diag"].status[0].values}
            print("diagnostics: " + ", ".join(f"{k}={kv[k]}" for k in ("frames_received", "frames_fused", "keyframes",
                                                                       "latency_p50_ms", "rss_mb") if k in kv))
        queries = ["how many objects are there", "what is on the table", "the object nearest to the camera",
                   "the red object"]
        for q in queries:
            r = _call(ex, query, SpatialQuery.Request(query=q))
            print(f"Q: {q!r}\n   -> achievable={r.query_achievable} ids={list(r.object_ids)[:5]} answer: {r.answer}")
        saved = _call(ex, node.create_client(SaveMap, "save_map"), SaveMap.Request())  # into map_dir
        print(f"save_map: {saved.success} {saved.cloud_path} {saved.graph_path} {saved.message}")
        ok = got["graph"] is not None and got["cloud"] is not None and got["poses"] > 0 and saved.success
        print("smoke run " + ("OK" if ok else "FAILED"))
        return 0 if ok else 1
    finally:
        node.destroy_node()
        rclpy.shutdown()
        node_proc.stop()


if __name__ == "__main__":
    sys.exit(main())
