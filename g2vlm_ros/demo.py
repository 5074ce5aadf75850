"""The embedded demo (`make demo`): a synthetic scene bag -> the perception node -> spatial queries -> files.

    python -m g2vlm_ros.demo [--seed 909] [--frames 60] [--width 320 --height 240] [--out outputs/demo]

1. makes (or reuses, under data/demo/) a test-split synthetic scene with ground truth and a rosbag2 (mcap);
2. starts the perception node in its own process and replays the bag into it, paced by the node;
3. asks spatial queries (the scene's ground-truth referring expressions, counts, "what is on ...", about the objects
   the replayed frames show: one frame with >= 200 of their pixels) and prints
   each answer with whether it picked the right object (3D box IoU >= 0.25 with the ground-truth target);
4. saves the fused cloud (PLY), the scene graph (JSON) and a picture (PNG) into --out.
Exits 0 when the pipeline ran end to end; the accuracy printed is what it is.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from g2vlm_ros.dds import use_local_dds  # noqa: E402

use_local_dds()

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402

from g2vlm_core.geometry.metrics import box_iou_3d  # noqa: E402
from g2vlm_core.scene_graph import SceneGraph  # noqa: E402
from g2vlm_core.synth.dataset import SynthScene  # noqa: E402
from g2vlm_core.viz import render_map_png  # noqa: E402

from g2vlm_ros import conversions as cv  # noqa: E402
from g2vlm_ros.msg import SceneGraph as SceneGraphMsg  # noqa: E402
from g2vlm_ros.process import NodeProcess  # noqa: E402
from g2vlm_ros.process import perception_node_process as node_process  # noqa: E402
from g2vlm_ros.qos import LATCHED  # noqa: E402
from g2vlm_ros.replay import BagPlayer  # noqa: E402
from g2vlm_ros.srv import SaveMap, SpatialQuery  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BAG_TOPICS = {"rgb_topic": "/camera/color/image_raw", "depth_topic": "/camera/depth/image_raw",
              "camera_info_topic": "/camera/color/camera_info", "pose_topic": "/ground_truth/pose"}


def ensure_scene(root: Path, seed: int, frames: int, width: int, height: int) -> Path:
    """The scene folder (scene.json + bag/), generated with g2vlm-synth unless already there."""
    scene = root / f"scene_{seed:06d}"
    if (scene / "bag" / "metadata.yaml").is_file() and (scene / "scene.json").is_file():
        cfg = json.loads((root / "dataset.json").read_text()).get("config", {})
        if (cfg.get("frames_per_scene"), cfg.get("width"), cfg.get("height")) == (frames, width, height):
            print(f"reusing {scene}")
            return scene
    from g2vlm_core.synth.cli import main as synth_main

    rc = synth_main(["--scenes", "1", "--seed", str(seed), "--frames", str(frames), "--width", str(width),
                     "--height", str(height), "--bag", "mcap", "--out", str(root)])
    if rc != 0 or not (scene / "scene.json").is_file():
        raise RuntimeError(f"g2vlm-synth failed (exit {rc}) for seed {seed}")
    return scene


def perception_node_process(map_dir: Path | None = None) -> NodeProcess:
    """The perception node (shipped parameters, the G2VLM recognizer of the synthetic world) in its own process,
    listening on a synthetic bag's topics, reliable sensor QoS for the replay, no periodic cloud; ``map_dir``: where
    its maps are saved (default: the node's)."""
    return node_process({**BAG_TOPICS, "sensor_reliable": True, "recognizer": "g2vlm",  # the synthetic world's model
                         "cloud_period_s": 0.0, **({"map_dir": map_dir} if map_dir is not None else {})},
                        capture=False)


def replay(node, ex, bag: Path, graphs: list, progress: bool = True, settle_s: float = 3.0,
           timeout_s: float = 60.0):
    """Replay ``bag`` into the node through ``node`` (spun by ``ex``) at the recorded rate with flow control, then
    wait until the map settles: a scene graph in ``graphs`` (filled by a subscription) and none newer for
    ``settle_s`` (the keyframe thread has worked through the keyframes it selected), at most ``timeout_s``;
    returns the ReplayStats.

    At the recorded rate, as on a robot: replayed faster, the keyframe thread (model) falls behind fusion and
    skips more of the candidates (the least novel first)."""
    player = BagPlayer(node, bag, rate=1.0, flow_control=True, executor=ex, progress=progress)
    player.wait_for_subscribers(30.0)
    stats = player.play()
    player.close()
    end = time.monotonic() + timeout_s
    seen, last = len(graphs), time.monotonic()
    while time.monotonic() < end and (not graphs or time.monotonic() - last < settle_s):
        ex.spin_once(timeout_sec=0.1)
        if len(graphs) != seen:
            seen, last = len(graphs), time.monotonic()
    return stats


@dataclass
class Session:
    """A client of a perception node running in its own process (see ``perception_session``)."""

    node: object  # rclpy Node
    ex: SingleThreadedExecutor
    graphs: list  # SceneGraph messages as they arrive (latched)
    query: object  # SpatialQuery client
    node_proc: NodeProcess

    def call(self, client, req, timeout_s: float = 30.0):
        fut = client.call_async(req)
        self.ex.spin_until_future_complete(fut, timeout_sec=timeout_s)
        return fut.result()


@contextmanager
def perception_session(name: str, timeout_s: float = 90.0, map_dir: Path | None = None):
    """Start the perception node (``perception_node_process``), a client node ``name`` subscribed to its scene graph
    and a SpatialQuery client ready to call; stop both on exit."""
    node_proc = perception_node_process(map_dir)
    rclpy.init()
    node = rclpy.create_node(name)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    graphs: list[SceneGraphMsg] = []
    node.create_subscription(SceneGraphMsg, "scene_graph", graphs.append, LATCHED)
    try:
        query = node.create_client(SpatialQuery, "spatial_query")
        if not query.wait_for_service(timeout_sec=timeout_s):
            raise RuntimeError("the perception node did not come up (see its log above)")
        yield Session(node, ex, graphs, query, node_proc)
    finally:
        node.destroy_node()
        rclpy.shutdown()
        node_proc.stop()


def pick_queries(gt: dict, n: int, seen: set[int] | None = None) -> list[tuple[str, int | None]]:
    """Ground-truth referring expressions (view-independent: the live camera is not their reference view) about
    objects the replayed frames show (``seen`` ids; None: every object), then counting and listing questions about
    them; (text, target id or None)."""
    objects = [o for o in gt["objects"] if seen is None or o["id"] in seen]
    ids = {o["id"] for o in objects}
    exprs = [e for e in gt["expressions"] if not e.get("viewpoint") and e["target_id"] in ids]
    rng = np.random.default_rng(gt["seed"])
    chosen = [exprs[i] for i in sorted(rng.choice(len(exprs), size=min(n, len(exprs)), replace=False))]
    out = [(e["text"], int(e["target_id"])) for e in chosen]
    cats = sorted({o["label"] for o in objects})
    if cats:
        out.append((f"how many {cats[0]}s are there", None))
    supports = [o["label"] for o in objects if o["label"] in ("table", "desk", "shelf", "cabinet", "bed")]
    if supports:
        out.append((f"what is on the {supports[0]}", None))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--seed", type=int, default=909, help="synthetic scene seed (seed %% 10 == 9: test split)")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--queries", type=int, default=6, help="ground-truth referring expressions to ask")
    ap.add_argument("--data", type=Path, default=REPO / "data" / "demo")
    ap.add_argument("--out", type=Path, default=REPO / "outputs" / "demo")
    a = ap.parse_args(argv)

    t_start = time.monotonic()
    scene_dir = ensure_scene(a.data, a.seed, a.frames, a.width, a.height)
    scene = SynthScene(scene_dir)
    gt = scene.meta
    gt_objects = {o.id: o for o in scene.objects}
    seen = {o.id for o in scene.seen_objects()}
    print(f"scene {gt['name']} ({gt['room']['type']}, split {gt['split']}): {len(gt_objects)} objects, "
          f"{len(seen)} of them in view of the {a.frames} frames {a.width}x{a.height}")

    with perception_session("g2vlm_demo", map_dir=(a.out / "map").resolve()) as ses:
        node, query, call = ses.node, ses.query, ses.call
        stats = replay(node, ses.ex, scene_dir / "bag", ses.graphs)
        print(f"replayed {sum(stats.published.values())} messages in {stats.wall_s:.1f} s "
              f"({stats.published[BAG_TOPICS['depth_topic']] / max(stats.wall_s, 1e-9):.1f} frames/s through the node)")

        print("\nqueries (ground-truth target in brackets; correct = answer's box IoU >= 0.25 with it):")
        right = asked = 0
        highlight = []
        for text, target in pick_queries(gt, a.queries, seen):
            t0 = time.perf_counter()
            r = call(query, SpatialQuery.Request(query=text))
            ms = (time.perf_counter() - t0) * 1e3
            verdict = ""
            if target is not None:
                asked += 1
                iou = 0.0
                if r.query_achievable and r.objects:
                    iou = box_iou_3d(cv.scene_object_from_msg(r.objects[0]).box, gt_objects[target].box)
                    highlight.append(int(r.objects[0].id))
                ok = iou >= 0.25
                right += ok
                verdict = f"  [{gt_objects[target].label} #{target}] {'correct' if ok else 'wrong'} (IoU {iou:.2f})"
            print(f"  Q: {text}\n     A: {r.answer}  ({ms:.0f} ms){verdict}")
        if asked:
            print(f"referring expressions: {right}/{asked} correct")

        saved = call(node.create_client(SaveMap, "save_map"), SaveMap.Request())  # into map_dir: a.out/map
        if not saved.success:
            raise RuntimeError(f"save_map failed: {saved.message}")
        graph = SceneGraph.from_dict(json.loads(Path(saved.graph_path).read_text()))
        import open3d as o3d

        pcd = o3d.io.read_point_cloud(saved.cloud_path)
        png = render_map_png(np.asarray(pcd.points), np.asarray(pcd.colors), graph, a.out / "map.png",
                             title=f"{gt['name']}: {len(graph.objects)} objects fused from {a.frames} frames",
                             highlight_ids=tuple(highlight))
        print(f"\nsaved {saved.cloud_path}\n      {saved.graph_path}\n      {png}")
        print(f"demo finished in {time.monotonic() - t_start:.0f} s")
        return 0


if __name__ == "__main__":
    sys.exit(main())
