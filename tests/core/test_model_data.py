"""Training examples from frames: slots, relation targets from the shared predicates, collation padding."""
from __future__ import annotations

import numpy as np
import torch

from g2vlm_core.model.data import ToyFrames, collate, frame_to_example, toy_frame, TOY_CATEGORIES
from g2vlm_core.predicates import PREDICATES, Viewpoint, pairwise_confidences


def test_frame_to_example_matches_predicates():
    frame, objs = toy_frame(4, 48, 64)
    ex = frame_to_example(frame, objs, TOY_CATEGORIES, min_pixels=4)
    M = ex["obj_boxes"].shape[0]
    assert M == len(objs)
    ids = ex["instance_ids"]
    assert ids.max() == M and ids.min() == 0
    conf = pairwise_confidences([o.box for o in objs], Viewpoint.from_pose(frame.T_world_cam))
    for p, name in enumerate(PREDICATES):
        np.testing.assert_array_equal(ex["rel_targets"][..., p].numpy(), conf[name] >= 0.5)


def test_resize_scales_intrinsics():
    frame, objs = toy_frame(4, 48, 64)
    ex = frame_to_example(frame, objs, TOY_CATEGORIES, image_hw=(24, 32), min_pixels=4)
    assert ex["rgb"].shape == (3, 24, 32) and ex["instance_ids"].shape == (24, 32)
    assert abs(float(ex["K"][0, 0]) - frame.intrinsics.fx / 2) < 1e-4


def test_collate_pads_objects():
    ds = ToyFrames(3, 48, 64, seed=2)
    exs = [ds[i] for i in range(3)]
    exs[1] = {**exs[1], "obj_boxes": exs[1]["obj_boxes"][:1], "obj_category": exs[1]["obj_category"][:1],
              "rel_targets": exs[1]["rel_targets"][:1, :1]}
    b = collate(exs)
    M = b["obj_boxes"].shape[1]
    assert b["obj_valid"][1].sum() == 1 and b["rel_valid"][1].sum() == 0
    assert not b["rel_valid"][:, torch.arange(M), torch.arange(M)].any()
    assert len(b["expr_frame"]) == len(b["expr_text"]) == len(b["expr_target"])
