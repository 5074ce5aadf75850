"""TUM RGB-D benchmark loader: rgb.txt / depth.txt (or associations.txt) and groundtruth.txt, depth factor 5000."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from ..geometry.camera import CameraIntrinsics, GeometryError
from .base import RGBDSequence, image_size

log = logging.getLogger(__name__)

# Published colour-camera calibrations (the depth images are registered to colour); "ros_default" is what
# the benchmark recommends for the depth images when calibrations are not applied.
TUM_INTRINSICS = {
    "freiburg1": (517.3, 516.5, 318.6, 255.3),
    "freiburg2": (520.9, 521.0, 325.1, 249.7),
    "freiburg3": (535.4, 539.2, 320.1, 247.6),
    "ros_default": (525.0, 525.0, 319.5, 239.5),
}


def read_file_list(path: Path) -> list[tuple[float, list[str]]]:
    """TUM list file -> [(timestamp, [fields...])], skipping '#' comments and blank lines."""
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.replace(",", " ").split()
        out.append((float(parts[0]), parts[1:]))
    return out


def associate(stamps_a: np.ndarray, stamps_b: np.ndarray, max_dt_s: float) -> list[tuple[int, int]]:
    """Greedy one-to-one nearest-timestamp matching (as TUM's associate.py): pairs (i, j) with |dt| <= max_dt_s,
    closest pairs first, ordered by i."""
    a, b = np.asarray(stamps_a, np.float64), np.asarray(stamps_b, np.float64)
    if len(a) == 0 or len(b) == 0:
        return []
    dt = np.abs(a[:, None] - b[None, :])  # (A, B); TUM sequences are a few thousand frames, fine in memory
    cand = np.argwhere(dt <= max_dt_s)
    order = np.argsort(dt[cand[:, 0], cand[:, 1]], kind="stable")
    used_a, used_b, pairs = set(), set(), []
    for i, j in cand[order]:
        if i not in used_a and j not in used_b:
            used_a.add(int(i)), used_b.add(int(j))
            pairs.append((int(i), int(j)))
    return sorted(pairs)


def interpolate_poses(gt_stamps: np.ndarray, gt_poses: np.ndarray, query: np.ndarray,
                      max_gap_s: float = 0.1) -> list[np.ndarray | None]:
    """Pose at each query time: linear in translation, slerp in rotation between the bracketing ground-truth
    samples; None outside the ground truth or where the bracketing samples are more than max_gap_s apart."""
    out: list[np.ndarray | None] = []
    if len(gt_stamps) == 0:
        return [None] * len(query)
    rots = Rotation.from_matrix(gt_poses[:, :3, :3])
    for t in query:
        k = int(np.searchsorted(gt_stamps, t))
        if k < len(gt_stamps) and abs(gt_stamps[k] - t) < 1e-9:
            out.append(gt_poses[k].copy())
            continue
        if k == 0 or k == len(gt_stamps) or gt_stamps[k] - gt_stamps[k - 1] > max_gap_s:
            out.append(None)
            continue
        t0, t1 = gt_stamps[k - 1], gt_stamps[k]
        a = (t - t0) / (t1 - t0)
        T = np.eye(4)
        T[:3, :3] = Slerp([t0, t1], rots[[k - 1, k]])([t]).as_matrix()[0]
        T[:3, 3] = (1 - a) * gt_poses[k - 1, :3, 3] + a * gt_poses[k, :3, 3]
        out.append(T)
    return out


def read_groundtruth(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """groundtruth.txt ('timestamp tx ty tz qx qy qz qw') -> stamps (N,), poses (N, 4, 4) T_world_cam."""
    rows = read_file_list(path)
    if not rows:
        return np.zeros(0), np.zeros((0, 4, 4))
    stamps = np.array([r[0] for r in rows])
    vals = np.array([[float(x) for x in r[1][:7]] for r in rows])  # (N, 7)
    poses = np.tile(np.eye(4), (len(rows), 1, 1))
    poses[:, :3, :3] = Rotation.from_quat(vals[:, 3:7]).as_matrix()  # scipy quaternions are (x, y, z, w) too
    poses[:, :3, 3] = vals[:, :3]
    order = np.argsort(stamps)
    return stamps[order], poses[order]


class TUMSequence(RGBDSequence):
    """One TUM RGB-D sequence folder (rgb/, depth/, rgb.txt, depth.txt, optional associations.txt, groundtruth.txt).

    intrinsics: explicit, else from the folder name (freiburg1/2/3), else the ROS default 525/319.5/239.5.
    """

    name = "tum"

    def __init__(self, root: str | Path, intrinsics: CameraIntrinsics | None = None, depth_factor: float = 5000.0,
                 max_dt_s: float = 0.02, max_pose_gap_s: float = 0.1) -> None:
        root = Path(root)
        assoc = root / "associations.txt"
        if assoc.is_file():
            rows = read_file_list(assoc)
            # either "t_rgb rgb t_depth depth" (associate.py rgb.txt depth.txt) or depth first; detect by path
            first_is_rgb = not rows or "depth" not in rows[0][1][0]
            rgb_t, rgb_p, dep_t, dep_p = [], [], [], []
            for t, f in rows:
                ta, pa, tb, pb = t, f[0], float(f[1]), f[2]
                if not first_is_rgb:
                    ta, pa, tb, pb = tb, pb, ta, pa
                rgb_t.append(ta), rgb_p.append(root / pa), dep_t.append(tb), dep_p.append(root / pb)
        else:
            rgb_rows, dep_rows = read_file_list(root / "rgb.txt"), read_file_list(root / "depth.txt")
            pairs = associate([r[0] for r in rgb_rows], [r[0] for r in dep_rows], max_dt_s)
            rgb_t = [rgb_rows[i][0] for i, _ in pairs]
            rgb_p = [root / rgb_rows[i][1][0] for i, _ in pairs]
            dep_t = [dep_rows[j][0] for _, j in pairs]
            dep_p = [root / dep_rows[j][1][0] for _, j in pairs]
        if not dep_p:
            raise GeometryError(f"{root}: no associated rgb/depth pairs")
        gt = root / "groundtruth.txt"
        if gt.is_file():
            gs, gp = read_groundtruth(gt)
            poses = interpolate_poses(gs, gp, np.asarray(dep_t), max_pose_gap_s)
        else:
            poses = [None] * len(dep_p)
        if intrinsics is None:
            w, h = image_size(dep_p[0])
            m = re.search(r"freiburg[123]", root.name)
            key = m.group(0) if m else "ros_default"
            fx, fy, cx, cy = TUM_INTRINSICS[key]
            intrinsics = CameraIntrinsics(w, h, fx, fy, cx, cy)
            log.info("TUM %s: using %s intrinsics", root.name, key)
        super().__init__(root, intrinsics, rgb_p, dep_p, poses, dep_t, depth_factor)
