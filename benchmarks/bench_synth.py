"""Synthetic-data generation speed: frames/s at 320x240 and 640x480 (render + sensor noise, and with disk writes).

Usage:
    python benchmarks/bench_synth.py [--frames 30] [--noise kinect] [--scenes 2]
Targets on the 2-core dev CPU: >= 20 frames/s at 320x240 and >= 5 frames/s at 640x480 (generation).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from g2vlm_core.synth import SceneGenerator, SynthConfig
from g2vlm_core.synth.writer import write_scene


def bench(width: int, height: int, frames: int, scenes: int, noise: str) -> dict[str, float]:
    cfg = SynthConfig(width=width, height=height, frames_per_scene=frames, noise=noise)
    gen = SceneGenerator(cfg)
    gen.scene(0).render_frame(0)  # warm-up: imports, palette, first RaycastingScene
    t_setup, t_frames, t_cpu, n = 0.0, 0.0, 0.0, 0
    render_only = []
    for seed in range(1, scenes + 1):
        t0 = time.perf_counter()
        scene = gen.scene(seed)  # layout + mesh + RaycastingScene build
        t1, c1 = time.perf_counter(), time.process_time()
        for i in range(frames):
            scene.render_frame(i)
        t2 = time.perf_counter()
        t_cpu += time.process_time() - c1
        for i in range(min(frames, 10)):
            r0 = time.perf_counter()
            scene.renderer.render(scene.poses[i])
            render_only.append(time.perf_counter() - r0)
        t_setup += t1 - t0
        t_frames += t2 - t1
        n += frames
    with tempfile.TemporaryDirectory() as tmp:
        scene = gen.scene(scenes + 1)
        t0 = time.perf_counter()
        write_scene(scene, Path(tmp))
        t_write = time.perf_counter() - t0
    return {"frames_per_s": n / t_frames, "cpu_ms": 1000 * t_cpu / n,
            "with_scene_setup_per_s": n / (t_frames + t_setup),
            "render_ms": 1000 * float(np.median(render_only)), "setup_ms": 1000 * t_setup / scenes,
            "written_frames_per_s": frames / t_write}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--scenes", type=int, default=2)
    p.add_argument("--noise", default="kinect")
    args = p.parse_args()
    # Wall-clock rates depend on what else runs on the machine; os.getloadavg() says how busy it was.
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for (w, h), target in (((320, 240), 20.0), ((640, 480), 5.0)):
        r = bench(w, h, args.frames, args.scenes, args.noise)
        ok = "OK" if r["frames_per_s"] >= target else "BELOW TARGET"
        print(f"{w}x{h} noise={args.noise}: {r['frames_per_s']:.1f} frames/s generated (target {target:.0f}, {ok}); "
              f"{r['cpu_ms']:.0f} CPU-ms/frame (all threads); "
              f"ray-cast+shade {r['render_ms']:.1f} ms median; scene setup {r['setup_ms']:.0f} ms; "
              f"{r['with_scene_setup_per_s']:.1f} frames/s incl. setup; "
              f"{r['written_frames_per_s']:.1f} frames/s incl. writing PNG/NPZ/JSON/PLY")


if __name__ == "__main__":
    main()
