"""Furniture and object models composed of box / cylinder / sphere primitives, with their support surfaces."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .palette import CATEGORY_COLORS, palette, sample_color

TEXTURES = ("plain", "stripes", "checker")


def rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass
class Part:
    """One primitive: a unit shape (box, cylinder along z, sphere; all centred) scaled by ``size`` then posed."""

    shape: str  # box | cylinder | sphere
    size: np.ndarray  # (3,) full extents in metres along the part's own axes
    center: np.ndarray  # (3,) centre in the parent frame
    albedo: np.ndarray  # (3,) RGB in [0, 1]
    R: np.ndarray = field(default_factory=lambda: np.eye(3))  # part -> parent rotation
    texture: str = "plain"  # plain | stripes | checker
    texture_scale_m: float = 0.1  # stripe / checker period

    def corners(self) -> np.ndarray:
        """(8, 3) corners of the part's bounding box in the parent frame."""
        signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
        return self.center + (signs * self.size / 2.0) @ self.R.T


@dataclass
class Surface:
    """A horizontal support area in the model frame: top height, xy centre and half extents, free height above."""

    z: float
    center_xy: np.ndarray
    half_xy: np.ndarray
    clearance_m: float


@dataclass
class Model:
    """An object model in its own frame (origin at the footprint centre on the ground, z up)."""

    category: str
    parts: list[Part]
    color_name: str  # name of the main albedo (attributes.color_name of it)
    albedo: np.ndarray  # main albedo (3,)
    texture: str = "plain"
    surfaces: list[Surface] = field(default_factory=list)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        c = np.concatenate([p.corners() for p in self.parts])
        return c.min(axis=0), c.max(axis=0)


def _box(size, center, albedo, **kw) -> Part:
    return Part("box", np.asarray(size, float), np.asarray(center, float), np.asarray(albedo, float), **kw)


def _cyl(radius, height, center, albedo, **kw) -> Part:
    return Part("cylinder", np.array([2 * radius, 2 * radius, height], float), np.asarray(center, float),
                np.asarray(albedo, float), **kw)


def _sphere(size, center, albedo, **kw) -> Part:
    return Part("sphere", np.asarray(size, float), np.asarray(center, float), np.asarray(albedo, float), **kw)


def _pick(rng: np.random.Generator, name: str) -> np.ndarray:
    choices = palette()[name]
    return choices[int(rng.integers(len(choices)))].copy()


def sample_texture(rng: np.random.Generator, p_textured: float, enabled: bool) -> str:
    if not enabled or rng.random() >= p_textured:
        return "plain"
    return TEXTURES[1 + int(rng.integers(2))]


def _u(rng, lo, hi) -> float:
    return float(rng.uniform(lo, hi))


def _legs(w, d, h, thick, albedo, inset=0.03, round_legs=False) -> list[Part]:
    parts = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            c = [sx * (w / 2 - inset - thick / 2), sy * (d / 2 - inset - thick / 2), h / 2]
            parts.append(_cyl(thick / 2, h, c, albedo) if round_legs else _box([thick, thick, h], c, albedo))
    return parts


def build_table(rng, tex, small=False):
    name, col = sample_color(rng, CATEGORY_COLORS["table"])
    w, d = (_u(rng, 0.5, 0.9), _u(rng, 0.4, 0.6)) if small else (_u(rng, 1.0, 1.8), _u(rng, 0.6, 1.0))
    h, t = (_u(rng, 0.4, 0.5) if small else _u(rng, 0.70, 0.78)), 0.04
    texture = sample_texture(rng, 0.3, tex)
    parts = [_box([w, d, t], [0, 0, h - t / 2], col, texture=texture, texture_scale_m=0.08)]
    parts += _legs(w, d, h - t, 0.05, col * 0.8, round_legs=bool(rng.random() < 0.5))
    return Model("table", parts, name, col, texture, [Surface(h, np.zeros(2), np.array([w / 2, d / 2]), 0.6)])


def build_desk(rng, tex):
    name, col = sample_color(rng, CATEGORY_COLORS["desk"])
    w, d, h, t = _u(rng, 1.0, 1.6), _u(rng, 0.55, 0.8), _u(rng, 0.72, 0.76), 0.035
    parts = [_box([w, d, t], [0, 0, h - t / 2], col)]
    side = 0.03
    parts.append(_box([side, d, h - t], [-w / 2 + side / 2, 0, (h - t) / 2], col))
    dw = _u(rng, 0.35, 0.45)  # drawer block on the right
    parts.append(_box([dw, d - 0.02, h - t], [w / 2 - dw / 2, 0, (h - t) / 2], col * 0.9))
    _, handle = sample_color(rng, ("gray", "black"))
    for k in range(3):
        z = (h - t) * (k + 0.5) / 3
        parts.append(_box([0.12, 0.02, 0.02], [w / 2 - dw / 2, -d / 2 + 0.0, z], handle))
    return Model("desk", parts, name, col, "plain", [Surface(h, np.zeros(2), np.array([w / 2, d / 2]), 0.6)])


def build_chair(rng, tex):
    name, col = sample_color(rng, CATEGORY_COLORS["chair"])
    w, d, hs = _u(rng, 0.40, 0.50), _u(rng, 0.40, 0.50), _u(rng, 0.42, 0.48)
    hb = _u(rng, 0.35, 0.5)
    _, leg = sample_color(rng, ("black", "gray", "brown"))
    texture = sample_texture(rng, 0.25, tex)
    parts = [_box([w, d, 0.05], [0, 0, hs - 0.025], col, texture=texture, texture_scale_m=0.05)]
    parts += _legs(w, d, hs - 0.05, 0.035, leg, inset=0.02, round_legs=bool(rng.random() < 0.5))
    # backrest along +y (the model's back); the chair faces -y
    parts.append(_box([w, 0.05, hb], [0, d / 2 - 0.025, hs + hb / 2], col, texture=texture, texture_scale_m=0.05))
    return Model("chair", parts, name, col, texture)


def build_sofa(rng, tex):
    name, col = sample_color(rng, CATEGORY_COLORS["sofa"])
    w, d = _u(rng, 1.6, 2.4), _u(rng, 0.8, 0.95)
    hs, hb, arm = _u(rng, 0.38, 0.45), _u(rng, 0.75, 0.9), _u(rng, 0.12, 0.2)
    texture = sample_texture(rng, 0.35, tex)
    kw = dict(texture=texture, texture_scale_m=0.1)
    back = 0.2
    parts = [_box([w - 2 * arm, d - back, hs], [0, -back / 2, hs / 2], col, **kw),
             _box([w, back, hb], [0, d / 2 - back / 2, hb / 2], col, **kw),
             _box([arm, d - back, hs + 0.18], [-w / 2 + arm / 2, -back / 2, (hs + 0.18) / 2], col, **kw),
             _box([arm, d - back, hs + 0.18], [w / 2 - arm / 2, -back / 2, (hs + 0.18) / 2], col, **kw)]
    return Model("sofa", parts, name, col, texture)


def build_bed(rng, tex):
    name, col = sample_color(rng, CATEGORY_COLORS["bed"])
    _, frame = sample_color(rng, ("brown", "white", "black", "gray"))
    w, d = _u(rng, 1.0, 1.8), _u(rng, 1.95, 2.1)
    hf, hm = _u(rng, 0.25, 0.35), _u(rng, 0.18, 0.25)
    texture = sample_texture(rng, 0.4, tex)
    parts = [_box([w, d, hf], [0, 0, hf / 2], frame),
             _box([w - 0.04, d - 0.1, hm], [0, -0.03, hf + hm / 2], col, texture=texture, texture_scale_m=0.15),
             _box([w, 0.06, _u(rng, 0.8, 1.1)], [0, d / 2 - 0.03, 0.45], frame),
             _box([w * 0.35, 0.35, 0.1], [-w * 0.22, d / 2 - 0.3, hf + hm + 0.05], _pick(rng, "white")),
             _box([w * 0.35, 0.35, 0.1], [w * 0.22, d / 2 - 0.3, hf + hm + 0.05], _pick(rng, "white"))]
    parts[2].center[2] = parts[2].size[2] / 2
    return Model("bed", parts, name, col, texture)


def build_shelf(rng, tex):
    name, col = sample_color(rng, CATEGORY_COLORS["shelf"])
    w, d, h = _u(rng, 0.6, 1.2), _u(rng, 0.3, 0.4), _u(rng, 1.2, 2.0)
    n_boards = max(3, int(h / _u(rng, 0.32, 0.42)))
    t = 0.025
    parts = [_box([t, d, h], [-w / 2 + t / 2, 0, h / 2], col), _box([t, d, h], [w / 2 - t / 2, 0, h / 2], col),
             _box([w, 0.015, h], [0, d / 2 - 0.0075, h / 2], col * 0.85)]
    surfaces = []
    zs = np.linspace(0.05, h - t / 2, n_boards + 1)
    for k, z in enumerate(zs):
        parts.append(_box([w - 2 * t, d - 0.015, t], [0, -0.0075, z], col))
        top = z + t / 2
        clearance = (zs[k + 1] - t / 2 - top) if k + 1 < len(zs) else 0.5
        surfaces.append(Surface(top, np.array([0.0, -0.0075]), np.array([w / 2 - t, d / 2 - 0.01]), clearance))
    # the topmost board is the shelf's top; boards are a few mm apart from the sides to keep surfaces distinct
    return Model("shelf", parts, name, col, "plain", surfaces)


def build_cabinet(rng, tex):
    name, col = sample_color(rng, CATEGORY_COLORS["cabinet"])
    w, d, h = _u(rng, 0.5, 1.2), _u(rng, 0.4, 0.6), _u(rng, 0.5, 1.0)
    _, handle = sample_color(rng, ("gray", "black", "white"))
    parts = [_box([w, d, h], [0, 0, h / 2], col)]
    n_doors = 1 if w < 0.7 else 2
    for k in range(n_doors):
        x = -w / 2 + w * (k + 0.5) / n_doors
        parts.append(_box([0.02, 0.02, 0.15], [x + (0.08 if n_doors == 1 else (0.1 if k == 0 else -0.1)),
                                                -d / 2 - 0.01, h * 0.7], handle))
    return Model("cabinet", parts, name, col, "plain", [Surface(h, np.zeros(2), np.array([w / 2, d / 2]), 0.6)])


def build_lamp(rng, tex, small=False):
    name, col = sample_color(rng, CATEGORY_COLORS["lamp"])
    _, metal = sample_color(rng, ("gray", "black", "white"))
    h = _u(rng, 0.35, 0.5) if small else _u(rng, 1.4, 1.7)
    rb = 0.08 if small else _u(rng, 0.14, 0.2)
    rs, hs = (0.1, 0.15) if small else (_u(rng, 0.17, 0.25), _u(rng, 0.25, 0.35))
    parts = [_cyl(rb, 0.03, [0, 0, 0.015], metal), _cyl(0.012, h - hs, [0, 0, (h - hs) / 2], metal),
             _cyl(rs, hs, [0, 0, h - hs / 2], col)]
    return Model("lamp", parts, name, col)


def build_plant(rng, tex, small=False):
    name, col = sample_color(rng, CATEGORY_COLORS["plant"])
    _, pot = sample_color(rng, ("brown", "white", "gray", "orange", "black"))
    s = _u(rng, 0.25, 0.45) if small else 1.0
    rp, hp = _u(rng, 0.12, 0.2) * s, _u(rng, 0.25, 0.4) * s
    parts = [_cyl(rp, hp, [0, 0, hp / 2], pot)]
    hf = _u(rng, 0.5, 1.1) * s
    rf = rp * _u(rng, 1.3, 2.0)
    parts.append(_sphere([2 * rf, 2 * rf, hf], [0, 0, hp + hf / 2], col))
    if rng.random() < 0.6:
        parts.append(_sphere([1.3 * rf, 1.3 * rf, 0.6 * hf], [0.3 * rf, -0.2 * rf, hp + hf * 0.85], col * 0.85))
    return Model("plant", parts, name, col)


def build_box(rng, tex, small=False):
    name, col = sample_color(rng, CATEGORY_COLORS["box"])
    if small:
        size = [_u(rng, 0.12, 0.3), _u(rng, 0.1, 0.25), _u(rng, 0.08, 0.2)]
    else:
        size = [_u(rng, 0.3, 0.6), _u(rng, 0.3, 0.5), _u(rng, 0.25, 0.5)]
    texture = sample_texture(rng, 0.3, tex)
    return Model("box", [_box(size, [0, 0, size[2] / 2], col, texture=texture, texture_scale_m=0.05)],
                 name, col, texture)


def build_monitor(rng, tex):
    name, col = sample_color(rng, CATEGORY_COLORS["monitor"])
    w = _u(rng, 0.45, 0.7)
    h = w * _u(rng, 0.55, 0.62)
    stand = _u(rng, 0.08, 0.14)
    screen = _pick(rng, "black") * 0.5  # a dark screen is also a depth-sensor hole candidate
    parts = [_box([0.22, 0.16, 0.015], [0, 0.02, 0.0075], col), _box([0.04, 0.03, stand + h / 2],
                                                                      [0, 0.04, (stand + h / 2) / 2], col),
             _box([w, 0.03, h], [0, 0.0, stand + h / 2], col), _box([w - 0.03, 0.004, h - 0.03],
                                                                     [0, -0.017, stand + h / 2], screen)]
    return Model("monitor", parts, name, col)


def build_laptop(rng, tex):
    name, col = sample_color(rng, CATEGORY_COLORS["laptop"])
    w, d, t = _u(rng, 0.3, 0.38), _u(rng, 0.21, 0.26), 0.018
    a = np.deg2rad(_u(rng, 95, 115))  # lid opening angle
    parts = [_box([w, d, t], [0, 0, t / 2], col)]
    # lid hinged at the back edge (+y), rotated back by (a - 90 deg) from vertical
    R = rot_x(-(a - np.pi / 2))
    lid_c = np.array([0, d / 2, t]) + R @ np.array([0.0, 0.006, d / 2])
    parts.append(Part("box", np.array([w, 0.012, d]), lid_c, col, R=R))
    parts.append(Part("box", np.array([w - 0.03, 0.002, d - 0.03]), lid_c + R @ np.array([0, -0.007, 0]),
                      _pick(rng, "black") * 0.5, R=R))
    return Model("laptop", parts, name, col)


def build_mug(rng, tex):
    name, col = sample_color(rng, CATEGORY_COLORS["mug"])
    r, h = _u(rng, 0.035, 0.05), _u(rng, 0.08, 0.11)
    return Model("mug", [_cyl(r, h, [0, 0, h / 2], col), _box([0.025, 0.012, h * 0.6], [r + 0.0125, 0, h / 2], col)],
                 name, col)


def build_bottle(rng, tex):
    name, col = sample_color(rng, CATEGORY_COLORS["bottle"])
    r, h = _u(rng, 0.03, 0.045), _u(rng, 0.18, 0.3)
    hn = h * 0.25
    _, cap = sample_color(rng, ("white", "black", "red", "blue"))
    return Model("bottle", [_cyl(r, h - hn, [0, 0, (h - hn) / 2], col),
                            _cyl(r * 0.45, hn * 0.8, [0, 0, h - hn + hn * 0.4], col),
                            _cyl(r * 0.5, hn * 0.2, [0, 0, h - hn * 0.1], cap)], name, col)


def build_book(rng, tex, standing=False):
    name, col = sample_color(rng, CATEGORY_COLORS["book"])
    w, d, t = _u(rng, 0.15, 0.24), _u(rng, 0.2, 0.3), _u(rng, 0.02, 0.06)
    size = [t, w, d] if standing else [w, d, t]
    texture = sample_texture(rng, 0.3, tex)
    return Model("book", [_box(size, [0, 0, size[2] / 2], col, texture=texture, texture_scale_m=0.03)],
                 name, col, texture)


def build_bowl(rng, tex):
    name, col = sample_color(rng, CATEGORY_COLORS["bowl"])
    r, h = _u(rng, 0.07, 0.12), _u(rng, 0.05, 0.08)
    foot = _cyl(r * 0.6, 0.01, [0, 0, 0.005], col)
    return Model("bowl", [foot, _cyl(r, h - 0.01, [0, 0, 0.01 + (h - 0.01) / 2], col)], name, col)


def build_vase(rng, tex):
    name, col = sample_color(rng, CATEGORY_COLORS["vase"])
    r, h = _u(rng, 0.05, 0.09), _u(rng, 0.15, 0.3)
    return Model("vase", [_sphere([2 * r, 2 * r, h * 0.6], [0, 0, h * 0.3], col),
                          _cyl(r * 0.5, h * 0.45, [0, 0, h * 0.55 + h * 0.45 / 2 - 0.01], col)], name, col)


def build_model(category: str, rng: np.random.Generator, textures: bool, on_support: bool = False,
                standing: bool = False) -> Model:
    """Sample one model of ``category``; ``on_support`` picks the small variant where one exists."""
    if category in ("table", "lamp", "plant", "box"):
        return {"table": build_table, "lamp": build_lamp, "plant": build_plant, "box": build_box}[category](
            rng, textures, small=on_support)
    if category == "book":
        return build_book(rng, textures, standing=standing)
    builders = {"desk": build_desk, "chair": build_chair, "sofa": build_sofa, "bed": build_bed,
                "shelf": build_shelf, "cabinet": build_cabinet, "monitor": build_monitor,
                "laptop": build_laptop, "mug": build_mug, "bottle": build_bottle, "bowl": build_bowl,
                "vase": build_vase}
    if category not in builders:
        raise ValueError(f"no model for category {category!r}")
    return builders[category](rng, textures)
