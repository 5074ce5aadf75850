"""Time the message conversions the node runs per frame (prints figures; not a test).

    python benchmarks/bench_conversions.py [--repeat 50]

Targets on the 2-core build machine: each under 5 ms.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from g2vlm_ros import conversions as cv


def timed(fn, repeat: int) -> tuple[float, float]:
    fn()  # warm-up
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(ts)), float(np.percentile(ts, 95))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=50)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    depth = rng.uniform(0.3, 5.0, (480, 640)).astype(np.float32)
    msgs = {"rgb8 + 16UC1": (cv.numpy_to_image(rgb, "rgb8"), cv.depth_to_image(depth, "16UC1")),
            "bgr8 + 32FC1": (cv.numpy_to_image(rgb, "bgr8"), cv.depth_to_image(depth, "32FC1"))}
    print("conversion                                   median ms   p95 ms")
    for name, (m_rgb, m_depth) in msgs.items():
        med, p95 = timed(lambda: (cv.rgb_from_image(m_rgb), cv.depth_from_image(m_depth)), a.repeat)
        print(f"640x480 {name:<14} -> numpy                {med:8.2f} {p95:8.2f}")
    pts = rng.normal(size=(300_000, 3)).astype(np.float32)
    cols = rng.integers(0, 256, (300_000, 3), dtype=np.uint8)
    med, p95 = timed(lambda: cv.xyz_to_pointcloud2(pts, cols), a.repeat)
    print(f"300k xyzrgb -> PointCloud2                  {med:8.2f} {p95:8.2f}")
    msg = cv.xyz_to_pointcloud2(pts, cols)
    med, p95 = timed(lambda: cv.pointcloud2_to_xyz(msg), a.repeat)
    print(f"PointCloud2 -> 300k xyzrgb                  {med:8.2f} {p95:8.2f}")


if __name__ == "__main__":
    main()
