"""The development query set (tests/core/data/language_dev_set.yaml): its hand-built graphs and the ground-truth
graphs of generated synthetic test-split scenes its templates are asked over."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from g2vlm_core.predicates import Viewpoint
from g2vlm_core.scene_graph import Box3D, SceneGraph, SceneObject

DEV_SET = Path(__file__).parent / "data" / "language_dev_set.yaml"


CASE_KEYS = {"scene", "family", "q", "q_repeat", "q_utf8_hex", "no_viewpoint"}


def load_dev_set(path: Path = DEV_SET) -> dict:
    """The set; each case's expectations are the keys other than CASE_KEYS (g2vlm_core.eval.queries.check)."""
    return yaml.safe_load(path.read_text())


def expectations(case: dict) -> dict:
    return {k: v for k, v in case.items() if k not in CASE_KEYS}


def build_scene(spec: dict) -> tuple[SceneGraph, Viewpoint | None]:
    objs = [SceneObject(int(o["id"]), o["label"], Box3D(o["center"], o["size"]), kind=o.get("kind", "object"),
                        attributes={"color": o["color"]} if o.get("color") else {}) for o in spec["objects"]]
    vp = spec.get("viewpoint")
    view = Viewpoint(np.array(vp["position"], dtype=float), np.array(vp["forward"], dtype=float)) if vp else None
    return SceneGraph(objs), view


def query_text(case: dict) -> str:
    if "q_utf8_hex" in case:  # bytes that are not UTF-8, as Python decodes them from a byte source
        return bytes.fromhex(case["q_utf8_hex"]).decode("utf-8", errors="surrogateescape")
    if "q_repeat" in case:
        text, n = case["q_repeat"]
        return text * int(n)
    return case["q"]


def generated_scene(seed: int) -> tuple[SceneGraph, Viewpoint]:
    """The ground-truth graph of synthetic scene ``seed`` (layout only, nothing rendered) and its first
    reference view (the camera pose of frame 0), as g2vlm-synth writes them."""
    from g2vlm_core.eval.queries import gt_graph
    from g2vlm_core.synth.config import SynthConfig
    from g2vlm_core.synth.layout import generate_layout

    cfg = SynthConfig()
    layout = generate_layout(seed, cfg.object_categories, cfg.min_objects, cfg.max_objects, cfg.trajectory,
                             cfg.ceiling_prob, cfg.textures)
    pose = layout.trajectory.poses(10)[0]
    return gt_graph(layout.scene_objects(), layout.room_size), Viewpoint.from_pose(pose, "frame_000000")
