"""Query test sets over ground-truth scene graphs, and the checker that scores answers against them.

Template phrasings (a YAML file: family -> phrasings with slots) are instantiated per scene; every truth comes
from the scene's ground truth (labels, colours, boxes and the predicates of g2vlm_core.predicates), never from
the query engine. Instances whose truth sits near a predicate's 0.5 boundary, or whose superlative depends on
how distance is measured, are skipped, so a case has one right answer. The same cases score answers over the
ground-truth graph (the language's ceiling) and through the node (g2vlm_ros.query_eval).
"""
from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..attributes import COLOR_NAMES
from ..predicates import VIEW_DEPENDENT, Viewpoint, pairwise_confidences
from ..scene_graph import Box3D, SceneGraph, SceneObject
from ..synth.config import OBJECT_CATEGORIES
from ..synth.language import plural

# Families -> the groups the issue reports: referring expressions with relations or superlatives, questions,
# impossible or hostile queries.
GROUPS = {"find_color": "referring", "nearest": "referring", "farthest": "referring", "biggest": "referring",
          "smallest": "referring", "not_on": "referring", "relation": "referring",
          "count": "question", "count_absent": "question", "count_all": "question", "count_on": "question",
          "exists_yes": "question", "exists_no": "question", "color": "question", "distance": "question",
          "where": "question", "related_on": "question", "is_relation": "question",
          "impossible": "impossible", "hostile": "impossible"}
REL_PHRASES = {"on": "on", "near": "next to", "inside": "inside", "above": "above", "left_of": "to the left of",
               "right_of": "to the right of", "in_front_of": "in front of", "behind": "behind"}
SUPPORTS = ("table", "desk", "shelf", "cabinet", "bed", "sofa")
# Everyday words no synthetic scene contains (nor any synonym of its categories), and a non-word.
ABSENT = ("elephant", "piano", "giraffe", "bicycle", "umbrella", "toaster", "toothbrush", "skateboard", "horse")
NONSENSE = ("blorptang", "snarfle", "quuxbin", "zindle")
CLEAR_TRUE, CLEAR_FALSE = 0.8, 0.2  # predicate confidences far enough from the 0.5 boundary
EXPECTATIONS = {"ids", "all_ids", "yes", "count", "color", "value", "handled", "achievable", "success", "kind",
                "contains", "excludes"}


@dataclass
class QueryCase:
    text: str
    family: str
    expect: dict  # the keys of check()
    viewpoint: str = ""  # the key of the viewpoint it is asked from ("" = none)
    names: list[int] = field(default_factory=list)  # its expected objects and every object of the categories it
    # names (anchors, distractors): what a map needs, labelled, for the case to be the language's to lose
    group: str = field(init=False)

    def __post_init__(self) -> None:
        self.group = GROUPS.get(self.family, "other")


def gt_graph(objects: list[SceneObject], room_size) -> SceneGraph:
    """The ground-truth graph of a synthetic scene: its objects plus the floor as structure (id 1, the
    synthetic set's floor id), so "on the floor" and structure exclusion are exercised."""
    sx, sy = float(room_size[0]), float(room_size[1])
    floor = SceneObject(1, "floor", Box3D([sx / 2, sy / 2, -0.01], [sx, sy, 0.02]), kind="structure",
                        attributes={"color": "gray"})
    return SceneGraph([floor] + [o for o in objects if o.kind != "structure"])


def scene_cases(graph: SceneGraph, viewpoint: Viewpoint | None, templates: dict, seed: int,
                per_family: int = 3, view_key: str = "view") -> list[QueryCase]:
    """The template cases of one scene; view-dependent ones are asked from ``viewpoint`` (key ``view_key``)."""
    rng = np.random.default_rng([int(seed), 0x9E5])
    objs = [o for o in graph.objects if o.kind != "structure"]
    all_objs = list(graph.objects)
    pos = {o.id: i for i, o in enumerate(all_objs)}
    boxes = [o.box for o in all_objs]
    preds = ("on", "near", "inside", "above") + (VIEW_DEPENDENT if viewpoint is not None else ())
    conf = pairwise_confidences(boxes, viewpoint, predicates=preds)
    cats = Counter(o.label for o in objs)
    unique = sorted(c for c, n in cats.items() if n == 1)
    multi = sorted(c for c, n in cats.items() if n >= 2)
    by_cat = {c: [o for o in objs if o.label == c] for c in cats}
    category = {**{plural(c): c for c in cats}, **{c: c for c in cats}}  # a slot's word -> the category it names
    color = {o.id: o.attributes.get("color") for o in objs}
    out: list[QueryCase] = []

    def pick(items: list, n: int = per_family) -> list:
        items = list(items)
        if len(items) <= n:
            return items
        return [items[i] for i in sorted(rng.choice(len(items), size=n, replace=False))]

    def add(family: str, slots: dict, expect: dict, view: str = "", also: tuple[int, ...] = ()) -> None:
        phrasings = templates.get(family, [])
        if not phrasings:
            return
        k = sum(c.family == family for c in out)
        named = {category.get(v) for v in slots.values()}
        names = {o.id for o in objs if o.label in named} | set(expect.get("ids", ())) \
            | set(expect.get("all_ids", ())) | set(also)
        out.append(QueryCase(phrasings[k % len(phrasings)].format(**slots), family, expect, view, sorted(names)))

    def c_of(p: str, a: SceneObject, b: SceneObject) -> float:
        return float(conf[p][pos[a.id], pos[b.id]])

    def on_set(support: SceneObject) -> tuple[list[int], bool]:
        """Ids of the objects on ``support`` and whether every object is clearly on or off it."""
        c = [(o.id, c_of("on", o, support)) for o in objs if o.id != support.id]
        return [i for i, v in c if v >= 0.5], all(v >= CLEAR_TRUE or v <= CLEAR_FALSE for _, v in c)

    for c in pick(sorted(cats)):
        add("count", {"cats": plural(c)}, {"count": cats[c]})
    for c in pick([c for c in OBJECT_CATEGORIES if c not in cats], 2):
        add("count_absent", {"cats": plural(c)}, {"count": 0})
    add("count_all", {}, {"count": len(objs)}, also=tuple(o.id for o in objs))
    supports = [by_cat[c][0] for c in unique if c in SUPPORTS]
    for s in pick(supports, 2):
        ids, clear = on_set(s)
        if ids and clear:
            add("count_on", {"support": s.label}, {"count": len(ids)}, also=tuple(ids))
            add("related_on", {"support": s.label}, {"all_ids": ids})
    for c in pick(sorted(cats), 2):
        add("exists_yes", {"cat": c, "cats": plural(c)}, {"yes": True})
    for c in pick([c for c in OBJECT_CATEGORIES if c not in cats], 2):
        add("exists_no", {"cat": c, "cats": plural(c)}, {"yes": False})
    for c in pick(unique):
        if color[by_cat[c][0].id] in COLOR_NAMES:
            add("color", {"a": c}, {"color": color[by_cat[c][0].id]})
    for a, b in pick(list(itertools.combinations(unique, 2))):
        d = float(np.linalg.norm(by_cat[a][0].box.center - by_cat[b][0].box.center))
        add("distance", {"a": a, "b": b}, {"value": d})
    for c in pick(unique):
        add("where", {"a": c}, {"ids": [by_cat[c][0].id]})
    # referring expressions
    pairs = [(c, col) for c in multi for col in sorted({color[o.id] for o in by_cat[c]} - {None})
             if sum(color[o.id] == col for o in by_cat[c]) == 1]
    for c, col in pick(pairs):
        add("find_color", {"cat": c, "color": col}, {"ids": [o.id for o in by_cat[c] if color[o.id] == col]})
    for family, sign in (("nearest", 1.0), ("farthest", -1.0)):
        cands = []
        for c in multi:
            for a in unique:
                if a == c:
                    continue
                anchor = by_cat[a][0]
                insts = by_cat[c]
                gap = np.array([_gap(o.box, anchor.box) for o in insts]) * sign
                cen = np.array([np.linalg.norm(o.box.center - anchor.box.center) for o in insts]) * sign
                g_order, c_order = np.argsort(gap), np.argsort(cen)
                # one right answer: both ways of measuring agree, with a margin
                if g_order[0] == c_order[0] and gap[g_order[1]] - gap[g_order[0]] >= 0.1 \
                        and cen[c_order[1]] - cen[c_order[0]] >= 0.1:
                    cands.append((c, a, insts[g_order[0]].id))
        for c, a, tid in pick(cands):
            add(family, {"cat": c, "a": a}, {"ids": [tid]})
    for family, sign in (("biggest", 1.0), ("smallest", -1.0)):
        cands = []
        for c in multi:
            v = sorted(((sign * o.box.volume, o.id) for o in by_cat[c]), reverse=True)
            if abs(v[0][0] - v[1][0]) >= 0.15 * max(abs(v[0][0]), 1e-9):
                cands.append((c, v[0][1]))
        for c, tid in pick(cands):
            add(family, {"cat": c}, {"ids": [tid]})
    cands = []
    for c in multi:
        for s in supports:
            if s.label == c:
                continue
            vals = [(o.id, c_of("on", o, s)) for o in by_cat[c]]
            on = [i for i, v in vals if v >= 0.5]
            if 0 < len(on) < len(vals) and all(v >= CLEAR_TRUE or v <= CLEAR_FALSE for _, v in vals):
                cands.append((c, s.label, [i for i, v in vals if v < 0.5]))
    for c, s, ids in pick(cands):
        add("not_on", {"cat": c, "support": s}, {"ids": ids})
    cands = []
    for c in multi:
        for a in unique:
            if a == c:
                continue
            for p in preds:
                vals = [c_of(p, o, by_cat[a][0]) for o in by_cat[c]]
                yes = [o.id for o, v in zip(by_cat[c], vals) if v >= CLEAR_TRUE]
                if len(yes) == 1 and sum(v > CLEAR_FALSE for v in vals) == 1:
                    cands.append((c, a, p, yes[0]))
    for c, a, p, tid in pick(cands, per_family + 1):
        add("relation", {"cat": c, "a": a, "rel": REL_PHRASES[p]}, {"ids": [tid]},
            view_key if p in VIEW_DEPENDENT else "")
    cands = []
    for a, b in itertools.permutations(unique, 2):
        for p in preds:
            v = c_of(p, by_cat[a][0], by_cat[b][0])
            if v >= CLEAR_TRUE or v <= CLEAR_FALSE:
                cands.append((a, b, p, v >= CLEAR_TRUE))
    yes = [x for x in cands if x[3]]
    no = [x for x in cands if not x[3]]
    for a, b, p, truth in pick(yes, 2) + pick(no, 2):
        add("is_relation", {"a": a, "b": b, "rel": REL_PHRASES[p]}, {"yes": truth},
            view_key if p in VIEW_DEPENDENT else "")
    # impossible and hostile queries: handled = refused (success false) or not achievable, with a reason
    a = unique[0] if unique else (sorted(cats)[0] if cats else "table")
    for i, t in enumerate(templates.get("impossible", [])):
        out.append(QueryCase(t.format(a=a, absent=ABSENT[(seed + i) % len(ABSENT)],
                                      nonsense=NONSENSE[(seed + i) % len(NONSENSE)]), "impossible",
                             {"handled": True}))
    for t in templates.get("hostile", []):
        out.append(QueryCase(t.format(a=a), "hostile", {"handled": True}))
    return out


def _gap(a: Box3D, b: Box3D) -> float:
    lo_a, hi_a = a.aabb()
    lo_b, hi_b = b.aabb()
    return float(np.linalg.norm(np.maximum(np.maximum(lo_b - hi_a, lo_a - hi_b), 0.0)))


def check(expect: dict, r, gt_id: Callable[[int], int | None] = lambda i: i) -> list[str]:
    """What is wrong with QueryResult ``r`` for the expectations ``expect``; empty when right. ``gt_id`` maps an
    answered object id to the ground-truth id it stands for (None: none), for answers from a predicted map.

    Expectations: ids (the first object is one of them), all_ids (the objects as a set), yes (existence: text
    starts with yes / no and numeric 1 / 0), count (numeric and the text's first word), color (the answer names
    it), value (numeric within 20 %), handled (refused or not achievable, with a reason), achievable, success,
    kind, contains / excludes (answer text), and a confidence in [0, 1] on every answer.
    """
    unknown = set(expect) - EXPECTATIONS
    if unknown:  # e.g. YAML reading an unquoted key `yes:` as the boolean True: the check would be skipped
        raise ValueError(f"unknown expectations {sorted(map(repr, unknown))}; known: {sorted(EXPECTATIONS)}")
    bad = []
    text = r.answer.lower()
    if expect.get("handled"):
        if (r.success and r.achievable) or not r.answer.strip():
            bad.append(f"answered '{r.answer[:60]}' (achievable {r.achievable}); expected a refusal with a reason")
    if "success" in expect and r.success != expect["success"]:
        bad.append(f"success {r.success}, expected {expect['success']}")
    if "achievable" in expect and r.achievable != expect["achievable"]:
        bad.append(f"achievable {r.achievable}, expected {expect['achievable']}")
    if "kind" in expect and r.kind != expect["kind"]:
        bad.append(f"kind {r.kind}, expected {expect['kind']}")
    if "ids" in expect:
        first = gt_id(r.object_ids[0]) if r.achievable and r.object_ids else None
        if first not in expect["ids"]:
            bad.append(f"first object {r.object_ids[:1]} -> {first} (achievable {r.achievable}), expected one of "
                       f"{expect['ids']}")
    if "all_ids" in expect:
        got = {gt_id(i) for i in r.object_ids}  # None: an answered object that stands for no true one
        if not r.achievable or got != set(expect["all_ids"]):
            bad.append(f"objects {sorted(got, key=str)}, expected {sorted(expect['all_ids'])}")
    if "yes" in expect:
        want = "yes" if expect["yes"] else "no"
        if not text.startswith(want) or r.numeric != (1.0 if expect["yes"] else 0.0):
            bad.append(f"answer '{r.answer[:60]}' numeric {r.numeric}, expected {want}")
    if "count" in expect:
        first_word = text.split()[0] if text.split() else ""
        if r.numeric != expect["count"] or first_word.rstrip(":") != str(expect["count"]):
            bad.append(f"count {r.numeric} ('{r.answer[:40]}'), expected {expect['count']}")
    if "color" in expect:
        words = set(text.replace(";", " ").replace(":", " ").replace(",", " ").split())
        named = [c for c in COLOR_NAMES if c in words]
        if expect["color"] not in named:
            bad.append(f"colour {named} in '{r.answer[:60]}', expected {expect['color']}")
    if "value" in expect:
        v = expect["value"]
        if not (r.achievable and math.isfinite(r.numeric) and abs(r.numeric - v) <= 0.2 * v):
            bad.append(f"value {r.numeric}, expected {v} within 20 %")
    for s in expect.get("contains", []):
        if s.lower() not in text:
            bad.append(f"answer lacks '{s}': '{r.answer[:100]}'")
    for s in expect.get("excludes", []):
        if s.lower() in text:
            bad.append(f"answer has '{s}': '{r.answer[:100]}'")
    if r.success and not 0.0 <= r.confidence <= 1.0:
        bad.append(f"confidence {r.confidence} outside [0, 1]")
    return bad
