"""Benchmark of the perception node over real DDS, fed like a camera (prints figures; not a test).

    python benchmarks/bench_node.py                       # 300 frames 640x480 at 30 Hz, shipped model, 2 cm
    python benchmarks/bench_node.py --hz 0                # as fast as the node consumes (throughput)
    python benchmarks/bench_node.py --recognizer none --model none --no-queries   # geometry only
    python benchmarks/bench_node.py --param keyframe_every_n:=3 --param async_keyframes:=false

1. makes (or reuses, under data/bench/) a synthetic scene bag of --frames frames (640x480, Kinect noise);
2. starts the perception node in its own process and replays the bag at --hz (the bag's recorded 10 Hz
   scaled by --rate; 30 Hz by default), with flow control: a frame goes out on its schedule, or once the node
   has reported the previous one if it is still busy (the schedule then pauses, and the run says so), so no
   frame is lost in transport and the figures say whether the node keeps a camera's pace;
3. prints fused frames/s, keyframe work (candidates offered, selected, labelled, skipped by reason), recognition
   latency (a keyframe's depth image published -> the scene graph with that stamp received here, over DDS; and
   the node's own, frame arrival -> its objects published), the node's RSS over the run, and the node's fusion
   path per frame by stage (its own timers, in /diagnostics);
4. the bare Open3D VoxelBlockGrid integration of the same frames in this process, before the replay (the node
   up and idle) and after it (uint16 depth + uint8 colour as the node feeds it, the fastest pair Open3D has;
   float32 pair for reference), and the ratios node fusion path / bare and node fusion path / the node's own
   Open3D calls (the latter under exactly the node's conditions, its keyframe thread included);
5. query latency p50/p99 over DDS against the map server holding 50 and 500 objects (--no-queries skips it).
The machine's other load hits the node and the bare run alike only within one run: compare ratios, not runs.
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
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from g2vlm_core.scene_graph import Box3D, SceneGraph, SceneObject  # noqa: E402
from g2vlm_ros.conversions import stamp_to_sec  # noqa: E402
from g2vlm_ros.demo import BAG_TOPICS, ensure_scene  # noqa: E402
from g2vlm_ros.msg import SceneGraph as SceneGraphMsg  # noqa: E402
from g2vlm_ros.process import NodeProcess, perception_node_process  # noqa: E402
from g2vlm_ros.qos import LATCHED, RELIABLE  # noqa: E402
from g2vlm_ros.replay import BagPlayer  # noqa: E402
from g2vlm_ros.srv import SpatialQuery  # noqa: E402

BAG_HZ = 10.0  # g2vlm-synth stamps frames at 10 Hz
NODE_DEPTH_MAX_M = 5.0  # the node's depth_max_m default (config/perception.yaml), unless --param sets it


def pct(x, q):
    return float(np.percentile(x, q)) if len(x) else float("nan")


def bag_frames(bag: Path, n: int) -> list[dict]:
    """The bag's first n frames as arrays: rgb uint8, depth uint16 mm, K, T_world_cam."""
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore
    from scipy.spatial.transform import Rotation

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
                if m.encoding != "16UC1":
                    raise ValueError(f"bench bag depth is {m.encoding}, expected 16UC1")
                d["depth"] = np.frombuffer(np.asarray(m.data).tobytes(), np.uint16).reshape(m.height, m.width)
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
    return frames


def node_allocation_stride(frames: list[dict], voxel: float, depth_max: float, stride_param: int = 0) -> int:
    """The block allocation stride the node's fusion picks for these frames (FusionConfig.allocation_stride; the
    node parameter allocation_stride, 0 = automatic)."""
    from g2vlm_core.geometry.camera import CameraIntrinsics
    from g2vlm_core.geometry.fusion import FusionConfig

    K, (h, w) = frames[0]["K"], frames[0]["depth"].shape
    return FusionConfig(voxel_size_m=voxel, depth_max_m=depth_max, allocation_stride=stride_param or None) \
        .allocation_stride_for(CameraIntrinsics(w, h, K[0, 0], K[1, 1], K[0, 2], K[1, 2]))


def bare_integration_ms(frames: list[dict], voxel: float, depth_max: float = 5.0,
                        stride: int = 1) -> dict[str, float]:
    """Median ms of Open3D's compute_unique_block_coordinates + integrate on the frames, inputs prepared outside the
    timer: uint16 mm depth + uint8 colour (what the node feeds) and float32 m + float32 [0, 1] (for reference),
    both as Open3D's examples do (blocks allocated from every pixel); with ``stride`` > 1 also "uint16_alloc":
    uint16 with blocks allocated from every stride-th pixel, as the node's fusion does (the same work as the node's
    Open3D calls)."""
    import open3d as o3d
    import open3d.core as o3c

    from g2vlm_core.geometry.camera import invert_transform

    out = {}
    for name in ("uint16", "float32") + (("uint16_alloc",) if stride > 1 else ()):
        vbg = o3d.t.geometry.VoxelBlockGrid(("tsdf", "weight", "color"), (o3c.float32,) * 3, ((1), (1), (3)), voxel,
                                            8, 10000, o3c.Device("CPU:0"))
        scale = 1.0 if name == "float32" else 1000.0
        s = stride if name == "uint16_alloc" else 1
        prepared = []
        for f in frames:
            depth = f["depth"].astype(np.float32) / 1000.0 if name == "float32" else f["depth"]
            color = f["rgb"].astype(np.float32) / 255.0 if name == "float32" else f["rgb"]
            K_alloc = f["K"].copy()
            K_alloc[:2] /= s
            prepared.append((o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(depth))),
                             o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(depth[::s, ::s]))),
                             o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(color))),
                             o3c.Tensor(f["K"]), o3c.Tensor(K_alloc), o3c.Tensor(invert_transform(f["T"]))))
        ms = []
        for depth, depth_alloc, color, K, K_alloc, ext in prepared:
            t0 = time.perf_counter()
            blocks = vbg.compute_unique_block_coordinates(depth_alloc, K_alloc, ext, scale, depth_max, 4.0)
            vbg.integrate(blocks, depth, color, K, K, ext, scale, depth_max, 4.0)
            ms.append((time.perf_counter() - t0) * 1e3)
        out[name] = float(np.median(ms[len(ms) // 10:]))  # the first frames allocate most blocks
    return out


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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--seed", type=int, default=919)
    ap.add_argument("--hz", type=float, default=30.0, help="camera rate to replay at; 0 = as fast as the node takes")
    ap.add_argument("--voxel", type=float, default=0.02)
    ap.add_argument("--model", default="auto", help="model_checkpoint of the node: auto | none | PATH")
    ap.add_argument("--recognizer", default="g2vlm", help="recognizer of the node (synthetic frames: g2vlm)")
    ap.add_argument("--param", action="append", default=[], help="extra node parameter NAME:=VALUE (repeatable)")
    ap.add_argument("--no-queries", action="store_true", help="skip the query-latency part")
    ap.add_argument("--data-dir", type=Path, default=REPO / "data" / "bench", help="where the scene bag is kept")
    a = ap.parse_args()

    scene = ensure_scene(a.data_dir, a.seed, a.frames, a.width, a.height)
    extra = dict(p.split(":=", 1) for p in a.param)
    node_proc = perception_node_process({**BAG_TOPICS, "sensor_reliable": True, "voxel_size_m": a.voxel,
                                         "model_checkpoint": a.model, "recognizer": a.recognizer, **extra})
    depth_max = float(extra.get("depth_max_m", NODE_DEPTH_MAX_M))  # the bare runs fuse the depths the node fuses
    rclpy.init()
    node = rclpy.create_node("bench_node")
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    processed: list[tuple[float, float, str]] = []  # (frame stamp, receive time, outcome)
    # the player's own `processed` subscription paces the replay; this one records timings
    node.create_subscription(Header, "processed", lambda m: processed.append(
        (round(stamp_to_sec(m.stamp), 6), time.monotonic(), m.frame_id)), RELIABLE)
    graphs: list[tuple[float, float, int]] = []  # (graph stamp = its keyframe's stamp, receive time, objects)
    node.create_subscription(SceneGraphMsg, "scene_graph", lambda m: graphs.append(
        (round(stamp_to_sec(m.header.stamp), 6), time.monotonic(), len(m.objects))), LATCHED)
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

    frames = bag_frames(scene / "bag", a.frames)
    try:
        player = BagPlayer(node, scene / "bag", rate=a.hz / BAG_HZ, flow_control=True, executor=ex, progress=False)
        t_wait = time.monotonic()
        while not player.wait_for_subscribers(1.0):
            if not node_proc.alive() or time.monotonic() - t_wait > 120.0:
                code, out = node_proc.stop(5.0)
                raise SystemExit(f"the perception node never subscribed to the camera topics (exit code {code}); "
                                 f"the end of its output:\n{out[-3000:]}")
        time.sleep(3.0)  # let the node finish loading its model before the clock starts
        stride = node_allocation_stride(frames, a.voxel, depth_max, int(extra.get("allocation_stride", 0)))
        bare_before = bare_integration_ms(frames, a.voxel, depth_max, stride)  # the node idle, waiting for frames
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
        # keyframe work may still be going on: wait for the graphs to settle (none new for 3 s)
        end = time.monotonic() + 60.0
        last_n, quiet_since = -1, time.monotonic()
        while time.monotonic() < end and time.monotonic() - quiet_since < 3.0:
            ex.spin_once(timeout_sec=0.05)
            if len(graphs) != last_n:
                last_n, quiet_since = len(graphs), time.monotonic()
        n_diag = len(diags)
        end = time.monotonic() + 5.0
        while time.monotonic() < end and len(diags) <= n_diag:  # the first diagnostics after the run
            ex.spin_once(timeout_sec=0.1)
        done.set()
        fused = [p for p in processed if p[2] in ("fused", "keyframe")]
        wall = max(p[1] for p in fused) - t0 if fused else float("nan")
        lat = [(recv - sent[s]) * 1e3 for s, recv, _ in fused if s in sent]
        rec_lat = [(recv - sent[s]) * 1e3 for s, recv, _ in graphs if s in sent]
        n_sent = stats.published[BAG_TOPICS["depth_topic"]]
        pace = f"{a.hz:.0f} Hz" if a.hz > 0 else "as fast as the node consumes"
        camera = f"{stats.bag_s * BAG_HZ / a.hz:.1f} s of camera time" if a.hz > 0 else "no pacing"
        behind = (f"the node was behind before {stats.flow_waits} frames, {stats.paused_s:.1f} s of pauses"
                  if stats.flow_waits else "the node never held the replay up")
        print(f"\n{n_sent} frames {a.width}x{a.height} at {a.voxel * 100:.0f} cm voxels, model={a.model} "
              f"{' '.join(a.param)}; replayed at {pace} with flow control in {stats.wall_s:.1f} s ({camera}; "
              f"{behind})")
        skipped = sorted({p[2] for p in processed} - {"fused", "keyframe"})
        print(f"fused frames/s      {len(fused) / wall:7.1f}   ({len(fused)} fused of {n_sent} sent, "
              f"{n_sent - len(processed)} unreported, {len(processed) - len(fused)} skipped: {skipped})")
        print(f"frame latency       p50 {pct(lat, 50):.1f} / p95 {pct(lat, 95):.1f} ms  (depth published -> processed)")
        d = diags[-1] if len(diags) > n_diag else (diags[-1] if diags else {})
        if d:
            selected, done_kf = int(d.get("keyframes_selected", 0)), int(d.get("keyframes", 0))
            labelled = int(d.get("keyframes_labelled", done_kf))
            skips = {k[len("keyframes_skipped_"):]: v for k, v in d.items() if k.startswith("keyframes_skipped_")}
            print(f"keyframes           {d.get('keyframes_offered')} candidates, {selected} selected, {done_kf} done, "
                  f"{labelled} labelled by the recognizer: labelled / selected = "
                  f"{labelled / selected if selected else float('nan'):.2f}; skipped {skips or 'none'}; "
                  f"{d.get('keyframes_failed', 0)} failed; surface recognised {d.get('surface_recognised')}; "
                  f"{d.get('objects')} objects")
            print(f"recognition latency p50 {pct(rec_lat, 50):.0f} / p95 {pct(rec_lat, 95):.0f} ms over DDS "
                  f"(keyframe's depth published -> its scene graph received, {len(rec_lat)} graphs); node's own "
                  f"(arrival -> published) p50 {d.get('recognition_latency_p50_ms')} / p95 "
                  f"{d.get('recognition_latency_p95_ms')} ms; keyframe work p50 {d.get('keyframe_work_ms_p50')} ms")
        if rss:
            r = np.array([x[1] for x in rss])
            q = [r[int(len(r) * f)] for f in (0.25, 0.5, 0.75)] + [r[-1]]
            print(f"node RSS (MB)       at 25/50/75/100% of the run: {' / '.join(f'{x:.0f}' for x in q)}; "
                  f"peak {r.max():.0f}")
        bare_after = bare_integration_ms(frames, a.voxel, depth_max, stride)
        bare = {k: (bare_before[k] + bare_after[k]) / 2.0 for k in bare_after}
        if d:
            stages = {k[:-len("_ms_p50")]: float(v) for k, v in d.items() if k.endswith("_ms_p50")
                      and k[:-len("_ms_p50")] in ("convert", "validate", "track", "fusion_prepare", "fusion_open3d",
                                                  "keyframe", "publish", "fusion_path")}
            path_ms = stages.get("fusion_path", float("nan"))
            print("node fusion path    p50 ms per frame by stage: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in stages.items() if k != "fusion_path")
                  + f"; whole path {path_ms:.2f}")
            print(f"bare Open3D VoxelBlockGrid (this process, same {len(frames)} frames, {a.voxel * 100:.0f} cm; "
                  f"before / after the run): uint16+uint8 {bare_before['uint16']:.2f} / {bare_after['uint16']:.2f} "
                  f"ms/frame, float32 {bare_before['float32']:.2f} / {bare_after['float32']:.2f} ms/frame"
                  + (f"; uint16, blocks allocated at a {stride}-pixel stride as the node does, "
                     f"{bare_before['uint16_alloc']:.2f} / {bare_after['uint16_alloc']:.2f} ms/frame"
                     if stride > 1 else ""))
            print(f"ratio               node fusion path / bare uint16 (mean of both) = "
                  f"{path_ms / bare['uint16']:.2f}; "
                  f"node's Open3D calls / bare = {stages.get('fusion_open3d', float('nan')) / bare['uint16']:.2f} "
                  f"(sharing the CPU with the node's keyframe work"
                  + (f"; they allocate blocks at a {stride}-pixel stride" if stride > 1 else "") + "); "
                  f"node path / its own Open3D calls = {path_ms / stages.get('fusion_open3d', float('nan')):.2f}"
                  + (f"; node path / bare with the node's allocation stride = {path_ms / bare['uint16_alloc']:.2f}"
                     if stride > 1 else ""))
        if not a.no_queries:
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
