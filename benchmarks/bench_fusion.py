"""Benchmark TSDF fusion per 640x480 frame against bare Open3D VoxelBlockGrid, plus extraction, memory, object map.

Usage:
    python benchmarks/bench_fusion.py                          # 3DMatch + ICL-NUIM samples, 1 cm and 5 cm, 40 frames
    python benchmarks/bench_fusion.py --frames 100 --voxels 0.02 0.05 --device CUDA:0
    python benchmarks/bench_fusion.py --data /path/to/shared/data/real --datasets 3dmatch_seq01_5

For each dataset (its 5 real frames cycled to --frames) and voxel size it prints the median ms of
``TSDFFusion.integrate`` and of the bare Open3D calls (``compute_unique_block_coordinates`` + ``integrate`` on
tensors prepared outside the timer, the most favourable bare case), their ratio, point-cloud and mesh
extraction ms, and the active blocks / MB after all frames. Ours and bare alternate frame by frame so load
from other processes hits both alike. Then the per-frame cost of segmentation + ``ObjectMap.update``.
Samples: 3DMatch seq-01 (Zeng et al., CVPR 2017) and ICL-NUIM living room 1 (Handa et al., ICRA 2014).
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from pathlib import Path

import numpy as np
import open3d as o3d
import open3d.core as o3c

from g2vlm_core.geometry.camera import invert_transform
from g2vlm_core.datasets import open_dataset
from g2vlm_core.geometry.fusion import FusionConfig, TSDFFusion

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("G2VLM_SHARED_DATA", REPO.parent / "shared" / "data" / "real"))


def ms(samples: list[float]) -> float:
    return 1e3 * statistics.median(samples)


class BareVBG:
    """The same grid driven directly through Open3D, inputs converted to tensors ahead of time."""

    def __init__(self, cfg: FusionConfig, device: o3c.Device) -> None:
        self.cfg = cfg
        self.vbg = o3d.t.geometry.VoxelBlockGrid(("tsdf", "weight", "color"), (o3c.float32,) * 3, ((1), (1), (3)),
                                                 cfg.voxel_size_m, cfg.block_resolution, cfg.block_count, device)
        self.device = device

    def prepare(self, frame):
        d = np.where((frame.depth_m >= self.cfg.depth_min_m) & (frame.depth_m <= self.cfg.depth_max_m),
                     frame.depth_m, 0).astype(np.float32)
        depth = o3d.t.geometry.Image(o3c.Tensor(d)).to(self.device)
        color = o3d.t.geometry.Image(o3c.Tensor(frame.rgb.astype(np.float32) / 255.0)).to(self.device)
        return depth, color, o3c.Tensor(frame.intrinsics.K), o3c.Tensor(invert_transform(frame.T_world_cam))

    def integrate(self, depth, color, K, ext) -> None:
        c = self.cfg
        blocks = self.vbg.compute_unique_block_coordinates(depth, K, ext, 1.0, c.depth_max_m, c.trunc_voxel_multiplier)
        self.vbg.integrate(blocks, depth, color, K, K, ext, 1.0, c.depth_max_m, c.trunc_voxel_multiplier)


def bench_fusion(frames, voxel: float, n_frames: int, device: str) -> dict:
    cfg = FusionConfig(voxel_size_m=voxel, depth_max_m=4.0, device=device,
                       block_count=4000 if voxel < 0.02 else 500)
    ours = TSDFFusion(cfg)
    bare = BareVBG(cfg, ours.device)
    prepared = [bare.prepare(f) for f in frames]
    t_ours, t_bare = [], []
    for k in range(n_frames):
        f, p = frames[k % len(frames)], prepared[k % len(frames)]
        t0 = time.perf_counter()
        ours.integrate(f)
        t1 = time.perf_counter()
        bare.integrate(*p)
        t2 = time.perf_counter()
        if k >= len(frames):  # the first pass allocates blocks and grows the hash: report steady state
            t_ours.append(t1 - t0)
            t_bare.append(t2 - t1)
    t_pc, t_mesh = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        pts, _ = ours.extract_point_cloud()
        t1 = time.perf_counter()
        mesh = ours.extract_mesh()
        t2 = time.perf_counter()
        t_pc.append(t1 - t0)
        t_mesh.append(t2 - t1)
    s = ours.stats()
    return {"ours": ms(t_ours), "bare": ms(t_bare), "ratio": ms(t_ours) / ms(t_bare), "pc": ms(t_pc),
            "mesh": ms(t_mesh), "points": len(pts), "tris": int(mesh.triangle.indices.shape[0]) if
            "indices" in mesh.triangle else 0, "blocks": s.active_blocks, "mb": s.active_mb,
            "alloc_mb": s.allocated_bytes / 2**20, "device": str(ours.device)}


def bench_object_map(frames) -> str:
    try:
        from g2vlm_core.mapping.object_map import ObjectMap
        from g2vlm_core.geometry.segmentation import Segmenter
    except ImportError as e:  # the object map is another module; keep the fusion numbers usable without it
        return f"TODO object map not available ({e})"
    seg, omap = Segmenter(), ObjectMap()
    t_seg, t_upd = [], []
    for k, f in enumerate(frames):
        t0 = time.perf_counter()
        segments = seg.segment_frame(f, f.T_world_cam)
        t1 = time.perf_counter()
        omap.update(segments, float(k), f.T_world_cam, f.intrinsics)
        t2 = time.perf_counter()
        t_seg.append(t1 - t0)
        t_upd.append(t2 - t1)
    return (f"object map: segmentation {ms(t_seg):.1f} ms/frame, ObjectMap.update {ms(t_upd):.1f} ms/frame "
            f"(median of {len(frames)} frames, {len(omap)} objects)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--datasets", nargs="+", default=["3dmatch_seq01_5", "icl_nuim_livingroom1_5"])
    ap.add_argument("--voxels", nargs="+", type=float, default=[0.01, 0.05])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"open3d {o3d.__version__}, CUDA available: {o3c.cuda.is_available()}, threads: {os.cpu_count()}")
    print(f"{'dataset':24s} {'voxel':>6s} {'ours ms':>8s} {'bare ms':>8s} {'ratio':>6s} {'cloud ms':>9s} "
          f"{'mesh ms':>8s} {'points':>8s} {'blocks':>7s} {'MB':>7s} {'alloc MB':>9s}")
    for name in args.datasets:
        frames = list(open_dataset(args.data / name))
        for v in args.voxels:
            r = bench_fusion(frames, v, args.frames, args.device)
            print(f"{name:24s} {v:6.3f} {r['ours']:8.2f} {r['bare']:8.2f} {r['ratio']:6.2f} {r['pc']:9.2f} "
                  f"{r['mesh']:8.2f} {r['points']:8d} {r['blocks']:7d} {r['mb']:7.1f} {r['alloc_mb']:9.1f}"
                  f"  [{r['device']}]")
    print(f"({args.frames} frames each, 640x480; ms are medians after the first pass over the 5 frames; MB = "
          "voxel payload of active blocks, alloc MB = hash capacity)")
    print(bench_object_map(list(open_dataset(args.data / args.datasets[0]))))


if __name__ == "__main__":
    main()
