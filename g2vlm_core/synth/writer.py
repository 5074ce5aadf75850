"""Writes generated scenes in the on-disk training format of FORMAT.md (plus an optional rosbag2 per scene)."""
from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import open3d as o3d

from .config import CATEGORIES, SynthConfig
from .generator import FORMAT_VERSION, GeneratedScene, SceneGenerator, visible_object_ids
from .io import depth_to_mm, write_json, write_npz, write_png

logger = logging.getLogger(__name__)

SUBDIRS = ("rgb", "depth", "depth_gt", "instance", "semantic", "normals")


def write_scene(scene: GeneratedScene, root: str | Path, bag: str = "none", depth_encoding: str = "16UC1",
                on_frame: Callable[[int], None] | None = None) -> Path:
    """Render every frame of ``scene`` into ``root/scene_xxxxxx`` (replacing an older copy); returns the folder."""
    out = Path(root) / scene.name
    if out.exists():
        shutil.rmtree(out)  # a half-written or older scene must not mix with the new frames
    for sub in SUBDIRS:
        (out / sub).mkdir(parents=True)
    bag_writer = None
    if bag != "none":
        from .bag import BagWriter

        bag_writer = BagWriter(out / "bag", storage=bag, depth_encoding=depth_encoding, intrinsics=scene.intrinsics)
    visible: dict[int, list[int]] = {}
    try:
        for frame in scene.frames():
            stem = f"{frame.index:06d}"
            ex = frame.extras
            write_png(out / "rgb" / f"{stem}.png", frame.rgb)
            write_png(out / "depth" / f"{stem}.png", depth_to_mm(frame.depth_m))
            write_png(out / "depth_gt" / f"{stem}.png", depth_to_mm(ex["depth_gt_m"]))
            write_png(out / "instance" / f"{stem}.png", ex["instance_ids"].astype(np.uint16))
            write_png(out / "semantic" / f"{stem}.png", ex["semantic_ids"].astype(np.uint8))
            write_npz(out / "normals" / f"{stem}.npz", normals=ex["normals"].astype(np.float16))
            visible[frame.index] = visible_object_ids(ex["instance_ids"])
            if bag_writer is not None:
                bag_writer.write(frame)
            if on_frame is not None:
                on_frame(frame.index)
    finally:
        if bag_writer is not None:
            bag_writer.close()
    o3d.io.write_triangle_mesh(str(out / "mesh.ply"), scene.mesh.to_open3d(), write_ascii=False, compressed=False,
                               print_progress=False)
    write_npz(out / "mesh_labels.npz", instance_ids=scene.mesh.tri_instance, semantic_ids=scene.mesh.tri_semantic)
    write_json(out / "scene.json", scene.record(visible))
    return out


def write_dataset(cfg: SynthConfig, on_frame: Callable[[int], None] | None = None) -> Path:
    """Generate and write every scene of ``cfg`` under ``cfg.output_dir``; returns the root."""
    root = Path(cfg.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    gen = SceneGenerator(cfg)
    names: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for scene in gen.scenes():
        write_scene(scene, root, cfg.bag, cfg.depth_encoding, on_frame)
        names[scene.split].append(scene.name)
        logger.info("wrote %s (%s, %d objects)", scene.name, scene.split, len(scene.layout.objects))
    # output_dir is left out: the same data written elsewhere must give the same bytes.
    config = {k: v for k, v in cfg.to_dict().items() if k != "output_dir"}
    write_json(root / "dataset.json", {"format_version": FORMAT_VERSION, "categories": list(CATEGORIES),
                                       "config": config, "splits": names})
    return root
