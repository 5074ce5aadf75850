"""Evaluate a G2VLM checkpoint on a synthetic split and print the figures of issue 5.

Usage::

    python -m g2vlm_core.model.evaluate --checkpoint runs/stage2/final --data data/synth --split test
    python -m g2vlm_core.model.evaluate --checkpoint runs/stage2/final --data data/synth --max-frames 50 --json m.json

Figures: depth refinement (AbsRel and RMSE of the raw noisy depth vs the refined depth, on pixels with both raw and
true depth, and RMSE of the refined depth on the sensor's holes); instance segmentation (mean best IoU of true object
masks, and semantic mIoU; ``instance_box_acc_025``: of the objects found (an instance mask at IoU >= 0.5), the share
whose instance box reaches 3D IoU 0.25 with the true box, beside ``instance_visible_box_acc_025`` for the box of the
visible part, which the amodal box head completes); relation accuracy (learned head on true boxes, every valid pair and predicate, this frame's
viewpoint); referring-expression grounding Acc@0.25 / Acc@0.5 (3D IoU of the box of the best-scored predicted
instance with the true box, per frame; ``single_view_box_ceiling_025`` is the share of visible objects whose true
mask on the true depth, boxed around its visible points, reaches IoU 0.25: the ceiling of that row for boxes of
visible parts, which a model with the amodal box head can pass); retrieval R@1 / R@5 (expressions against every object of the scene, object
embeddings averaged over the frames that see them).

Grounding is measured twice. Per keyframe (``grounding_acc_*``): the instances of one view, with their whole-object
boxes when the model has the amodal box head (else the boxes of their visible parts: even perfect masks and true
depth then give IoU >= 0.25 with the full box for only about 3 objects in 4, one side being seen). In the map (``map_grounding_acc_*``, what a robot gets): the
scene's frames run through ``PerceptionPipeline`` with this model labelling its keyframes (as the node does), and
every expression is grounded by the model's grounding head over the fused map's objects (their averaged
embeddings and multi-view boxes), from the expression's reference view (``map_query_engine_acc_025``: the same
expressions answered by the node's query service, the QueryEngine with the grounding head ranking the objects its
head noun names; ``map_query_rules_acc_025``: the QueryEngine's hand-written rules alone);
``map_objects_matched_025`` is the share of the true objects seen in the frames (>= 200 pixels in one) that a map
object matches at 3D IoU >= 0.25; ``map_objects_per_matched`` the map's objects (kind object, structure aside) per
matched true object (1.0: one map object per real object); ``map_count_exact`` the share of "how many X are
there" answered exactly, one per category of the seen true objects; ``map_what_on_listed`` the share of "what is
on the X" (one per support label with seen true objects on it) whose answer lists every one of them.
"""
from __future__ import annotations

import argparse
import json
import logging
import os

import numpy as np
import torch

from ..geometry.camera import backproject, transform_points
from ..language.answers import plural
from ..scene_graph import Box3D, visible_box
from ..synth.dataset import SEEN_MIN_PIXELS, count_visible
from .data import collate, frame_to_example
from .inference import G2VLMInference
from .model import object_masks

log = logging.getLogger(__name__)


def aabb_iou(a: Box3D, b: Box3D) -> float:
    """IoU of the world axis-aligned bounds of two boxes."""
    alo, ahi = a.aabb()
    blo, bhi = b.aabb()
    inter = np.prod(np.clip(np.minimum(ahi, bhi) - np.maximum(alo, blo), 0, None))
    union = np.prod(ahi - alo) + np.prod(bhi - blo) - inter
    return float(inter / union) if union > 0 else 0.0


def _resize_frame(frame, hw):
    """The frame and its ground truth at ``hw`` = (H, W): colour bilinear, depth / ids / normals nearest."""
    if hw is None or frame.depth_m.shape == tuple(hw):
        return frame
    import torch.nn.functional as F
    from ..frame import RGBDFrame

    def t(a, mode):
        x = torch.from_numpy(np.array(a, dtype=np.float32))
        x = x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]
        return F.interpolate(x, size=tuple(hw), mode=mode)[0]

    rgb = t(frame.rgb, "bilinear").permute(1, 2, 0).round().clamp(0, 255).byte().numpy()
    ex = dict(frame.extras)
    ex["depth_gt_m"] = t(ex["depth_gt_m"], "nearest")[0].numpy()
    ex["instance_ids"] = t(ex["instance_ids"], "nearest")[0].numpy().astype(np.int32)
    ex["semantic_ids"] = t(ex["semantic_ids"], "nearest")[0].numpy().astype(np.int32)
    ex["normals"] = t(ex["normals"], "nearest").permute(1, 2, 0).numpy()
    intr = frame.intrinsics.scaled(hw[1] / frame.depth_m.shape[1])
    depth = t(frame.depth_m, "nearest")[0].numpy()
    return RGBDFrame(rgb, depth, intr, frame.T_world_cam, frame.stamp_s, frame.index, ex)


@torch.no_grad()
def evaluate_split(inf: G2VLMInference, root: str, split: str = "test", max_frames: int = 0,
                   image_hw: tuple[int, int] | None = None, frame_stride: int = 1) -> dict[str, float]:
    from ..synth import SynthDataset
    ds = SynthDataset(root, split)
    if len(ds) == 0:
        raise FileNotFoundError(f"no {split} scenes under {root}")
    cats = tuple(ds.categories)
    model = inf.model
    acc = {k: [] for k in ("abs_rel_raw", "abs_rel_ref", "rmse_raw", "rmse_ref", "rmse_holes", "inst_iou",
                           "rel_correct", "g25", "g50", "g_oracle", "r1", "r5", "view_box_iou", "found_box", "found_vis_box")}
    sq = {"raw": [0.0, 0], "ref": [0.0, 0], "holes": [0.0, 0]}
    sem_inter = np.zeros(model.cfg.num_semantic)
    sem_union = np.zeros(model.cfg.num_semantic)
    n_frames = 0
    for scene in ds:
        obj_emb: dict[int, list[np.ndarray]] = {}
        for fi in range(0, len(scene), frame_stride):
            if max_frames and n_frames >= max_frames:
                break
            frame = _resize_frame(scene.frame(fi), image_hw)
            n_frames += 1
            gt = frame.extras["depth_gt_m"]
            r = inf.process_frame(frame)
            raw = frame.depth_m
            both = (gt > 0) & np.isfinite(raw) & (raw > 0)
            holes = (gt > 0) & ~(np.isfinite(raw) & (raw > 0))
            for key, pred, m in (("raw", raw, both), ("ref", r.depth_m, both), ("holes", r.depth_m, holes)):
                if m.any():
                    sq[key][0] += float(((pred[m] - gt[m]) ** 2).sum())
                    sq[key][1] += int(m.sum())
            if both.any():
                acc["abs_rel_raw"].append(float((np.abs(raw[both] - gt[both]) / gt[both]).mean()))
                acc["abs_rel_ref"].append(float((np.abs(r.depth_m[both] - gt[both]) / gt[both]).mean()))
            sem = frame.extras["semantic_ids"]
            for c in np.union1d(np.unique(sem), np.unique(r.semantic_ids)):
                if 0 < c < len(sem_inter):
                    sem_inter[c] += np.sum((sem == c) & (r.semantic_ids == c))
                    sem_union[c] += np.sum((sem == c) | (r.semantic_ids == c))
            ex = frame_to_example(frame, scene.objects, cats, None, scene.expressions, scene.qa)
            inst = frame.extras["instance_ids"]
            objs = sorted((o for o in scene.objects if (inst == o.id).sum() >= 20), key=lambda o: o.id)
            gt_pts = transform_points(frame.T_world_cam, backproject(gt, frame.intrinsics))
            for o in objs:
                m = inst == o.id
                ious = [np.sum(m & p.mask) / np.sum(m | p.mask) for p in r.instances]
                acc["inst_iou"].append(float(max(ious, default=0.0)))
                if ious and max(ious) >= 0.5:  # a found object: are its boxes (whole-object, visible part) right?
                    p = r.instances[int(np.argmax(ious))]
                    acc["found_box"].append(float(aabb_iou(p.box, o.box) >= 0.25))
                    acc["found_vis_box"].append(float(aabb_iou(p.visible_box or p.box, o.box) >= 0.25))
                # The single-view ceiling: the true mask on the true depth, boxed as the inference boxes visible parts.
                p = gt_pts[m & (gt > 0)]
                if len(p) >= 3:
                    acc["view_box_iou"].append(aabb_iou(visible_box(p), o.box))
            if not objs:
                continue
            b = collate([ex])
            dev = inf.device
            b = {k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in b.items()}
            out, enc = model.encode_frame(b["rgb"], b["depth"], b["K"], b["T_world_cam"])
            masks = object_masks(b["instance_ids"], b["obj_boxes"].shape[1], enc["fine_map"].shape[-2:])
            emb = model.encode_objects(enc, masks, b["obj_boxes"], b["obj_valid"], b["T_world_cam"])["obj_embed"]
            rel = model.relation(b["obj_boxes"], b["T_world_cam"], emb)["rel_logits"] > 0
            ok = (rel == (b["rel_targets"] > 0.5))[b["rel_valid"]]
            acc["rel_correct"].extend(ok.float().flatten().cpu().tolist())
            for o, e in zip(objs, emb[0].float().cpu().numpy()):
                obj_emb.setdefault(o.id, []).append(e)
            if ex["expr_text"]:  # grounding over the true objects of the frame (isolates the language side)
                E = len(ex["expr_text"])
                text = model.encode_text(ex["expr_text"])
                sc = model.ground_queries(text, emb.expand(E, -1, -1), b["obj_boxes"].expand(E, -1, -1),
                                          b["obj_valid"].expand(E, -1), b["T_world_cam"].expand(E, -1, -1))
                hit = sc["ground_scores"].argmax(-1).cpu() == torch.tensor(ex["expr_target"])
                acc["g_oracle"].extend(hit.float().tolist())
            # Grounding in this frame with predicted instances and their predicted boxes.
            if r.instances and ex["expr_text"]:
                pe = np.stack([p.embedding for p in r.instances])
                pb = [p.box for p in r.instances]
                for text, slot in zip(ex["expr_text"], ex["expr_target"]):
                    s = inf.ground(text, pe, pb, frame.T_world_cam)
                    iou = aabb_iou(pb[int(np.argmax(s))], objs[slot].box)
                    acc["g25"].append(float(iou >= 0.25))
                    acc["g50"].append(float(iou >= 0.5))
            elif ex["expr_text"]:
                acc["g25"].extend([0.0] * len(ex["expr_text"]))
                acc["g50"].extend([0.0] * len(ex["expr_text"]))
        # Retrieval over the whole scene.
        ids = sorted(obj_emb)
        if len(ids) >= 2:
            E = np.stack([np.mean(obj_emb[i], axis=0) for i in ids])
            boxes = [next(o.box for o in scene.objects if o.id == i) for i in ids]
            poses = scene.poses()
            for e in scene.expressions:
                if e.target_id not in obj_emb:
                    continue
                T = poses[0]
                if e.viewpoint:
                    T = poses[int(e.viewpoint.split("_")[-1])]
                s = inf.ground(e.text, E, boxes, T)
                rank = int(np.sum(s > s[ids.index(e.target_id)]))
                acc["r1"].append(float(rank < 1))
                acc["r5"].append(float(rank < 5))
        if max_frames and n_frames >= max_frames:
            break
    mean = lambda k: float(np.mean(acc[k])) if acc[k] else float("nan")  # noqa: E731
    rmse = lambda k: float(np.sqrt(sq[k][0] / sq[k][1])) if sq[k][1] else float("nan")  # noqa: E731
    seen = sem_union > 0
    res = {"frames": n_frames, "depth_abs_rel_raw": mean("abs_rel_raw"), "depth_abs_rel_refined": mean("abs_rel_ref"),
           "depth_rmse_raw": rmse("raw"), "depth_rmse_refined": rmse("ref"), "depth_rmse_refined_on_holes": rmse("holes"),
           "instance_mean_best_iou": mean("inst_iou"),
           "instance_box_acc_025": mean("found_box"), "instance_visible_box_acc_025": mean("found_vis_box"),
           "semantic_miou": float(np.mean(sem_inter[seen] / sem_union[seen])) if seen.any() else float("nan"),
           "relation_accuracy": mean("rel_correct"), "grounding_acc_025": mean("g25"), "grounding_acc_050": mean("g50"),
           "grounding_expressions": len(acc["g25"]),
           "single_view_box_ceiling_025": float(np.mean(np.array(acc["view_box_iou"]) >= 0.25))
           if acc["view_box_iou"] else float("nan"), "grounding_acc_true_objects": mean("g_oracle"), "retrieval_r1": mean("r1"), "retrieval_r5": mean("r5")}
    res["depth_rmse_reduction"] = (1.0 - res["depth_rmse_refined"] / res["depth_rmse_raw"]) if sq["raw"][1] \
        else float("nan")
    return res


@torch.no_grad()
def evaluate_maps(inf: G2VLMInference, root: str, split: str = "test", max_scenes: int = 0,
                  progress: bool = True, pipeline_config=None) -> dict[str, float]:
    """Grounding in the fused map of each scene (see the module docstring); ``pipeline_config``: the
    PerceptionPipeline's (default: its defaults, as the node's)."""
    from tqdm import tqdm

    from ..eval.scene_graph import box_iou_matrix, match_objects
    from ..recognition.g2vlm import ModelLabeller
    from ..pipeline import PerceptionPipeline, PipelineConfig
    from ..geometry.segmentation import Segmenter
    from ..synth import SynthDataset
    ds = SynthDataset(root, split)
    n = len(ds) if not max_scenes else min(max_scenes, len(ds))
    cfg = pipeline_config or PipelineConfig()
    hw = inf.training_image_hw
    labeller = ModelLabeller(inf, Segmenter(cfg.segmenter), input_width=hw[1] if hw else 0, geometry_fill=True)
    from ..predicates import Viewpoint
    from ..language.query import QueryEngine
    engine = QueryEngine(**labeller.query_args())  # the node's query service
    rules = QueryEngine(text_embedder=labeller.query_args()["text_embedder"])  # its rules alone
    g25, g50, q25, q50, r25, matched, seen = [], [], [], [], [], 0, 0
    n_map, counts_ok, on_ok = 0, [], []
    for si in tqdm(range(n), desc="map grounding", unit="scene", disable=not progress):
        scene = ds[si]
        pipe = PerceptionPipeline(cfg, labeller)
        px: dict[int, int] = {}
        for fi in range(len(scene)):
            frame = scene.frame(fi)
            count_visible(frame.extras["instance_ids"], px)
            pipe.process(frame)
        graph = pipe.snapshot()
        objs = [o for o in graph.objects if o.embedding is not None]
        gt_seen = [o for o in scene.objects if px.get(o.id, 0) >= SEEN_MIN_PIXELS]
        seen += len(gt_seen)
        matched += len(match_objects(gt_seen, objs, 0.25).pairs) if objs else 0
        matching = match_objects(gt_seen, [o for o in graph.objects if o.kind == "object"], 0.25)
        n_map += sum(o.kind == "object" for o in graph.objects)
        c_ok, o_ok = map_questions(engine, graph, gt_seen, scene.relations, matching)
        counts_ok += c_ok
        on_ok += o_ok
        gt_by_id = {o.id: o for o in scene.objects}
        poses = scene.poses()
        seen_ids = {o.id for o in gt_seen}
        for e in scene.expressions:
            if e.target_id not in seen_ids:
                continue  # the frames never showed the target: not a grounding failure of the model
            if not objs:
                g25.append(0.0), g50.append(0.0), q25.append(0.0), q50.append(0.0), r25.append(0.0)
                continue
            T = poses[int(e.viewpoint.split("_")[-1])] if e.viewpoint else poses[0]
            s = inf.ground(e.text, np.stack([o.embedding for o in objs]), [o.box for o in objs], T)
            iou = float(box_iou_matrix([gt_by_id[e.target_id].box], [objs[int(np.argmax(s))].box])[0, 0])
            g25.append(float(iou >= 0.25))
            g50.append(float(iou >= 0.5))
            # The node's query service on the same map (the robot's current view: the expression's reference view
            # or, for view-independent ones, the first frame's), and its hand-written rules alone.
            view = scene.viewpoint(e.viewpoint) if e.viewpoint else Viewpoint.from_pose(poses[0])
            for eng, accs in ((engine, (q25, q50)), (rules, (r25,))):
                r = eng.answer(graph, e.text, viewpoint=view)
                top = r.object_ids[0] if r.success and r.achievable and r.object_ids else None
                iou = 0.0 if top is None else box_iou_matrix([gt_by_id[e.target_id].box],
                                                             [graph.object_by_id(top).box])[0, 0]
                for a, t in zip(accs, (0.25, 0.5)):
                    a.append(float(iou >= t))
    return {"map_scenes": n, "map_objects_matched_025": matched / seen if seen else float("nan"),
            "map_objects_per_matched": n_map / matched if matched else float("nan"),
            "map_count_exact": float(np.mean(counts_ok)) if counts_ok else float("nan"),
            "map_count_questions": len(counts_ok),
            "map_what_on_listed": float(np.mean(on_ok)) if on_ok else float("nan"),
            "map_what_on_questions": len(on_ok),
            "map_grounding_acc_025": float(np.mean(g25)) if g25 else float("nan"),
            "map_grounding_acc_050": float(np.mean(g50)) if g50 else float("nan"),
            "map_grounding_expressions": len(g25),
            "map_query_engine_acc_025": float(np.mean(q25)) if q25 else float("nan"),
            "map_query_engine_acc_050": float(np.mean(q50)) if q50 else float("nan"),
            "map_query_rules_acc_025": float(np.mean(r25)) if r25 else float("nan")}


def map_questions(engine, graph, gt_seen, gt_relations, matching) -> tuple[list[float], list[float]]:
    """The planner questions of issue 14 over one fused map, answered by the query service ``engine``:
    - per category of the seen true objects: "how many <category>s are there" exact (1.0) or not (0.0);
    - per support label with seen true objects on a seen support of it: "what is on the <label>" lists every such
      object (each matched by an answered map object at 3D IoU >= 0.25; extra answers are not penalised here)."""
    from collections import defaultdict

    counts = []
    by_label = defaultdict(list)
    for o in gt_seen:
        by_label[o.label].append(o)
    for label, objs in sorted(by_label.items()):
        r = engine.answer(graph, f"how many {plural(label, 2)} are there")
        counts.append(float(r.success and r.achievable and r.numeric == len(objs)))
    seen_ids = {o.id: o for o in gt_seen}
    gt_index = {o.id: i for i, o in enumerate(gt_seen)}
    pred_of = matching.gt_to_pred()
    preds = [o for o in graph.objects if o.kind == "object"]
    on = defaultdict(set)
    for r in gt_relations:
        if r.predicate == "on" and r.subject_id in seen_ids and r.object_id in seen_ids:
            on[seen_ids[r.object_id].label].add(r.subject_id)
    listed = []
    for label, subjects in sorted(on.items()):
        r = engine.answer(graph, f"what is on the {label}")
        answered = set(r.object_ids) if r.success and r.achievable else set()
        listed.append(float(all(gt_index[s] in pred_of and preds[pred_of[gt_index[s]]].id in answered
                                for s in subjects)))
    return counts, listed


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default="data/synth")
    p.add_argument("--split", default="test")
    p.add_argument("--max-frames", type=int, default=0)
    p.add_argument("--frame-stride", type=int, default=1)
    p.add_argument("--image-hw", type=int, nargs=2, default=None, help="evaluate at this resolution (H W)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--cluster-radius", type=float, default=None, help="override cluster_radius_m (metres)")
    p.add_argument("--min-instance-px", type=int, default=None, help="override min_instance_px (pixels)")
    p.add_argument("--instance-grouping", choices=("votes", "components"), default=None,
                   help="override instance_grouping")
    p.add_argument("--map-scenes", type=int, default=0,
                   help="scenes for the in-map grounding figures (0 = every scene of the split, -1 = skip)")
    p.add_argument("--json", default="")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    runtime = {k: v for k, v in (("cluster_radius_m", args.cluster_radius), ("min_instance_px", args.min_instance_px),
                                 ("instance_grouping", args.instance_grouping)) if v is not None}
    inf = G2VLMInference.from_checkpoint(args.checkpoint, args.device, **runtime)
    res = evaluate_split(inf, args.data, args.split, args.max_frames, args.image_hw, args.frame_stride)
    if args.map_scenes >= 0:
        res.update(evaluate_maps(inf, args.data, args.split, args.map_scenes))
    for k, v in res.items():
        print(f"{k:32s} {v:.4f}" if isinstance(v, float) else f"{k:32s} {v}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
