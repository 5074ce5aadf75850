"""Evaluate a parsed description (parser.Desc) over a graph's objects: a score and a yes/no per object.

Each object gets a score in [0, 1] (label match x colour / size factors x relation confidences: it ranks) and
a decision ``ok`` (every part of the description holds: the label matches, the colour is the one asked, each
relation holds at confidence >= 0.5 with an anchor that itself satisfies its description, each negated one
holds with none). Relations use the one predicate definition (g2vlm_core.predicates), so existence, negation
and counts are decided by the same rules as the synthetic ground truth and the published scene graph.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..attributes import color_name, hue_family, size_class
from ..predicates import (VIEW_DEPENDENT, PredicateConfig, Viewpoint, between_confidences, box_extents,
                          pairwise_confidences)
from ..scene_graph import SceneObject
from .labels import HEAD, LabelMatch, LabelMatcher, normalise_label
from .lexicon import ASSOCIATION
from .parser import Between, Comparison, Desc, Order, Relation

HOLDS = 0.5  # a predicate holds at this confidence (g2vlm_core.predicates)


class NotInMap(LookupError):
    """A noun of the query names no object of the graph (nor anything similar enough)."""

    def __init__(self, noun: str, role: str, known: bool):
        super().__init__(noun)
        self.noun, self.role, self.known = noun, role, known  # role: "target" | "anchor"


class NeedsViewpoint(LookupError):
    """Left / right / front / behind or a distance to the viewer were asked without a viewpoint."""


@dataclass(frozen=True)
class ResolveConfig:
    wrong_color_factor: float = 0.15  # score factor of an object whose colour is not the one asked
    wrong_size_factor: float = 0.3  # score factor of an object whose size class is not the one asked
    hue_color_factor: float = 0.8  # score factor of an object whose colour only shares the hue of the one asked,
    # accepted when no candidate has the colour itself (attributes.hue_family: shade makes orange read brown)
    candidate_min_score: float = 0.3  # a secondary label (label_candidates) names the object at this score
    centre_weight: float = 0.1  # nearest / farthest: box gap + this x centre distance (ties between touching boxes)
    confirmed_observations: int = 2  # QueryConfig.confirmed_observations: fewer keyframes (but >= 1) is tentative
    tentative_factor: float = 1e-3  # QueryConfig.tentative_factor (1: tentative objects rank like the others)
    comparative_margin_m: float = 0.02  # "taller / closer than": by at least this much (lengths) ...
    comparative_margin_frac: float = 0.05  # ... or this fraction (volumes)


def tentative_mask(objects: list[SceneObject], confirmed_observations: int) -> np.ndarray:
    """(N,) bool: objects observed in fewer keyframes than ``confirmed_observations`` but at least one (0 means
    not recorded, as in a ground-truth graph): mostly a false segment of one view."""
    n = np.array([o.observation_count for o in objects], dtype=np.int64)
    return (n >= 1) & (n < confirmed_observations)


@dataclass
class Evaluated:
    score: np.ndarray  # (N,) in [0, 1]
    ok: np.ndarray  # (N,) bool: every part of the description holds


class Resolver:
    """One graph snapshot and viewpoint; evaluates descriptions, caching label matches per noun."""

    def __init__(self, objects: list[SceneObject], matcher: LabelMatcher, viewpoint: Viewpoint | None = None,
                 pred_cfg: PredicateConfig = PredicateConfig(), cfg: ResolveConfig = ResolveConfig()):
        self.objects, self.matcher, self.viewpoint, self.pred_cfg, self.cfg = objects, matcher, viewpoint, \
            pred_cfg, cfg
        self.n = len(objects)
        self.boxes = [o.box for o in objects]
        labels = [normalise_label(o.label) for o in objects]
        self._names, self._label_idx = np.unique(np.array(labels + [""], dtype=object), return_inverse=True)
        self._label_idx = self._label_idx[:-1]
        # secondary labels strong enough to name their object: (object index, label, score)
        self._cands = [(i, normalise_label(lab), float(p)) for i, o in enumerate(objects)
                       for lab, p in o.label_candidates if p >= cfg.candidate_min_score]
        self.structure = np.array([o.kind == "structure" for o in objects], dtype=bool)
        self.tentative = tentative_mask(objects, cfg.confirmed_observations)
        self._label: dict[str | None, tuple[np.ndarray, list[LabelMatch | None]]] = {}
        self._colors: list[str | None] | None = None
        self._centers = np.array([b.center for b in self.boxes]).reshape(-1, 3)
        self._bounds: tuple[np.ndarray, np.ndarray] | None = None
        self._chosen: dict[int, Desc] = {}

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """World axis-aligned bounds (lo (N, 3), hi (N, 3)) of the gravity-aligned boxes, vectorised."""
        if self._bounds is None:
            centers, half = box_extents(self.boxes)
            self._bounds = (centers - half, centers + half)
        return self._bounds

    # ------------------------------------------------------------------------------------------ labels
    def label(self, noun: str | None) -> tuple[np.ndarray, list[LabelMatch | None]]:
        """(N,) label scores of ``noun`` and how each object matched (None: not at all). A generic noun
        ("object", "thing") names every object but no structure."""
        if noun is None:
            return (~self.structure).astype(np.float64), [None] * self.n
        if noun in self._label:
            return self._label[noun]
        names = [str(x) for x in self._names if x] + sorted({lab for _, lab, _ in self._cands})
        matches = self.matcher.match(noun, names)
        per_name = [matches.get(str(x)) for x in self._names]
        score = np.array([m.score if m else 0.0 for m in per_name])[self._label_idx] if self.n else np.zeros(0)
        how: list[LabelMatch | None] = [per_name[j] for j in self._label_idx]
        for i, lab, p in self._cands:
            m = matches.get(lab)
            if m is not None and m.score * p > score[i]:
                score[i], how[i] = m.score * p, LabelMatch(m.score * p, "candidate")
        self._label[noun] = (score, how)
        return score, how

    def colors(self) -> list[str | None]:
        if self._colors is None:
            self._colors = [o.attributes.get("color") or (color_name(o.mean_color) if o.mean_color is not None
                                                          else None) for o in self.objects]
        return self._colors

    def size_classes(self) -> list[str]:
        return [o.attributes.get("size") or size_class(o.box) for o in self.objects]

    # ------------------------------------------------------------------------------------------ descriptions
    def choose(self, d: Desc, allowed: np.ndarray | None = None) -> Desc:
        """The reading of a telegraphic description (Desc.readings, most plausible first) that some allowed
        object satisfies; ``d`` itself when none does (or it has no other readings). A reading naming something
        the map lacks is passed over."""
        if not d.readings:
            return d
        if id(d) not in self._chosen:
            chosen = d
            for r in d.readings:
                try:
                    if self.evaluate(r, allowed).ok.any():
                        chosen = r
                        break
                except NotInMap:
                    continue
            self._chosen[id(d)] = chosen
        return self._chosen[id(d)]

    def evaluate(self, d: Desc, allowed: np.ndarray | None = None, role: str = "target",
                 inherit: str | None = None) -> Evaluated:
        """Score and decide every object for description ``d``; ``allowed`` (N,) bool limits the candidates
        (excluded ids, search region) before superlatives pick among them. Raises NotInMap, NeedsViewpoint."""
        chosen = self.choose(d, allowed)
        if chosen is not d:
            return self.evaluate(chosen, allowed, role, inherit)
        if d.choice:
            return self._choice(d, allowed, role, inherit)
        noun = d.noun if d.noun is not None else (inherit if d.one else None)
        named, _ = self.label(noun)
        s = named.copy()
        if noun is not None and not s.any():
            raise NotInMap(noun, role, self.matcher.is_known(noun))
        ok = s > 0
        if allowed is not None:
            s[~allowed] = 0.0
            ok &= allowed
        if d.colors or d.not_colors:
            cols = self.colors()
            # colour words are relative to the light, as size words are to the objects: with no candidate of the
            # colour asked, those whose hue the word allows qualify ("the orange chair" seen in shade reads brown)
            hue_ok = d.colors and not any(cols[i] in d.colors for i in np.nonzero(ok)[0])
            for i in np.nonzero(s)[0]:
                c = cols[i]
                if d.colors and c not in d.colors:
                    mc = self.objects[i].mean_color
                    if hue_ok and mc is not None and hue_family(mc) & set(d.colors):
                        s[i] *= self.cfg.hue_color_factor
                        continue
                    s[i] *= self.cfg.wrong_color_factor
                    ok[i] = False
                if d.not_colors and c in d.not_colors:
                    s[i] *= self.cfg.wrong_color_factor
                    ok[i] = False
        order = d.order
        if d.sizes or d.not_sizes:
            sizes = self.size_classes()
            have = [i for i in np.nonzero(ok)[0] if sizes[i] in d.sizes]
            if d.sizes and not have and order is None:
                # "the big box" where no box is large: the biggest of them (size words are relative)
                if "large" in d.sizes:
                    order = Order("volume", "max")
                elif "small" in d.sizes:
                    order = Order("volume", "min")
            else:
                for i in np.nonzero(s)[0]:
                    if (d.sizes and sizes[i] not in d.sizes) or (d.not_sizes and sizes[i] in d.not_sizes):
                        s[i] *= self.cfg.wrong_size_factor
                        ok[i] = False
                self._rank_by_size(s, ok, d)
        for m in d.modifiers:  # "couch phone": the phone associated with a couch, when the map has one
            try:
                self._relate(s, ok, Relation(ASSOCIATION, Desc(noun=m)))
            except NotInMap:
                pass
        for rel in d.relations:
            self._relate(s, ok, rel)
        for b in d.between:
            self._between(s, ok, b)
        for c in d.comparisons:
            self._compare(s, ok, c, noun)
        for x in d.excluded:
            try:
                ex = self.evaluate(x, role="anchor", inherit=noun)
            except NotInMap:
                continue  # "a chair other than the piano": nothing to exclude
            s *= np.where(ex.ok, self.cfg.wrong_color_factor, 1.0)
            ok &= ~ex.ok
        if order is not None:
            self._order(s, ok, order, named)
        return Evaluated(s, ok)

    def _choice(self, d: Desc, allowed: np.ndarray | None, role: str, inherit: str | None) -> Evaluated:
        """"which is bigger, the table or the sofa?": the best object of each member, then the order among them."""
        s, ok = np.zeros(self.n), np.zeros(self.n, dtype=bool)
        for m in d.choice:
            ev = self.evaluate(m, allowed, role, inherit)
            i = self._best(ev)
            if i is not None:
                s[i], ok[i] = max(s[i], ev.score[i]), ok[i] or bool(ev.ok[i])
        if d.order is not None:
            self._order(s, ok, d.order, np.ones(self.n))
        return Evaluated(s, ok)

    @staticmethod
    def _best(ev: Evaluated, besides: int | None = None) -> int | None:
        """The object a singular description names: the best-scoring one satisfying it (else the best-scoring)."""
        score = ev.score.copy()
        if besides is not None:
            score[besides] = 0.0
        pool = ev.ok & (score > 0) if (ev.ok & (score > 0)).any() else score > 0
        return int(np.argmax(np.where(pool, score, -1.0))) if pool.any() else None

    def _rank_by_size(self, s: np.ndarray, ok: np.ndarray, d: Desc) -> None:
        """"the massive lamp" with two large lamps: the bigger first (a size word ranks within its class too)."""
        cand = np.nonzero(ok & (s > 0))[0]
        if d.plural or d.order is not None or cand.size < 2 or not ({"large", "small"} & set(d.sizes)):
            return
        v = np.array([max(self.boxes[i].volume, 1e-12) for i in cand])
        rel = v / v.max() if "large" in d.sizes else v.min() / v
        s[cand] *= 0.95 + 0.05 * rel

    def _between(self, s: np.ndarray, ok: np.ndarray, b: Between) -> None:
        """Between two anchors' best objects, or the best two of one plural anchor (predicates.between_confidences)."""
        first = self.evaluate(b.first, role="anchor")
        first = self.confirmed(first.score, first.ok)
        ia = self._best(first)
        if b.second is not None:
            second = self.evaluate(b.second, role="anchor")
            ib = self._best(self.confirmed(second.score, second.ok), besides=ia)
        else:
            ib = self._best(first, besides=ia) if ia is not None else None
        conf = np.zeros(self.n) if ia is None or ib is None else \
            between_confidences(self.boxes, ia, ib, self.pred_cfg)
        if b.negated:
            s *= 1.0 - conf
            ok &= conf < HOLDS
        else:
            s *= conf
            ok &= conf >= HOLDS

    def _compare(self, s: np.ndarray, ok: np.ndarray, c: Comparison, noun: str | None) -> None:
        """A comparative: each candidate's measure against the reference's, by at least the comparative margin."""
        cand = np.nonzero(s)[0]
        if not cand.size:
            return
        if c.measure == "dist":
            mine = self.measure(Order("dist", "min", anchor=c.anchor), cand)
        else:
            mine = self.measure(Order(c.measure, "max"), cand)
        ref_i = None
        if isinstance(c.reference, Desc):
            ref = self.evaluate(c.reference, role="anchor", inherit=noun)
            ref_i = self._best(self.confirmed(ref.score, ref.ok))
            if ref_i is None:
                s[:], ok[:] = 0.0, False
                return
        if c.measure == "dist" and c.to_reference:  # "closer to the desk than to the table": each its own distances
            theirs = self.measure(Order("dist", "min", anchor=c.reference), cand)
        elif c.measure == "dist":  # "closer to the desk than the table (is)", "closer to me than the box"
            if ref_i is None:  # "closer to the desk than me": the viewer's distance to the desk
                if not isinstance(c.anchor, Desc):
                    s[:], ok[:] = 0.0, False
                    return
                a = self.evaluate(c.anchor, role="anchor")
                a_i = self._best(self.confirmed(a.score, a.ok))
                if a_i is None:
                    s[:], ok[:] = 0.0, False
                    return
                theirs = np.full(cand.size, float(self.measure(Order("dist", "min"), np.array([a_i]))[0]))
            else:
                theirs = np.full(cand.size, float(self.measure(Order("dist", "min", anchor=c.anchor),
                                                               np.array([ref_i]))[0]))
        elif ref_i is None:  # "taller than me": the viewer has no box
            s[:], ok[:] = 0.0, False
            return
        else:
            theirs = np.full(cand.size, float(self.measure(Order(c.measure, "max"), np.array([ref_i]))[0]))
        diff = mine - theirs if c.direction == "max" else theirs - mine
        if c.measure == "volume":
            diff = diff / np.maximum(np.abs(theirs), 1e-12)
            margin = self.cfg.comparative_margin_frac
        else:
            margin = self.cfg.comparative_margin_m
        conf = np.where(np.isfinite(diff), 0.5 * (1.0 + np.tanh((diff - margin) / margin)), 0.0)
        if ref_i is not None:
            conf[cand == ref_i] = 0.0  # nothing is bigger than itself
        s[cand] *= conf
        ok[cand] &= conf >= HOLDS

    def _relate(self, s: np.ndarray, ok: np.ndarray, rel: Relation) -> None:
        """Apply one relation (or its negation) to scores ``s`` and decisions ``ok`` in place."""
        if set(rel.predicates) & set(VIEW_DEPENDENT) and self.viewpoint is None:
            raise NeedsViewpoint(rel.text or rel.predicates[0])
        a = self.anchors(rel)
        rows, cols = np.nonzero(s)[0], np.nonzero(a.score)[0]
        hit_s, hit_ok = np.zeros(self.n), np.zeros(self.n, dtype=bool)
        if rows.size and cols.size:  # only candidate pairs: 500 objects x 500 anchors would be 250k pairs
            if rel.converse:  # "the shelf with a mug inside it": the anchor is the predicate's subject
                conf = pairwise_confidences(self.boxes, self.viewpoint, self.pred_cfg, rel.predicates, cols, rows)
                c = np.max([conf[p] for p in rel.predicates], axis=0).T  # (R, C) [subject, anchor]
            else:
                conf = pairwise_confidences(self.boxes, self.viewpoint, self.pred_cfg, rel.predicates, rows, cols)
                c = np.max([conf[p] for p in rel.predicates], axis=0)  # (R, C) [subject, anchor]
            if rel.negated:
                hit_s[rows] = np.max(c * a.ok[cols][None, :], axis=1)
            else:
                hit_s[rows] = np.max(c * a.score[cols][None, :], axis=1)
            hit_ok[rows] = np.any((c >= HOLDS) & a.ok[cols][None, :], axis=1)
        if rel.negated:
            s *= 1.0 - hit_s
            ok &= ~hit_ok
        else:
            s *= hit_s
            ok &= hit_ok

    def anchors(self, rel: Relation) -> Evaluated:
        """The objects a relation's anchor names; with alternatives ("on the desk or the shelf") any of them (an
        alternative the map lacks is dropped; NotInMap when all are missing)."""
        found, missing = [], None
        for d in [rel.anchor] + rel.alternatives:
            try:
                found.append(self.evaluate(d, role="anchor"))
            except NotInMap as e:
                missing = missing or e
        if not found:
            raise missing
        score, ok = np.max([e.score for e in found], axis=0), np.any([e.ok for e in found], axis=0)
        return self.confirmed(score, ok)

    def confirmed(self, score: np.ndarray, ok: np.ndarray) -> Evaluated:
        """Tentative objects satisfy a description only when no confirmed one does (their score scaled by
        tentative_factor otherwise): on the validation maps of the synthetic set, nearly every object seen in a
        single keyframe was a false or duplicate segment, e.g. a second "shelf" beside a desk that made the desk
        nearest to "the shelf"."""
        if self.cfg.tentative_factor >= 1.0 or not (ok & self.tentative).any() or not (ok & ~self.tentative).any():
            return Evaluated(score, ok)
        return Evaluated(np.where(self.tentative, score * self.cfg.tentative_factor, score), ok & ~self.tentative)

    def distinct(self, idx: list[int], min_iou: float) -> tuple[list[int], list[tuple[int, int]]]:
        """Objects ``idx`` (best first) less those whose box overlaps an earlier one's at 3D IoU >= ``min_iou``:
        (kept, [(dropped, the kept one it repeats)]). Solid objects do not interpenetrate (no two objects of the
        synthetic ground truth overlap at IoU > 0.04), so such a pair is one object the map split in two."""
        if len(idx) < 2 or min_iou > 1.0:
            return list(idx), []
        lo, hi = self.bounds()
        a = np.asarray(idx)
        touch = np.all((lo[a][:, None] < hi[a][None]) & (lo[a][None] < hi[a][:, None]), axis=2)
        if not np.triu(touch, 1).any():
            return list(idx), []
        from ..geometry.metrics import box_iou_3d  # open3d comes with it: only when some boxes overlap

        is_kept = np.zeros(len(idx), dtype=bool)
        dropped: list[tuple[int, int]] = []
        for k, i in enumerate(idx):
            twin = next((idx[m] for m in np.nonzero(touch[k, :k] & is_kept[:k])[0]
                         if box_iou_3d(self.boxes[i], self.boxes[idx[m]]) >= min_iou), None)
            if twin is None:
                is_kept[k] = True
            else:
                dropped.append((i, twin))
        return [i for i, keep in zip(idx, is_kept) if keep], dropped

    def measure(self, order: Order, idx: np.ndarray) -> np.ndarray:
        """The superlative's measure (K,) of objects ``idx`` (smaller = first for direction min)."""
        b = [self.boxes[i] for i in idx]
        if order.measure == "volume":
            return np.array([x.volume for x in b])
        if order.measure == "height":
            return np.array([x.size[2] for x in b])
        if order.measure == "width":
            return np.array([max(x.size[0], x.size[1]) for x in b])
        if order.measure == "z":
            return self._centers[idx, 2]
        if order.measure in ("right", "front") or (order.measure == "dist" and not isinstance(order.anchor, Desc)):
            if self.viewpoint is None:
                raise NeedsViewpoint(order.measure)
            fwd, right = self.viewpoint.axes()
            if order.measure == "right":
                return self._centers[idx] @ right
            if order.measure == "front":
                return self._centers[idx] @ fwd
            p = np.asarray(self.viewpoint.position, dtype=np.float64)
            lo, hi = self.bounds()
            gap = np.linalg.norm(np.maximum(np.maximum(lo[idx] - p, p - hi[idx]), 0.0), axis=1)
            return gap + self.cfg.centre_weight * np.linalg.norm(self._centers[idx] - p, axis=1)
        # distance to the nearest anchor satisfying the anchor description: box gap, then centre distance
        a = self.evaluate(order.anchor, role="anchor")
        a = self.confirmed(a.score, a.ok)
        cols = np.nonzero(a.ok if a.ok.any() else a.score > 0)[0]
        noun = self.choose(order.anchor).noun
        if noun is not None:  # "the tv": the objects labelled so before a monitor (a synonym)
            own = cols[self.label(noun)[0][cols] >= HEAD - 1e-9]
            cols = own if own.size else cols
        lo, hi = self.bounds()
        sep = np.maximum(np.maximum(lo[cols][None] - hi[idx][:, None], lo[idx][:, None] - hi[cols][None]), 0.0)
        d = np.linalg.norm(sep, axis=2) + self.cfg.centre_weight * np.linalg.norm(
            self._centers[idx][:, None] - self._centers[cols][None], axis=2)
        d[idx[:, None] == cols[None, :]] = np.inf  # nothing is nearest to itself
        return d.min(axis=1)

    def _order(self, s: np.ndarray, ok: np.ndarray, order: Order, named: np.ndarray) -> None:
        """Keep only the object the superlative / ordinal picks among the candidates as ``ok``; rank the others
        after it by their place in the order. ``named`` (N,): how well each object's label matches the noun; when
        some candidates carry the noun itself (or a label it heads), the order ranges over those only: "the
        nearest mug" is the nearest object labelled mug, not a nearer cup (a synonym), as a plain description
        already ranks the noun's own label first."""
        pool = (ok if ok.any() else s > 0).copy()  # a copy: ok is rewritten below, the others keep their rank
        # confirmed candidates only when there are any, as a plain description ranks them first
        if self.cfg.tentative_factor < 1.0 and (pool & ~self.tentative).any():
            pool &= ~self.tentative
        own = pool & (named >= HEAD - 1e-9)
        if own.any():
            pool = own
        idx = np.nonzero(pool)[0]
        if not idx.size:
            return
        m = self.measure(order, idx)
        if not np.isfinite(m).all():  # the anchor itself (measured to no other anchor) is in no distance order
            pool[idx[~np.isfinite(m)]] = False
            idx, m = idx[np.isfinite(m)], m[np.isfinite(m)]
            if not idx.size:
                ok[:] = False
                s[:] = 0.0
                return
        if order.direction == "mid":
            key = np.abs(m - np.median(m))
        else:
            key = m if order.direction == "min" else -m
        ranked = idx[np.argsort(key, kind="stable")]
        r = order.rank - 1 if order.rank > 0 else len(ranked) + order.rank
        was_ok = ok.copy()
        ok[:] = False
        if not 0 <= r < len(ranked):
            s[:] = 0.0
            return
        top = float(s[ranked].max())
        for pos, i in enumerate(ranked):
            s[i] = top * (1.0 if pos == r else 0.5 / (1 + abs(pos - r)))
        ok[ranked[r]] = bool(was_ok[ranked[r]])
        s[~pool] = 0.0
