"""Reader of the on-disk synthetic dataset (FORMAT.md): ``SynthDataset(root, split)`` of lazy ``SynthScene``s."""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..geometry.camera import CameraIntrinsics
from ..frame import RGBDFrame
from ..predicates import Viewpoint
from ..scene_graph import SceneGraph, SceneObject, SpatialRelation
from .config import SPLITS
from .io import mm_to_depth, read_json, read_png
from .records import QAPair, ReferringExpression

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
SEEN_MIN_PIXELS = 200  # a true object counts as seen by a scene's frames when one frame shows this many of its
# pixels: evaluations ask only about what the camera saw (a map cannot hold what never came into view)


def count_visible(instance_ids: np.ndarray, best: dict[int, int]) -> None:
    """Raise ``best`` (object id -> most pixels in one frame) by one frame's (H, W) instance id image."""
    ids, counts = np.unique(instance_ids, return_counts=True)
    for i, c in zip(ids.tolist(), counts.tolist()):
        best[i] = max(best.get(i, 0), c)


class SynthScene:
    """One scene folder: scene-level ground truth loaded eagerly from scene.json, frames read on demand."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta = read_json(self.path / "scene.json")
        if int(meta.get("format_version", 0)) != FORMAT_VERSION:
            raise ValueError(f"{self.path}: format_version {meta.get('format_version')} is not {FORMAT_VERSION}")
        self.meta = meta
        self.name: str = meta["name"]
        self.seed: int = int(meta["seed"])
        self.split: str = meta["split"]
        self.categories: tuple[str, ...] = tuple(meta["categories"])
        intr = meta["intrinsics"]
        self.intrinsics = CameraIntrinsics(intr["width"], intr["height"], intr["fx"], intr["fy"], intr["cx"],
                                           intr["cy"], intr.get("distortion_model", "plumb_bob"),
                                           tuple(intr.get("distortion", ())))
        self.depth_scale = float(meta.get("depth_scale", 1000.0))
        self.objects: list[SceneObject] = [SceneObject.from_dict(o) for o in meta["objects"]]
        self.relations: list[SpatialRelation] = [SpatialRelation.from_dict(r) for r in meta["relations"]]
        self.expressions: list[ReferringExpression] = [ReferringExpression.from_dict(e) for e in meta["expressions"]]
        self.qa: list[QAPair] = [QAPair.from_dict(q) for q in meta["qa"]]
        self.captions: list[str] = list(meta["captions"])
        self._frames: list[dict] = meta["frames"]

    def __len__(self) -> int:
        return len(self._frames)

    def __iter__(self) -> Iterator[RGBDFrame]:
        for i in range(len(self)):
            yield self.frame(i)

    def __repr__(self) -> str:
        return f"SynthScene({self.name!r}, split={self.split!r}, frames={len(self)}, objects={len(self.objects)})"

    def poses(self) -> np.ndarray:
        """(N, 4, 4) float64 camera-to-world poses of every frame."""
        return np.array([f["T_world_cam"] for f in self._frames], dtype=np.float64).reshape(-1, 4, 4)

    def frame(self, index: int, noisy: bool = True) -> RGBDFrame:
        """Frame ``index`` with the sensor-noise depth (``noisy``) or the clean GT depth as ``depth_m``."""
        if not 0 <= index < len(self):
            raise IndexError(f"{self.name} has {len(self)} frames, asked for {index}")
        f = self._frames[index]
        stem = f"{int(f['index']):06d}"
        depth_gt = mm_to_depth(read_png(self.path / "depth_gt" / f"{stem}.png")) * (1000.0 / self.depth_scale)
        depth = (mm_to_depth(read_png(self.path / "depth" / f"{stem}.png")) * (1000.0 / self.depth_scale)
                 if noisy else depth_gt.copy())
        with np.load(self.path / "normals" / f"{stem}.npz") as z:
            normals = z["normals"].astype(np.float32)
        extras = {
            "depth_gt_m": depth_gt.astype(np.float32),
            "instance_ids": read_png(self.path / "instance" / f"{stem}.png").astype(np.int32),
            "semantic_ids": read_png(self.path / "semantic" / f"{stem}.png").astype(np.int32),
            "normals": normals,
            "scene": self.name,
        }
        return RGBDFrame(rgb=read_png(self.path / "rgb" / f"{stem}.png"), depth_m=depth.astype(np.float32),
                         intrinsics=self.intrinsics, T_world_cam=np.asarray(f["T_world_cam"], dtype=np.float64),
                         stamp_s=float(f["stamp_s"]), index=int(f["index"]), extras=extras)

    def visible_pixels(self) -> dict[int, int]:
        """Object id -> the most pixels of it that one frame shows (from the instance images only)."""
        best: dict[int, int] = {}
        for f in self._frames:
            count_visible(read_png(self.path / "instance" / f"{int(f['index']):06d}.png"), best)
        return best

    def seen_objects(self, min_pixels: int = SEEN_MIN_PIXELS) -> list[SceneObject]:
        """The true objects the scene's frames show (one frame with at least ``min_pixels`` of them)."""
        px = self.visible_pixels()
        return [o for o in self.objects if px.get(o.id, 0) >= min_pixels]

    @property
    def reference_views(self) -> list[dict]:
        return list(self.meta.get("reference_views", []))

    def viewpoint(self, frame_id: str) -> Viewpoint:
        """The predicates.Viewpoint of reference view ``frame_id`` (e.g. "frame_000000")."""
        for v in self.reference_views:
            if v["frame_id"] == frame_id:
                return Viewpoint(np.asarray(v["position"], dtype=np.float64),
                                 np.asarray(v["forward"], dtype=np.float64), frame_id)
        raise KeyError(f"{self.name} has no reference view {frame_id!r}; "
                       f"known: {[v['frame_id'] for v in self.reference_views]}")

    def scene_graph(self, reference_frame: str | None = None) -> SceneGraph:
        """Objects + view-independent relations (+ the view-dependent ones of ``reference_frame``)."""
        rels = [r for r in self.relations if r.reference_frame == "" or r.reference_frame == reference_frame]
        return SceneGraph(objects=list(self.objects), relations=rels, frame_id="map")

    def load_mesh(self):
        """The GT mesh (open3d.geometry.TriangleMesh, world frame, vertex colours)."""
        import open3d as o3d  # heavy import only when a mesh is wanted

        return o3d.io.read_triangle_mesh(str(self.path / "mesh.ply"))

    def mesh_labels(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-triangle (instance_ids, semantic_ids) int32 arrays of mesh.ply."""
        with np.load(self.path / "mesh_labels.npz") as z:
            return z["instance_ids"], z["semantic_ids"]


class SynthDataset(Sequence):
    """The scenes of one split ("train" | "val" | "test" | "all") under ``root``, sorted by name."""

    def __init__(self, root: str | Path, split: str = "train") -> None:
        if split not in SPLITS + ("all",):
            raise ValueError(f"unknown split {split!r}; choose train, val, test or all")
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"synthetic dataset root {self.root} does not exist")
        self.split = split
        # Scanning folders (not only dataset.json) lets several runs write into one root.
        self._scenes: list[SynthScene] = []
        for p in sorted(self.root.glob("scene_*/scene.json")):
            scene = SynthScene(p.parent)
            if split == "all" or scene.split == split:
                self._scenes.append(scene)
        logger.info("SynthDataset %s split=%s: %d scenes", self.root, split, len(self._scenes))

    def __len__(self) -> int:
        return len(self._scenes)

    def __getitem__(self, index):  # Sequence protocol: int or slice
        return self._scenes[index]

    @property
    def categories(self) -> tuple[str, ...]:
        from .config import CATEGORIES

        return self._scenes[0].categories if self._scenes else CATEGORIES

    @property
    def num_frames(self) -> int:
        return sum(len(s) for s in self._scenes)

    def frames(self, noisy: bool = True) -> Iterator[RGBDFrame]:
        """Every frame of every scene of the split, scene by scene."""
        for scene in self._scenes:
            for i in range(len(scene)):
                yield scene.frame(i, noisy=noisy)
