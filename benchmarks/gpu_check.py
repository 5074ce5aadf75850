"""GPU check: the figures a one-GPU machine should give, in one run (prints them; not a test).

    bash benchmarks/gpu_check.sh                 # the prepared run: CUDA, under 8 minutes
    python benchmarks/gpu_check.py --device cuda
    python benchmarks/gpu_check.py --small       # CPU, tiny frames: what tests/test_gpu_check.py runs

Prints, for the device against the CPU on the same frames:
1. fusion ms/frame at 640x480 for 5, 2 and 1 cm voxels: our TSDFFusion.integrate and the bare Open3D
   VoxelBlockGrid calls (uint16 + uint8 inputs prepared outside the timer), on the device and on the CPU;
2. the G2VLM model's keyframe ms (G2VLMInference.process_keyframe at the checkpoint's input size) in float32 and
   in float16 / bfloat16 (the checkpoint config's dtype override; on the CPU only bfloat16 is tried);
3. each importable recognizer backend's ms per keyframe (RECOGNIZERS below: one line per backend);
4. the perception node's fused frames/s over DDS with device:=<device> (benchmarks/bench_node.py, replayed as fast
   as the node takes).
Frames come from the synthetic generator (one test-split scene, Kinect noise), so no data files are needed.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Keyframe recognizers to time: (name, factory(device) -> labeller(frame, T_world_cam)). A backend that cannot be
# built here (missing package, weights, or device) is reported and skipped. Adding one is one line.
RECOGNIZERS = (
    ("g2vlm", lambda device: _factory_labeller("g2vlm", device)),
    ("coco", lambda device: _factory_labeller("coco", device)),
    ("hf", lambda device: _factory_labeller("hf", device)),
)


def _factory_labeller(name: str, device: str):
    """A recognizer as the node builds it (its factory, default settings)."""
    from g2vlm_core.geometry.segmentation import Segmenter

    from g2vlm_core.recognition.factory import make_labeller

    return make_labeller(name, Segmenter(), device, "auto")


def median_ms(fn, n: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(out)


def make_frames(n: int, width: int, height: int):
    from g2vlm_core.synth.config import SynthConfig
    from g2vlm_core.synth.generator import SceneGenerator

    scene = SceneGenerator(SynthConfig(num_scenes=1, frames_per_scene=n, width=width, height=height,
                                       seed=1009)).scene(1009)
    return [scene.render_frame(i) for i in range(n)]


def fusion_section(frames, device: str, voxels: list[float]) -> None:
    import open3d as o3d
    import open3d.core as o3c

    from g2vlm_core.geometry.camera import invert_transform
    from g2vlm_core.geometry.fusion import FusionConfig, TSDFFusion

    devices = ["CPU:0"] + (["CUDA:0"] if device == "cuda" else [])
    w, h = frames[0].intrinsics.width, frames[0].intrinsics.height
    print(f"\n[fusion] {len(frames)} frames {w}x{h}, ms/frame (median after the first pass)")
    print(f"  {'voxel':>6s} " + " ".join(f"{d + ' ours':>14s} {d + ' bare':>14s}" for d in devices))
    for v in voxels:
        row = []
        for dev in devices:
            cfg = FusionConfig(voxel_size_m=v, depth_max_m=5.0, device=dev, block_count=20000 if v < 0.02 else 4000)
            ours = TSDFFusion(cfg)
            vbg = o3d.t.geometry.VoxelBlockGrid(("tsdf", "weight", "color"), (o3c.float32,) * 3, ((1), (1), (3)),
                                                v, 8, cfg.block_count, o3c.Device(dev))
            prepared = [(o3d.t.geometry.Image(o3c.Tensor(np.rint(np.nan_to_num(f.depth_m) * 1000).astype(np.uint16)))
                         .to(o3c.Device(dev)), o3d.t.geometry.Image(o3c.Tensor(f.rgb)).to(o3c.Device(dev)),
                         o3c.Tensor(f.intrinsics.K), o3c.Tensor(invert_transform(f.T_world_cam))) for f in frames]
            t_ours, t_bare = [], []
            for k in range(2 * len(frames)):
                f, (d, c, K, ext) = frames[k % len(frames)], prepared[k % len(frames)]
                t0 = time.perf_counter()
                ours.integrate(f)
                t1 = time.perf_counter()
                blocks = vbg.compute_unique_block_coordinates(d, K, ext, 1000.0, 5.0, 4.0)
                vbg.integrate(blocks, d, c, K, K, ext, 1000.0, 5.0, 4.0)
                if dev.startswith("CUDA"):
                    o3c.cuda.synchronize()
                t2 = time.perf_counter()
                if k >= len(frames):
                    t_ours.append((t1 - t0) * 1e3)
                    t_bare.append((t2 - t1) * 1e3)
            row.append(f"{statistics.median(t_ours):14.2f} {statistics.median(t_bare):14.2f}")
        print(f"  {v:6.3f} " + " ".join(row))
    if device != "cuda":
        print("  (no CUDA run: --device cpu)")


def model_section(frames, device: str, n: int) -> None:
    from g2vlm_core.model.inference import G2VLMInference
    from g2vlm_core.recognition.g2vlm import SHIPPED_CHECKPOINT, G2VLMRecognizer

    dtypes = ["float32", "float16", "bfloat16"] if device == "cuda" else ["float32", "bfloat16"]
    print(f"\n[model] G2VLM keyframe ms on {device} ({SHIPPED_CHECKPOINT.name})")
    f = frames[len(frames) // 2]
    for dt in dtypes:
        try:
            inf = G2VLMInference.from_checkpoint(SHIPPED_CHECKPOINT, device, dtype=dt)
            if device == "cpu" and dt != "float32":  # the inference class autocasts on CUDA only
                import torch
                inf.dtype = getattr(torch, dt)
            rec = G2VLMRecognizer(inf, input_width=inf.training_image_hw[1] if inf.training_image_hw else 0)
            rgb, depth, K = rec._model_input(f)  # the keyframe at the size the recognizer hands the model
            ms = median_ms(lambda: inf.process_keyframe(rgb, depth, K, f.T_world_cam), n)
            print(f"  {dt:9s} {ms:8.1f} ms/keyframe at {rgb.shape[1]}x{rgb.shape[0]}")
        except Exception as e:  # report and go on: one dtype the device lacks must not hide the others
            print(f"  {dt:9s} not run: {type(e).__name__}: {str(e).splitlines()[0][:160]}")


def recognizer_section(frames, device: str, n: int) -> None:
    print(f"\n[recognizers] ms per keyframe on {device} (labeller(frame, T_world_cam), whole call)")
    f = frames[len(frames) // 2]
    for name, factory in RECOGNIZERS:
        try:
            lab = factory(device)
        except Exception as e:  # not built here (missing package or weights): say so, keep going
            print(f"  {name:8s} not available: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
            continue
        ms = median_ms(lambda: lab(f, f.T_world_cam), n)
        print(f"  {name:8s} {ms:8.1f} ms/keyframe")


def node_section(device: str, small: bool, timeout_s: float) -> None:
    args = [sys.executable, str(REPO / "benchmarks" / "bench_node.py"), "--hz", "0", "--no-queries",
            "--param", f"device:={device}", "--data-dir", str(REPO / "data" / "gpu_check")]
    args += ["--frames", "12", "--width", "160", "--height", "120"] if small else ["--frames", "150"]
    print(f"\n[node] fused frames/s with device:={device}, replayed as fast as the node takes")
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, cwd=REPO).stdout
    except subprocess.TimeoutExpired:
        print(f"  not finished within {timeout_s:.0f} s")
        return
    m = re.search(r"fused frames/s\s+([0-9.]+)\s+\((.*)\)", out)
    print(f"  {m.group(1)} fused frames/s ({m.group(2)})" if m
          else "  no figure: bench_node output was\n" + out[-2000:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--small", action="store_true", help="CPU smoke mode: 160x120 frames, few repetitions")
    ap.add_argument("--skip-node", action="store_true")
    a = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    device = "cpu" if a.small else a.device
    import open3d as o3d
    import torch

    print(f"open3d {o3d.__version__} (CUDA build: {o3d._build_config.get('BUILD_CUDA_MODULE')}, devices: "
          f"{o3d.core.cuda.device_count()}), torch {torch.__version__} (CUDA: {torch.cuda.is_available()}"
          + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "") + ")")
    if device == "cuda" and not (o3d.core.cuda.is_available() and torch.cuda.is_available()):
        print("no CUDA device for Open3D and torch here: nothing to measure on a GPU (use --small for the CPU check)")
        sys.exit(2)
    t0 = time.monotonic()
    frames = make_frames(6 if a.small else 30, 160 if a.small else 640, 120 if a.small else 480)
    fusion_section(frames, device, [0.05, 0.02, 0.01])
    model_section(frames, device, 2 if a.small else 20)
    recognizer_section(frames, device, 2 if a.small else 10)
    if not a.skip_node:
        node_section(device, a.small, 240.0 if a.small else 300.0)
    print(f"\ngpu_check done in {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
