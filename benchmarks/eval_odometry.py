"""Evaluate RGB-D odometry (frame-to-frame and frame-to-model) against ground-truth poses: ATE, RPE, ms/frame.

Usage:
    python benchmarks/eval_odometry.py                                   # ICL-NUIM 5-frame sample
    python benchmarks/eval_odometry.py --data /path/to/tum/rgbd_dataset_freiburg1_xyz --max-frames 300
    python benchmarks/eval_odometry.py --data DIR --methods hybrid point_to_plane --voxel 0.02

Any folder ``g2vlm_core.datasets.open_dataset`` understands works if it has ground-truth poses. The tracker
starts at the first frame's ground-truth pose; frames it fails on keep the last good pose (and are counted).
ATE is reported after SE(3) Umeyama alignment and unaligned (drift from the shared start); RPE over one frame.
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from pathlib import Path

import numpy as np

from g2vlm_core.datasets import open_dataset
from g2vlm_core.geometry.fusion import FusionConfig, TSDFFusion
from g2vlm_core.geometry.metrics import absolute_trajectory_error, relative_pose_error
from g2vlm_core.geometry.odometry import OdometryConfig, RGBDTracker

REPO = Path(__file__).resolve().parents[1]
DEFAULT = Path(os.environ.get("G2VLM_SHARED_DATA", REPO.parent / "shared" / "data" / "real")) / \
    "icl_nuim_livingroom1_5"


def run(seq, mode: str, method: str, voxel: float, max_frames: int) -> str:
    fusion = TSDFFusion(FusionConfig(voxel_size_m=voxel, device="auto"))
    tracker = RGBDTracker(OdometryConfig(method=method), mode=mode, fusion=fusion)
    est, gt, times = [], [], []
    for k in range(min(len(seq), max_frames)):
        frame = seq[k]
        t0 = time.perf_counter()
        r = tracker.track(frame)
        times.append(time.perf_counter() - t0)
        if r.success:
            fusion.integrate(frame, r.T_world_cam)
        est.append(r.T_world_cam)
        gt.append(np.full((4, 4), np.nan) if frame.T_world_cam is None else frame.T_world_cam)
    est, gt = np.stack(est), np.stack(gt)
    ate = absolute_trajectory_error(est, gt, "se3")
    raw = absolute_trajectory_error(est, gt, "none")
    ok = np.all(np.isfinite(gt.reshape(len(gt), -1)), axis=1)
    rpe_t, rpe_r = relative_pose_error(est[ok], gt[ok])
    fails = dict(tracker.failures) or "none"
    return (f"{mode:15s} {method:15s} frames {len(est):4d}  ATE {ate.rmse * 1e3:7.2f} mm (se3)  "
            f"{raw.rmse * 1e3:7.2f} mm (unaligned)  RPE {rpe_t * 1e3:6.2f} mm {rpe_r:5.2f} deg  "
            f"{1e3 * statistics.median(times[1:] or times):6.1f} ms/frame  failures: {fails}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT)
    ap.add_argument("--modes", nargs="+", default=["frame_to_frame", "frame_to_model"])
    ap.add_argument("--methods", nargs="+", default=["hybrid", "point_to_plane"])
    ap.add_argument("--voxel", type=float, default=0.02, help="TSDF voxel (m) of the frame-to-model map")
    ap.add_argument("--max-frames", type=int, default=1000)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    seq = open_dataset(args.data)
    print(f"{seq!r}: {seq.intrinsics.width}x{seq.intrinsics.height}")
    for mode in args.modes:
        for method in args.methods:
            print(run(seq, mode, method, args.voxel, args.max_frames))


if __name__ == "__main__":
    main()
