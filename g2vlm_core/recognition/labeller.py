"""Keyframe labeller: any recognizer's 2D instances lifted to 3D segments for the one object map.

The pipeline calls ``KeyframeLabeller(frame, T_world_cam)`` on keyframes. It segments the frame geometrically
(support planes, floor, walls, class-agnostic clusters), asks the recognizer for instances (and offers it the
clusters as proposals), and lifts each instance to world points:

- an instance with a mask (g2vlm) keeps the mask's points, its largest 3D component;
- an instance with a box only (coco, hf detectors) keeps the box's points that are not floor, wall or ceiling,
  nor on a support plane it does not claim (a cup's box holds table top around the cup; a table's box holds most
  of its top, which it then claims), and of those the 3D components around the box's centre;
- a proposal the recognizer names (or, with ``keep_unrecognized``, one it leaves unnamed) keeps its own points;
- floor, walls, ceilings and large unclaimed supports become structure (kind "structure"), an anchor for
  relations that object queries never return.

With a ``reasoner`` (the G2VLM model next to another recognizer) the lifted instances are embedded by the model's
object head and get its whole-object boxes, so the model's grounding head ranks objects from any backend.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..frame import RGBDFrame
from ..geometry.segmentation import Segment, Segmenter, pack_keys, voxel_connected_components
from ..scene_graph import visible_box
from .base import Instance, Recognizer, project_regions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiftConfig:
    min_score: float = 0.3  # instances scoring below this are dropped
    keep_planes: bool = True  # support planes (table tops) and structure (floor, walls) go to the map too
    label_proposals: bool = True  # class-agnostic geometric clusters are offered to the recognizer as proposals
    keep_unrecognized: bool = True  # proposals the recognizer leaves unnamed become unnamed objects (else dropped)
    structure: bool = True  # floor / wall / ceiling planes become structure objects (kind "structure")
    counter_min_extent_m: float | None = None  # unclaimed support planes at least this long and next to a wall
    # become structure ("counter", a worktop); None: every support plane stays a support object ("surface", the
    # synthetic world's table tops, which the model labels itself)
    tables_from_supports: bool = False  # other unclaimed support planes at table height become objects labelled
    # "table" (a free-standing horizontal surface; a detector that misses a coffee table still sees its top)
    table_height_m: tuple[float, float] = (0.25, 1.2)  # ... between these heights above the floor (z = 0)
    table_label_score: float = 0.35  # ... with this confidence (a detection's label outvotes it in the map)
    counter_wall_gap_m: float = 0.35  # a support whose footprint comes this close to a wall is against it
    claim_support_fraction: float = 0.5  # a box instance claims a support plane (its top) when this share of
    # the plane's points in the frame lies inside its box
    structure_margin_m: float = 0.03  # points this close to a floor / wall / ceiling plane (x range^2 noise) are
    # structure, not part of a box instance
    central_fraction: float = 0.5  # a box's central region (this fraction of its width and height) picks the
    # 3D component(s) that are the object
    component_depth_m: float = 0.3  # other components join when their median depth is within this of the chosen
    min_points: int = 10  # lifted instances with fewer strided points are dropped
    box_depth_max_m: float = 8.0  # box instances are lifted up to this depth (beyond the segmenter's range: the
    # detector outlines the object, so depth noise at range does not merge it with its surroundings)

    def __post_init__(self) -> None:
        if not 0.0 < self.central_fraction <= 1.0:
            raise ValueError(f"central_fraction must be in (0, 1], got {self.central_fraction}")


class KeyframeLabeller:
    """Recognizer instances -> labelled, embedded Segments (see the module docstring). The pipeline's labeller."""

    def __init__(self, recognizer: Recognizer, segmenter: Segmenter, config: LiftConfig | None = None,
                 reasoner=None):
        """``reasoner``: a G2VLMRecognizer whose model embeds the lifted instances (``embed_segments``) and grounds
        queries (``ground``); None: embeddings are the recognizer's own."""
        self.recognizer, self.segmenter, self.config, self.reasoner = recognizer, segmenter, config or LiftConfig(), \
            reasoner
        self.calls = 0
        self.last_counts: dict[str, int] = {}

    # ---- query hooks (the QueryEngine's text_embedder / grounder)
    def embed_text(self, text: str) -> np.ndarray | None:
        if self.reasoner is not None:
            return self.reasoner.embed_text(text)
        return self.recognizer.embed_text(text)

    @property
    def ground(self):
        """The G2VLM grounding head over map objects when a model runs (recognizer or reasoner), else None."""
        for r in (self.reasoner, self.recognizer):
            if r is not None and hasattr(r, "ground"):
                return r.ground
        return None

    def query_args(self) -> dict:
        """QueryEngine keyword arguments: those of the G2VLM model when one runs (its MiniLM for label similarity,
        its grounding head, its categories as the grounder's vocabulary), else the shipped MiniLM, loaded in the
        background."""
        for r in (self.reasoner, self.recognizer):
            if r is not None and hasattr(r, "query_args"):
                return r.query_args()
        from ..language.embedding import TextEmbedder

        return {"text_embedder": TextEmbedder.minilm().background(), "grounder": self.ground}

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """Every object label this labeller can give: the recognizer's, and "table" from supports when enabled."""
        extra = ("table",) if self.config.tables_from_supports else ()
        return tuple(self.recognizer.vocabulary) + tuple(x for x in extra if x not in self.recognizer.vocabulary)

    # ---- keyframes
    def __call__(self, frame: RGBDFrame, T_world_cam: np.ndarray) -> list[Segment] | None:
        self.calls += 1
        cfg = self.config
        geo = self.segmenter.segment_frame(frame, T_world_cam) if (cfg.keep_planes or cfg.label_proposals) else []
        proposals = [s for s in geo if s.kind == "object"] if cfg.label_proposals else []
        try:
            rec = self.recognizer.recognize(frame, T_world_cam, proposals)
        except ValueError as e:  # e.g. no valid depth for the model: fall back to geometry for this frame
            log.warning("%s skipped a keyframe (%s); using geometric segmentation", self.recognizer.name, e)
            return None
        instances = [i for i in rec.instances if i.score >= cfg.min_score]
        masked = [i for i in instances if i.mask is not None]
        boxed = [i for i in instances if i.mask is None]
        planes = [s for s in geo if s.kind != "object"] if cfg.keep_planes else []
        segments, ids = self._from_masks(frame, T_world_cam, masked)
        claimed = self._claimed_by_masks(frame, T_world_cam, ids, planes) if masked else set()
        if boxed:
            segments += self._from_boxes(frame, T_world_cam, boxed, planes, claimed)
        filled = []
        for seg, inst in zip(proposals, rec.proposals):
            if inst is None or (inst.label is None and not cfg.keep_unrecognized):
                continue
            seg.source = "geometry"
            seg.label, seg.label_score = inst.label, float(inst.score) if inst.label else 0.0
            seg.label_scores = dict(inst.label_scores) if inst.label else None
            seg.embedding = inst.embedding
            _whole_box(seg, inst.box_faces)
            filled.append(seg)
        segments += filled
        if self.reasoner is not None and segments:
            self.reasoner.embed_segments(frame, T_world_cam, segments)
        segments += self._planes(planes, claimed, T_world_cam)
        self.last_counts = {"instances": len(instances), "segments": len(segments), "proposals": len(proposals),
                            "proposals_kept": len(filled)}
        return segments

    def _from_masks(self, frame: RGBDFrame, T: np.ndarray, instances: list[Instance]
                    ) -> tuple[list[Segment], np.ndarray | None]:
        """Segments of mask instances and the (H, W) id image painted from their masks (a later instance wins a
        shared pixel); points from the segmenter's strided grid, largest 3D component (segments_from_instances)."""
        if not instances:
            return [], None
        ids = np.zeros(frame.depth_m.shape, dtype=np.int32)
        for k, inst in enumerate(instances, start=1):
            ids[inst.mask] = k
        segs = self.segmenter.segments_from_instances(
            frame, ids, {k: i.label for k, i in enumerate(instances, 1)},
            {k: i.score for k, i in enumerate(instances, 1)}, {k: i.embedding for k, i in enumerate(instances, 1)},
            T)
        for s in segs:
            inst = instances[s.instance_id - 1]
            s.label_scores = dict(inst.label_scores) if inst.label else None
            _whole_box(s, inst.box_faces)
        return segs, ids

    def _claimed_by_masks(self, frame: RGBDFrame, T: np.ndarray, ids: np.ndarray, planes: list[Segment]) -> set[int]:
        """Indices of the support planes whose points mostly (claim_support_fraction) project onto instance masks:
        a table's top the recognizer segmented with the table is not a second object."""
        out = set()
        for j, pl in enumerate(planes):
            if pl.kind != "support":
                continue
            reg = project_regions([pl], ids.shape, frame.intrinsics.K, T)
            hit = ids[reg > 0]
            if hit.size and (hit > 0).mean() >= self.config.claim_support_fraction:
                out.add(j)
        return out

    def _from_boxes(self, frame: RGBDFrame, T: np.ndarray, instances: list[Instance], planes: list[Segment],
                    claimed: set[int]) -> list[Segment]:
        """Segments of box-only instances (see the module docstring); adds the indices of the support planes they
        claim to ``claimed``."""
        cfg = self.config
        pts, cols, valid = self.segmenter.frame_points(frame, T, depth_max_m=cfg.box_depth_max_m)
        s = self.segmenter.stride_for(frame.intrinsics)
        vv, uu = np.nonzero(valid)
        u, v = uu * s, vv * s  # (N,) pixel coordinates of the points
        depth = frame.depth_m[::s, ::s][valid].astype(np.float64)
        structure = np.zeros(len(pts), dtype=bool)
        on_support = np.full(len(pts), -1, dtype=np.int64)
        for j, pl in enumerate(planes):
            near = self._on_plane(pts, pl, depth)
            if pl.kind == "support":
                on_support[near & (on_support < 0)] = j
            elif pl.kind in ("floor", "wall"):
                structure |= near
        support_total = np.bincount(on_support[on_support >= 0], minlength=len(planes))
        out = []
        for k, inst in enumerate(instances, start=1):
            x0, y0, x1, y1 = inst.box_xyxy
            inside = (u >= x0) & (u < x1) & (v >= y0) & (v < y1) & ~structure
            sup = on_support[inside]
            own = np.zeros(len(planes), dtype=bool)
            if (sup >= 0).any():
                frac = np.bincount(sup[sup >= 0], minlength=len(planes)) / np.maximum(support_total, 1)
                own = frac >= cfg.claim_support_fraction
            idx = np.nonzero(inside)[0]
            idx = idx[(sup < 0) | own[np.maximum(sup, 0)]]
            keep = self._object_points(pts[idx], u[idx], v[idx], depth[idx], inst.box_xyxy)
            idx = idx[keep]
            if len(idx) < cfg.min_points or not self._at_box_depth(frame, inst.box_xyxy, np.median(depth[idx])):
                continue
            claimed.update(np.nonzero(own)[0].tolist())
            seg = Segment(pts[idx], cols[idx], label=inst.label, label_score=inst.score, embedding=inst.embedding,
                          source="box", kind="object", instance_id=k)
            seg.label_scores = dict(inst.label_scores) if inst.label else None
            _whole_box(seg, inst.box_faces)
            out.append(seg)
        return out

    def _at_box_depth(self, frame: RGBDFrame, box: np.ndarray, depth_m: float) -> bool:
        """Whether the lifted points' median depth is that of the box's central region in the raw depth image
        (every valid pixel, beyond the mapping range too): a far object (a plant 6 m away) whose box reaches over
        a near one (a chair's back) must not lift the near one's points under the far one's label."""
        cfg = self.config
        H, W = frame.depth_m.shape
        x0, y0, x1, y1 = box
        mx, my = (1 - cfg.central_fraction) / 2 * (x1 - x0), (1 - cfg.central_fraction) / 2 * (y1 - y0)
        r0, r1 = int(np.clip(y0 + my, 0, H - 1)), int(np.clip(np.ceil(y1 - my), 1, H))
        c0, c1 = int(np.clip(x0 + mx, 0, W - 1)), int(np.clip(np.ceil(x1 - mx), 1, W))
        d = frame.depth_m[r0:max(r1, r0 + 1), c0:max(c1, c0 + 1)]
        d = d[np.isfinite(d) & (d > 0)]
        if d.size < 4:
            return True  # no depth to compare with (holes, black objects): trust the geometry
        return abs(float(np.median(d)) - depth_m) <= max(cfg.component_depth_m, 0.15 * depth_m)

    def _on_plane(self, pts: np.ndarray, plane: Segment, depth: np.ndarray) -> np.ndarray:
        """(N,) points within the noise band of a plane segment and inside its piece (10 cm cells of its points)."""
        n, d = plane.plane[:3], plane.plane[3]
        thr = np.maximum(self.config.structure_margin_m, self.segmenter.config.plane_noise_k * depth ** 2)
        near = np.abs(pts.astype(np.float64) @ n + d) < thr
        if not near.any():
            return near
        cell = 0.1
        piece = np.unique(pack_keys(np.floor(plane.points_world / cell).astype(np.int64)))
        keys = pack_keys(np.floor(pts[near] / cell).astype(np.int64))
        hit = np.isin(keys, piece)
        out = np.zeros(len(pts), dtype=bool)
        out[np.nonzero(near)[0][hit]] = True
        return out

    def _object_points(self, pts: np.ndarray, u: np.ndarray, v: np.ndarray, depth: np.ndarray,
                       box: np.ndarray) -> np.ndarray:
        """(K,) mask of the box's points (K, 3) that are the object: the 3D component holding most of the box's
        central region, plus components at about its depth that also reach into that region."""
        cfg = self.config
        if len(pts) < cfg.min_points:
            return np.zeros(len(pts), dtype=bool)
        lab, n = voxel_connected_components(pts, self.segmenter.config.cluster_tolerance_m)
        x0, y0, x1, y1 = box
        mx, my = (1 - cfg.central_fraction) / 2 * (x1 - x0), (1 - cfg.central_fraction) / 2 * (y1 - y0)
        central = (u >= x0 + mx) & (u < x1 - mx) & (v >= y0 + my) & (v < y1 - my)
        in_centre = np.bincount(lab[central], minlength=n)
        size = np.bincount(lab, minlength=n)
        best = int(np.argmax(in_centre)) if in_centre.any() else int(np.argmax(size))
        med = np.array([np.median(depth[lab == c]) if size[c] else np.inf for c in range(n)])
        join = (in_centre > 0) & (np.abs(med - med[best]) <= cfg.component_depth_m)
        join[best] = True
        return join[lab]

    def _planes(self, planes: list[Segment], claimed: set[int], T: np.ndarray) -> list[Segment]:
        """Plane segments for the map: floor / walls / ceilings as structure, unclaimed supports as structure
        (long ones: counters) or support objects."""
        cfg = self.config
        out = []
        cam_height = float(T[2, 3])
        walls = [pl for pl in planes if pl.kind == "wall"]
        for j, pl in enumerate(planes):
            if j in claimed or pl.kind == "plane":
                continue
            if pl.kind == "support":
                height = -float(pl.plane[3])
                extent = float(np.max(np.ptp(pl.points_world[:, :2], axis=0)))
                if cfg.structure and height > cam_height + 0.3 and pl.plane[2] > 0.9:
                    out.append(_structure(pl, "ceiling"))
                elif cfg.structure and cfg.counter_min_extent_m is not None and extent >= cfg.counter_min_extent_m \
                        and self._against_wall(pl, walls):
                    out.append(_structure(pl, "counter"))
                elif cfg.tables_from_supports and cfg.table_height_m[0] <= height <= cfg.table_height_m[1]:
                    table = Segment(pl.points_world, pl.colors, label="table", label_score=cfg.table_label_score,
                                    source="geometry", kind="object", instance_id=pl.instance_id)
                    # a free-standing top stands on legs: its whole box reaches down to the floor
                    floor = self.segmenter.config.floor_height_m
                    floor = self.segmenter.floor_estimate_m if floor is None else floor
                    if floor is not None:
                        top = visible_box(table.points_world)
                        bottom = top.center[2] - top.size[2] / 2
                        _whole_box(table, np.array([0.0, 0.0, max(bottom - floor, 0.0), 0.0, 0.0, 0.0]))
                    out.append(table)
                elif cfg.keep_unrecognized or cfg.counter_min_extent_m is None:
                    out.append(pl)
            elif cfg.structure and pl.kind in ("floor", "wall"):
                out.append(_structure(pl, pl.kind))
        return out


    def _against_wall(self, support: Segment, walls: list[Segment]) -> bool:
        """Whether a support plane's points come within counter_wall_gap_m (horizontally) of a wall plane's
        points seen in the same frame."""
        gap = self.config.counter_wall_gap_m
        for w in walls:
            n = w.plane[:3]
            d = np.abs(support.points_world.astype(np.float64) @ n + w.plane[3])
            if d.min() > gap:
                continue
            along = np.cross(n, [0.0, 0.0, 1.0])
            if np.linalg.norm(along) < 1e-6:
                continue
            t_s, t_w = support.points_world @ along, w.points_world @ along
            if (t_s[d <= gap] >= t_w.min() - gap).any() and (t_s[d <= gap] <= t_w.max() + gap).any():
                return True
        return False


def _structure(plane: Segment, label: str) -> Segment:
    return Segment(plane.points_world, plane.colors, label=label, label_score=1.0, source="geometry",
                   kind="structure", plane=plane.plane, instance_id=plane.instance_id)


def _whole_box(seg: Segment, faces) -> None:
    """The whole-object box of a segment from a box head's face offsets (None: none), applied to the box of the
    segment's own points, the points the map integrates, so that a mask that bled onto the background does not
    inflate the object's box."""
    if faces is not None and len(seg.points_world) >= 3:
        seg.amodal_box = visible_box(seg.points_world).grown(faces)
