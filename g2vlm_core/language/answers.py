"""Answer texts: how objects, places, values and caveats are worded in a query's answer."""
from __future__ import annotations

import numpy as np

from ..predicates import PredicateConfig, pairwise_confidences
from ..scene_graph import SceneObject, SpatialRelation
from .labels import LabelMatch, normalise_label
from .lexicon import lemmatise

# How a supporting relation is worded ("on table #3"), and which ones say where an object is, best first.
PHRASES = {"on": "on", "under": "under", "inside": "inside", "above": "above", "below": "below", "near": "near",
           "left_of": "left of", "right_of": "right of", "in_front_of": "in front of", "behind": "behind"}
PLACE_PREDICATES = ("on", "inside", "near")


def name(o: SceneObject) -> str:
    return f"{o.label} #{o.id}"


def at(o: SceneObject) -> str:
    c = o.box.center
    return f"{name(o)} at ({c[0]:.2f}, {c[1]:.2f}, {c[2]:.2f})"


UNCOUNTABLE = ("furniture", "electronics", "stuff", "kitchenware", "tableware", "dishware", "drinkware", "storage",
               "luggage", "equipment")


def plural(noun: str, n: int) -> str:
    if n == 1 or " of " in noun or noun.endswith(UNCOUNTABLE):
        return noun
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    if noun.endswith("f"):
        return noun[:-1] + "ves"
    return noun + "s"


def caveat(o: SceneObject, noun: str | None, how: LabelMatch | None) -> str:
    """A note when the object's label is not the noun asked for ("mug" -> an object labelled "cup")."""
    if noun is None or how is None or normalise_label(o.label) == lemmatise(noun):
        return ""
    why = {"head": "a kind of", "synonym": "another word for", "category": "a kind of",
           "similar": "the closest label to", "candidate": "possibly"}.get(how.how, "matched to")
    return f" (labelled {o.label}: {why} {noun}, match {how.score:.2f})"


def place(objects: list[SceneObject], i: int, pred_cfg: PredicateConfig) -> SpatialRelation | None:
    """Where object i is: what it rests on, else what it is inside, else its nearest neighbour it is near."""
    others = np.array([j for j in range(len(objects)) if j != i])
    if not others.size:
        return None
    boxes = [o.box for o in objects]
    conf = pairwise_confidences(boxes, None, pred_cfg, PLACE_PREDICATES, [i], others)
    for p in PLACE_PREDICATES:
        c = conf[p][0]
        if c.max() >= 0.5:
            if p == "near":  # the nearest of the neighbours
                d = [np.linalg.norm(boxes[j].center - boxes[i].center) if c[k] >= 0.5 else np.inf
                     for k, j in enumerate(others)]
                k = int(np.argmin(d))
            else:
                k = int(np.argmax(c))
            return SpatialRelation(objects[i].id, p, objects[others[k]].id, float(c[k]))
    return None


def relation_text(r: SpatialRelation, by_id: dict[int, SceneObject]) -> str:
    o = by_id.get(r.object_id)
    return f"{PHRASES.get(r.predicate, r.predicate)} {name(o) if o else '#' + str(r.object_id)}"


def listing(objects: list[SceneObject], limit: int = 12, views: bool = False) -> str:
    """Names of ``objects`` (at most ``limit``); ``views``: with the keyframes that observed each, when known."""
    parts = [name(o) + (f" ({o.observation_count} {'view' if o.observation_count == 1 else 'views'})"
                        if views and o.observation_count > 0 else "") for o in objects[:limit]]
    if len(objects) > limit:
        parts.append(f"and {len(objects) - limit} more")
    return ", ".join(parts)
