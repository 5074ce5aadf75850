"""Scene-graph evaluation against synthetic GT: box matching, relation accuracy / triplet recall, grounding."""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..geometry.metrics import box_iou_matrix
from ..predicates import VIEW_DEPENDENT, VIEW_INDEPENDENT, PredicateConfig, Viewpoint, pairwise_confidences
from ..language.query import QueryEngine
from ..scene_graph import SceneGraph, SceneObject, SpatialRelation

log = logging.getLogger(__name__)

Triplet = tuple[int, str, int, str]  # (subject id, predicate, object id, reference frame or "")


@dataclass(frozen=True)
class SceneGraphEvalConfig:
    match_thresholds: tuple[float, ...] = (0.25, 0.5)  # 3D IoU thresholds of "GT object matched"
    relation_match_iou: float = 0.25  # objects matched at this IoU carry relations / retrieval targets
    localization_thresholds: tuple[float, ...] = (0.25, 0.5)  # Acc@IoU of referring-expression answers
    retrieval_ks: tuple[int, ...] = (1, 5)  # R@k of language-grounding retrieval
    relation_confidence: float = 0.5  # a predicate holds at this confidence (the predicates module's rule)


@dataclass
class Matching:
    """One-to-one GT <-> prediction assignment at an IoU threshold (Hungarian on IoU, pairs below dropped)."""

    threshold: float
    pairs: list[tuple[int, int, float]]  # (gt index, pred index, IoU)

    def gt_to_pred(self) -> dict[int, int]:
        return {g: p for g, p, _ in self.pairs}


@dataclass
class QueryOutcome:
    """One referring expression answered against the evaluated graph."""

    text: str
    target_id: int
    viewpoint: str
    achievable: bool
    answered_id: int | None
    iou: float  # answered object's box vs the target's GT box (0 when nothing was answered)
    rank: int | None  # 1-based rank of the target's matched prediction among the answers, None if absent
    hits: dict[str, float] = field(default_factory=dict)  # "acc@0.25", "r@1", ... -> 0.0 / 1.0


@dataclass
class SceneGraphResult:
    """Per-scene metrics plus the per-query outcomes they average."""

    name: str
    n_gt: int
    n_pred: int
    matched: dict[str, float]  # "matched@0.25" -> fraction of GT objects matched at that IoU
    mean_matched_iou: float
    predicate_accuracy: float  # binary decisions over matched ordered pairs x predicates x views
    triplet_recall: float  # GT triplets reproduced (both objects matched and the predicate holds)
    triplet_recall_matched: float  # same, only over GT triplets whose two objects are matched
    n_gt_triplets: int
    queries: list[QueryOutcome]

    def metrics(self) -> dict[str, float]:
        out = dict(self.matched)
        out.update({"mean_matched_iou": self.mean_matched_iou, "predicate_accuracy": self.predicate_accuracy,
                    "triplet_recall": self.triplet_recall, "triplet_recall_matched": self.triplet_recall_matched})
        for key in (self.queries[0].hits if self.queries else {}):
            out[key] = float(np.mean([q.hits[key] for q in self.queries]))
        return {k: float(v) for k, v in out.items()}

    def to_dict(self) -> dict:
        return {"name": self.name, "n_gt": self.n_gt, "n_pred": self.n_pred, "n_gt_triplets": self.n_gt_triplets,
                "metrics": self.metrics(), "queries": [asdict(q) for q in self.queries]}


def match_objects(gt: Sequence[SceneObject], pred: Sequence[SceneObject], threshold: float,
                  iou: np.ndarray | None = None) -> Matching:
    """Maximum-total-IoU one-to-one matching keeping pairs with IoU >= ``threshold``.

    Pairs below the threshold are given zero weight before the assignment, so the matching is optimal for
    the thresholded problem (a below-threshold pair never displaces an above-threshold one).
    """
    if iou is None:
        iou = box_iou_matrix([o.box for o in gt], [o.box for o in pred])
    if iou.size == 0:
        return Matching(threshold, [])
    w = np.where(iou >= threshold, iou, 0.0)
    rows, cols = linear_sum_assignment(-w)
    pairs = [(int(r), int(c), float(iou[r, c])) for r, c in zip(rows, cols) if iou[r, c] >= threshold and iou[r, c] > 0]
    return Matching(threshold, pairs)


def relation_triplets(objects: Sequence[SceneObject], viewpoints: Mapping[str, Viewpoint],
                      cfg: PredicateConfig = PredicateConfig(), min_confidence: float = 0.5) -> set[Triplet]:
    """Every relation among ``objects``: view-independent ones once (reference ""), view-dependent ones per
    viewpoint (reference = its key), exactly as the synthetic GT is built (synth.language)."""
    if len(objects) < 2:
        return set()
    boxes = [o.box for o in objects]
    ids = [o.id for o in objects]
    out: set[Triplet] = set()
    for ref, vp in [("", None)] + sorted(viewpoints.items()):
        preds = VIEW_INDEPENDENT if vp is None else VIEW_DEPENDENT
        conf = pairwise_confidences(boxes, vp, cfg, preds)
        for p in preds:
            for a, b in zip(*np.nonzero(conf[p] >= min_confidence)):
                out.add((ids[a], p, ids[b], ref))
    return out


def relation_metrics(gt: Sequence[SceneObject], gt_triplets: set[Triplet], pred: Sequence[SceneObject],
                     pred_triplets: set[Triplet], matching: Matching, references: Sequence[str]
                     ) -> tuple[float, float, float]:
    """(predicate accuracy, triplet recall, triplet recall over matched pairs).

    Predictions are mapped to GT ids through ``matching``. Predicate accuracy counts agreement of the binary
    "holds" decision for every ordered pair of matched GT objects, every predicate and every reference
    (view-independent ones once, view-dependent ones per reference view): it rewards getting negatives right
    too. Triplet recall is the fraction of GT triplets that also hold between the matched predictions; an
    unmatched endpoint makes the triplet a miss. NaN where the denominator is empty.
    """
    g2p = matching.gt_to_pred()
    p2g = {pred[p].id: gt[g].id for g, p in g2p.items()}
    mapped = {(p2g[s], pr, p2g[o], ref) for s, pr, o, ref in pred_triplets if s in p2g and o in p2g}
    matched_ids = {gt[g].id for g in g2p}
    recall = float(np.mean([t in mapped for t in gt_triplets])) if gt_triplets else float("nan")
    among = [t for t in gt_triplets if t[0] in matched_ids and t[2] in matched_ids]
    recall_matched = float(np.mean([t in mapped for t in among])) if among else float("nan")
    ids = sorted(matched_ids)
    n_pairs = len(ids) * (len(ids) - 1)
    n_decisions = n_pairs * (len(VIEW_INDEPENDENT) + len(VIEW_DEPENDENT) * len(references))
    if n_decisions == 0:
        return float("nan"), recall, recall_matched
    # decisions where GT and prediction disagree = symmetric difference of the two triplet sets on matched pairs
    gt_on_matched = {t for t in gt_triplets if t[0] in matched_ids and t[2] in matched_ids
                     and (t[3] == "" or t[3] in references)}
    wrong = len(gt_on_matched ^ {t for t in mapped if t[3] == "" or t[3] in references})
    return 1.0 - wrong / n_decisions, recall, recall_matched


def evaluate_queries(graph: SceneGraph, expressions: Sequence, gt_by_id: Mapping[int, SceneObject],
                     viewpoints: Mapping[str, Viewpoint], gt_to_pred_id: Mapping[int, int], engine: QueryEngine,
                     cfg: SceneGraphEvalConfig) -> list[QueryOutcome]:
    """Answer each GT referring expression (``text``, ``target_id``, ``viewpoint``) on ``graph``.

    Acc@t: the top answer is achievable and its box has IoU >= t with the target's GT box. R@k: the
    prediction matched to the target (``gt_to_pred_id``, Hungarian at ``relation_match_iou``) is among the
    first k ranked answers, achievable or not (retrieval ranks even low-confidence candidates).
    """
    out = []
    pred_by_id = {o.id: o for o in graph.objects}
    kmax = max(cfg.retrieval_ks) if cfg.retrieval_ks else 1
    for e in expressions:
        vp = viewpoints.get(e.viewpoint) if e.viewpoint else None
        res = engine.answer(graph, e.text, viewpoint=vp, max_results=kmax)
        target = gt_by_id[e.target_id]
        top = res.object_ids[0] if res.success and res.achievable and res.object_ids else None
        iou = float(box_iou_matrix([target.box], [pred_by_id[top].box])[0, 0]) if top is not None else 0.0
        want = gt_to_pred_id.get(e.target_id)
        rank = res.object_ids.index(want) + 1 if want is not None and want in res.object_ids else None
        hits = {f"acc@{t:g}": float(iou >= t) for t in cfg.localization_thresholds}
        hits.update({f"r@{k}": float(rank is not None and rank <= k) for k in cfg.retrieval_ks})
        out.append(QueryOutcome(e.text, int(e.target_id), e.viewpoint, bool(res.achievable), top, iou, rank, hits))
    return out


def evaluate_scene_graph(name: str, graph: SceneGraph, gt_objects: Sequence[SceneObject],
                         gt_relations: Sequence[SpatialRelation], viewpoints: Mapping[str, Viewpoint],
                         expressions: Sequence = (), cfg: SceneGraphEvalConfig = SceneGraphEvalConfig(),
                         engine: QueryEngine | None = None, pred_cfg: PredicateConfig = PredicateConfig()
                         ) -> SceneGraphResult:
    """Evaluate a predicted scene graph of one synthetic scene against its GT.

    ``gt_relations`` are the scene's GT relations (view-dependent ones tagged with their reference view's
    frame id, as in scene.json); ``viewpoints`` maps those frame ids to Viewpoints. Predicted relations are
    recomputed from the predicted boxes with the same predicate definitions and viewpoints, so the relation
    metrics measure how far box errors change the relations.
    """
    engine = engine or QueryEngine(pred_cfg=pred_cfg)
    pred = list(graph.objects)
    gt = list(gt_objects)
    iou = box_iou_matrix([o.box for o in gt], [o.box for o in pred])
    matched, ious = {}, []
    for t in cfg.match_thresholds:
        m = match_objects(gt, pred, t, iou)
        matched[f"matched@{t:g}"] = len(m.pairs) / len(gt) if gt else float("nan")
    rel_match = match_objects(gt, pred, cfg.relation_match_iou, iou)
    ious = [p[2] for p in rel_match.pairs]
    gt_triplets = {(r.subject_id, r.predicate, r.object_id, r.reference_frame) for r in gt_relations
                   if r.reference_frame == "" or r.reference_frame in viewpoints}
    pred_triplets = relation_triplets(pred, viewpoints, pred_cfg, cfg.relation_confidence)
    acc, rec, rec_m = relation_metrics(gt, gt_triplets, pred, pred_triplets, rel_match, sorted(viewpoints))
    g2p = {gt[g].id: pred[p].id for g, p, _ in rel_match.pairs}
    queries = evaluate_queries(graph, expressions, {o.id: o for o in gt}, viewpoints, g2p, engine, cfg)
    return SceneGraphResult(name, len(gt), len(pred), matched, float(np.mean(ious)) if ious else float("nan"),
                            acc, rec, rec_m, len(gt_triplets), queries)
