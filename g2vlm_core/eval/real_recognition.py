"""Recognition on real RGB-D frames against hand-made annotations (../shared/data/real/annotations.json).

Usage::

    python -m g2vlm_core.eval.real_recognition --backend coco            # every annotated sequence
    python -m g2vlm_core.eval.real_recognition --backend coco --sequence 3dmatch_seq01_5 --json out.json
    python -m g2vlm_core.eval.real_recognition --backend g2vlm

Per frame (2D): detection recall and precision at 2D IoU >= 0.5 with the right category.
Per posed sequence (3D): the frames run through PerceptionPipeline with the backend labelling every frame (few
frames); reported: the share of annotated instances of categories the backend's vocabulary covers with a map
object whose box contains the annotated centroid (within 0.15 m) and whose label matches (``found``); the share of
map objects whose label names no annotated object of the sequence (``wrong_label``: "no beds in a kitchen"); the
share of map objects that contain no annotated centroid (``unmatched``); map objects per annotated instance.

Category match (labels against annotations, and vocabulary coverage), the same rule everywhere here: a label
matches an annotated instance when the label equals the instance's category or one of its listed synonyms, or the
label's head noun (last word: "dining table" -> "table", "coffee mug" -> "mug") equals the category, or the head
noun of the category or of a synonym equals the label ("office chair" -> "chair"). Head nouns are not matched
against synonyms: "traffic light" is no lamp though "light" is one of a lamp's synonyms. A category is covered when some label of the backend's vocabulary matches it. Structure objects
(floor, walls, counters) are not objects and are left out of the object rows.

The dataset poses are not z-up: the frames are first rotated into a z-up world with the floor at 0
(geometry.gravity.estimate_gravity), as a robot's map frame would be, and the annotated centroids with them.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "real"
CENTROID_TOL_M = 0.15
IOU_2D = 0.5


def _names(category: str, synonyms) -> set[str]:
    return {category.lower()} | {s.lower() for s in synonyms or ()}


def label_matches(label: str, category: str, synonyms=()) -> bool:
    """The module docstring's category-match rule."""
    lab = label.lower().strip()
    names = _names(category, synonyms)
    return lab in names or lab.split()[-1] == category.lower() or any(n.split()[-1] == lab for n in names)


def covered(category: str, synonyms, vocabulary) -> bool:
    return any(label_matches(v, category, synonyms) for v in vocabulary)


@dataclass
class SequenceData:
    name: str
    frames: list  # RGBDFrame, poses in the z-up world (None for the single unposed frames)
    annotations: list[list[dict]]  # per frame: the annotated objects
    instances: dict[str, dict]  # instance name -> {category, synonyms, centroid (z-up world) or None}
    posed: bool


def load_sequences(data: Path, annotations: dict, only: str | None = None) -> list[SequenceData]:
    """The annotated sequences: posed ones through the dataset loaders (frames in a z-up world), the unposed
    single frames of other_formats as 2D-only sequences."""
    from ..datasets import open_dataset, read_depth, read_rgb
    from ..frame import RGBDFrame
    from ..geometry.camera import CameraIntrinsics
    from ..geometry.gravity import estimate_gravity

    out = []
    for name, seq in annotations["sequences"].items():
        if only and name != only:
            continue
        if "frames" in seq:  # a posed sequence folder
            ds = open_dataset(data / name)
            ids = [Path(p).name.split(".")[0].replace("frame-", "") for p in ds.rgb_paths]
            frames, ann = [], []
            for i, fid in enumerate(ids):
                if fid in seq["frames"]:
                    frames.append(ds[i])
                    ann.append(seq["frames"][fid])
            g = estimate_gravity(frames)
            for f in frames:
                f.T_world_cam = g.apply(f.T_world_cam)
            syn = {o["instance"]: o.get("synonyms", []) for objs in ann for o in objs}
            inst = {k: {"category": v["category"], "synonyms": syn.get(k, []),
                        "centroid": None if v.get("centroid_world_m") is None else
                        (g.T_zup_world @ np.r_[v["centroid_world_m"], 1.0])[:3]} for k, v in seq["instances"].items()}
            out.append(SequenceData(name, frames, ann, inst, True))
        else:  # other_formats: one unposed frame per format
            folder = data / "icl_nuim_livingroom1_5" / "other_formats"
            for fmt, objs in seq.items():
                rgb_path = next(iter(sorted(folder.glob(f"{fmt}_color.*"))), None)
                if rgb_path is None:
                    continue
                rgb = read_rgb(rgb_path)
                depth_path = next(iter(sorted(folder.glob(f"{fmt}_depth.*"))), None)
                depth = read_depth(depth_path, 1000.0) if depth_path is not None and depth_path.suffix == ".png" \
                    else np.zeros(rgb.shape[:2], np.float32)
                if depth.shape != rgb.shape[:2]:
                    depth = np.zeros(rgb.shape[:2], np.float32)
                intr = CameraIntrinsics(525.0, 525.0, rgb.shape[1] / 2 - 0.5, rgb.shape[0] / 2 - 0.5, rgb.shape[1],
                                        rgb.shape[0])
                frame = RGBDFrame(rgb, depth, intr, None, 0.0)
                inst = {o["instance"]: {"category": o["category"], "synonyms": o.get("synonyms", []),
                                        "centroid": None} for o in objs}
                out.append(SequenceData(f"{name}/{fmt}", [frame], [objs], inst, False))
    return out


def detection_pr(instances, gt: list[dict]) -> tuple[int, int, int]:
    """(true objects found, detections that are right, detections) at 2D IoU >= 0.5 with the right category,
    each true object matched once (greedy by score)."""
    from ..recognition.base import box_iou

    used = set()
    right = 0
    for inst in sorted(instances, key=lambda i: -i.score):
        if inst.label is None:
            continue
        best, best_iou = None, IOU_2D
        for j, o in enumerate(gt):
            if j in used or not label_matches(inst.label, o["category"], o.get("synonyms")):
                continue
            iou = float(box_iou(inst.box_xyxy[None], np.asarray(o["box_xyxy"], float)[None])[0, 0])
            if iou >= best_iou:
                best, best_iou = j, iou
        if best is not None:
            used.add(best)
            right += 1
    return len(used), right, sum(1 for i in instances if i.label is not None)


def map_rows(graph, seq: SequenceData, vocabulary) -> dict:
    """The 3D rows of one fused sequence (see the module docstring)."""
    objs = [o for o in graph.objects if o.kind == "object"]
    annotated = {k: v for k, v in seq.instances.items() if v["centroid"] is not None}
    cov = {k: v for k, v in annotated.items() if covered(v["category"], v["synonyms"], vocabulary)}
    found = []
    for k, v in cov.items():
        hit = [o for o in objs if o.box.contains(v["centroid"][None], CENTROID_TOL_M)[0]
               and label_matches(o.label, v["category"], v["synonyms"])]
        if hit:
            found.append(k)
    from ..mapping.object_map import ObjectMapConfig
    generic = {ObjectMapConfig.unknown_label, ObjectMapConfig.support_label}  # unnamed: "object", "surface"
    named = [o for o in objs if o.label not in generic]
    wrong = [o for o in named if not any(label_matches(o.label, v["category"], v["synonyms"])
                                         for v in seq.instances.values())]
    unmatched = [o for o in objs if not any(o.box.contains(v["centroid"][None], CENTROID_TOL_M)[0]
                                            for v in annotated.values())]
    return {"annotated": len(annotated), "covered": len(cov), "found": len(found),
            "found_share": len(found) / len(cov) if cov else float("nan"),
            "map_objects": len(objs), "wrong_label": len(wrong),
            "wrong_label_share": len(wrong) / len(objs) if objs else 0.0,
            "unmatched_share": len(unmatched) / len(objs) if objs else 0.0,
            "objects_per_instance": len(objs) / len(annotated) if annotated else float("nan"),
            "structure": sorted(o.label for o in graph.objects if o.kind == "structure"),
            "found_instances": sorted(found), "missed_instances": sorted(set(cov) - set(found)),
            "wrong_labels": sorted(o.label for o in wrong),
            "labels": sorted(o.label for o in objs)}


def evaluate_backend(backend: str, data: Path = DEFAULT_DATA, sequence: str | None = None, device: str = "cpu",
                     model_checkpoint: str = "auto", progress: bool = True, **backend_kw) -> dict:
    """Every row above for one backend; {sequence: {"frames": [...2D per frame], "detection": {...}, "map": {...}}}."""
    from tqdm import tqdm

    from ..geometry.segmentation import Segmenter
    from ..pipeline import PerceptionPipeline, PipelineConfig
    from ..recognition.factory import make_labeller

    annotations = json.loads((data / "annotations.json").read_text())
    seqs = load_sequences(data, annotations, sequence)
    if not seqs:
        raise ValueError(f"no annotated sequence {sequence!r} in {data / 'annotations.json'}")
    base = PipelineConfig(keyframe_every_n=1, async_keyframes=False)
    labeller = make_labeller(backend, Segmenter(base.segmenter), device, model_checkpoint, **backend_kw)
    recognizer = labeller.recognizer
    vocabulary = labeller.vocabulary
    out = {"backend": backend, "describe": recognizer.describe(), "sequences": {}}
    for seq in tqdm(seqs, desc=f"real recognition ({backend})", unit="sequence", disable=not progress):
        rows, fr, dr, dn, ms = [], 0, 0, 0, []
        ann_total = 0
        for f, gt in zip(seq.frames, seq.annotations):
            t0 = time.perf_counter()
            T = f.T_world_cam if f.T_world_cam is not None else np.eye(4)
            try:
                insts = [i for i in recognizer.recognize(f, T).instances if i.score >= labeller.config.min_score]
            except ValueError as e:  # e.g. the model needs depth and this frame has none: nothing recognised
                log.warning("%s on %s: %s", backend, seq.name, e)
                insts = []
            ms.append((time.perf_counter() - t0) * 1e3)
            found, right, n = detection_pr(insts, gt)
            rows.append({"gt": len(gt), "found": found, "detections": n, "right": right})
            fr, dr, dn, ann_total = fr + found, dr + right, dn + n, ann_total + len(gt)
        rec = {"frames": rows, "detection": {"recall": fr / ann_total if ann_total else float("nan"),
                                             "precision": dr / dn if dn else float("nan"),
                                             "ms_per_frame": float(np.median(ms))}}
        if seq.posed:
            seg_cfg = replace(base.segmenter, seed=0)
            pipe = PerceptionPipeline(replace(base, segmenter=seg_cfg), labeller)
            labeller.segmenter = pipe.segmenter
            for f in seq.frames:
                pipe.process(f)
            rec["map"] = map_rows(pipe.snapshot(), seq, vocabulary)
        out["sequences"][seq.name] = rec
    return out


def format_rows(res: dict) -> str:
    lines = [f"backend {res['backend']}: {res['describe']}",
             f"{'sequence':34s} {'2D recall':>9s} {'2D prec':>8s} {'ms/frame':>8s} | {'found':>11s} {'wrong lbl':>9s} "
             f"{'unmatched':>9s} {'obj/inst':>8s}"]
    for name, r in res["sequences"].items():
        d = r["detection"]
        s = f"{name:34s} {d['recall']:9.2f} {d['precision']:8.2f} {d['ms_per_frame']:8.0f} |"
        m = r.get("map")
        if m:
            s += (f" {m['found']:3d}/{m['covered']:<3d}{m['found_share']:5.2f} {m['wrong_label_share']:9.2f} "
                  f"{m['unmatched_share']:9.2f} {m['objects_per_instance']:8.2f}")
        lines.append(s)
        if m:
            lines.append(f"    map labels {m['labels']}; structure {m['structure']}")
            lines.append(f"    missed {m['missed_instances']}; wrong labels {m['wrong_labels']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="coco", help="coco | hf | g2vlm (default: %(default)s)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder with annotations.json (default: %(default)s)")
    p.add_argument("--sequence", default=None, help="one sequence of annotations.json (default: all)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--model-checkpoint", default="auto", help="G2VLM model beside the recognizer ('none': without)")
    p.add_argument("--json", default="", help="write every figure to this file")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    res = evaluate_backend(args.backend, Path(args.data), args.sequence, args.device, args.model_checkpoint,
                           progress=not args.no_progress)
    print(format_rows(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
