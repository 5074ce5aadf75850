"""Inference API for the node and evaluation: keyframe -> refined depth, normals, instances with language-aligned
embeddings; cached text embeddings; relation scoring and grounding over boxes (e.g. the object map's)."""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..geometry.camera import CameraIntrinsics, GeometryError, check_rigid
from ..frame import RGBDFrame
from ..scene_graph import Box3D
from .checkpoint import load_model, training_image_hw
from .config import apply_runtime
from .data import slot_visible_boxes
from .model import FINE_STRIDE, G2VLM, object_masks

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class InstanceProposal:
    """One object proposal of a keyframe (world-frame box and points)."""

    mask: np.ndarray  # (H, W) bool
    label: str
    semantic_id: int
    score: float  # mean semantic probability of its pixels
    box: Box3D  # the whole object's box from the amodal box head when the model has one, else visible_box
    embedding: np.ndarray  # (E,) unit, language-aligned
    centroid: np.ndarray  # (3,) world
    mean_color: np.ndarray  # (3,) RGB in [0, 1]
    pixel_count: int
    visible_box: Box3D | None = None  # box of the visible part (scene_graph.visible_box of its points)
    box_faces: np.ndarray | None = None  # (6,) the amodal box head's output: box = visible_box.grown(box_faces)


@dataclass
class KeyframeResult:
    depth_m: np.ndarray  # (H, W) float32 refined depth, metres
    normals_cam: np.ndarray  # (H, W, 3) float32 unit normals, camera frame
    confidence: np.ndarray  # (H, W) float32 in [0, 1]
    semantic_ids: np.ndarray  # (H, W) int32 argmax class
    instance_map: np.ndarray  # (H, W) int32, k >= 1 -> instances[k - 1]
    instances: list[InstanceProposal] = field(default_factory=list)
    region_embeddings: dict[int, np.ndarray] = field(default_factory=dict)  # id -> unit embedding of a given region
    region_faces: dict[int, np.ndarray] = field(default_factory=dict)  # id -> (6,) amodal box head output for a
    # given region (how far the faces of the box of its visible points move out; with the head only)

    def points(self, K: np.ndarray, T_world_cam: np.ndarray, rgb: np.ndarray | None = None,
               min_confidence: float = 0.0) -> tuple[np.ndarray, np.ndarray | None]:
        """Dense world points (N, 3) (and their colours (N, 3) in [0, 1]) of pixels above ``min_confidence``."""
        intr = CameraIntrinsics.from_K(K, self.depth_m.shape[1], self.depth_m.shape[0])
        from ..geometry.camera import backproject, transform_points
        pts = transform_points(T_world_cam, backproject(self.depth_m, intr))
        m = (self.confidence >= min_confidence) & (self.depth_m > 0)
        return pts[m], (None if rgb is None else rgb[m].astype(np.float32) / 255.0)


def group_instances(sem_prob: torch.Tensor, votes: torch.Tensor, valid: torch.Tensor, thing_ids: list[int],
                    radius: float, min_px: int, max_instances: int) -> tuple[torch.Tensor, list[tuple[int, float]]]:
    """Greedy clustering of centre votes. sem_prob (S, h, w), votes (3, h, w) metres, valid (h, w) ->
    instance map (h, w) int64 (0 = none) and (semantic id, score) per instance."""
    S, h, w = sem_prob.shape
    conf, cls = sem_prob.max(0)
    thing = torch.zeros(S, dtype=torch.bool, device=cls.device)
    thing[thing_ids] = True
    fg = (thing[cls] & valid).flatten()
    idx = fg.nonzero()[:, 0]
    V, C, P = votes.flatten(1).T[idx], cls.flatten()[idx], conf.flatten()[idx]
    free = torch.ones(len(idx), dtype=torch.bool, device=idx.device)
    out = torch.zeros(h * w, dtype=torch.long, device=idx.device)
    info: list[tuple[int, float]] = []
    label = torch.zeros(len(idx), dtype=torch.long, device=idx.device)  # cluster id + 1 of every vote
    centres: list[torch.Tensor] = []
    classes: list[int] = []
    for _ in range(4 * max_instances):
        if not free.any():
            break
        seed = torch.where(free, P, -1.0).argmax()
        same = free & (C == C[seed])
        members = same & ((V - V[seed]).norm(dim=1) < radius)
        members = same & ((V - V[members].mean(0)).norm(dim=1) < radius)
        members[seed] = True
        free &= ~members
        centre = V[members].mean(0)
        # Fragments of one object (votes spread wider than the radius) join an earlier cluster of the same class.
        j = -1
        if centres:
            d = (torch.stack(centres) - centre).norm(dim=1)
            d[torch.tensor(classes, device=d.device) != int(C[seed])] = float("inf")
            if float(d.min()) < radius:
                j = int(d.argmin())
        if j < 0:
            centres.append(centre)
            classes.append(int(C[seed]))
            j = len(centres) - 1
        label[members] = j + 1
    sizes = torch.bincount(label, minlength=len(centres) + 1)[1:]
    order = [k for k in torch.argsort(sizes, descending=True).tolist() if int(sizes[k]) >= min_px][:max_instances]
    for k in order:
        members = label == k + 1
        info.append((classes[k], float(P[members].mean())))
        out[idx[members]] = len(info)
    return out.reshape(h, w), info


def _quantile_box(p: torch.Tensor) -> torch.Tensor:
    """Box row (7,) [centre, size, yaw 0] spanning the 2-98 % quantiles of points (N >= 1, 3)."""
    lo, hi = torch.quantile(p, 0.02, dim=0), torch.quantile(p, 0.98, dim=0)
    return torch.cat([(lo + hi) / 2, (hi - lo).clamp_min(0.01), p.new_zeros(1)])


def group_components(sem_prob: torch.Tensor, depth: torch.Tensor, valid: torch.Tensor, thing_ids: list[int],
                     edge_rel: float, min_px: int, max_instances: int) -> tuple[torch.Tensor, list[tuple[int, float]]]:
    """Instances as connected regions of one predicted class, cut where the depth jumps by more than ``edge_rel``
    of the nearer depth (so touching objects at different depths part). sem_prob (S, H, W), depth (H, W) metres,
    valid (H, W) -> instance map (H, W) int64 (0 = none), largest first, and (semantic id, score) per instance.
    scipy's labelling does the connectivity; the depth cut is a mask of the pixels on a discontinuity."""
    from scipy import ndimage

    conf, cls = (t.cpu().numpy() for t in sem_prob.max(0))
    d = depth.cpu().numpy()
    ok = valid.cpu().numpy() & np.isfinite(d) & (d > 0)
    thing = np.zeros(sem_prob.shape[0], dtype=bool)
    thing[thing_ids] = True
    edge = np.zeros_like(ok)
    for ax in (0, 1):
        a = d.take(range(0, d.shape[ax] - 1), axis=ax)
        b = d.take(range(1, d.shape[ax]), axis=ax)
        jump = np.abs(a - b) > edge_rel * np.minimum(a, b)
        sl_a = [slice(None)] * 2
        sl_b = [slice(None)] * 2
        sl_a[ax], sl_b[ax] = slice(0, -1), slice(1, None)
        edge[tuple(sl_a)] |= jump & (a > b)  # the farther pixel of a jump is the cut (the nearer one keeps its object)
        edge[tuple(sl_b)] |= jump & (b > a)
    fg = ok & thing[cls] & ~edge
    regions = []
    for c in np.unique(cls[fg]):
        lab, n = ndimage.label(fg & (cls == c))
        if n == 0:
            continue
        sizes = np.bincount(lab.ravel(), minlength=n + 1)
        for k in np.nonzero(sizes >= max(min_px, 1))[0]:
            if k > 0:
                regions.append((int(sizes[k]), int(c), lab == k))
    regions.sort(key=lambda r: -r[0])
    out = np.zeros(cls.shape, dtype=np.int64)
    info: list[tuple[int, float]] = []
    for size, c, m in regions[:max_instances]:
        info.append((c, float(conf[m].mean())))
        out[m] = len(info)
    return torch.from_numpy(out).to(sem_prob.device), info


class G2VLMInference:
    """Batched, no-grad inference with a model rebuilt from its checkpoint; device and dtype from the config."""

    def __init__(self, model: G2VLM, device: str | torch.device = "cpu", **runtime):
        """``runtime`` overrides inference-only config fields (RUNTIME_FIELDS: dtype, cluster_radius_m,
        min_instance_px, max_instances, text_cache_size)."""
        apply_runtime(model.cfg, **runtime)
        if model.cfg.dtype not in DTYPES:
            raise ValueError(f"dtype {model.cfg.dtype!r} is not one of {', '.join(DTYPES)}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.cfg = model.cfg
        self.dtype = DTYPES[self.cfg.dtype] if self.device.type == "cuda" else torch.float32
        self.thing_ids = list(self.cfg.thing_ids) or list(range(1, self.cfg.num_semantic))
        self._embed_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.training_image_hw: tuple[int, int] | None = None  # (H, W) of the training frames, when known

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", text_encoder: str | None = None,
                        **runtime) -> "G2VLMInference":
        """Rebuild the model from the config stored in the checkpoint (``runtime``: see __init__)."""
        model = load_model(path, device, text_encoder)
        inf = cls(model, device, **runtime)
        inf.training_image_hw = training_image_hw(model.checkpoint_meta)
        return inf

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)

    # ---- keyframes ----
    def _inputs(self, rgb, depth_m, K, T_world_cam):
        rgb = np.asarray(rgb)
        depth_m = np.asarray(depth_m, dtype=np.float32)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise GeometryError(f"rgb must be (H, W, 3), got {rgb.shape}")
        if depth_m.shape != rgb.shape[:2]:
            raise GeometryError(f"depth is {depth_m.shape} but rgb is {rgb.shape[:2]}")
        if depth_m.shape[0] < 16 or depth_m.shape[1] < 16:
            raise GeometryError(f"image {depth_m.shape} is too small (at least 16 x 16)")
        ok = np.isfinite(depth_m) & (depth_m > 1e-3) & (depth_m <= self.cfg.max_depth_m)
        if not ok.any():
            raise ValueError("depth has no valid pixel (all zero, NaN or beyond max_depth_m): nothing to infer")
        K = np.asarray(K, dtype=np.float64).reshape(3, 3)
        if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise GeometryError(f"bad intrinsics K={K.tolist()}")
        T = check_rigid(T_world_cam, "T_world_cam")
        rgb_f = rgb.astype(np.float32) / (255.0 if rgb.dtype == np.uint8 else 1.0)
        return (torch.from_numpy(np.nan_to_num(rgb_f)).permute(2, 0, 1), torch.from_numpy(depth_m)[None],
                torch.from_numpy(K).float(), torch.from_numpy(T).float())

    @torch.no_grad()
    def process_batch(self, rgbs, depths, Ks, Ts, regions=None) -> list[KeyframeResult]:
        """Keyframes of one size: rgb (H, W, 3) uint8 (or float in [0, 1]), depth (H, W) metres (0/NaN = missing),
        K (3, 3), T_world_cam (4, 4) each -> one KeyframeResult per frame. ``regions``: optional (H, W) integer
        map per frame (ids > 0, e.g. segments found by geometry): their language-aligned embeddings are returned
        in ``region_embeddings`` (the object head pooled over each region, as for the model's own instances)."""
        items = [self._inputs(*a) for a in zip(rgbs, depths, Ks, Ts)]
        if not items:
            return []
        rgb, depth, K, T = (torch.stack(x).to(self.device) for x in zip(*items))
        with self._autocast():
            out, enc = self.model.encode_frame(rgb, depth, K, T)
        results = []
        H, W = depth.shape[-2:]
        logits = out["semantic_logits"].float()
        votes = out["points_cam"].float() + out["center_offset"].float()  # (B, 3, H, W) camera frame
        fm_hw = enc["fine_map"].shape[-2:]
        per_frame = []
        components = self.cfg.instance_grouping == "components"
        for b in range(rgb.shape[0]):
            if components:  # full resolution; pooled to the fine cells below for boxes and object features
                full, info = group_components(torch.softmax(logits[b], dim=0), out["depth"][b, 0].float(),
                                              out["input_valid"][b, 0] > 0.5, self.thing_ids, self.cfg.depth_edge_rel,
                                              self.cfg.min_instance_px, self.cfg.max_instances)
                per_frame.append((None, info, full))  # boxes and object features use the full-resolution masks
                continue
            sp = torch.softmax(F.adaptive_avg_pool2d(logits[b:b + 1], fm_hw)[0], dim=0)  # grouping at stride 4
            vt = F.adaptive_avg_pool2d(votes[b:b + 1], fm_hw)[0]
            vd = F.adaptive_avg_pool2d(out["input_valid"][b:b + 1].float(), fm_hw)[0, 0] > 0.5
            cell_px = (H / fm_hw[0]) * (W / fm_hw[1])
            imap, info = group_instances(sp, vt, vd, self.thing_ids, self.cfg.cluster_radius_m,
                                         max(1, round(self.cfg.min_instance_px / cell_px)), self.cfg.max_instances)
            per_frame.append((imap, info, None))
        M = max(1, max(len(i) for _, i, _ in per_frame))
        boxes = torch.zeros(len(per_frame), M, 7, device=self.device)
        boxes[..., 3:6] = 0.1
        valid = torch.zeros(len(per_frame), M, dtype=torch.bool, device=self.device)
        s = FINE_STRIDE
        # Refined world points of every pixel (B, H, W, 3); boxes of the vote grouping from one sampled (not
        # averaged: no flying points) point per fine cell.
        pts_world = (out["points_cam"].float().flatten(2).transpose(1, 2) @ T[:, :3, :3].transpose(1, 2)
                     + T[:, None, :3, 3]).reshape(len(per_frame), H, W, 3)
        pts_small = pts_world[:, s // 2::s, s // 2::s][:, :fm_hw[0], :fm_hw[1]].reshape(len(per_frame), -1, 3)
        for b, (small_map, info, full_map) in enumerate(per_frame):
            # components: exact full-resolution masks; votes: the stride-4 map
            ids, pts = (small_map.flatten(), pts_small[b]) if full_map is None else (full_map.flatten(),
                                                                                    pts_world[b].reshape(-1, 3))
            for k in range(len(info)):
                p = pts[ids == k + 1]
                boxes[b, k] = _quantile_box(p if len(p) else pts_small[b][:1])
                valid[b, k] = True
        # Object features pool over exact cell masks (vote grouping) or the full-resolution masks' cell fractions.
        masks = torch.stack([object_masks((sm if f is None else f)[None], M, fm_hw)[0] for sm, _, f in per_frame])
        with self._autocast():
            obj = self.model.encode_objects(enc, masks, boxes, valid, T)
        emb = F.normalize(obj["obj_embed"].float(), dim=-1).cpu().numpy()
        depth_np = out["depth"].float()[:, 0].cpu().numpy()
        normals_np = out["normals"].float().permute(0, 2, 3, 1).cpu().numpy()
        conf_np = out["confidence"].float()[:, 0].cpu().numpy()
        sem_np = logits.max(1).indices.int().cpu().numpy()  # = argmax(1), which is 3x slower over channels on CPU
        thing_np = np.zeros(max(self.cfg.num_semantic, 1), bool)
        thing_np[self.thing_ids] = True
        rgb_np = rgb.permute(0, 2, 3, 1).float().cpu().numpy()
        pts_np = pts_world.cpu().numpy()
        names = self.cfg.semantic_names
        ok_np = (depth_np > 0) & np.isfinite(depth_np)
        fmaps, vis = [], boxes.clone()
        for b, (small_map, info, full_map) in enumerate(per_frame):
            if full_map is not None:
                fmap = full_map.int().cpu().numpy()
            else:
                fmap = F.interpolate(small_map[None, None].float(), size=(H, W), mode="nearest")[0, 0].int().cpu().numpy()
                fmap[~thing_np[sem_np[b]]] = 0  # sharpen the stride-4 masks with the full-resolution semantics
            fmaps.append(fmap)
            vis[b] = self._visible(boxes[b], pts_np[b], ok_np[b], fmap)
        faces = self._faces(enc, masks, vis, T)
        for b, (small_map, info, full_map) in enumerate(per_frame):
            fmap = fmaps[b]
            insts = []
            for k, (sid, score) in enumerate(info):
                m = fmap == k + 1
                if not m.any():
                    continue
                vb = vis[b, k].cpu().numpy().astype(np.float64)
                vb = Box3D(vb[:3], vb[3:6], vb[6])
                f = None if faces is None else faces[b, k]
                insts.append(InstanceProposal(
                    mask=m, label=names[sid] if sid < len(names) else str(sid), semantic_id=sid, score=score,
                    box=vb if f is None else vb.grown(f), embedding=emb[b, k], centroid=pts_np[b][m].mean(0),
                    mean_color=rgb_np[b][m].mean(0), pixel_count=int(m.sum()), visible_box=vb, box_faces=f))
            results.append(KeyframeResult(depth_np[b], normals_np[b], conf_np[b], sem_np[b], fmap, insts))
        for b, reg in enumerate(regions or []):
            if reg is not None:
                results[b].region_embeddings, results[b].region_faces = self._embed_regions(
                    b, reg, pts_world[b], pts_np[b], ok_np[b], out, enc, T, fm_hw)
        return results

    def _visible(self, fallback: torch.Tensor, points: np.ndarray, ok: np.ndarray, slots: np.ndarray) -> torch.Tensor:
        """Boxes (M, 7) of the visible parts of slots 1..M of ``slots`` (H, W) from the world points (H, W, 3) at
        the ``ok`` pixels; a slot without 3 such points keeps its ``fallback`` (M, 7) box."""
        vis = fallback.clone()
        vb, has = slot_visible_boxes(points, ok, slots, len(fallback))
        vis[has] = vb[has].to(self.device)
        return vis

    def _faces(self, enc: dict, masks: torch.Tensor, visible: torch.Tensor, T: torch.Tensor) -> np.ndarray | None:
        """The amodal box head's face offsets (B, M, 6) float64 for visible boxes (B, M, 7); None without the head."""
        if self.model.amodal is None:
            return None
        with self._autocast():
            f = self.model.amodal_faces(enc, masks, visible, T)["box_faces"]
        return f.float().cpu().numpy().astype(np.float64)

    def _embed_regions(self, b: int, reg, pts_world: torch.Tensor, pts_np: np.ndarray, ok_np: np.ndarray, out: dict,
                       enc: dict, T: torch.Tensor, fm_hw) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
        """Embeddings and (with the amodal box head) box face offsets of the regions of id map ``reg`` in frame b
        (``pts_world`` / ``pts_np``: its world points as a tensor / array, ``ok_np``: its pixels with depth)."""
        r = torch.as_tensor(np.asarray(reg), dtype=torch.long, device=self.device)
        if r.shape != out["depth"].shape[-2:]:
            raise ValueError(f"regions are {tuple(r.shape)} but the keyframe is {tuple(out['depth'].shape[-2:])}")
        ids = [i for i in torch.unique(r).tolist() if i > 0]
        if not ids:
            return {}, {}
        remap = torch.zeros(int(r.max()) + 1, dtype=torch.long, device=self.device)
        remap[ids] = torch.arange(1, len(ids) + 1, device=self.device)
        rr = remap[r.clamp_min(0)]
        pts = pts_world.reshape(-1, 3)
        boxes = torch.zeros(1, len(ids), 7, device=self.device)
        flat = rr.flatten()
        for j in range(len(ids)):
            boxes[0, j] = _quantile_box(pts[flat == j + 1])
        B = out["depth"].shape[0]
        enc_b = {k: (v[b:b + 1] if torch.is_tensor(v) and v.ndim and v.shape[0] == B else v) for k, v in enc.items()}
        valid = torch.ones(1, len(ids), dtype=torch.bool, device=self.device)
        masks = object_masks(rr[None], len(ids), fm_hw)
        with self._autocast():
            o = self.model.encode_objects(enc_b, masks, boxes, valid, T[b:b + 1])
        e = F.normalize(o["obj_embed"].float(), dim=-1)[0].cpu().numpy()
        faces_out: dict[int, np.ndarray] = {}
        if self.model.amodal is not None:
            vis = self._visible(boxes[0], pts_np, ok_np, rr.cpu().numpy())[None]
            f = self._faces(enc_b, masks, vis, T[b:b + 1])
            faces_out = {i: f[0, j] for j, i in enumerate(ids)}
        return {i: e[j] for j, i in enumerate(ids)}, faces_out

    def process_keyframe(self, rgb, depth_m, K, T_world_cam, regions=None) -> KeyframeResult:
        """One keyframe (numpy arrays as in process_batch; ``regions`` an optional (H, W) id map)."""
        return self.process_batch([rgb], [depth_m], [K], [T_world_cam],
                                  None if regions is None else [regions])[0]

    def process_frame(self, frame: RGBDFrame) -> KeyframeResult:
        frame.validate()
        if frame.T_world_cam is None:
            raise GeometryError("frame has no T_world_cam: the model needs the camera pose")
        return self.process_keyframe(frame.rgb, frame.depth_m, frame.intrinsics.K, frame.T_world_cam)

    # ---- language ----
    @torch.no_grad()
    def embed_text(self, query: str) -> np.ndarray:
        """Unit embedding (E,) of a query in the object embedding space (cached)."""
        if not isinstance(query, str) or not query.strip():
            raise ValueError("query must be a non-empty string")
        if query in self._embed_cache:
            self._embed_cache.move_to_end(query)
            return self._embed_cache[query]
        e = self.model.encode_text([query])["embed"][0].float().cpu().numpy()
        self._embed_cache[query] = e
        while len(self._embed_cache) > self.cfg.text_cache_size:
            self._embed_cache.popitem(last=False)
        return e

    def _objects(self, boxes: list[Box3D], embeddings, T_world_cam):
        if len(boxes) == 0:
            raise ValueError("no objects given")
        bx = torch.tensor([[*b.center, *b.size, b.yaw] for b in boxes], dtype=torch.float32, device=self.device)[None]
        T = torch.from_numpy(check_rigid(T_world_cam, "T_world_cam")).float().to(self.device)[None]
        emb = None
        if embeddings is not None:
            e = np.asarray(embeddings, dtype=np.float32).reshape(len(boxes), -1)
            if e.shape[1] != self.cfg.embed_dim:
                raise ValueError(f"embeddings are {e.shape[1]}-d, the model's are {self.cfg.embed_dim}-d")
            emb = F.normalize(torch.from_numpy(np.nan_to_num(e)).to(self.device), dim=-1)[None]
        return bx, emb, T

    @torch.no_grad()
    def score_relations(self, boxes: list[Box3D], T_world_cam: np.ndarray,
                        embeddings: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Learned predicate probabilities ``{predicate: (N, N)}`` ([a, b] = P(a pred b)) for world boxes, from the
        viewpoint of camera pose ``T_world_cam``; diagonal 0."""
        bx, emb, T = self._objects(boxes, embeddings, T_world_cam)
        prob = torch.sigmoid(self.model.relation(bx, T, emb)["rel_logits"].float())[0]  # (N, N, P)
        prob = prob * (1 - torch.eye(len(boxes), device=prob.device))[..., None]
        return {p: prob[..., i].cpu().numpy() for i, p in enumerate(self.cfg.predicates)}

    @torch.no_grad()
    def ground(self, query: str, embeddings: np.ndarray, boxes: list[Box3D], T_world_cam: np.ndarray) -> np.ndarray:
        """Scores (N,) of objects (embeddings (N, E), world boxes) for a referring expression; higher is better."""
        bx, emb, T = self._objects(boxes, embeddings, T_world_cam)
        if emb is None:
            raise ValueError("grounding needs object embeddings")
        text = self.model.encode_text([query])
        valid = torch.ones(1, len(boxes), dtype=torch.bool, device=self.device)
        return self.model.ground_queries(text, emb, bx, valid, T)["ground_scores"][0].float().cpu().numpy()

    @torch.no_grad()
    def answer(self, question: str, embeddings: np.ndarray, boxes: list[Box3D],
               T_world_cam: np.ndarray) -> tuple[str, np.ndarray]:
        """Most likely answer of the vocabulary and the probabilities (A,)."""
        bx, emb, T = self._objects(boxes, embeddings, T_world_cam)
        if emb is None:
            raise ValueError("answers need object embeddings")
        text = self.model.encode_text([question])
        valid = torch.ones(1, len(boxes), dtype=torch.bool, device=self.device)
        p = torch.softmax(self.model.answer_queries(text, emb, bx, valid, T)["answer_logits"].float(), -1)[0]
        return self.cfg.answer_vocab[int(p.argmax())], p.cpu().numpy()
