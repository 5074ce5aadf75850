"""Writes the ground-truth scene graphs of the held-out query set (tests/data/query_graphs/*.json).

Usage: python tests/data/make_query_graphs.py   (rewrites the JSON files; they are committed, so the test never
needs the generator). Synthetic test-split scenes come from SceneGenerator with the config of data/synth, plus
their room structure (floor, walls, ceiling) as kind "structure"; two real rooms are built by hand with COCO /
ImageNet labels and boxes that rest on their supports. Objects carry only what the object map would give them
(colour and size attributes, several observations), not the generator's bookkeeping (support ids, categories).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from g2vlm_core.attributes import color_name, size_class
from g2vlm_core.scene_graph import Box3D, SceneGraph, SceneObject

OUT = Path(__file__).resolve().parent / "query_graphs"
SYNTH_SEEDS = (109, 349, 389)  # test split (seed % 10 == 9): a living room, a bedroom, an office
OBSERVATIONS = 6  # every GT object counts as confirmed (seen in several keyframes)
# An sRGB albedo for each colour name of the hand-built rooms (checked against attributes.color_name below).
RGB = {"red": (0.75, 0.12, 0.1), "green": (0.2, 0.55, 0.25), "blue": (0.15, 0.3, 0.75), "yellow": (0.9, 0.8, 0.15),
       "brown": (0.45, 0.28, 0.12), "black": (0.08, 0.08, 0.08), "white": (0.92, 0.92, 0.9),
       "gray": (0.5, 0.5, 0.52), "orange": (0.95, 0.5, 0.1)}


def _obj(i: int, label: str, center, size, color: str, kind: str = "object", candidates=None) -> SceneObject:
    box = Box3D(center, size)
    assert color_name(RGB[color]) == color, (color, color_name(RGB[color]))
    cands = candidates or [(label, 0.9)]
    return SceneObject(id=i, label=label, box=box, kind=kind, label_confidence=cands[0][1], label_candidates=cands,
                       attributes={"color": color, "size": size_class(box)}, centroid=box.center.copy(),
                       mean_color=np.array(RGB[color]), point_count=2000, observation_count=OBSERVATIONS,
                       first_seen_s=0.0, last_seen_s=10.0)


def _on(support: SceneObject, xy, size) -> tuple[list[float], list[float]]:
    """Centre and size of a box of ``size`` standing on top of ``support`` at ``xy``."""
    top = float(support.box.center[2] + support.box.size[2] / 2)
    return [xy[0], xy[1], top + size[2] / 2], list(size)


def _room(w: float, d: float, h: float, first_id: int = 1, ceiling: bool = False) -> list[SceneObject]:
    """Floor (top at z = 0), four 0.1 m walls around [0, w] x [0, d], optionally a ceiling, as structure."""
    t = 0.1
    parts = [("floor", [w / 2, d / 2, -t / 2], [w + 2 * t, d + 2 * t, t], "gray")]
    if ceiling:
        parts.append(("ceiling", [w / 2, d / 2, h + t / 2], [w + 2 * t, d + 2 * t, t], "white"))
    parts += [("wall", [w / 2, -t / 2, h / 2], [w + 2 * t, t, h], "white"),
              ("wall", [w + t / 2, d / 2, h / 2], [t, d, h], "white"),
              ("wall", [w / 2, d + t / 2, h / 2], [w + 2 * t, t, h], "white"),
              ("wall", [-t / 2, d / 2, h / 2], [t, d, h], "white")]
    return [_obj(first_id + k, lab, c, s, col, kind="structure") for k, (lab, c, s, col) in enumerate(parts)]


def kitchen() -> SceneGraph:
    """A kitchen-dining room, 5 x 5 m: counter (structure) with sink, microwave, a cup and a plant along the north
    wall; a dining table with four chairs and two cups, a bowl, a banana and a laptop in the middle."""
    objs = _room(5.0, 5.0, 2.6)
    counter = _obj(6, "counter", [1.7, 4.7, 0.45], [3.0, 0.6, 0.9], "white", kind="structure")
    table = _obj(13, "dining table", [2.5, 2.2, 0.375], [1.6, 0.9, 0.75], "brown",
                 candidates=[("dining table", 0.88), ("desk", 0.07)])
    objs += [counter, table]
    objs.append(_obj(10, "refrigerator", [3.8, 4.65, 0.9], [0.8, 0.7, 1.8], "white"))
    objs.append(_obj(11, "sink", [1.0, 4.7, 0.82], [0.6, 0.45, 0.2], "gray"))
    objs.append(_obj(12, "microwave", *_on(counter, (2.65, 4.7), (0.5, 0.4, 0.3)), "black"))
    for i, (x, y, col) in zip((14, 15, 16, 17), ((1.85, 1.3, "brown"), (3.1, 1.3, "red"), (2.05, 3.1, "brown"),
                                                  (3.0, 3.1, "black"))):
        objs.append(_obj(i, "chair", [x, y, 0.45], [0.45, 0.45, 0.9], col))
    objs.append(_obj(20, "cup", *_on(table, (2.0, 2.0), (0.08, 0.08, 0.10)), "white"))
    objs.append(_obj(21, "cup", *_on(table, (2.9, 2.4), (0.08, 0.08, 0.10)), "red"))
    objs.append(_obj(22, "cup", *_on(counter, (0.5, 4.6), (0.08, 0.08, 0.10)), "blue"))
    objs.append(_obj(23, "banana", *_on(table, (2.5, 2.0), (0.2, 0.06, 0.04)), "yellow"))
    objs.append(_obj(24, "bottle", *_on(counter, (2.0, 4.6), (0.08, 0.08, 0.24)), "green"))
    objs.append(_obj(25, "potted plant", [4.6, 0.4, 0.4], [0.4, 0.4, 0.8], "green"))
    objs.append(_obj(26, "potted plant", *_on(counter, (3.0, 4.75), (0.2, 0.2, 0.3)), "green"))
    objs.append(_obj(27, "bowl", *_on(table, (2.5, 2.4), (0.18, 0.18, 0.06)), "white"))
    objs.append(_obj(28, "laptop", *_on(table, (3.1, 2.0), (0.33, 0.23, 0.02)), "gray"))
    return SceneGraph(objects=sorted(objs, key=lambda o: o.id), frame_id="map", stamp_s=10.0, sequence=1)


def living() -> SceneGraph:
    """A living room with an office corner, 6 x 5 m: couch on the north wall, tv on a low cabinet on the south
    wall, a coffee table (detected as "dining table") with two cups, a book and a remote; a desk in the north-east
    corner with a monitor, keyboard, a cup and a coffee mug; an armchair, an office chair, two potted plants."""
    objs = _room(6.0, 5.0, 2.7, ceiling=True)
    cabinet = _obj(12, "cabinet", [2.1, 0.3, 0.25], [1.4, 0.4, 0.5], "brown")
    ctable = _obj(13, "dining table", [2.1, 2.5, 0.225], [1.0, 0.6, 0.45], "brown",
                  candidates=[("dining table", 0.61), ("bench", 0.2)])
    desk = _obj(14, "desk", [5.25, 3.95, 0.37], [1.3, 0.7, 0.74], "white")
    objs += [cabinet, ctable, desk]
    objs.append(_obj(10, "couch", [2.1, 4.45, 0.425], [2.2, 0.9, 0.85], "gray",
                     candidates=[("couch", 0.82), ("chair", 0.08)]))
    objs.append(_obj(11, "tv", *_on(cabinet, (2.1, 0.3), (1.0, 0.16, 0.6)), "black",
                     candidates=[("tv", 0.9), ("monitor", 0.06)]))
    objs.append(_obj(15, "monitor", *_on(desk, (5.28, 4.18), (0.56, 0.16, 0.4)), "black"))
    objs.append(_obj(16, "keyboard", *_on(desk, (5.28, 3.85), (0.44, 0.14, 0.03)), "black"))
    objs.append(_obj(17, "chair", [5.25, 3.2, 0.45], [0.5, 0.5, 0.9], "black"))
    objs.append(_obj(18, "chair", [0.6, 3.0, 0.4], [0.7, 0.7, 0.8], "green"))
    objs.append(_obj(19, "potted plant", [5.5, 0.5, 0.5], [0.4, 0.4, 1.0], "green"))
    objs.append(_obj(20, "cup", *_on(ctable, (1.8, 2.4), (0.08, 0.08, 0.10)), "white"))
    objs.append(_obj(21, "cup", *_on(ctable, (2.4, 2.6), (0.08, 0.08, 0.10)), "yellow"))
    objs.append(_obj(22, "cup", *_on(desk, (4.8, 3.8), (0.08, 0.08, 0.10)), "blue"))
    objs.append(_obj(23, "coffee mug", *_on(desk, (5.75, 3.8), (0.12, 0.09, 0.10)), "red"))
    objs.append(_obj(24, "potted plant", *_on(cabinet, (2.7, 0.3), (0.15, 0.15, 0.2)), "green"))
    objs.append(_obj(25, "lamp", [3.6, 4.6, 0.8], [0.35, 0.35, 1.6], "white"))
    objs.append(_obj(26, "book", *_on(ctable, (2.3, 2.3), (0.22, 0.15, 0.03)), "blue"))
    objs.append(_obj(27, "remote", *_on(ctable, (2.55, 2.3), (0.05, 0.18, 0.02)), "black"))
    objs.append(_obj(28, "backpack", [4.3, 3.3, 0.22], [0.3, 0.2, 0.44], "red"))
    return SceneGraph(objects=sorted(objs, key=lambda o: o.id), frame_id="map", stamp_s=10.0, sequence=1)


def synthetic(seed: int) -> SceneGraph:
    """The GT objects of a synthetic scene as the map would carry them, plus its floor, walls and ceiling."""
    from g2vlm_core.synth import SceneGenerator, SynthConfig

    scene = SceneGenerator(SynthConfig(num_scenes=400, frames_per_scene=10)).scene(seed)  # data/synth's config
    layout = scene.layout
    w, d, h = (float(x) for x in layout.room_size)
    objs = _room(w, d, h, ceiling=layout.has_ceiling)
    for o in layout.scene_objects():
        o.attributes = {"color": o.attributes["color"], "size": o.attributes["size"]}
        o.label_confidence, o.label_candidates = 1.0, [(o.label, 1.0)]
        o.observation_count, o.point_count, o.last_seen_s = OBSERVATIONS, 2000, 10.0
        objs.append(o)
    return SceneGraph(objects=objs, frame_id="map", stamp_s=10.0, sequence=1)


def reference_views(seed: int) -> list[dict]:
    """The synthetic scene's reference viewpoints (position, forward), as its scene.json lists them."""
    from g2vlm_core.predicates import Viewpoint
    from g2vlm_core.synth import SceneGenerator, SynthConfig

    scene = SceneGenerator(SynthConfig(num_scenes=400, frames_per_scene=10)).scene(seed)
    out = []
    for i in scene.reference_indices():
        v = Viewpoint.from_pose(scene.poses[i])
        out.append({"frame": i, "position": np.round(v.position, 3).tolist(),
                    "forward": np.round(v.forward, 3).tolist()})
    return out


def _round(d):
    if isinstance(d, float):
        return round(d, 4)
    if isinstance(d, list):
        return [_round(x) for x in d]
    if isinstance(d, dict):
        return {k: _round(v) for k, v in d.items()}
    return d


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    graphs = {"kitchen_real": kitchen(), "living_real": living()}
    graphs.update({f"synth_{seed:06d}": synthetic(seed) for seed in SYNTH_SEEDS})
    for name, g in graphs.items():
        # Rounded to 0.1 mm: the predicates are evaluated on exactly what is stored.
        (OUT / f"{name}.json").write_text(json.dumps(_round(g.to_dict()), indent=None) + "\n")
    for seed in SYNTH_SEEDS:
        print(f"synth_{seed:06d} reference views:", json.dumps(reference_views(seed)))


if __name__ == "__main__":
    main()
