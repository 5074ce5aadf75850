"""Odometry against ground-truth poses: our frame-to-model tracker beside Open3D's frame-to-frame hybrid odometry.

Usage:
    python benchmarks/eval_odometry.py                      # real samples + 2 synthetic Kinect-noise sequences
    python benchmarks/eval_odometry.py --real-only          # the real posed samples of ../shared/data/real only
    python benchmarks/eval_odometry.py --data /path/to/tum/rgbd_dataset_freiburg1_xyz --max-frames 300
    python benchmarks/eval_odometry.py --synthetic-seeds 1009 --frames 300 --no-real

Each sequence is tracked by three methods on the same frames in the same run, frame by frame in turn, so load
from other processes hits them alike:
  ours      g2vlm_core.geometry.odometry.ModelTracker with its defaults (keyframe references, relocalisation
            against our 2 cm TSDF), fusing each tracked frame (what the node does with pose_source odometry);
  open3d    Open3D's frame-to-frame RGB-D odometry with the hybrid (depth + colour) term and its default options
            but the depth range (o3d.pipelines.odometry.compute_rgbd_odometry, OdometryOption(): 20/10/5
            iterations, 3 cm depth difference), chained;
  f2f       RGBDTracker frame-to-frame (Open3D's tensor multi-scale hybrid, 640x480): the node's odometry before.
All see depth from 0.1 to 5 m. Every method starts at the first frame's ground-truth pose; a frame it fails on
keeps its last pose and counts as lost. ATE is the RMSE of positions after SE(3) Umeyama alignment (TUM's
definition), "drift" the RMSE without alignment; ms/frame the median wall time of the tracking call (fusion
excluded for all).

Synthetic sequences come from g2vlm-synth (640x480, Kinect-v1 noise model, test-split seeds) and are generated
under data/odometry/ on first use. Any folder g2vlm_core.datasets.open_dataset reads with poses works with --data.
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import open3d as o3d

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from g2vlm_core.datasets import open_dataset  # noqa: E402
from g2vlm_core.geometry.fusion import FusionConfig, TSDFFusion  # noqa: E402
from g2vlm_core.geometry.metrics import absolute_trajectory_error  # noqa: E402
from g2vlm_core.geometry.odometry import ModelTracker, OdometryConfig, RGBDTracker  # noqa: E402

REAL = Path(os.environ.get("G2VLM_SHARED_DATA", REPO.parent / "shared" / "data" / "real"))
REAL_SEQUENCES = ("icl_nuim_livingroom1_5", "3dmatch_seq01_5")
DEPTH_MAX_M = 5.0  # every method sees depth up to here (the node's default; Open3D's own default is 4 m)


class Ours:
    name = "ours"

    def __init__(self, first) -> None:
        self.fusion = TSDFFusion(FusionConfig(voxel_size_m=0.02, depth_max_m=DEPTH_MAX_M, block_count=20000))
        self.tracker = ModelTracker(self.fusion, T_world_init=first.T_world_cam)

    def step(self, frame) -> tuple[np.ndarray, bool]:
        r = self.tracker.track(frame)
        return r.T_world_cam, r.success

    def after(self, frame, T: np.ndarray, ok: bool) -> None:
        if ok:  # the node fuses every tracked frame; not timed, as fusion is not part of any method's odometry
            self.fusion.integrate(frame, T)


class Open3DHybrid:
    """Open3D's classic RGB-D odometry, hybrid term, default options, each frame against the previous one."""

    name = "open3d"

    def __init__(self, first) -> None:
        i = first.intrinsics
        self.pinhole = o3d.camera.PinholeCameraIntrinsic(i.width, i.height, i.fx, i.fy, i.cx, i.cy)
        self.option = o3d.pipelines.odometry.OdometryOption(depth_max=DEPTH_MAX_M)  # else its defaults
        self.prev = None
        self.pose = first.T_world_cam.copy()

    @staticmethod
    def image(frame) -> o3d.geometry.RGBDImage:
        depth = np.nan_to_num(frame.depth_m, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
        return o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(np.ascontiguousarray(frame.rgb)), o3d.geometry.Image(depth), depth_scale=1.0,
            depth_trunc=DEPTH_MAX_M, convert_rgb_to_intensity=True)

    def step(self, frame) -> tuple[np.ndarray, bool]:
        cur = self.image(frame)
        ok = True
        if self.prev is not None:
            ok, T_prev_cur, _ = o3d.pipelines.odometry.compute_rgbd_odometry(
                cur, self.prev, self.pinhole, np.eye(4), o3d.pipelines.odometry.RGBDOdometryJacobianFromHybridTerm(),
                self.option)
            if ok:
                self.pose = self.pose @ T_prev_cur
        self.prev = cur if ok else self.prev
        return self.pose.copy(), bool(ok)

    def after(self, frame, T, ok) -> None:
        pass


class FrameToFrame:
    name = "f2f"

    def __init__(self, first) -> None:
        self.tracker = RGBDTracker(OdometryConfig(depth_max_m=DEPTH_MAX_M), T_world_init=first.T_world_cam)

    def step(self, frame) -> tuple[np.ndarray, bool]:
        r = self.tracker.track(frame)
        return r.T_world_cam, r.success

    def after(self, frame, T, ok) -> None:
        pass


METHODS = {"ours": Ours, "open3d": Open3DHybrid, "f2f": FrameToFrame}


def evaluate(name: str, frames, methods: list[str]) -> dict[str, dict]:
    runners = [METHODS[m](frames[0]) for m in methods]
    gt = []
    est = {r.name: [] for r in runners}
    ms = {r.name: [] for r in runners}
    lost = {r.name: 0 for r in runners}
    for k in range(len(frames)):
        frame = frames[k]
        gt.append(np.full((4, 4), np.nan) if frame.T_world_cam is None else frame.T_world_cam)
        for r in runners:  # in turn on each frame: the same machine load for every method
            t0 = time.perf_counter()
            T, ok = r.step(frame)
            ms[r.name].append((time.perf_counter() - t0) * 1e3)
            r.after(frame, T, ok)
            est[r.name].append(T)
            lost[r.name] += not ok
    gt = np.stack(gt)
    out = {}
    for r in runners:
        e = np.stack(est[r.name])
        ate = absolute_trajectory_error(e, gt, "se3")
        drift = absolute_trajectory_error(e, gt, "none")
        out[r.name] = {"ate_cm": ate.rmse * 100, "max_cm": ate.max * 100, "drift_cm": drift.rmse * 100,
                       "ms": statistics.median(ms[r.name][1:] or ms[r.name]), "lost": lost[r.name],
                       "frames": len(frames)}
        if r.name == "ours":
            t = r.tracker
            out[r.name]["detail"] = (f"states {dict(t.counts)}; failures {dict(t.failures) or 'none'}")
    return out


def print_table(name: str, frames: list, res: dict[str, dict]) -> None:
    i = frames[0].intrinsics
    print(f"\n{name}: {len(frames)} frames {i.width}x{i.height}")
    print(f"  {'method':8s} {'ATE cm':>8s} {'max cm':>8s} {'drift cm':>9s} {'lost':>5s} {'ms/frame':>9s} "
          f"{'speed vs open3d':>16s}")
    base = res.get("open3d", {}).get("ms")
    for m, r in res.items():
        speed = f"{base / r['ms']:.1f}x" if base else "-"
        print(f"  {m:8s} {r['ate_cm']:8.2f} {r['max_cm']:8.2f} {r['drift_cm']:9.2f} {r['lost']:5d} {r['ms']:9.1f} "
              f"{speed:>16s}")
    if "detail" in res.get("ours", {}):
        print(f"  ours: {res['ours']['detail']}")


def synthetic(seed: int, frames: int, root: Path):
    from g2vlm_core.synth import SynthDataset
    from g2vlm_core.synth.cli import main as synth_main

    out = root / f"seed{seed}_{frames}"
    if not (out / "dataset.json").is_file():
        rc = synth_main(["--scenes", "1", "--seed", str(seed), "--frames", str(frames), "--width", "640",
                         "--height", "480", "--noise", "kinect", "--out", str(out)])
        if rc != 0:
            raise RuntimeError(f"g2vlm-synth failed for seed {seed}")
    scene = SynthDataset(out, "all")[0]
    return f"synthetic seed {seed} (Kinect noise)", _Lazy(len(scene), scene.frame)


class _Lazy:
    """Frames read when used, without the synthetic ground truth's extras (~10 MB a frame at 640x480)."""

    def __init__(self, n: int, read) -> None:
        self.n, self.read = n, read

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        f = self.read(i)
        f.extras = {}
        return f


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, nargs="*", default=[], help="extra posed dataset folders")
    ap.add_argument("--no-real", action="store_true", help="skip the real samples in ../shared/data/real")
    ap.add_argument("--real-only", action="store_true", help="only the real samples")
    ap.add_argument("--synthetic-seeds", type=int, nargs="*", default=[1009, 1019])
    ap.add_argument("--frames", type=int, default=300, help="frames per synthetic sequence (one orbit of the room)")
    ap.add_argument("--max-frames", type=int, default=1000)
    ap.add_argument("--methods", nargs="+", default=["ours", "open3d", "f2f"], choices=sorted(METHODS))
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    sequences = []
    if not args.no_real:
        sequences += [(f"real {n}", list(open_dataset(REAL / n))) for n in REAL_SEQUENCES]
        # 3DMatch's sample holds frames 0, 1, 2, 116 and 422: only the first three follow each other
        sequences.append(("real 3dmatch_seq01_5, frames 0-2 (consecutive)", sequences[-1][1][:3]))
    sequences += [(str(d), _Lazy(min(len(seq), args.max_frames), seq.__getitem__))
                  for d in args.data for seq in [open_dataset(d)]]
    if not args.real_only:
        sequences += [synthetic(s, args.frames, REPO / "data" / "odometry") for s in args.synthetic_seeds]
    print(f"open3d {o3d.__version__}, {os.cpu_count()} CPU threads; methods in turn on each frame (same load)")
    for name, frames in sequences:
        print_table(name, frames, evaluate(name, frames, args.methods))


if __name__ == "__main__":
    main()
