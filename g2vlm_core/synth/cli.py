"""``g2vlm-synth``: generate a synthetic RGB-D dataset (FORMAT.md) and optional rosbag2 files.

Usage:
    g2vlm-synth --scenes 20 --frames 30 --width 320 --height 240 --noise kinect --out data/synth
    python -m g2vlm_core.synth --scenes 2 --frames 10 --bag mcap --depth-encoding 32FC1 --out /tmp/synth
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from .config import (BAG_FORMATS, DEPTH_ENCODINGS, NOISE_MODELS, OBJECT_CATEGORIES, SPLITS, TRAJECTORIES,
                     SynthConfig, SynthConfigError)


def build_parser() -> argparse.ArgumentParser:
    d = SynthConfig()
    p = argparse.ArgumentParser(prog="g2vlm-synth", description="Generate procedural indoor RGB-D scenes with "
                                "ground truth (depth, instances, normals, poses, scene graphs, language).")
    p.add_argument("--scenes", type=int, default=d.num_scenes, help="number of scenes (default %(default)s)")
    p.add_argument("--frames", type=int, default=d.frames_per_scene, help="frames per scene (default %(default)s)")
    p.add_argument("--width", type=int, default=d.width, help="image width in pixels (default %(default)s)")
    p.add_argument("--height", type=int, default=d.height, help="image height in pixels (default %(default)s)")
    p.add_argument("--hfov", type=float, default=d.hfov_deg, help="horizontal field of view, degrees")
    p.add_argument("--noise", default=d.noise, help=f"sensor model: {' | '.join(NOISE_MODELS)} (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="first scene seed (default %(default)s)")
    p.add_argument("--split", default=d.split, help=f"only seeds of this split: all | {' | '.join(SPLITS)}")
    p.add_argument("--min-objects", type=int, default=d.min_objects, help="objects per scene, lower bound")
    p.add_argument("--max-objects", type=int, default=d.max_objects, help="objects per scene, upper bound")
    p.add_argument("--categories", default="", help="comma-separated object categories to use (default: all of "
                   f"{', '.join(OBJECT_CATEGORIES)})")
    p.add_argument("--trajectory", default=d.trajectory, help=f"camera height profile: {' | '.join(TRAJECTORIES)}")
    p.add_argument("--out", default=d.output_dir, help="output directory (default %(default)s)")
    p.add_argument("--bag", default=d.bag, help=f"also write a rosbag2 per scene: {' | '.join(BAG_FORMATS)}")
    p.add_argument("--depth-encoding", default=d.depth_encoding,
                   help=f"bag depth encoding: {' | '.join(DEPTH_ENCODINGS)} (default %(default)s)")
    p.add_argument("--no-textures", action="store_true", help="plain colours only")
    p.add_argument("--log-level", default="WARNING", help="logging level (default %(default)s)")
    return p


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    cats = tuple(c.strip() for c in args.categories.split(",") if c.strip())
    return SynthConfig(num_scenes=args.scenes, frames_per_scene=args.frames, width=args.width, height=args.height,
                       hfov_deg=args.hfov, noise=args.noise, seed=args.seed, split=args.split,
                       min_objects=args.min_objects, max_objects=args.max_objects, categories=cats,
                       trajectory=args.trajectory, bag=args.bag, depth_encoding=args.depth_encoding,
                       textures=not args.no_textures, output_dir=args.out)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = config_from_args(args)  # validated in __post_init__: nothing is written for a bad config
    except SynthConfigError as e:
        parser.error(str(e))  # exits with status 2 and the usage line
    from tqdm import tqdm

    from .writer import write_dataset  # heavy imports (open3d) only after the config is known to be good

    t0 = time.perf_counter()
    total = cfg.num_scenes * cfg.frames_per_scene
    with tqdm(total=total, unit="frame", desc="g2vlm-synth") as bar:
        root = write_dataset(cfg, on_frame=lambda _i: bar.update(1))
    dt = time.perf_counter() - t0
    print(f"wrote {cfg.num_scenes} scenes / {total} frames to {root} in {dt:.1f} s ({total / dt:.1f} frames/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
