"""Scene generation pipeline: layout -> trajectory -> rendered, noise-modelled RGBDFrames -> ground-truth record."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..geometry.camera import CameraIntrinsics
from ..frame import RGBDFrame
from ..predicates import Viewpoint
from .config import CATEGORIES, OBJECT_ID_OFFSET, SynthConfig, split_of_seed
from .io import DEPTH_SCALE
from .language import LanguageBuilder, compute_scene_relations
from .layout import SceneLayout, generate_layout
from .noise import apply_color_noise, apply_depth_noise
from .render import Renderer, SceneMesh, build_mesh

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MIN_VISIBLE_PIXELS = 20  # an object counts as visible in a frame with at least this many pixels (and 0.05%)


def scene_name(seed: int) -> str:
    return f"scene_{seed:06d}"


def make_intrinsics(width: int, height: int, hfov_deg: float) -> CameraIntrinsics:
    """Square-pixel pinhole with the principal point at the image centre; no distortion (rendered images)."""
    f = width / (2.0 * np.tan(np.deg2rad(hfov_deg) / 2.0))
    return CameraIntrinsics(width, height, f, f, (width - 1) / 2.0, (height - 1) / 2.0, "plumb_bob",
                            (0.0, 0.0, 0.0, 0.0, 0.0))


def frame_id_of(index: int) -> str:
    return f"frame_{index:06d}"


@dataclass
class GeneratedScene:
    """One scene ready to render: its layout, GT mesh, camera poses and renderer."""

    seed: int
    cfg: SynthConfig
    layout: SceneLayout
    mesh: SceneMesh
    intrinsics: CameraIntrinsics
    poses: np.ndarray  # (N, 4, 4) T_world_cam
    renderer: Renderer

    @property
    def name(self) -> str:
        return scene_name(self.seed)

    @property
    def split(self) -> str:
        return split_of_seed(self.seed)

    def stamp(self, index: int) -> float:
        return index / float(self.cfg.frame_rate_hz)

    def render_frame(self, index: int) -> RGBDFrame:
        """Frame ``index``: noisy depth/colour per ``cfg.noise``; GT depth, ids, normals in ``extras``."""
        out = self.renderer.render(self.poses[index])
        # Per-frame stream: any frame renders identically alone or in sequence.
        rng = np.random.default_rng([self.seed, 0xF4A3E, index])
        depth = apply_depth_noise(out, self.cfg.noise, rng)
        rgb = apply_color_noise(out.rgb, self.cfg.noise, rng)
        extras = {"depth_gt_m": out.depth_m, "instance_ids": out.instance_ids, "semantic_ids": out.semantic_ids,
                  "normals": out.normals_cam, "scene": self.name}
        return RGBDFrame(rgb, depth, self.intrinsics, self.poses[index].copy(), self.stamp(index), index, extras)

    def frames(self) -> Iterator[RGBDFrame]:
        for i in range(len(self.poses)):
            yield self.render_frame(i)

    def reference_indices(self) -> list[int]:
        n = len(self.poses)
        return sorted(set(int(round(x)) for x in np.linspace(0, n - 1, min(self.cfg.num_reference_views, n))))

    def record(self, visible: dict[int, list[int]]) -> dict:
        """The scene.json content (FORMAT.md), given the visible object ids of each frame index."""
        objects = self.layout.scene_objects()
        ref_idx = self.reference_indices()
        views = [Viewpoint.from_pose(self.poses[i], frame_id_of(i)) for i in ref_idx]
        relations = compute_scene_relations(objects, views)
        rng = np.random.default_rng([self.seed, 0x1A96])
        lang = LanguageBuilder(objects, relations, views, {frame_id_of(i): set(visible.get(i, [])) for i in ref_idx},
                               self.layout.room_type, self.layout.room_size, rng)
        expressions = lang.expressions(self.cfg.max_expressions)
        qa = lang.qa(self.cfg.max_qa)
        captions = lang.captions()
        intr = self.intrinsics
        return {
            "format_version": FORMAT_VERSION, "name": self.name, "seed": self.seed, "split": self.split,
            "categories": list(CATEGORIES),
            "room": {"type": self.layout.room_type, "size_m": [float(x) for x in self.layout.room_size],
                     "has_ceiling": self.layout.has_ceiling,
                     "openings": [o.to_dict(self.layout.room_size) for o in self.layout.openings]},
            "structure": [{"id": i, "label": lab} for i, lab in self.layout.structure],
            "objects": [o.to_dict() for o in objects],
            "intrinsics": {"width": intr.width, "height": intr.height, "fx": intr.fx, "fy": intr.fy, "cx": intr.cx,
                           "cy": intr.cy, "distortion_model": intr.distortion_model,
                           "distortion": list(intr.distortion)},
            "depth_scale": DEPTH_SCALE, "noise": self.cfg.noise, "trajectory": self.layout.trajectory.kind,
            "frame_rate_hz": float(self.cfg.frame_rate_hz),
            "frames": [{"index": i, "stamp_s": self.stamp(i), "T_world_cam": self.poses[i].tolist(),
                        "visible_ids": sorted(int(v) for v in visible.get(i, []))} for i in range(len(self.poses))],
            "reference_views": [{"frame_id": v.frame_id, "frame_index": i, "position": v.position.tolist(),
                                 "forward": v.forward.tolist()} for i, v in zip(ref_idx, views)],
            "relations": [r.to_dict() for r in relations],
            "expressions": [e.to_dict() for e in expressions],
            "qa": [q.to_dict() for q in qa],
            "captions": captions,
        }


def visible_object_ids(instance_ids: np.ndarray) -> list[int]:
    """Object ids covering at least MIN_VISIBLE_PIXELS pixels and 0.05% of the image."""
    counts = np.bincount(instance_ids.ravel())
    thresh = max(MIN_VISIBLE_PIXELS, int(0.0005 * instance_ids.size))
    return [int(i) for i in np.nonzero(counts >= thresh)[0] if i >= OBJECT_ID_OFFSET]


class SceneGenerator:
    """Builds ``GeneratedScene``s from a validated SynthConfig; everything derives from the scene seed."""

    def __init__(self, cfg: SynthConfig) -> None:
        self.cfg = cfg.validate()
        self.intrinsics = make_intrinsics(cfg.width, cfg.height, cfg.hfov_deg)

    def scene(self, seed: int) -> GeneratedScene:
        cfg = self.cfg
        layout = generate_layout(seed, cfg.object_categories, cfg.min_objects, cfg.max_objects, cfg.trajectory,
                                 cfg.ceiling_prob, cfg.textures)
        mesh = build_mesh(layout.primitives)
        poses = layout.trajectory.poses(cfg.frames_per_scene)
        renderer = Renderer(mesh, layout.primitives, self.intrinsics, layout.light_dir)
        logger.debug("scene %d: %s, %d objects, %d triangles", seed, layout.room_type, len(layout.objects),
                     len(mesh.triangles))
        return GeneratedScene(seed, cfg, layout, mesh, self.intrinsics, poses, renderer)

    def scenes(self) -> Iterator[GeneratedScene]:
        for seed in self.cfg.scene_seeds():
            yield self.scene(seed)
