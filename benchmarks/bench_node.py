"""Benchmark of the perception node over real DDS (prints figures; not a test).

    python benchmarks/bench_node.py [--frames 300] [--width 640 --height 480] [--voxel 0.02] [--model auto]

1. makes (or reuses, under data/bench/) a synthetic scene bag of --frames frames;
2. starts the perception node in its own process and replays the bag as fast as the node consumes it (flow
   control: the next frame goes out when the node has handled the previous one, so nothing is dropped and the
   rate is the node's sustained throughput) -> fused frames/s, keyframes/s, stamp-to-publication latency p50/p95
   (bag publish time of a frame's depth image -> the node's `processed` message for that stamp), and the
   node's RSS over time;
3. the bare Open3D VoxelBlockGrid integration of the same frames in this process (no ROS, no node);
4. query latency p50/p99 over DDS against the map server holding 50 and 500 objects.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("ROS_DOMAIN_ID", "77")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from g2vlm_ros.dds import use_local_dds  # noqa: E402

use_local_dds()

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from g2vlm_core.scene_graph import Box3D, SceneGraph, SceneObject  # noqa: E402
from g2vlm_ros.conversions import stamp_to_sec  # noqa: E402
from g2vlm_ros.demo import BAG_TOPICS, ensure_scene  # noqa: E402
from g2vlm_ros.process import NodeProcess  # noqa: E402
from g2vlm_ros.qos import RELIABLE  # noqa: E402
from g2vlm_ros.replay import BagPlayer  # noqa: E402
from g2vlm_ros.srv import SpatialQuery  # noqa: E402


def pct(x, q):
    return float(np.percentile(x, q)) if len(x) else float("nan")


def bare_integration_ms(bag: Path, voxel: float, n: int) -> float:
    """Median ms of VoxelBlockGrid.integrate on the bag's frames (decoding done outside the timer)."""
    import open3d as o3d
    import open3d.core as o3c
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    from scipy.spatial.transform import Rotation

    from g2vlm_core.geometry.camera import invert_transform

    ts = get_typestore(Stores.ROS2_HUMBLE)
    frames, pending = [], {}
    with Reader(bag) as r:
        wanted = [c for c in r.connections if c.topic in BAG_TOPICS.values()]
        for conn, _, raw in r.messages(connections=wanted):
            m = ts.deserialize_cdr(raw, conn.msgtype)
            t = m.header.stamp.sec + m.header.stamp.nanosec * 1e-9
            d = pending.setdefault(t, {})
            if conn.topic == BAG_TOPICS["rgb_topic"]:
                d["rgb"] = np.asarray(m.data).reshape(m.height, m.width, 3)
            elif conn.topic == BAG_TOPICS["depth_topic"]:
                dt = np.uint16 if m.encoding == "16UC1" else np.float32
                arr = np.frombuffer(np.asarray(m.data).tobytes(), dt).reshape(m.height, m.width)
                d["depth"] = arr.astype(np.float32) * (0.001 if dt == np.uint16 else 1.0)
            elif conn.topic == BAG_TOPICS["camera_info_topic"]:
                d["K"] = np.asarray(m.k).reshape(3, 3)
            elif conn.topic == BAG_TOPICS["pose_topic"]:
                q, p = m.pose.orientation, m.pose.position
                T = np.eye(4)
                T[:3, :3] = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
                T[:3, 3] = [p.x, p.y, p.z]
                d["T"] = T
            if len(d) == 4:
                frames.append(pending.pop(t))
            if len(frames) >= n:
                break
    vbg = o3d.t.geometry.VoxelBlockGrid(("tsdf", "weight", "color"), (o3c.float32, o3c.float32, o3c.float32),
                                        ((1), (1), (3)), voxel, 8, 10000, o3c.Device("CPU:0"))
    prepared = [(o3d.t.geometry.Image(o3c.Tensor(f["depth"])), o3d.t.geometry.Image(o3c.Tensor(
        f["rgb"].astype(np.float32) / 255.0)), o3c.Tensor(f["K"]), o3c.Tensor(invert_transform(f["T"])))
        for f in frames]
    ms = []
    for depth, color, K, ext in prepared:
        t0 = time.perf_counter()
        blocks = vbg.compute_unique_block_coordinates(depth, K, ext, 1.0, 5.0, 4.0)
        vbg.integrate(blocks, depth, color, K, K, ext, 1.0, 5.0, 4.0)
        ms.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(ms))


def query_latency(n_objects: int, n_queries: int = 200) -> tuple[float, float]:
    rng = np.random.default_rng(n_objects)
    cats = ["mug", "table", "chair", "book", "lamp", "box", "bottle", "plant"]
    objs = [SceneObject(i, str(rng.choice(cats)), Box3D(rng.uniform(0, 10, 3), rng.uniform(0.05, 0.8, 3)),
                        attributes={"color": str(rng.choice(["red", "blue", "green"]))}) for i in range(n_objects)]
    path = Path(tempfile.mkdtemp()) / "scene_graph.json"
    path.write_text(json.dumps(SceneGraph(objs).to_dict()))
    proc = NodeProcess("g2vlm_ros.map_server_node", ["-p", f"map_file:={path}",
                                                     "-p", "viewpoint:=[0.0, 0.0, 1.2, 1.0, 0.0, 0.0]"])
    node = rclpy.create_node(f"bench_query_{n_objects}")
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    try:
        client = node.create_client(SpatialQuery, "spatial_query")
        assert client.wait_for_service(timeout_sec=30.0)
        queries = ["the red mug on the table left of the lamp", "how many books are there", "the chair near the lamp",
                   "what is on the table", "the blue box"]
        ms = []
        for i in range(n_queries):
            t0 = time.perf_counter()
            fut = client.call_async(SpatialQuery.Request(query=queries[i % len(queries)]))
            ex.spin_until_future_complete(fut, timeout_sec=10.0)
            ms.append((time.perf_counter() - t0) * 1e3)
        return pct(ms, 50), pct(ms, 99)
    finally:
        node.destroy_node()
        proc.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--seed", type=int, default=919)
    ap.add_argument("--voxel", type=float, default=0.02)
    ap.add_argument("--model", default="auto", help="model_checkpoint of the node: auto | none | PATH")
    ap.add_argument("--recognizer", default="g2vlm", help="recognizer of the node (synthetic frames: g2vlm)")
    ap.add_argument("--param", action="append", default=[], help="extra node parameter NAME:=VALUE (repeatable)")
    a = ap.parse_args()

    scene = ensure_scene(REPO / "data" / "bench", a.seed, a.frames, a.width, a.height)
    params = [x for k, v in BAG_TOPICS.items() for x in ("-p", f"{k}:={v}")]
    node_proc = NodeProcess("g2vlm_ros.perception_node", ["--params-file", str(REPO / "config" / "perception.yaml"),
                                                          *params, "-p", "sensor_reliable:=true",
                                                          "-p", f"voxel_size_m:={a.voxel}",
                                                          "-p", f"model_checkpoint:={a.model}",
                                                          "-p", f"recognizer:={a.recognizer}",
                                                          *[x for p in a.param for x in ("-p", p)]])
    rclpy.init()
    node = rclpy.create_node("bench_node")
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    processed: list[tuple[float, float, str]] = []  # (frame stamp, receive time, outcome)
    # the player's own `processed` subscription paces the replay; this one records timings
    node.create_subscription(Header, "processed", lambda m: processed.append(
        (round(stamp_to_sec(m.stamp), 6), time.monotonic(), m.frame_id)), RELIABLE)
    from diagnostic_msgs.msg import DiagnosticArray
    diags: list[dict] = []
    node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diags.extend(
        {kv.key: kv.value for kv in st.values} for st in m.status if st.name == "g2vlm_perception"), 10)
    rss: list[tuple[float, float]] = []
    done = threading.Event()

    def sample_rss():
        p = psutil.Process(node_proc.pid)
        while not done.is_set():
            try:
                rss.append((time.monotonic(), p.memory_info().rss / 2**20))
            except psutil.Error:
                return
            time.sleep(0.5)

    try:
        player = BagPlayer(node, scene / "bag", rate=0.0, flow_control=True, executor=ex, progress=False)
        player.wait_for_subscribers(60.0)
        time.sleep(2.0)  # let the node finish loading its model before the clock starts
        threading.Thread(target=sample_rss, daemon=True).start()
        sent: dict[float, float] = {}
        orig_publish = player.pubs[BAG_TOPICS["depth_topic"]].publish
        from rosbags.typesys import Stores, get_typestore

        ts = get_typestore(Stores.ROS2_HUMBLE)

        def timed_publish(raw):
            h = ts.deserialize_cdr(raw, "sensor_msgs/msg/Image").header.stamp
            sent[round(h.sec + h.nanosec * 1e-9, 6)] = time.monotonic()
            orig_publish(raw)

        player.pubs[BAG_TOPICS["depth_topic"]].publish = timed_publish
        t0 = time.monotonic()
        stats = player.play()
        end = time.monotonic() + 15.0
        while time.monotonic() < end and (not processed or processed[-1][0] < max(sent)):
            ex.spin_once(timeout_sec=0.05)
        wall = max(p[1] for p in processed) - t0 if processed else float("nan")
        done.set()
        fused = [p for p in processed if p[2] in ("fused", "keyframe")]
        keyframes = [p for p in processed if p[2] == "keyframe"]
        lat = [(recv - sent[s]) * 1e3 for s, recv, _ in fused if s in sent]
        n_sent = stats.published[BAG_TOPICS["depth_topic"]]
        print(f"\n{n_sent} frames {a.width}x{a.height} at {a.voxel * 100:.0f} cm voxels, model={a.model} "
              f"{' '.join(a.param)}, "
              f"replayed as fast as the node consumes in {stats.wall_s:.1f} s")
        print(f"fused frames/s      {len(fused) / wall:7.1f}   ({len(fused)} fused, "
              f"{n_sent - len(processed)} dropped, "
              f"{len(processed) - len(fused)} skipped: {sorted({p[2] for p in processed} - {'fused', 'keyframe'})})")
        print(f"keyframes/s         {len(keyframes) / wall:7.1f}   ({len(keyframes)} keyframes)")
        print(f"latency p50 / p95   {pct(lat, 50):7.1f} / {pct(lat, 95):.1f} ms  (depth published -> processed)")
        if rss:
            r = np.array([x[1] for x in rss])
            q = [r[int(len(r) * f)] for f in (0.25, 0.5, 0.75)] + [r[-1]]
            print(f"node RSS (MB)       at 25/50/75/100% of the run: {' / '.join(f'{x:.0f}' for x in q)}; "
                  f"peak {r.max():.0f}")
        n_diag = len(diags)
        end = time.monotonic() + 5.0
        while time.monotonic() < end and len(diags) <= n_diag:  # the first diagnostics after the run
            ex.spin_once(timeout_sec=0.1)
        if len(diags) > n_diag:
            d = diags[-1]
            print(f"keyframe work       {d.get('keyframes')} keyframes segmented / labelled, {d.get('keyframes_dropped')} "
                  f"replaced while the keyframe thread was busy; {d.get('objects')} objects in the map")
        bare = bare_integration_ms(scene / "bag", a.voxel, min(60, a.frames))
        print(f"bare Open3D VoxelBlockGrid integrate: {bare:.1f} ms/frame ({1000 / bare:.0f} frames/s) on the same "
              f"frames (ours, whole node: {1000 * wall / max(len(fused), 1):.1f} ms per fused frame)")
        for n in (50, 500):
            p50, p99 = query_latency(n)
            print(f"query latency with {n:3d} objects: p50 {p50:.1f} ms, p99 {p99:.1f} ms (over DDS)")
    finally:
        done.set()
        node.destroy_node()
        rclpy.shutdown()
        node_proc.stop()


if __name__ == "__main__":
    main()
