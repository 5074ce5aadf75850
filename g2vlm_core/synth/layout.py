"""Procedural room layout: walls with door/window openings, furniture on the floor, small objects on supports."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ..attributes import size_class
from ..scene_graph import Box3D, SceneObject
from .config import (CATEGORY_ID, CEILING_ID, FLOOR_CATEGORIES, FLOOR_ID, OBJECT_ID_OFFSET, SUPPORT_CATEGORIES,
                     WALL_IDS)
from .objects import Model, Part, Surface, build_model, build_table, rot_z, sample_texture
from .palette import STRUCTURE_COLORS, sample_color
from .trajectory import OrbitTrajectory, make_trajectory

logger = logging.getLogger(__name__)

ROOM_TYPES: dict[str, tuple[str, ...]] = {
    "living room": ("sofa", "table", "chair", "shelf", "cabinet", "lamp", "plant", "box", "chair", "cabinet"),
    "bedroom": ("bed", "cabinet", "shelf", "desk", "chair", "lamp", "plant", "box", "cabinet"),
    "office": ("desk", "chair", "shelf", "desk", "chair", "cabinet", "plant", "box", "shelf", "lamp"),
    "dining room": ("table", "chair", "chair", "cabinet", "shelf", "plant", "lamp", "box", "chair"),
}
WALL_CATEGORIES = ("sofa", "bed", "shelf", "cabinet", "desk")  # stand with their back (+y) to a wall
# What may stand on which support (small variants of lamp / plant / box).
SUPPORTED_ON: dict[str, tuple[str, ...]] = {
    "table": ("mug", "bottle", "bowl", "vase", "book", "laptop", "plant", "box", "lamp"),
    "desk": ("monitor", "laptop", "mug", "book", "bottle", "lamp", "plant"),
    "cabinet": ("lamp", "plant", "vase", "book", "box", "bowl", "bottle"),
    "shelf": ("book", "book", "box", "vase", "plant", "bowl", "bottle", "mug"),
}
WALL_T = 0.1  # wall / floor / ceiling slab thickness (m)
PATH_CLEARANCE_M = 0.35  # floor objects keep this far from the camera path
GAP_M = 0.03  # minimal gap between footprints of neighbouring objects


@dataclass
class Opening:
    """A door or window: a hole in wall ``wall`` (0: y=0, 1: x=W, 2: y=D, 3: x=0) centred at ``offset_m`` along it."""

    kind: str
    wall: int
    offset_m: float
    width_m: float
    bottom_m: float
    height_m: float

    def to_dict(self, room_size: np.ndarray) -> dict:
        W, D, _ = room_size
        along = {0: (self.offset_m, 0.0), 1: (W, self.offset_m), 2: (self.offset_m, D), 3: (0.0, self.offset_m)}
        x, y = along[self.wall]
        return {"kind": self.kind, "wall": self.wall, "center_m": [x, y, self.bottom_m + self.height_m / 2],
                "width_m": self.width_m, "height_m": self.height_m}


@dataclass
class PlacedObject:
    """A model placed in the world: rotation ``yaw`` about z and origin ``position`` (3,), on ``support``."""

    id: int
    model: Model
    yaw: float
    position: np.ndarray
    support: int = 0  # 0: the floor, else the supporting object's id

    @property
    def T(self) -> np.ndarray:
        T = np.eye(4)
        T[:3, :3] = rot_z(self.yaw)
        T[:3, 3] = self.position
        return T

    def box(self) -> Box3D:
        lo, hi = self.model.bounds()
        center = self.position + rot_z(self.yaw) @ ((lo + hi) / 2)
        yaw = float(np.arctan2(np.sin(self.yaw), np.cos(self.yaw)))
        return Box3D(center, hi - lo, yaw)

    def scene_object(self) -> SceneObject:
        box = self.box()
        attrs = {"category": self.model.category, "color": self.model.color_name, "size": size_class(box),
                 "texture": self.model.texture, "support": "floor" if self.support == 0 else str(self.support)}
        return SceneObject(id=self.id, label=self.model.category, box=box, attributes=attrs,
                           centroid=box.center.copy(), mean_color=np.asarray(self.model.albedo, float).copy())


@dataclass
class Primitive:
    """A world-frame part with its labels, ready for meshing and rendering."""

    part: Part
    instance_id: int
    semantic_id: int


@dataclass
class SceneLayout:
    seed: int
    room_type: str
    room_size: np.ndarray  # (W, D, H) interior metres
    has_ceiling: bool
    openings: list[Opening]
    objects: list[PlacedObject]
    trajectory: OrbitTrajectory
    structure: list[tuple[int, str]]  # (instance id, label)
    primitives: list[Primitive] = field(default_factory=list)
    light_dir: np.ndarray = field(default_factory=lambda: np.array([0.3, 0.2, 1.0]) / np.linalg.norm([0.3, 0.2, 1.0]))

    def scene_objects(self) -> list[SceneObject]:
        return [o.scene_object() for o in self.objects]


def _footprint(model: Model, yaw: float, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned xy bounds (conservative for any yaw) of a model placed at ``xy`` with ``yaw``."""
    lo, hi = model.bounds()
    c = np.array([[x, y] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])])
    c = c @ rot_z(yaw)[:2, :2].T + xy
    return c.min(axis=0), c.max(axis=0)


def _overlap(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], gap: float) -> bool:
    return bool(np.all(a[0] < b[1] + gap) and np.all(b[0] < a[1] + gap))


def _dist_to_rect(points: np.ndarray, rect: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    d = np.maximum(np.maximum(rect[0] - points, points - rect[1]), 0.0)
    return np.linalg.norm(d, axis=1)


class _Placer:
    """Floor placement state: room bounds, occupied footprints, keep-out zones (doors, camera path)."""

    def __init__(self, room_size, openings, path_xy) -> None:
        self.W, self.D, self.H = room_size
        self.openings = openings
        self.path_xy = path_xy
        self.rects: list[tuple[np.ndarray, np.ndarray]] = []
        self.keepout: list[tuple[np.ndarray, np.ndarray]] = []
        for op in openings:
            if op.kind == "door":  # a swing zone in front of the door stays free
                self.keepout.append(self._wall_rect(op.wall, op.offset_m - op.width_m / 2 - 0.1,
                                                    op.offset_m + op.width_m / 2 + 0.1, 0.9))

    def _wall_rect(self, wall: int, s0: float, s1: float, depth: float):
        W, D = self.W, self.D
        if wall == 0:
            return np.array([s0, 0.0]), np.array([s1, depth])
        if wall == 2:
            return np.array([s0, D - depth]), np.array([s1, D])
        if wall == 1:
            return np.array([W - depth, s0]), np.array([W, s1])
        return np.array([0.0, s0]), np.array([depth, s1])

    def fits(self, model: Model, yaw: float, xy: np.ndarray) -> bool:
        rect = _footprint(model, yaw, xy)
        if np.any(rect[0] < 0.005) or rect[1][0] > self.W - 0.005 or rect[1][1] > self.D - 0.005:
            return False
        if any(_overlap(rect, r, GAP_M) for r in self.rects):
            return False
        if any(_overlap(rect, r, 0.0) for r in self.keepout):
            return False
        if np.min(_dist_to_rect(self.path_xy, rect)) < PATH_CLEARANCE_M:
            return False
        height = model.bounds()[1][2]
        for op in self.openings:  # nothing taller than the sill in front of a window
            if op.kind == "window" and height > op.bottom_m - 0.02:
                win = self._wall_rect(op.wall, op.offset_m - op.width_m / 2, op.offset_m + op.width_m / 2, 0.5)
                if _overlap(rect, win, 0.0):
                    return False
        return True

    def add(self, model: Model, yaw: float, xy: np.ndarray) -> None:
        self.rects.append(_footprint(model, yaw, xy))

    def wall_pose(self, model: Model, wall: int, s: float) -> tuple[float, np.ndarray]:
        """Yaw and origin xy putting the model's back (+y) against ``wall`` at ``s`` metres along it."""
        yaw = {0: np.pi, 1: -np.pi / 2, 2: 0.0, 3: np.pi / 2}[wall]
        back = model.bounds()[1][1] + 0.01  # distance from origin to the back face, plus a hair of air
        W, D = self.W, self.D
        xy = {0: (s, back), 1: (W - back, s), 2: (s, D - back), 3: (back, s)}[wall]
        return yaw, np.array(xy, dtype=np.float64)

    def wall_length(self, wall: int) -> float:
        return self.W if wall in (0, 2) else self.D


def _sample_openings(rng: np.random.Generator, room_size: np.ndarray) -> list[Opening]:
    W, D, H = room_size
    lengths = [W, D, W, D]
    openings: list[Opening] = []
    door_wall = int(rng.integers(4))
    w = rng.uniform(0.8, 1.0)
    openings.append(Opening("door", door_wall, float(rng.uniform(0.3 + w / 2, lengths[door_wall] - 0.3 - w / 2)),
                            float(w), 0.0, float(min(rng.uniform(2.0, 2.15), H - 0.2))))
    for _ in range(int(rng.integers(0, 3))):
        wall = int(rng.integers(4))
        w = float(rng.uniform(0.8, 1.5))
        bottom = float(rng.uniform(0.8, 1.0))
        h = float(min(rng.uniform(1.0, 1.4), H - bottom - 0.2))
        s = float(rng.uniform(0.3 + w / 2, lengths[wall] - 0.3 - w / 2))
        if all(o.wall != wall or abs(o.offset_m - s) > (o.width_m + w) / 2 + 0.3 for o in openings):
            openings.append(Opening("window", wall, s, w, bottom, h))
    return openings


def _structure_parts(rng, room_size, has_ceiling, openings, textures) -> list[Primitive]:
    W, D, H = room_size
    t = WALL_T
    prims: list[Primitive] = []
    _, floor_col = sample_color(rng, STRUCTURE_COLORS["floor"])
    floor_tex = sample_texture(rng, 0.7, textures)
    prims.append(Primitive(Part("box", np.array([W + 2 * t, D + 2 * t, t]), np.array([W / 2, D / 2, -t / 2]),
                                floor_col, texture=floor_tex, texture_scale_m=float(rng.uniform(0.15, 0.5))),
                           FLOOR_ID, CATEGORY_ID["floor"]))
    if has_ceiling:
        prims.append(Primitive(Part("box", np.array([W + 2 * t, D + 2 * t, t]), np.array([W / 2, D / 2, H + t / 2]),
                                    sample_color(rng, STRUCTURE_COLORS["ceiling"])[1]), CEILING_ID,
                               CATEGORY_ID["ceiling"]))
    _, wall_col = sample_color(rng, STRUCTURE_COLORS["wall"])
    wall_tex = "stripes" if (textures and rng.random() < 0.3) else "plain"
    wall_h = H + (t if has_ceiling else 0.0)
    for wall in range(4):
        L = W if wall in (0, 2) else D
        # Pieces along the wall (s from -t to L + t closes the corners), split around openings.
        pieces: list[tuple[float, float, float, float]] = []  # (s0, s1, z0, z1)
        ops = sorted([o for o in openings if o.wall == wall], key=lambda o: o.offset_m)
        s = -t
        for o in ops:
            a, b = o.offset_m - o.width_m / 2, o.offset_m + o.width_m / 2
            pieces.append((s, a, 0.0, wall_h))
            if o.bottom_m > 0:
                pieces.append((a, b, 0.0, o.bottom_m))
            pieces.append((a, b, o.bottom_m + o.height_m, wall_h))
            s = b
        pieces.append((s, L + t, 0.0, wall_h))
        for s0, s1, z0, z1 in pieces:
            if s1 - s0 < 1e-6 or z1 - z0 < 1e-6:
                continue
            along, zc, ln, hz = (s0 + s1) / 2, (z0 + z1) / 2, s1 - s0, z1 - z0
            if wall == 0:
                size, c = [ln, t, hz], [along, -t / 2, zc]
            elif wall == 2:
                size, c = [ln, t, hz], [along, D + t / 2, zc]
            elif wall == 1:
                size, c = [t, ln, hz], [W + t / 2, along, zc]
            else:
                size, c = [t, ln, hz], [-t / 2, along, zc]
            prims.append(Primitive(Part("box", np.array(size, float), np.array(c, float), wall_col,
                                        texture=wall_tex, texture_scale_m=0.25), WALL_IDS[wall], CATEGORY_ID["wall"]))
    return prims


def _choose_room_type(rng, cats: tuple[str, ...]) -> str:
    usable = [k for k, v in ROOM_TYPES.items() if any(c in cats for c in v)]
    if not usable:
        return "storage room"
    return usable[int(rng.integers(len(usable)))]


def generate_layout(seed: int, cats: tuple[str, ...], min_objects: int, max_objects: int, trajectory_kind: str,
                    ceiling_prob: float = 0.5, textures: bool = True) -> SceneLayout:
    """Sample a whole room for ``seed``: structure, openings, trajectory, furniture, small objects."""
    rng = np.random.default_rng([seed, 0x5CE4E])
    n_target = int(rng.integers(min_objects, max_objects + 1))
    room_type = _choose_room_type(rng, cats)
    W, D = rng.uniform(3.5, 6.5), rng.uniform(3.2, 5.5)
    area_needed = 6.0 + 0.45 * n_target  # crowded requests get a bigger room rather than failing
    if W * D < area_needed:
        k = np.sqrt(area_needed / (W * D))
        W, D = W * k, D * k
    if room_type == "bedroom":
        W, D = max(W, 4.2), max(D, 4.2)  # a 2 m bed plus the camera path needs the room
    room_size = np.array([W, D, rng.uniform(2.5, 3.0)])
    has_ceiling = bool(rng.random() < ceiling_prob)
    openings = _sample_openings(rng, room_size)
    kind = trajectory_kind if trajectory_kind != "mixed" else ("robot" if rng.random() < 0.5 else "handheld")
    traj = make_trajectory(rng, room_size, kind)
    placer = _Placer(room_size, openings, traj.xy(np.linspace(0, 1, 200)))

    objects: list[PlacedObject] = []
    next_id = [OBJECT_ID_OFFSET]

    def new_obj(model, yaw, xy, z=0.0, support=0) -> PlacedObject:
        o = PlacedObject(next_id[0], model, float(yaw), np.array([xy[0], xy[1], z], float), support)
        next_id[0] += 1
        objects.append(o)
        return o

    floor_cats = [c for c in ROOM_TYPES.get(room_type, ()) if c in cats] or [c for c in FLOOR_CATEGORIES if c in cats]
    smalls_possible = any(c not in FLOOR_CATEGORIES or c in ("box", "plant", "lamp") for c in cats) and \
        any(c in SUPPORT_CATEGORIES for c in cats)
    n_floor_target = max(1, int(round(n_target * (0.5 if smalls_possible else 1.0))))

    def place_floor(cat: str) -> PlacedObject | None:
        for _ in range(30):
            if cat == "table":
                model = build_table(rng, textures, small=(room_type == "living room" and rng.random() < 0.6))
            else:
                model = build_model(cat, rng, textures)
            at_wall = cat in WALL_CATEGORIES or (cat in ("lamp", "plant", "box") and rng.random() < 0.5)
            if at_wall:
                wall = int(rng.integers(4))
                L = placer.wall_length(wall)
                half = (model.bounds()[1][0] - model.bounds()[0][0]) / 2
                if L - 2 * half < 0.02:
                    continue
                yaw, xy = placer.wall_pose(model, wall, float(rng.uniform(half + 0.01, L - half - 0.01)))
            else:
                yaw = float(rng.uniform(-np.pi, np.pi)) if cat in ("chair", "box", "plant", "lamp") else \
                    float(rng.integers(4) * np.pi / 2 + rng.uniform(-0.15, 0.15))
                xy = np.array([rng.uniform(0.2, W - 0.2), rng.uniform(0.2, D - 0.2)])
            if placer.fits(model, yaw, xy):
                placer.add(model, yaw, xy)
                return new_obj(model, yaw, xy)
        return None

    def add_chairs(parent: PlacedObject) -> None:
        if "chair" not in cats:
            return
        lo, hi = parent.model.bounds()
        sides = [(0.0, lo[1])] if parent.model.category == "desk" else \
            [(0.0, lo[1]), (0.0, hi[1]), (lo[0], 0.0), (hi[0], 0.0)]
        for sx, sy in sides:
            if len(objects) >= n_floor_target or rng.random() < 0.35:
                continue
            chair = build_model("chair", rng, textures)
            cd = chair.bounds()[1][1] - chair.bounds()[0][1]
            normal = np.array([np.sign(sx), np.sign(sy)])  # outward side normal in the parent frame
            local = np.array([sx, sy]) + normal * (cd / 2 + 0.06)
            if sy:
                local[0] += rng.uniform(-0.2, 0.2)
            xy = parent.position[:2] + rot_z(parent.yaw)[:2, :2] @ local
            # The chair's front is its -y axis; turn it to face the parent (along -normal).
            yaw = parent.yaw + float(np.arctan2(-normal[0], normal[1]))
            if placer.fits(chair, yaw, xy):
                placer.add(chair, yaw, xy)
                new_obj(chair, yaw, xy)

    order = list(floor_cats)
    attempts = 0
    while len(objects) < n_floor_target and attempts < 4 * max(len(order), 1) + 20:
        cat = order[attempts % len(order)] if attempts < len(order) else order[int(rng.integers(len(order)))]
        attempts += 1
        placed = place_floor(cat)
        if placed is not None and cat in ("table", "desk"):
            add_chairs(placed)

    # Small objects on support surfaces, in each support's own frame.
    supports = [o for o in objects if o.model.surfaces]
    surf_state: dict[tuple[int, int], list] = {}
    attempts = 0
    while supports and len(objects) < n_target and attempts < 40 * n_target:
        attempts += 1
        sup = supports[int(rng.integers(len(supports)))]
        k = int(rng.integers(len(sup.model.surfaces)))
        surf: Surface = sup.model.surfaces[k]
        options = [c for c in SUPPORTED_ON[sup.model.category] if c in cats]
        if not options:
            continue
        cat = options[int(rng.integers(len(options)))]
        standing = cat == "book" and sup.model.category == "shelf" and rng.random() < 0.7
        model = build_model(cat, rng, textures, on_support=True, standing=standing)
        lo, hi = model.bounds()
        if hi[2] - lo[2] > surf.clearance_m - 0.02:
            continue
        front = cat in ("monitor", "laptop") or standing
        local_yaw = float(rng.uniform(-0.3, 0.3)) if front else float(rng.uniform(-np.pi, np.pi))
        rect_half = surf.half_xy - 0.01
        fp = _footprint(model, local_yaw, np.zeros(2))
        span = rect_half * 2 - (fp[1] - fp[0])
        if np.any(span <= 0):
            continue
        xy_local = surf.center_xy - rect_half - fp[0] + rng.uniform(0, 1, 2) * span
        rect = _footprint(model, local_yaw, xy_local)
        taken = surf_state.setdefault((sup.id, k), [])
        if any(_overlap(rect, r, 0.02) for r in taken):
            continue
        taken.append(rect)
        xy = sup.position[:2] + rot_z(sup.yaw)[:2, :2] @ xy_local
        new_obj(model, sup.yaw + local_yaw, xy, z=sup.position[2] + surf.z, support=sup.id)

    # Top up to the minimum with free-standing boxes/plants if the supports ran out.
    extra = [c for c in ("box", "plant", "lamp", "chair") if c in cats]
    attempts = 0
    while len(objects) < min_objects and extra and attempts < 200:
        place_floor(extra[attempts % len(extra)])
        attempts += 1
    if len(objects) < min_objects:
        logger.warning("scene seed %d: placed %d objects, fewer than min_objects=%d (room too crowded)",
                       seed, len(objects), min_objects)

    structure = [(FLOOR_ID, "floor")] + ([(CEILING_ID, "ceiling")] if has_ceiling else []) + \
        [(i, "wall") for i in WALL_IDS]
    layout = SceneLayout(seed, room_type, room_size, has_ceiling, openings, objects, traj, structure)
    layout.primitives = _structure_parts(rng, room_size, has_ceiling, openings, textures)
    for o in objects:
        R, t = rot_z(o.yaw), o.position
        sem = CATEGORY_ID[o.model.category]
        for p in o.model.parts:
            wp = Part(p.shape, p.size.copy(), R @ p.center + t, p.albedo.copy(), R @ p.R, p.texture, p.texture_scale_m)
            layout.primitives.append(Primitive(wp, o.id, sem))
    az = rng.uniform(0, 2 * np.pi)
    light = np.array([0.5 * np.cos(az), 0.5 * np.sin(az), 1.0])
    layout.light_dir = light / np.linalg.norm(light)
    return layout
