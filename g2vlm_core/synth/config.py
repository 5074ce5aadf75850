"""Category table, id conventions, seed-based splits and the validated generation config of the synthetic data."""
from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass
from typing import ClassVar

# Semantic ids index this tuple; new categories are only ever appended (FORMAT.md promises it).
CATEGORIES: tuple[str, ...] = (
    "void", "floor", "wall", "ceiling",
    "table", "chair", "sofa", "bed", "shelf", "cabinet", "desk", "lamp", "plant", "box",
    "monitor", "laptop", "mug", "bottle", "book", "bowl", "vase",
)
STRUCTURE_CATEGORIES = ("floor", "wall", "ceiling")
OBJECT_CATEGORIES: tuple[str, ...] = CATEGORIES[4:]
CATEGORY_ID = {name: i for i, name in enumerate(CATEGORIES)}
# Categories that stand on the floor, and the small ones that need a support surface.
FLOOR_CATEGORIES = ("table", "chair", "sofa", "bed", "shelf", "cabinet", "desk", "lamp", "plant", "box")
SUPPORT_CATEGORIES = ("table", "desk", "shelf", "cabinet")
SMALL_CATEGORIES = ("monitor", "laptop", "mug", "bottle", "book", "bowl", "vase", "box", "plant")

# Instance ids 1..15 are room structure; objects start at OBJECT_ID_OFFSET (see FORMAT.md).
FLOOR_ID, CEILING_ID = 1, 2
WALL_IDS = (3, 4, 5, 6)
OBJECT_ID_OFFSET = 16

SPLITS = ("train", "val", "test")
NOISE_MODELS = ("none", "kinect", "realsense")
BAG_FORMATS = ("none", "mcap", "sqlite3")
DEPTH_ENCODINGS = ("16UC1", "32FC1")
TRAJECTORIES = ("robot", "handheld", "mixed")
MAX_OBJECTS_PER_SCENE = 60  # more than this does not fit plausibly in the largest room


class SynthConfigError(ValueError):
    """A generation setting that cannot work; raised before any scene is generated."""


def split_of_seed(seed: int) -> str:
    """Fixed split of a scene seed: ``seed % 10`` in 0..7 train, 8 val, 9 test."""
    r = int(seed) % 10
    return "train" if r < 8 else ("val" if r == 8 else "test")


@dataclass(frozen=True)
class SynthConfig:
    """Everything that defines a generated dataset; two equal configs give byte-identical output."""

    num_scenes: int = 10  # scenes to generate
    frames_per_scene: int = 30  # rendered frames along each scene's trajectory
    width: int = 320  # image width in pixels
    height: int = 240  # image height in pixels
    hfov_deg: float = 60.0  # horizontal field of view (Kinect v1 ~58 deg, RealSense D435 colour ~69 deg)
    noise: str = "kinect"  # depth/colour sensor model: none | kinect | realsense
    seed: int = 0  # first scene seed; scene seeds are seed, seed+1, ... (filtered by `split`)
    split: str = "all"  # only generate seeds of this split: all | train | val | test
    min_objects: int = 8  # objects per scene (furniture + small items), lower bound
    max_objects: int = 20  # upper bound; placement may fall short in a crowded room (logged)
    categories: tuple[str, ...] = ()  # restrict object categories; () = all of OBJECT_CATEGORIES
    trajectory: str = "mixed"  # robot (0.5-1.2 m), handheld (1.3-1.7 m) or mixed (chosen per scene)
    frame_rate_hz: float = 10.0  # stamps advance by 1/frame_rate_hz
    ceiling_prob: float = 0.5  # chance that a room has a ceiling
    textures: bool = True  # procedural stripes/checker on some surfaces
    num_reference_views: int = 3  # frames whose viewpoints define left/right/front/behind in the GT
    max_expressions: int = 40  # referring expressions kept per scene
    max_qa: int = 40  # QA pairs kept per scene
    bag: str = "none"  # also write a rosbag2 per scene: none | mcap | sqlite3
    depth_encoding: str = "16UC1"  # bag depth images: 16UC1 (mm) or 32FC1 (m)
    output_dir: str = "data/synth"  # dataset root

    _INT_FIELDS: ClassVar[tuple[str, ...]] = (
        "num_scenes", "frames_per_scene", "width", "height", "min_objects", "max_objects", "num_reference_views",
        "max_expressions", "max_qa", "seed")

    def __post_init__(self) -> None:
        # Accept numpy integers and lists from callers, but store plain ints and a tuple (JSON, hashing).
        for name in self._INT_FIELDS:
            v = getattr(self, name)
            if isinstance(v, numbers.Integral) and not isinstance(v, bool):
                object.__setattr__(self, name, int(v))
        if isinstance(self.categories, str):
            object.__setattr__(self, "categories", (self.categories,))
        object.__setattr__(self, "categories", tuple(self.categories))
        self.validate()

    def validate(self) -> "SynthConfig":
        """Raise SynthConfigError naming the bad setting; returns self."""
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise SynthConfigError(msg)

        for name in self._INT_FIELDS:
            need(isinstance(getattr(self, name), int) and not isinstance(getattr(self, name), bool),
                 f"{name} must be an integer, got {getattr(self, name)!r}")
        need(self.num_scenes > 0, f"num_scenes must be > 0, got {self.num_scenes}")
        need(self.frames_per_scene > 0, f"frames_per_scene must be > 0, got {self.frames_per_scene}")
        need(self.width > 0 and self.height > 0,
             f"resolution must be positive, got {self.width}x{self.height}")
        need(self.width <= 4096 and self.height <= 4096,
             f"resolution {self.width}x{self.height} is above the 4096x4096 limit")
        need(0.0 < float(self.hfov_deg) < 170.0, f"hfov_deg must be in (0, 170), got {self.hfov_deg}")
        need(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        need(self.noise in NOISE_MODELS, f"unknown noise {self.noise!r}; choose one of {', '.join(NOISE_MODELS)}")
        need(self.split in ("all",) + SPLITS, f"unknown split {self.split!r}; choose all, train, val or test")
        need(self.trajectory in TRAJECTORIES,
             f"unknown trajectory {self.trajectory!r}; choose one of {', '.join(TRAJECTORIES)}")
        need(self.bag in BAG_FORMATS, f"unknown bag format {self.bag!r}; choose one of {', '.join(BAG_FORMATS)}")
        need(self.depth_encoding in DEPTH_ENCODINGS,
             f"unknown depth encoding {self.depth_encoding!r}; choose 16UC1 or 32FC1")
        need(self.min_objects >= 1, f"min_objects must be >= 1, got {self.min_objects}")
        need(self.max_objects >= self.min_objects,
             f"max_objects ({self.max_objects}) must be >= min_objects ({self.min_objects})")
        need(self.max_objects <= MAX_OBJECTS_PER_SCENE,
             f"max_objects {self.max_objects} is impossible: at most {MAX_OBJECTS_PER_SCENE} objects fit a room")
        need(float(self.frame_rate_hz) > 0.0, f"frame_rate_hz must be > 0, got {self.frame_rate_hz}")
        need(0.0 <= float(self.ceiling_prob) <= 1.0, f"ceiling_prob must be in [0, 1], got {self.ceiling_prob}")
        need(self.num_reference_views >= 1, f"num_reference_views must be >= 1, got {self.num_reference_views}")
        need(self.max_expressions >= 0 and self.max_qa >= 0, "max_expressions and max_qa must be >= 0")
        unknown = [c for c in self.categories if c not in OBJECT_CATEGORIES]
        need(not unknown, f"unknown categories {unknown}; known: {', '.join(OBJECT_CATEGORIES)}")
        cats = self.object_categories
        needs_support = [c for c in cats if c not in FLOOR_CATEGORIES]
        need(not needs_support or any(c in SUPPORT_CATEGORIES for c in cats),
             f"categories {needs_support} sit on furniture: add a support category "
             f"({', '.join(SUPPORT_CATEGORIES)})")
        return self

    @property
    def object_categories(self) -> tuple[str, ...]:
        return tuple(self.categories) if self.categories else OBJECT_CATEGORIES

    def scene_seeds(self) -> list[int]:
        """The ``num_scenes`` scene seeds from ``seed`` upward that belong to ``split``."""
        seeds, s = [], self.seed
        while len(seeds) < self.num_scenes:
            if self.split == "all" or split_of_seed(s) == self.split:
                seeds.append(s)
            s += 1
        return seeds

    def to_dict(self) -> dict:
        d = asdict(self)
        d["categories"] = list(self.categories)
        return d
