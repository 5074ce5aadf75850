"""Benchmark segmentation and object-map cost per 640x480 frame, and map update/snapshot cost vs map size.

Usage:
    python benchmarks/bench_object_map.py                       # real 3DMatch frames from ../shared/data/real
    python benchmarks/bench_object_map.py --data DIR --repeats 20 --sizes 50 500

Prints medians in milliseconds. Segmentation is timed on the 5 real 3DMatch frames (Zeng et al., CVPR 2017;
frame-XXXXXX.color.png / .depth.png uint16 mm / .pose.txt camera-to-world, f=570.34, c=(320, 240)); the
scaling part fills a map with N synthetic objects and times an update with 10 segments and a snapshot.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from g2vlm_core.geometry.camera import CameraIntrinsics
from g2vlm_core.frame import RGBDFrame
from g2vlm_core.mapping.object_map import ObjectMap, ObjectMapConfig
from g2vlm_core.predicates import Viewpoint
from g2vlm_core.geometry.segmentation import Segment, Segmenter, SegmenterConfig

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("G2VLM_SHARED_DATA", REPO.parent / "shared" / "data" / "real"))
INTR_3DMATCH = CameraIntrinsics(640, 480, 570.342205, 570.342205, 320.0, 240.0)


def load_3dmatch(root: Path) -> list[RGBDFrame]:
    seq = root / "3dmatch_seq01_5" / "seq-01"
    frames = []
    for k, color in enumerate(sorted(seq.glob("frame-*.color.png"))):
        stem = str(color)[: -len(".color.png")]
        rgb = np.asarray(Image.open(color).convert("RGB"))
        depth = np.asarray(Image.open(stem + ".depth.png")).astype(np.float32) / 1000.0
        frames.append(RGBDFrame(rgb, depth, INTR_3DMATCH, np.loadtxt(stem + ".pose.txt"), stamp_s=float(k), index=k))
    if not frames:
        raise FileNotFoundError(f"no 3DMatch frames under {seq}")
    return frames


def median_ms(fn, repeats: int) -> float:
    """Median wall-clock milliseconds of ``fn()``; its CPU-time median goes to CPU_MS (less sensitive to other
    processes on a shared machine, but counts every thread of this one)."""
    fn()  # warm-up (caches, lazy imports)
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t) * 1e3)
        cpu.append((time.process_time() - c) * 1e3)
    CPU_MS.append(statistics.median(cpu))
    return statistics.median(wall)


CPU_MS: list[float] = []


def bench_segmentation(frames: list[RGBDFrame], repeats: int) -> None:
    print("== segmentation per 640x480 frame (3DMatch, up axis unknown), median ms ==")
    for method in ("voxel_cc", "dbscan"):
        seg = Segmenter(SegmenterConfig(up_axis=None, cluster_method=method))
        CPU_MS.clear()
        per_frame = [median_ms(lambda f=f: seg.segment_frame(f), repeats) for f in frames]
        n_obj = [sum(s.kind == "object" for s in seg.segment_frame(f)) for f in frames]
        print(f"  {method:9s} wall ms per frame: " + " ".join(f"{t:5.1f}" for t in per_frame)
              + f"   mean {np.mean(per_frame):5.1f} (CPU {np.mean(CPU_MS):5.1f})   objects/frame {n_obj}")
    seg = Segmenter(SegmenterConfig(up_axis=None))
    f = frames[0]
    ids = np.zeros(f.depth_m.shape, np.int32)
    for k in range(20):  # 20 rectangular instance masks on a 5x4 grid
        r, c = divmod(k, 5)
        ids[r * 120 + 10: r * 120 + 110, c * 128 + 10: c * 128 + 118] = k + 1
    t = median_ms(lambda: seg.segments_from_instances(f, ids, {i: "thing" for i in range(1, 21)}), repeats)
    print(f"  instance masks (20 instances): {t:5.1f} ms")
    seg.segment_frame(f)
    print("  stage breakdown, frame 0 (ms):", {k: round(v, 1) for k, v in seg.last_stats.timings_ms.items()})


def synthetic_frames(n: int = 5, seed: int = 5) -> list[RGBDFrame]:
    """640x480 frames with Kinect-like noise of one procedural room (z-up, floor at z=0) from g2vlm_core.synth."""
    from g2vlm_core.synth import SceneGenerator, SynthConfig

    scene = SceneGenerator(SynthConfig(width=640, height=480, frames_per_scene=n * 3)).scene(seed)
    return [scene.render_frame(i) for i in range(0, n * 3, 3)]


def bench_segmentation_gravity(frames: list[RGBDFrame], repeats: int) -> None:
    print("== segmentation per 640x480 frame (synthetic room, z-up: default config), median ms ==")
    seg = Segmenter()
    CPU_MS.clear()
    per_frame = [median_ms(lambda f=f: seg.segment_frame(f), repeats) for f in frames]
    kinds = [sorted(s.kind for s in seg.segment_frame(f)) for f in frames]
    print("  voxel_cc  wall ms per frame: " + " ".join(f"{t:5.1f}" for t in per_frame)
          + f"   mean {np.mean(per_frame):5.1f} (CPU {np.mean(CPU_MS):5.1f})")
    print("  planes/objects per frame:", [(len(k) - k.count("object"), k.count("object")) for k in kinds])
    seg.segment_frame(frames[0])
    print("  stage breakdown, frame 0 (ms):", {k: round(v, 1) for k, v in seg.last_stats.timings_ms.items()})
    ids = frames[0].extras.get("instance_ids")
    if ids is not None:
        from g2vlm_core.synth import OBJECT_ID_OFFSET  # ids below it are room structure

        ids = np.where(ids >= OBJECT_ID_OFFSET, ids, 0).astype(np.int32)
        t = median_ms(lambda: seg.segments_from_instances(frames[0], ids), repeats)
        print(f"  instance masks (ground-truth ids, {len(np.unique(ids)) - 1} instances): {t:5.1f} ms")


def bench_map_on_frames(frames: list[RGBDFrame], repeats: int) -> None:
    print("== object-map update on the real sequence, median ms ==")
    seg = Segmenter(SegmenterConfig(up_axis=None))
    segs = [seg.segment_frame(f) for f in frames]

    def run() -> ObjectMap:
        m = ObjectMap(ObjectMapConfig(up_axis=None))
        for f, s in zip(frames, segs):
            m.update(s, f.stamp_s, f.T_world_cam, f.intrinsics)
        return m

    t = median_ms(run, repeats)
    m = run()
    t_snap = median_ms(lambda: m.snapshot(Viewpoint.from_pose(frames[-1].T_world_cam)), repeats)
    print(f"  update: {t / len(frames):5.2f} ms/frame ({len(frames)} frames, {len(m)} objects), "
          f"snapshot {t_snap:5.2f} ms")


def synthetic_map(n_objects: int, seed: int = 0) -> tuple[ObjectMap, list[Segment]]:
    """A map of n objects (0.2 m blobs of 300 points on a 0.5 m grid) and 10 segments re-observing some."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n_objects)))
    centres = np.array([[0.5 * (k % side), 0.5 * (k // side), 0.1] for k in range(n_objects)])
    colours = rng.uniform(0, 1, (n_objects, 3))

    def blob(c, col):
        return Segment(c + rng.uniform(-0.1, 0.1, (300, 3)), np.tile(col, (300, 1)))

    # every object published (unnamed blobs seen once would not be: publish_unnamed_min_observations; nor blobs seen
    # once that later updates, without a pose, count as missed: hold_unconfirmed_missed), so the snapshot and
    # relation cost of all n objects is what is measured
    m = ObjectMap(ObjectMapConfig(merge_every=5, prune_after_frames=10**9, publish_unnamed_min_observations=1,
                                  hold_unconfirmed_missed=0))
    for start in range(0, n_objects, 50):
        m.update([blob(centres[k], colours[k]) for k in range(start, min(start + 50, n_objects))], 0.0)
    assert len(m) == n_objects, len(m)
    picks = rng.choice(n_objects, 10, replace=False)
    return m, [blob(centres[k] + [0.01, 0.0, 0.0], colours[k]) for k in picks]


def bench_scaling(sizes: list[int], repeats: int) -> None:
    print("== map size scaling: update with 10 segments (merge pass every 5th update), worst-case merge pass, "
          "snapshot, save ==")
    for n in sizes:
        m, segs = synthetic_map(n)
        t_upd = median_ms(lambda: m.update(segs, 1.0), repeats)
        assert len(m) == n, "segments must re-associate, not create objects"
        def worst_case_merge_pass() -> None:  # every object changed since the last pass: all touching pairs tested
            for o in m._objects.values():
                o.dirty = True
            m._merge_duplicates()

        t_merge_pass = median_ms(worst_case_merge_pass, max(3, repeats // 4))
        t_snap = median_ms(lambda: m.snapshot(Viewpoint(np.array([-2.0, 0, 1]), np.array([1.0, 0, 0]))), repeats)
        t_save = median_ms(lambda: m.to_dict(), max(3, repeats // 4))
        print(f"  {n:4d} objects: update {t_upd:6.2f} ms   merge pass {t_merge_pass:6.2f} ms   "
              f"snapshot {t_snap:7.2f} ms   to_dict {t_save:7.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding 3dmatch_seq01_5/")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 500])
    args = ap.parse_args()
    frames = load_3dmatch(args.data)
    bench_segmentation(frames, args.repeats)
    bench_segmentation_gravity(synthetic_frames(), args.repeats)
    bench_map_on_frames(frames, args.repeats)
    bench_scaling(args.sizes, args.repeats)


if __name__ == "__main__":
    main()
