"""Training batches for G2VLM: the batch contract, RGBDFrame + scene ground truth -> example, collation, datasets.

Batch contract (what ``G2VLM.forward`` reads; B frames of H x W, M object slots, E expressions, Q questions):

    rgb           (B, 3, H, W) float32 in [0, 1]
    depth         (B, 1, H, W) float32 metres, the noisy sensor depth; 0 / NaN = missing
    K             (B, 3, 3) float32 intrinsics of the (possibly resized) image
    T_world_cam   (B, 4, 4) float32 camera-to-world pose (world z up)
  targets (each optional; a loss term runs when its targets are present):
    depth_gt      (B, 1, H, W) float32 metres, 0 = no surface
    normals_gt    (B, 3, H, W) float32 unit normals, camera frame, 0 where undefined
    semantic_ids  (B, H, W) int64 category id, 0 = void, -1 = ignore
    instance_ids  (B, H, W) int64: k >= 1 -> object slot k - 1 of this frame, 0 = no object
    obj_boxes     (B, M, 7) float32 world boxes: centre (3), size (3), yaw
    obj_visible_boxes (B, M, 7) float32 boxes of each object's visible part (scene_graph.visible_box of its pixels'
                  points from the sensor depth), the input of the amodal box head; obj_visible_valid (B, M) bool
    obj_valid     (B, M) bool, slot holds an object
    obj_category  (B, M) int64 semantic id of each object
    obj_text      list of B lists of label phrases (e.g. "red mug"), one per valid slot, for L_align
    rel_targets   (B, M, M, P) float32 in {0, 1}: "a <PREDICATES[p]> b" holds from this frame's viewpoint
    rel_valid     (B, M, M) bool, both slots valid and a != b
    expr_text     list of E referring expressions; expr_frame (E,) int64 frame; expr_target (E,) int64 slot
    qa_text       list of Q questions; qa_frame (Q,) int64 frame; qa_answer (Q,) int64 answer index, -1 ignored
"""
from __future__ import annotations

import logging
import random

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..geometry.camera import CameraIntrinsics, backproject, transform_points
from ..frame import RGBDFrame
from ..predicates import PREDICATES, Viewpoint, pairwise_confidences
from ..scene_graph import Box3D, SceneObject, visible_box

log = logging.getLogger(__name__)

STRUCTURE_CATEGORIES = ("void", "floor", "wall", "ceiling")  # semantic ids 0..3 are not objects
COUNT_ANSWERS = tuple(str(i) for i in range(11))


def answer_vocab(categories: tuple[str, ...]) -> tuple[str, ...]:
    """Answer classes: no/yes, counts 0..10, object categories (distances are not classified)."""
    return ("no", "yes") + COUNT_ANSWERS + tuple(c for c in categories if c not in STRUCTURE_CATEGORIES)


def answer_index(qa, vocab: tuple[str, ...]) -> int:
    """Index of a QAPair's typed value in ``vocab``, or -1 when it is not classifiable (e.g. distances)."""
    v = qa.value
    if isinstance(v, bool):
        key = "yes" if v else "no"
    elif isinstance(v, int):
        key = str(v)
    elif isinstance(v, str):
        key = v
    elif isinstance(v, (list, tuple)) and len(v) == 1 and isinstance(v[0], str):
        key = v[0]  # "what is on the cabinet?" -> ["plant"]
    else:
        return -1
    return vocab.index(key) if key in vocab else -1


def label_text(obj: SceneObject) -> str:
    """The phrase an object's embedding is aligned with: "<colour> <category>" (e.g. "red mug")."""
    color = obj.attributes.get("color", "")
    return f"{color} {obj.label}".strip()


def _resize(img: np.ndarray, hw: tuple[int, int], mode: str) -> torch.Tensor:
    t = torch.from_numpy(np.array(img, copy=True))
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    if t.shape[-2:] == hw:
        return t[0]
    if mode == "nearest":
        return F.interpolate(t.float(), size=hw, mode="nearest")[0].to(t.dtype)
    return F.interpolate(t.float(), size=hw, mode="bilinear", align_corners=False)[0]


def frame_to_example(frame: RGBDFrame, objects: list[SceneObject], categories: tuple[str, ...],
                     image_hw: tuple[int, int] | None = None, expressions=(), qa=(), frame_id: str | None = None,
                     min_pixels: int = 20, with_text: bool = True) -> dict:
    """One training example (unbatched tensors, lists for text) from a frame with ground truth in ``extras``.

    Objects are the scene objects with at least ``min_pixels`` pixels in this frame (slots in id order).
    Relations are recomputed with g2vlm_core.predicates from this frame's own viewpoint. Expressions / questions
    are kept when their objects are all visible and they are view-independent or belong to this frame's view.
    """
    frame.validate()
    H0, W0 = frame.depth_m.shape
    hw = tuple(image_hw) if image_hw else (H0, W0)
    intr = frame.intrinsics.scaled(hw[1] / W0) if hw != (H0, W0) else frame.intrinsics
    if (intr.height, intr.width) != hw:
        intr = CameraIntrinsics(hw[1], hw[0], frame.intrinsics.fx * hw[1] / W0, frame.intrinsics.fy * hw[0] / H0,
                                (frame.intrinsics.cx + 0.5) * hw[1] / W0 - 0.5,
                                (frame.intrinsics.cy + 0.5) * hw[0] / H0 - 0.5)
    ex = frame.extras
    inst_full = np.asarray(ex["instance_ids"], dtype=np.int64)
    ids, counts = np.unique(inst_full, return_counts=True)
    present = {int(i) for i, c in zip(ids, counts) if c >= min_pixels}
    objs = sorted((o for o in objects if o.id in present), key=lambda o: o.id)
    slot = {o.id: k for k, o in enumerate(objs)}
    lut = np.zeros(max(int(inst_full.max()), max(slot, default=0)) + 1, np.int64)
    for oid, k in slot.items():
        lut[oid] = k + 1
    inst = lut[np.clip(inst_full, 0, None)]

    T = np.asarray(frame.T_world_cam, dtype=np.float64)
    depth = np.nan_to_num(frame.depth_m.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    out = {
        "rgb": _resize(frame.rgb, hw, "bilinear") / 255.0,
        "depth": _resize(depth, hw, "nearest").float(),  # nearest: never blend across depth edges
        "K": torch.tensor(intr.K, dtype=torch.float32),
        "T_world_cam": torch.tensor(T, dtype=torch.float32),
        "depth_gt": _resize(ex["depth_gt_m"].astype(np.float32), hw, "nearest").float(),
        "semantic_ids": _resize(np.asarray(ex["semantic_ids"], dtype=np.int64), hw, "nearest")[0],
        "instance_ids": _resize(inst, hw, "nearest")[0],
    }
    if "normals" in ex:
        out["normals_gt"] = _resize(np.asarray(ex["normals"], dtype=np.float32), hw, "nearest").float()
    M = len(objs)
    out["obj_boxes"] = torch.tensor([[*o.box.center, *o.box.size, o.box.yaw] for o in objs],
                                    dtype=torch.float32).reshape(M, 7)
    d = out["depth"][0].numpy()
    out["obj_visible_boxes"], out["obj_visible_valid"] = slot_visible_boxes(
        transform_points(T, backproject(d, intr)), np.isfinite(d) & (d > 0), out["instance_ids"].numpy(), M)
    out["obj_category"] = torch.tensor([categories.index(o.label) if o.label in categories else 0 for o in objs],
                                       dtype=torch.int64)
    P = len(PREDICATES)
    rel = torch.zeros(M, M, P)
    if M >= 2:
        conf = pairwise_confidences([o.box for o in objs], Viewpoint.from_pose(T))
        for p, name in enumerate(PREDICATES):
            rel[..., p] = torch.from_numpy((conf[name] >= 0.5).astype(np.float32))
    out["rel_targets"] = rel
    if with_text:
        out["obj_text"] = [label_text(o) for o in objs]
        fid = frame_id if frame_id is not None else f"frame_{frame.index:06d}"
        out["expr_text"], out["expr_target"] = [], []
        for e in expressions:
            need = [e.target_id] + [r.get("anchor_id") for r in e.program.get("relations", [])]
            if e.viewpoint in ("", fid) and all(i in slot for i in need):
                out["expr_text"].append(e.text)
                out["expr_target"].append(slot[e.target_id])
        vocab = answer_vocab(categories)
        out["qa_text"], out["qa_answer"] = [], []
        for q in qa:
            a = answer_index(q, vocab)
            if a >= 0 and q.viewpoint in ("", fid) and all(i in slot for i in q.object_ids):
                out["qa_text"].append(q.question)
                out["qa_answer"].append(a)
    return out


MAX_BOX_POINTS = 1024  # visible boxes from at most this many points of an instance (a spatially even sample)


def slot_visible_boxes(points: np.ndarray, valid: np.ndarray, slots: np.ndarray,
                       M: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, 7) boxes (scene_graph.visible_box) of the world points (H, W, 3) at the ``valid`` (H, W) pixels of each
    slot (``slots`` (H, W): k >= 1 -> slot k - 1), and (M,) whether a slot had the 3 points a box needs. The boxes
    the amodal box head completes, in training (true instance masks) and inference (predicted ones) alike."""
    boxes, ok = torch.zeros(M, 7), torch.zeros(M, dtype=torch.bool)
    boxes[:, 3:6] = 0.1
    sel = valid & (slots > 0) & (slots <= M)
    ids = slots[sel]
    order = np.argsort(ids, kind="stable")  # one pass over the image, not one per slot
    ids, pts = ids[order], points[sel][order]
    bounds = np.searchsorted(ids, np.arange(1, M + 2))
    for k in range(M):
        p = pts[bounds[k]:bounds[k + 1]]
        if len(p) > MAX_BOX_POINTS:  # every n-th pixel: about the same quantiles, far less work at 640x480
            p = p[::-(-len(p) // MAX_BOX_POINTS)]
        if len(p) >= 3:
            b = visible_box(p)
            boxes[k] = torch.tensor([*b.center, *b.size, b.yaw], dtype=torch.float32)
            ok[k] = True
    return boxes, ok


def collate(examples: list[dict]) -> dict:
    """Stack examples into the batch contract, padding object slots to the batch's max M."""
    B = len(examples)
    M = max(1, max(e["obj_boxes"].shape[0] for e in examples))
    batch = {k: torch.stack([e[k] for e in examples]) for k in
             ("rgb", "depth", "K", "T_world_cam", "depth_gt", "semantic_ids", "instance_ids") if k in examples[0]}
    if all("normals_gt" in e for e in examples):
        batch["normals_gt"] = torch.stack([e["normals_gt"] for e in examples])
    P = examples[0]["rel_targets"].shape[-1]
    boxes = torch.zeros(B, M, 7)
    boxes[..., 3:6] = 0.1  # padded slots get a harmless unit-ish box
    valid = torch.zeros(B, M, dtype=torch.bool)
    cat = torch.zeros(B, M, dtype=torch.int64)
    rel = torch.zeros(B, M, M, P)
    with_vis = all("obj_visible_boxes" in e for e in examples)
    vis, vis_ok = boxes.clone(), torch.zeros(B, M, dtype=torch.bool)  # same padding as the boxes
    for b, e in enumerate(examples):
        m = e["obj_boxes"].shape[0]
        boxes[b, :m], valid[b, :m], cat[b, :m] = e["obj_boxes"], True, e["obj_category"]
        rel[b, :m, :m] = e["rel_targets"]
        if with_vis:
            mv = e["obj_visible_boxes"].shape[0]
            vis[b, :mv], vis_ok[b, :mv] = e["obj_visible_boxes"], e["obj_visible_valid"]
    if with_vis:
        batch.update(obj_visible_boxes=vis, obj_visible_valid=vis_ok)
    batch.update(obj_boxes=boxes, obj_valid=valid, obj_category=cat, rel_targets=rel,
                 rel_valid=valid[:, :, None] & valid[:, None, :] & ~torch.eye(M, dtype=torch.bool)[None])
    if "obj_text" in examples[0]:
        batch["obj_text"] = [e["obj_text"] for e in examples]
        for key, tgt in (("expr", "target"), ("qa", "answer")):
            batch[f"{key}_text"] = [t for e in examples for t in e[f"{key}_text"]]
            batch[f"{key}_frame"] = torch.tensor([b for b, e in enumerate(examples) for _ in e[f"{key}_text"]],
                                                 dtype=torch.int64)
            batch[f"{key}_{tgt}"] = torch.tensor([t for e in examples for t in e[f"{key}_{tgt}"]], dtype=torch.int64)
    return batch


def to_device(batch: dict, device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


class SynthFrames(Dataset):
    """Every frame of a SynthDataset split as training examples (g2vlm_core/synth/FORMAT.md)."""

    def __init__(self, root: str, split: str, image_hw: tuple[int, int] | None = None, with_text: bool = True,
                 max_frames: int = 0, cache: bool = True):
        from ..synth import SynthDataset
        self.ds = SynthDataset(root, split)
        if len(self.ds) == 0:
            raise FileNotFoundError(f"no {split} scenes under {root}")
        self.index = [(s, i) for s in range(len(self.ds)) for i in range(len(self.ds[s]))]
        if max_frames:
            self.index = self.index[:max_frames]
        self.image_hw, self.with_text = image_hw, with_text
        self.categories = tuple(self.ds.categories)
        self._cache: dict[int, dict] | None = {} if cache else None  # compact decoded examples (PNG decoding is slow)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        if self._cache is not None and i in self._cache:
            return _unpack(self._cache[i])
        s, f = self.index[i]
        scene = self.ds[s]
        ex = frame_to_example(scene.frame(f), scene.objects, self.categories, self.image_hw, scene.expressions,
                              scene.qa, with_text=self.with_text)
        if self._cache is not None:
            self._cache[i] = _pack(ex)
            ex = self[i]  # identical values whether cached or not
        return ex


_COMPACT = {"normals_gt": torch.float16, "semantic_ids": torch.int16, "instance_ids": torch.int16,
            "rel_targets": torch.bool}
_FULL = {"normals_gt": torch.float32, "semantic_ids": torch.int64, "instance_ids": torch.int64,
         "rel_targets": torch.float32}


def _pack(ex: dict) -> dict:
    """About 400 kB per 160x120 example: colour as uint8, normals as float16, ids as int16 (depths stay float32)."""
    out = {k: (v.to(_COMPACT[k]) if k in _COMPACT else v) for k, v in ex.items()}
    out["rgb"] = (ex["rgb"] * 255).round().clamp(0, 255).to(torch.uint8)
    return out


def _unpack(c: dict) -> dict:
    out = {k: (v.to(_FULL[k]) if k in _FULL else v) for k, v in c.items()}
    out["rgb"] = c["rgb"].float() / 255.0
    return out


TOY_CATEGORIES = STRUCTURE_CATEGORIES + ("table", "chair", "box", "mug")
TOY_COLORS = ("red", "green", "blue", "yellow")


def toy_frame(seed: int, H: int = 48, W: int = 64, n_obj: int = 3) -> tuple[RGBDFrame, list[SceneObject]]:
    """A tiny analytic RGB-D frame for tests and smoke runs: a camera looking horizontally along +y at fronto-parallel
    slabs standing on a floor, with exact depth, normals, ids, boxes and a noisy depth copy."""
    rng = np.random.default_rng(seed)
    intr = CameraIntrinsics(W, H, 0.8 * W, 0.8 * W, (W - 1) / 2, (H - 1) / 2)
    T = np.eye(4)
    T[:3, :3] = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # cam x -> world x, cam y (down) -> -z, cam z -> y
    T[:3, 3] = [0.0, 0.0, 1.0]
    depth = np.full((H, W), 4.0, np.float32)  # back wall at y = 4
    inst = np.full((H, W), 3, np.int32)  # wall (structure id)
    sem = np.full((H, W), 2, np.int32)
    rgb = np.full((H, W, 3), 200, np.uint8)
    objs = []
    for k in range(n_obj):
        z = rng.uniform(1.5, 3.5)
        u0 = int(rng.integers(0, W - W // 4))
        u1 = u0 + int(rng.integers(W // 8, W // 4))
        v0 = int(rng.integers(H // 4, H // 2))
        color = int(rng.integers(len(TOY_COLORS)))
        cat = 4 + int(rng.integers(4))
        region = np.zeros((H, W), bool)
        region[v0:, u0:u1] = True
        region &= depth > z
        depth[region] = z
        inst[region] = 16 + k
        sem[region] = cat
        rgb[region] = np.eye(3, dtype=np.uint8)[color % 3] * 200 + 30
        objs.append((k, z, u0, u1, v0, color, cat))
    points = transform_points(T, backproject(depth, intr))
    scene_objs = []
    for k, z, u0, u1, v0, color, cat in objs:
        m = inst == 16 + k
        if m.sum() < 4:
            continue
        p = points[m]
        box = Box3D.from_points(p)
        box = Box3D(box.center + [0, 0.05, 0], box.size + [0, 0.1, 0])
        scene_objs.append(SceneObject(16 + k, TOY_CATEGORIES[cat], box, attributes={"color": TOY_COLORS[color]}))
    normals = np.zeros((H, W, 3), np.float32)
    normals[..., 2] = -1.0  # every surface faces the camera
    noisy = depth + rng.normal(0, 0.01, depth.shape).astype(np.float32) * depth
    noisy[rng.random(depth.shape) < 0.05] = 0.0
    frame = RGBDFrame(rgb, noisy.astype(np.float32), intr, T, index=0,
                      extras={"depth_gt_m": depth, "instance_ids": inst, "semantic_ids": sem, "normals": normals})
    return frame, scene_objs


class ToyFrames(Dataset):
    """``n`` toy frames with referring expressions ("the red mug") and yes/no questions; for tests and smoke runs."""

    def __init__(self, n: int = 16, H: int = 48, W: int = 64, seed: int = 0, with_text: bool = True):
        self.n, self.H, self.W, self.seed, self.with_text = n, H, W, seed, with_text
        self.categories = TOY_CATEGORIES

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        from types import SimpleNamespace
        frame, objs = toy_frame(self.seed * 100003 + i, self.H, self.W)
        exprs, qa = [], []
        if objs:
            texts = [label_text(o) for o in objs]
            for o, t in zip(objs, texts):
                if texts.count(t) == 1:
                    exprs.append(SimpleNamespace(text=f"the {t}", target_id=o.id, viewpoint="", program={}))
            o = objs[0]
            qa.append(SimpleNamespace(question=f"is there a {o.label}?", value=True, viewpoint="", object_ids=[o.id]))
            random.Random(i).shuffle(exprs)
        return frame_to_example(frame, objs, self.categories, None, exprs, qa, min_pixels=4,
                                with_text=self.with_text)
