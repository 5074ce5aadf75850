"""Benchmark of the keyframe recognizers on real 640x480 frames (prints figures; not a test).

    python benchmarks/bench_recognition.py                      # coco, coco without tiles, g2vlm, coco + model
    python benchmarks/bench_recognition.py --hf-detector DIR --hf-embedder DIR   # adds the hf backend
    python benchmarks/bench_recognition.py --node               # also the node's fused frames/s on real frames

1. ms per keyframe per backend: the labeller the node runs on a keyframe (geometric segmentation, the
   recognizer, lifting to 3D, the G2VLM reasoner where it runs), median and p90 over the posed real frames of
   ../shared/data/real (3DMatch seq-01 and ICL-NUIM, 640x480), after one warm-up frame; the recognizer's own
   share (model forward passes) beside it;
2. with --node: the perception node over DDS with the coco recognizer and every keyframe recognised inline
   (async_keyframes false), fed a rosbag2 of --frames frames that plays the first three real 3DMatch frames back and
   forth (1.5 cm and 0.4 degrees apart: a hand-held camera's motion between 30 Hz frames; the last two of the five
   are 0.4-1.1 m away and would make every frame a keyframe) at 30 Hz stamps as fast as the node consumes them
   (flow control): fused frames/s and keyframes, and the bare Open3D VoxelBlockGrid integration of the same frames
   for reference.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ROS_DOMAIN_ID", "78")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from g2vlm_core.eval.real_recognition import DEFAULT_DATA, load_sequences  # noqa: E402
from g2vlm_core.geometry.segmentation import Segmenter  # noqa: E402
from g2vlm_core.pipeline import PipelineConfig  # noqa: E402
from g2vlm_core.recognition.factory import make_labeller  # noqa: E402


def frames(data: Path):
    seqs = load_sequences(data, json.loads((data / "annotations.json").read_text()))
    return [f for s in seqs if s.posed for f in s.frames]


def time_backend(name: str, fr: list, model: str, **kw) -> tuple[float, float, float]:
    """(median, p90 ms of the whole labeller call, median ms of recognize alone) over the frames."""
    lab = make_labeller(name, Segmenter(PipelineConfig().segmenter), "cpu", model, **kw)
    lab(fr[0], fr[0].T_world_cam)  # warm-up: first-call allocations, thread pools
    total, rec = [], []
    for f in fr:
        t0 = time.perf_counter()
        lab.recognizer.recognize(f, f.T_world_cam)
        t1 = time.perf_counter()
        lab(f, f.T_world_cam)
        total.append((time.perf_counter() - t1) * 1e3)
        rec.append((t1 - t0) * 1e3)
    return float(np.median(total)), float(np.percentile(total, 90)), float(np.median(rec))


def node_rate(data: Path, n_frames: int, voxel: float) -> None:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import Header

    from g2vlm_core.synth.bag import BagWriter
    from g2vlm_ros.conversions import stamp_to_sec
    from g2vlm_ros.demo import BAG_TOPICS
    from g2vlm_ros.dds import use_local_dds
    from g2vlm_ros.process import perception_node_process
    from g2vlm_ros.qos import RELIABLE
    from g2vlm_ros.replay import BagPlayer

    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_node import bag_frames, bare_integration_ms

    use_local_dds()
    seq = load_sequences(data, json.loads((data / "annotations.json").read_text()), "3dmatch_seq01_5")[0]
    bag = Path(tempfile.mkdtemp()) / "bag"
    with BagWriter(bag) as w:
        for i in range(n_frames):
            f = seq.frames[(0, 1, 2, 1)[i % 4]]
            f.stamp_s = i / 30.0
            w.write(f)
    proc = perception_node_process({**BAG_TOPICS, "sensor_reliable": True, "recognizer": "coco",
                                    "async_keyframes": False, "voxel_size_m": voxel, "cloud_period_s": 0.0},
                                   params_file=False)
    rclpy.init()
    node = rclpy.create_node("bench_recognition")
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    processed: list[tuple[float, float, str]] = []
    node.create_subscription(Header, "processed", lambda m: processed.append(
        (stamp_to_sec(m.stamp), time.monotonic(), m.frame_id)), RELIABLE)
    try:
        player = BagPlayer(node, bag, rate=0.0, flow_control=True, executor=ex, progress=False)
        player.wait_for_subscribers(120.0)
        time.sleep(2.0)
        t0 = time.monotonic()
        player.play()
        end = time.monotonic() + 30.0
        while time.monotonic() < end and len(processed) < n_frames:
            ex.spin_once(timeout_sec=0.05)
        fused = [p for p in processed if p[2] in ("fused", "keyframe")]
        keys = [p for p in processed if p[2] == "keyframe"]
        wall = max(p[1] for p in processed) - t0 if processed else float("nan")
        print(f"\nnode, coco inline, {n_frames} real 640x480 frames (3DMatch frames 0-2 back and forth, 30 Hz stamps), "
              f"{voxel * 100:.0f} cm voxels, replayed as fast as the node consumes:")
        print(f"  fused frames/s {len(fused) / wall:.1f} ({len(fused)} fused, {len(keys)} keyframes recognised inline,"
              f" {1000 * wall / max(len(fused), 1):.0f} ms per fused frame)")
        bare = bare_integration_ms(bag_frames(bag, min(n_frames, 60)), voxel)
        print(f"  bare Open3D VoxelBlockGrid integrate of the same frames (uint16 depth, as the node feeds it): "
              f"{bare['uint16']:.1f} ms/frame")
    finally:
        node.destroy_node()
        rclpy.shutdown()
        proc.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--hf-detector", default="")
    ap.add_argument("--hf-embedder", default="")
    ap.add_argument("--node", action="store_true", help="also time the node over DDS on real frames")
    ap.add_argument("--frames", type=int, default=90, help="frames of the node run")
    ap.add_argument("--voxel", type=float, default=0.02)
    a = ap.parse_args()
    import torch

    fr = frames(Path(a.data))
    print(f"{len(fr)} real 640x480 keyframes, {torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs")
    rows = [("coco (SSD on frame + 2x2 tiles, EfficientNet refine)", "coco", "none", {}),
            ("coco, whole frame only (tiles 0)", "coco", "none", {"tiles": 0}),
            ("coco + G2VLM model as reasoner (node default)", "coco", "auto", {}),
            ("g2vlm (shipped model, 160x120 input)", "g2vlm", "auto", {})]
    if a.hf_detector or a.hf_embedder:
        rows.append((f"hf ({a.hf_detector or '-'} / {a.hf_embedder or '-'})", "hf", "none",
                     {"detector": a.hf_detector, "embedder": a.hf_embedder}))
    print(f"{'backend':56s} {'keyframe ms p50':>15s} {'p90':>6s} {'recognize ms':>13s}")
    for title, name, model, kw in rows:
        p50, p90, rec = time_backend(name, fr, model, **kw)
        print(f"{title:56s} {p50:15.0f} {p90:6.0f} {rec:13.0f}")
    if a.node:
        node_rate(Path(a.data), a.frames, a.voxel)


if __name__ == "__main__":
    main()
