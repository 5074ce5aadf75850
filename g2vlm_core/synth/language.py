"""Language ground truth from GT boxes: relations (via predicates), unique referring expressions, QA, captions."""
from __future__ import annotations

import itertools
import logging
from collections import Counter

import numpy as np

from ..predicates import VIEW_DEPENDENT, VIEW_INDEPENDENT, Viewpoint, compute_relations, pairwise_confidences
from ..scene_graph import SceneObject, SpatialRelation
from .records import QAPair, ReferringExpression

logger = logging.getLogger(__name__)

PHRASES = {
    "left_of": ("left of", "to the left of"), "right_of": ("right of", "to the right of"),
    "in_front_of": ("in front of",), "behind": ("behind",), "above": ("above",), "below": ("below", "beneath"),
    "on": ("on", "on top of"), "under": ("under", "underneath"), "near": ("near", "next to", "close to"),
    "inside": ("inside", "in"),
}
SIZE_WORDS = {"small": ("small", "little"), "medium": ("medium-sized",), "large": ("large", "big")}
PLURAL = {"box": "boxes", "shelf": "shelves", "sofa": "sofas"}
CONFIDENT_TRUE, CONFIDENT_FALSE = 0.8, 0.2  # yes/no questions skip pairs near the 0.5 predicate boundary
NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def plural(cat: str) -> str:
    return PLURAL.get(cat, cat + "s")


def article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def compute_scene_relations(objects: list[SceneObject], views: list[Viewpoint]) -> list[SpatialRelation]:
    """View-independent relations once, plus the view-dependent ones per reference view (its frame_id)."""
    ids = [o.id for o in objects]
    boxes = [o.box for o in objects]
    rels = compute_relations(ids, boxes, None, predicates=VIEW_INDEPENDENT)
    for vp in views:
        rels += compute_relations(ids, boxes, vp, predicates=VIEW_DEPENDENT)
    return rels


def _matches(obj: SceneObject, category: str, attributes: dict) -> bool:
    return obj.label == category and all(obj.attributes.get(k) == v for k, v in attributes.items())


def resolve_program(program: dict, objects: list[SceneObject], relations: list[SpatialRelation],
                    viewpoint: str = "") -> list[int]:
    """Ids of every object that satisfies an expression program (FORMAT.md) under ``relations``."""
    rel = {(r.subject_id, r.predicate, r.object_id) for r in relations
           if r.reference_frame == "" or r.reference_frame == viewpoint}
    out = []
    for o in objects:
        if not _matches(o, program["category"], program.get("attributes", {})):
            continue
        if all((o.id, r["predicate"], int(r["anchor_id"])) in rel for r in program.get("relations", [])):
            out.append(o.id)
    return out


class LanguageBuilder:
    """Builds expressions, QA and captions for one scene; every random choice comes from ``rng``."""

    def __init__(self, objects: list[SceneObject], relations: list[SpatialRelation], views: list[Viewpoint],
                 visible: dict[str, set[int]], room_type: str, room_size: np.ndarray, rng: np.random.Generator):
        self.objects = objects
        self.by_id = {o.id: o for o in objects}
        self.relations = relations
        self.views = views
        self.visible = visible  # reference frame_id -> ids visible in that frame
        self.room_type = room_type
        self.room_size = room_size
        self.rng = rng
        self.rel_by_ref: dict[str, set[tuple[int, str, int]]] = {}
        for r in relations:
            self.rel_by_ref.setdefault(r.reference_frame, set()).add((r.subject_id, r.predicate, r.object_id))

    def _resolve(self, program: dict, ref: str) -> list[int]:
        """resolve_program with the relation sets built once (the generator calls it thousands of times)."""
        rel = self.rel_by_ref.get("", set()) | (self.rel_by_ref.get(ref, set()) if ref else set())
        return [o.id for o in self.objects if _matches(o, program["category"], program["attributes"])
                and all((o.id, r["predicate"], r["anchor_id"]) in rel for r in program["relations"])]

    # ---- descriptions ------------------------------------------------------------------------------------
    def _count(self, category: str, attributes: dict) -> int:
        return sum(_matches(o, category, attributes) for o in self.objects)

    def unique_description(self, obj: SceneObject) -> dict | None:
        """The shortest {category, attributes} matching only ``obj``, or None."""
        for keys in ((), ("color",), ("size",), ("color", "size")):
            attrs = {k: obj.attributes[k] for k in keys}
            if self._count(obj.label, attrs) == 1:
                return {"category": obj.label, "attributes": attrs}
        return None

    def _colorless_description(self, obj: SceneObject) -> str | None:
        for keys in ((), ("size",)):
            attrs = {k: obj.attributes[k] for k in keys}
            if self._count(obj.label, attrs) == 1:
                return self._noun_phrase(obj.label, attrs)
        return None

    def _noun_phrase(self, category: str, attributes: dict, definite: bool = True) -> str:
        words = []
        if "size" in attributes:
            opts = SIZE_WORDS[attributes["size"]]
            words.append(opts[int(self.rng.integers(len(opts)))])
        if "color" in attributes:
            words.append(attributes["color"])
        words.append(category)
        phrase = " ".join(words)
        return f"the {phrase}" if definite else f"{article(phrase)} {phrase}"

    def _phrase(self, predicate: str) -> str:
        opts = PHRASES[predicate]
        return opts[int(self.rng.integers(len(opts)))]

    def _rels_of(self, subject: int, ref: str) -> list[tuple[str, int]]:
        rels = sorted(self.rel_by_ref.get("", set()) | (self.rel_by_ref.get(ref, set()) if ref else set()))
        return [(p, b) for a, p, b in rels if a == subject]

    # ---- referring expressions ---------------------------------------------------------------------------
    def expressions(self, max_count: int) -> list[ReferringExpression]:
        anchors = {o.id: self.unique_description(o) for o in self.objects}
        cands: dict[str, list[ReferringExpression]] = {}

        def add(target: SceneObject, template: str, attrs: dict, rels: list[tuple[str, int]], ref: str) -> None:
            program = {"category": target.label, "attributes": attrs,
                       "relations": [{"predicate": p, "anchor_id": b, "anchor": anchors[b]} for p, b in rels]}
            if self._resolve(program, ref) != [target.id]:
                return
            np_ = self._noun_phrase(target.label, attrs)
            parts = []
            for p, b in rels:
                a = anchors[b]
                parts.append(f"{self._phrase(p)} {self._noun_phrase(a['category'], a['attributes'])}")
            if not parts:
                text = np_
            else:
                joiner = (" that is ", " ", " located ")[int(self.rng.integers(3))] if len(parts) == 1 else " "
                text = np_ + joiner + " and ".join(parts) if len(parts) > 1 and self.rng.random() < 0.5 else \
                    np_ + joiner + " ".join(parts)
            cands.setdefault(template, []).append(
                ReferringExpression(text, target.id, template, ref if any(p in VIEW_DEPENDENT for p, _ in rels) else "",
                                    program))

        for t in self.objects:
            refs = [v.frame_id for v in self.views if t.id in self.visible.get(v.frame_id, set())] or \
                [self.views[0].frame_id]
            ref = refs[int(self.rng.integers(len(refs)))]
            for template, keys in (("category", ()), ("color", ("color",)), ("size", ("size",)),
                                   ("size_color", ("size", "color"))):
                add(t, template, {k: t.attributes[k] for k in keys}, [], "")
            rels = [(p, b) for p, b in self._rels_of(t.id, ref) if anchors.get(b) is not None]
            for p, b in rels:
                add(t, "relation", {}, [(p, b)], ref)
                add(t, "color_relation", {"color": t.attributes["color"]}, [(p, b)], ref)
            supports = [(p, b) for p, b in rels if p == "on"]
            others = [(p, b) for p, b in rels if p in VIEW_DEPENDENT or p == "near"]
            for s, o in itertools.product(supports, others):
                if s[1] != o[1]:
                    add(t, "color_support_relation", {"color": t.attributes["color"]}, [s, o], ref)
        return self._sample(cands, max_count)

    def _sample(self, cands: dict[str, list], max_count: int) -> list:
        """Round-robin over templates (shuffled within each) so every template is represented."""
        pools = {k: [v[i] for i in self.rng.permutation(len(v))] for k, v in sorted(cands.items())}
        out: list = []
        while len(out) < max_count and any(pools.values()):
            for k in list(pools):
                if pools[k] and len(out) < max_count:
                    out.append(pools[k].pop())
        return out

    # ---- QA ----------------------------------------------------------------------------------------------
    def qa(self, max_count: int) -> list[QAPair]:
        anchors = {o.id: self.unique_description(o) for o in self.objects}
        named = {i: self._noun_phrase(d["category"], d["attributes"]) for i, d in anchors.items() if d}
        cands: dict[str, list[QAPair]] = {}

        def add(q: QAPair) -> None:
            cands.setdefault(q.type, []).append(q)

        counts = Counter(o.label for o in self.objects)
        for cat in sorted(counts):
            n = counts[cat]
            add(QAPair("count", f"How many {plural(cat)} are there in the room?", str(n), n,
                       [o.id for o in self.objects if o.label == cat]))
        colors = Counter(o.attributes["color"] for o in self.objects)
        for col in sorted(colors):
            ids = [o.id for o in self.objects if o.attributes["color"] == col]
            add(QAPair("count", f"How many {col} objects are there?", str(len(ids)), len(ids), ids))
        vi = self.rel_by_ref.get("", set())
        for b, phrase in sorted(named.items()):
            on = sorted(a for a, p, o in vi if p == "on" and o == b)
            if on:
                add(QAPair("count", f"How many objects are on {phrase}?", str(len(on)), len(on), on + [b]))
                things = [self._noun_phrase(self.by_id[a].label, {"color": self.by_id[a].attributes["color"]},
                                            definite=False) for a in on]
                listing = things[0] if len(things) == 1 else ", ".join(things[:-1]) + " and " + things[-1]
                add(QAPair("what", f"What is on {phrase}?", listing[0].upper() + listing[1:] + ".",
                           [self.by_id[a].label for a in on], on))
            obj = self.by_id[b]
            plain = self._colorless_description(obj)
            if plain is not None:  # asking "what color is the red mug" would give the answer away
                add(QAPair("what", f"What color is {plain}?", obj.attributes["color"], obj.attributes["color"], [b]))
            # where: the first support / containment / proximity relation to a uniquely named anchor
            for pred in ("on", "inside", "near"):
                # "near" answers use floor-standing landmarks: "the cabinet is near the book on it" is odd
                anc = sorted(o for a, p, o in vi if a == b and p == pred and o in named
                             and (pred != "near" or self.by_id[o].attributes.get("support") == "floor"))
                if anc:
                    c = obj.box.center
                    add(QAPair("where", f"Where is {phrase}?", f"It is {self._phrase(pred)} {named[anc[0]]}.",
                               [round(float(x), 3) for x in c], [b, anc[0]], "", pred))
                    break
        ids = sorted(named)
        pairs = [(a, b) for a, b in itertools.combinations(ids, 2)]
        for k in self.rng.permutation(len(pairs))[:20]:
            a, b = pairs[int(k)]
            d = float(np.linalg.norm(self.by_id[a].box.center - self.by_id[b].box.center))
            add(QAPair("distance", f"How far is {named[a]} from {named[b]}?", f"About {d:.1f} m.", round(d, 3),
                       [a, b]))
        self._relation_qa(named, add)
        return self._sample(cands, max_count)

    def _relation_qa(self, named: dict[int, str], add) -> None:
        ids = sorted(named)
        if len(ids) < 2:
            return
        boxes = [self.by_id[i].box for i in ids]
        vi = pairwise_confidences(boxes, None)
        for view in self.views:
            vd = pairwise_confidences(boxes, view)
            for _ in range(12):
                i, j = (int(x) for x in self.rng.choice(len(ids), 2, replace=False))
                pred = ("left_of", "right_of", "in_front_of", "behind", "near", "above", "on")[
                    int(self.rng.integers(7))]
                conf = (vd if pred in VIEW_DEPENDENT else vi)[pred][i, j]
                if CONFIDENT_FALSE < conf < CONFIDENT_TRUE:
                    continue
                yes = bool(conf >= CONFIDENT_TRUE)
                add(QAPair("relation", f"Is {named[ids[i]]} {self._phrase(pred)} {named[ids[j]]}?",
                           "Yes." if yes else "No.", yes, [ids[i], ids[j]],
                           view.frame_id if pred in VIEW_DEPENDENT else "", pred))

    # ---- captions ----------------------------------------------------------------------------------------
    def captions(self) -> list[str]:
        big = [o for o in self.objects if o.attributes.get("support") == "floor"]
        small = [o for o in self.objects if o.attributes.get("support") != "floor"]
        counts = Counter(o.label for o in big)

        def listing(items: list[str]) -> str:
            return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]

        furn = []
        for cat, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            if n == 1:
                o = next(o for o in big if o.label == cat)
                furn.append(self._noun_phrase(cat, {"color": o.attributes["color"]}, definite=False))
            else:
                furn.append(f"{NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else n} {plural(cat)}")
        W, D, _ = self.room_size
        caps = [f"{article(self.room_type).capitalize()} {self.room_type} with {listing(furn)}." if furn else
                f"An empty {self.room_type}.",
                f"A {W:.1f} m by {D:.1f} m {self.room_type} containing {len(self.objects)} objects."]
        on = sorted((a, b) for a, p, b in self.rel_by_ref.get("", set()) if p == "on")
        sentences = []
        for a, b in on[:4]:
            oa, ob = self.by_id[a], self.by_id[b]
            sentences.append(f"{self._noun_phrase(oa.label, {'color': oa.attributes['color']}, False)} "
                             f"{self._phrase('on')} {self._noun_phrase(ob.label, {'color': ob.attributes['color']})}")
        if sentences:
            s = listing(sentences)
            caps.append(s[0].upper() + s[1:] + ".")
        if small:
            sc = Counter(o.label for o in small)
            caps.append("On the furniture there " + ("is " if sum(sc.values()) == 1 else "are ")
                        + listing([f"{NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else n} "
                                   f"{cat if n == 1 else plural(cat)}" for cat, n in sorted(sc.items())]) + ".")
        return caps
