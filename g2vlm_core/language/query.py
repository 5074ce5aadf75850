"""Answer planners' natural-language queries over a SceneGraph: the query engine.

A query goes text -> tagged tokens (normalize.py, with the word tables of lexicon.py) -> a parse by the
grammar (parser.py) -> a Query of one kind (find, where, exists, count, related, attribute, distance) whose
descriptions are evaluated over the graph's objects (resolve.py: labels matched by labels.py, relations by
g2vlm_core.predicates) -> a QueryResult with an answer text (answers.py). The answer contract per kind is in
the README's "Query language" section.

Honesty rules: existence, negation and counts are decided by the predicates, never by a learned grounder; a
noun that names nothing in the map (nor anything similar) makes the query unachievable with the reason; an
answer whose object is labelled otherwise than the noun asked says so; text that is no query is refused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from ..predicates import CONVERSE, VIEW_DEPENDENT, PredicateConfig, Viewpoint, pairwise_confidences
from ..scene_graph import SceneGraph, SceneObject, SpatialRelation
from . import answers as A
from .labels import LabelMatcher, normalise_label
from .normalize import (MAX_QUERY_CHARS, non_query_reason, structured_query, tag, unknown_word_share, validate_query,
                        with_typos_corrected)
from .parser import Desc, ParseError, Query, QueryParser
from .resolve import HOLDS, Evaluated, NeedsViewpoint, NotInMap, ResolveConfig, Resolver, tentative_mask

__all__ = ["MAX_QUERY_CHARS", "QueryConfig", "QueryEngine", "QueryResult", "validate_query"]


@dataclass(frozen=True)
class QueryConfig:
    default_max_results: int = 5  # results of a find / where query when the request asks for 0 (lists: all)
    min_score: float = 0.05  # candidates scoring below this are not returned
    achievable_score: float = 0.25  # nothing satisfies the whole description: the closest match answers (with a
    # caveat) only when it scores at least this
    wrong_color_factor: float = 0.15  # score factor for an object whose colour name differs from the query's
    wrong_size_factor: float = 0.3  # score factor for an object whose size class differs
    embed_label_min_similarity: float = 0.68  # text-embedding cosine for a noun no table relates to match a label
    # (chosen on tests/core/data/label_pairs.yaml: labels.py)
    candidate_min_score: float = 0.3  # a secondary label (label_candidates) names its object from this score
    noise_word_share: float = 0.6  # a query of at least 3 tokens, this share of them unknown words, is noise
    max_tokens: int = 48  # longer queries (after filler is dropped) are refused: the Earley parse and the nested
    # relations grow with the length, and no planner's query needs more (a 1000-character one must not stall)
    grounder_tie: float = 1.0  # the grounder orders the candidates satisfying a description when the rules' second
    # best scores at least this share of the best (1: only exact ties; 0: always)
    grounded_rule_floor: float = 0.1  # with a grounder, a candidate scores its probability x (this + its rules
    # score), renormalised: the rules' colour / size / relation evidence breaks the grounder's near-ties
    unnamed_label: str = "object"  # label of objects mapped without a name (ObjectMapConfig.unknown_label): with a
    # grounder, a noun of its vocabulary that names no object is looked for among them
    confirmed_observations: int = 2  # an object observed in fewer keyframes than this (but at least one; 0 means not
    # recorded) is tentative, often a false segment of one view whose single embedding the grounder over-trusts ...
    tentative_factor: float = 1e-3  # ... and its score is multiplied by this when a confirmed candidate also scores
    # (with the rules alone: at least min_score): it answers only when nothing confirmed matches (1 turns this off)
    duplicate_iou: float = 0.5  # a count takes objects whose boxes overlap at least this much as one (a split in the
    # map: on the validation maps every such pair was; > 1 disables)
    count_tentative: bool = False  # whether tentative objects are counted, listed and taken as existence evidence
    # beside confirmed ones (off: only when no confirmed object satisfies the description, as for a find; the
    # answer names them. On 15 validation maps of the synthetic set a tentative object beside confirmed ones was
    # mostly a false or repeated segment; alone, as often a true object seen once as a false one)

    def __post_init__(self) -> None:
        if self.confirmed_observations < 1:
            raise ValueError(f"confirmed_observations must be >= 1, got {self.confirmed_observations}")
        if not 0.0 < self.tentative_factor <= 1.0:
            raise ValueError(f"tentative_factor must be in (0, 1], got {self.tentative_factor}")
        if self.duplicate_iou <= 0.0:
            raise ValueError(f"duplicate_iou must be > 0, got {self.duplicate_iou}")
        if not 0.0 < self.embed_label_min_similarity <= 1.0:
            raise ValueError(f"embed_label_min_similarity must be in (0, 1], got {self.embed_label_min_similarity}")


@dataclass
class QueryResult:
    """What the query service returns (see srv/SpatialQuery.srv)."""

    success: bool
    achievable: bool = False
    answer: str = ""
    numeric: float = math.nan
    object_ids: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    supporting: list[SpatialRelation] = field(default_factory=list)
    error: str = ""
    kind: str = "find"  # find | where | exists | count | related | attribute | distance | invalid
    confidence: float = 0.0  # [0, 1] how sure the answer is


@dataclass
class _Pick:
    """The objects a description picks, best first."""

    order: list[int]  # indices into the objects
    scores: list[float]
    exact: bool  # the first one satisfies the whole description
    note: str = ""  # how it was chosen when not exact


class QueryEngine:
    """Parses and answers queries; stateless apart from caches (parses, label embeddings)."""

    def __init__(self, cfg: QueryConfig = QueryConfig(), pred_cfg: PredicateConfig = PredicateConfig(),
                 text_embedder: Callable[[str], np.ndarray] | None = None,
                 grounder: Callable[[str, list[SceneObject], Viewpoint | None], np.ndarray | None] | None = None,
                 grounder_vocabulary: tuple[str, ...] = ()):
        """``text_embedder``: sentence embeddings of short texts (embedding.TextEmbedder: the MiniLM), used to
        match a noun no word table relates to a label (labels.LabelMatcher). ``grounder``: a learned
        referring-expression scorer (ModelLabeller.ground: the G2VLM grounding head) returning scores (K,) of the
        objects it is given, or None when it cannot. With one, find / where / attribute questions let it order
        the objects that satisfy the whole description (or, when none does, the objects the head noun names, with
        a caveat); existence, negation, counts and lists never use it. ``grounder_vocabulary``: the nouns the
        grounder was trained on: such a noun that names no mapped object is looked for among the objects mapped
        without a name (``unnamed_label``)."""
        self.cfg, self.pred_cfg, self.grounder = cfg, pred_cfg, grounder
        self.matcher = LabelMatcher(text_embedder, cfg.embed_label_min_similarity)
        self.parser = QueryParser()
        self.grounder_vocabulary = {normalise_label(w) for w in grounder_vocabulary}
        self._rcfg = ResolveConfig(cfg.wrong_color_factor, cfg.wrong_size_factor, cfg.candidate_min_score,
                                   confirmed_observations=cfg.confirmed_observations,
                                   tentative_factor=cfg.tentative_factor)

    # ------------------------------------------------------------------------------------------ entry
    def parse(self, text: str, graph: SceneGraph | None = None) -> Query:
        """The Query a text states (ParseError when it states none); ``graph`` lends its multi-word labels."""
        toks, question = tag(text, self._labels(graph.objects if graph else []))
        return self.parser.parse(toks, question)

    @staticmethod
    def _labels(objects: list[SceneObject]) -> frozenset[str]:
        out = {normalise_label(o.label) for o in objects}
        for o in objects:
            out.update(normalise_label(lab) for lab, _ in o.label_candidates)
        return frozenset(out)

    def answer(self, graph: SceneGraph, query, viewpoint: Viewpoint | None = None, max_results: int = 0,
               excluded_ids=(), search_center: np.ndarray | None = None,
               search_radius: float | None = None) -> QueryResult:
        try:
            text = validate_query(query)
        except ValueError as e:
            return QueryResult(success=False, error=str(e), answer=str(e), kind="invalid")
        if search_center is not None and (search_radius is None or not np.isfinite(search_radius)
                                          or search_radius <= 0 or not np.all(np.isfinite(search_center))):
            msg = "search region needs a finite centre and a positive radius"
            return QueryResult(success=False, error=msg, answer=msg, kind="invalid")
        text = structured_query(text) or text  # planner fields ("object: mug; on: table") read as a phrase
        reason = non_query_reason(text)
        if reason:
            return QueryResult(success=True, achievable=False, kind="invalid", answer=f"not a query: {reason}")
        objects = list(graph.objects)
        toks, question = tag(text, self._labels(objects))
        if len(toks) > self.cfg.max_tokens:
            return QueryResult(success=True, achievable=False, kind="invalid",
                               answer=f"not understood: the query has {len(toks)} meaningful words; at most "
                                      f"{self.cfg.max_tokens} are read")
        # noise: nothing but nouns, mostly words neither the lexicon nor the map knows ("asdf qwer zxcv")
        only_nouns = all(t.type in ("WORD", "NOUN", "DET", "COMMA") for t in toks)
        if only_nouns and sum(t.type == "WORD" for t in toks) >= 3 \
                and unknown_word_share(toks) >= self.cfg.noise_word_share:
            return QueryResult(success=True, achievable=False, kind="invalid",
                               answer=f"not understood: '{text}' has no words I know to look for")
        allowed = _allowed(objects, {int(i) for i in excluded_ids}, search_center, search_radius)
        result, unread = self._run(toks, question, objects, allowed, viewpoint, text, max_results)
        fixed_toks, fixed = with_typos_corrected(toks)
        if unread and fixed:
            # a word that is no word of the tables and one letter from a noun ("chiar"): read as that noun only
            # when the query fails without it, and the answer says so
            again, _ = self._run(fixed_toks, question, objects, allowed, viewpoint, text, max_results)
            if again.achievable:
                again.answer += " (read " + ", ".join(f"'{w}' as {n}" for w, n in fixed) + ")"
                return again
        return result

    def _run(self, toks, question: bool, objects: list[SceneObject], allowed: np.ndarray,
             viewpoint: Viewpoint | None, text: str, max_results: int) -> tuple[QueryResult, bool]:
        """The answer from the tagged tokens, and whether it failed on words it could not read (no parse, or a
        noun the lexicon does not know)."""
        try:
            q = self.parser.parse(toks, question)
        except ParseError as e:
            return QueryResult(success=True, achievable=False, kind="invalid",
                               answer=f"not understood: {e} ('{text}')"), True
        res = Resolver(objects, self.matcher, viewpoint, self.pred_cfg, self._rcfg)
        ctx = _Ctx(self, objects, res, allowed, viewpoint, text, max_results)
        kind = q.kind
        try:
            q.target = res.choose(q.target, allowed)  # a telegraphic phrase: the reading the map supports
            if isinstance(q.other, Desc):
                q.other = res.choose(q.other, allowed)
            return getattr(ctx, q.kind)(q), False
        except NeedsViewpoint as e:
            return QueryResult(success=True, achievable=False, kind=kind,
                               answer=f"'{e}' depends on where the viewer is: no camera pose is known yet "
                                      f"(left/right/front/behind need a viewpoint)"), False
        except NotInMap as e:
            return ctx.not_in_map(q, e, kind), not e.known

    # ------------------------------------------------------------------------------------------ grounder
    def knows(self, noun: str) -> bool:
        """Whether the grounder was trained on ``noun`` (or a synonym): only then may it look for an object the map
        did not name so ("the cabinet" among unnamed objects, "the mug near the vase" with no vase mapped)."""
        return normalise_label(noun) in self.grounder_vocabulary or \
            normalise_label(self.matcher.canonical(noun)) in self.grounder_vocabulary

    def grounded(self, objects: list[SceneObject], text: str, idx: np.ndarray, s: np.ndarray,
                 viewpoint: Viewpoint | None) -> np.ndarray | None:
        """Scores (len(idx),) summing to 1: the grounder's softmax over objects ``idx`` times
        (grounded_rule_floor + their rules' scores ``s[idx]``), tentative objects after confirmed ones; None when
        there is no grounder or it cannot score them."""
        if self.grounder is None or not idx.size:
            return None
        g = self.grounder(text, [objects[i] for i in idx], viewpoint)
        if g is None:
            return None
        g = np.asarray(g, dtype=np.float64).reshape(-1)
        if g.shape != idx.shape or not np.isfinite(g).any():
            return None
        e = np.where(np.isfinite(g), np.exp(g - np.max(g[np.isfinite(g)])), 0.0)
        w = e / e.sum() * (self.cfg.grounded_rule_floor + s[idx])
        w = self.confirmed_first([objects[i] for i in idx], w, 0.0)
        return w / max(float(w.sum()), 1e-300)

    def confirmed_first(self, objects: list[SceneObject], s: np.ndarray, least: float) -> np.ndarray:
        """``s`` (N,) with the scores of tentative objects (QueryConfig.confirmed_observations) scaled by
        tentative_factor when a confirmed object scores more than 0 and at least ``least``. On the 40 validation
        scenes of the synthetic set it raised the query service's Acc@0.25 by 0.01 (its rules alone: by 0.035): a
        spurious one-view fragment labelled like the target was otherwise often ranked first."""
        tentative = tentative_mask(objects, self.cfg.confirmed_observations)
        if not tentative.any() or not ((s[~tentative] > 0) & (s[~tentative] >= least)).any():
            return s
        return np.where(tentative, s * self.cfg.tentative_factor, s)


class _Ctx:
    """One query against one graph snapshot: the answer of each kind."""

    def __init__(self, engine: QueryEngine, objects: list[SceneObject], res: Resolver, allowed: np.ndarray,
                 viewpoint: Viewpoint | None, text: str, max_results: int):
        self.e, self.objects, self.res, self.allowed, self.viewpoint, self.text = \
            engine, objects, res, allowed, viewpoint, text
        self.cfg = engine.cfg
        self.k_one = max_results if max_results > 0 else self.cfg.default_max_results
        self.k_all = max_results if max_results > 0 else len(objects)
        self.by_id = {o.id: o for o in objects}

    # ------------------------------------------------------------------------------------------ helpers
    def pick(self, d: Desc, text: str | None = None, ground: bool = True) -> _Pick:
        """The objects description ``d`` names, best first: those satisfying all of it, ordered by score (and by
        the grounder, when ``ground``, there is one, no superlative decides and the rules' best two are within
        grounder_tie of each other); when none does, the grounder's choice among the objects the noun names, else
        the rules' closest match when it scores at least achievable_score."""
        ev = self.res.evaluate(d, self.allowed)
        s, ok = ev.score.copy(), ev.ok
        text = text or d.text or self.text  # the phrase itself, not the question around it
        ok_idx = np.nonzero(ok)[0]
        if ok_idx.size:
            s_ok = np.zeros_like(s)
            s_ok[ok_idx] = s[ok_idx]
            s_ok = self.e.confirmed_first(self.objects, s_ok, self.cfg.min_score)
            idx = ok_idx[np.argsort(-s_ok[ok_idx], kind="stable")]
            idx = idx[s_ok[idx] >= self.cfg.min_score] if (s_ok[idx] >= self.cfg.min_score).any() else idx
            if ground and d.order is None and idx.size > 1 and s_ok[idx[1]] >= self.cfg.grounder_tie * s_ok[idx[0]]:
                g = self.e.grounded(self.objects, text, idx, s, self.viewpoint)
                if g is not None:
                    idx = idx[np.argsort(-g, kind="stable")]
                    s_ok[idx] = np.sort(g)[::-1]
            # then the near misses (failing some part of the description), for a planner's fallback and R@k
            rest = [i for i in np.argsort(-s, kind="stable") if not ok[i] and s[i] >= self.cfg.min_score]
            order = list(idx) + rest
            s_ok[rest] = s[rest]
            return _Pick(order, [float(min(max(s_ok[i], 0.0), 1.0)) for i in order], True)
        named, _ = self.res.label(d.noun)
        pool = np.nonzero((named > 0) & self.allowed)[0]
        g = self.e.grounded(self.objects, text, pool, s, self.viewpoint) if pool.size and ground else None
        if g is not None:
            o = pool[np.argsort(-g, kind="stable")]
            return _Pick(list(o), [float(x) for x in np.sort(g)[::-1]], False,
                         "nothing satisfies every part of the description in the map; the grounding model's best "
                         "guess")
        best = int(np.argmax(s)) if s.size else -1
        if best >= 0 and s[best] >= self.cfg.achievable_score:
            order = [i for i in np.argsort(-s, kind="stable") if s[i] >= self.cfg.min_score]
            return _Pick(order, [float(s[i]) for i in order], False,
                         "nothing satisfies every part of the description; the closest match")
        return _Pick([], [], False)

    def caveat(self, i: int, d: Desc) -> str:
        noun = d.noun
        if noun is None:
            return ""
        _, how = self.res.label(noun)
        return A.caveat(self.objects[i], noun, how[i])

    def support(self, d: Desc, i: int) -> list[SpatialRelation]:
        """For object i, the best-supported relation of each (non-negated) relation of the description."""
        out = []
        for rel in d.relations:
            if rel.negated:
                continue
            try:
                a = self.res.anchors(rel)
            except (NotInMap, NeedsViewpoint):
                continue
            cols = np.nonzero(a.ok if a.ok.any() else a.score > 0)[0]
            cols = cols[cols != i]
            preds = tuple(p for p in rel.predicates if not rel.converse or p in CONVERSE)
            if not cols.size or not preds:
                continue
            if rel.converse:  # "the shelf with a mug on it": told as the object's own relation ("under mug #4")
                conf = {CONVERSE[p]: c.T for p, c in pairwise_confidences(
                    self.res.boxes, self.viewpoint, self.e.pred_cfg, preds, cols, [i]).items()}
                preds = tuple(CONVERSE[p] for p in preds)
            else:
                conf = pairwise_confidences(self.res.boxes, self.viewpoint, self.e.pred_cfg, preds, [i], cols)
            p, j = max(((p, j) for p in preds for j in range(cols.size)),
                       key=lambda pj: conf[pj[0]][0, pj[1]] * a.score[cols[pj[1]]])
            if conf[p][0, j] >= HOLDS:  # only what holds supports the answer
                ref = self.viewpoint.frame_id if (p in VIEW_DEPENDENT and self.viewpoint is not None) else ""
                out.append(SpatialRelation(self.objects[i].id, p, self.objects[cols[j]].id, float(conf[p][0, j]), ref))
        return out

    def not_found(self, kind: str, d: Desc) -> QueryResult:
        what = d.noun or "object"
        return QueryResult(success=True, achievable=False, kind=kind,
                           answer=f"no {what} in the map matches '{d.text or self.text}'")

    def anchors_mapped(self, d: Desc) -> bool:
        """Whether what ``d`` relates its noun to names something in the map, as the resolver reads it (relations
        with their alternatives, between, comparisons, a superlative's anchor): ``d`` evaluated for any object.
        "is the book on the skateboard?" with neither mapped has no premise to answer no to."""
        try:
            self.res.evaluate(replace(d, noun=None, one=False, readings=[]), self.allowed)
        except NotInMap:
            return False
        except NeedsViewpoint:  # the anchors were found; the relation only wants a viewer
            pass
        return True

    def not_in_map(self, q: Query, e: NotInMap, kind: str) -> QueryResult:
        """The honest answer when a noun names nothing in the map."""
        noun = e.noun
        labels = sorted({o.label for o in self.objects if o.kind != "structure"})
        seen = f" (mapped: {', '.join(labels[:15])}{', ...' if len(labels) > 15 else ''})" if labels else \
            " (the map is empty)"
        if e.role == "anchor":
            why = f"there is no {noun} in the map to relate to, so '{self.text}' cannot be answered{seen}"
        elif e.known:
            why = f"there is no {noun} in the map: no object is labelled {noun} or anything similar{seen}"
        else:
            why = f"I do not know '{noun}': no object in the map is labelled so or anything similar{seen}"
        if q.kind == "count" and e.known:
            what = noun if e.role == "target" else (q.target.noun or "object")
            return QueryResult(success=True, achievable=True, kind="count", numeric=0.0, confidence=1.0,
                               answer=f"0 {A.plural(what, 0)}: {why}")
        if q.kind == "exists":
            # "is there a toaster?" with no toaster mapped: no, as a count of them is 0; a missing anchor ("is the bed
            # on the toothbrush?") leaves the question without its premise, and an unknown word without a meaning
            sure = e.known and e.role == "target" and self.anchors_mapped(q.target)
            return QueryResult(success=True, achievable=sure, kind="exists", numeric=0.0, answer=f"no: {why}",
                               confidence=1.0 if sure else 0.0)
        if self.e.grounder is not None and q.kind in ("find", "where") and e.role == "target":
            rescued = self.unnamed(q, noun)
            if rescued is not None:
                return rescued
        if self.e.grounder is not None and q.kind in ("find", "where") and e.role == "anchor" and \
                self.e.knows(noun):
            return self.without_anchor(q, noun, kind)
        return QueryResult(success=True, achievable=False, kind=kind, answer=why)

    def unreadable_anchor(self, d: Desc) -> str | None:
        """An anchor of ``d`` that neither the map nor the grounder knows (no rescue may ignore it)."""
        for rel in d.relations:
            for a in [rel.anchor] + rel.alternatives:
                if a.noun is not None and not self.res.label(a.noun)[0].any() and not self.e.knows(a.noun):
                    return a.noun
        return None

    def unnamed(self, q: Query, noun: str) -> QueryResult | None:
        """A noun of the grounder's vocabulary that names no object: its best match among the unnamed objects."""
        if not self.e.knows(noun) or self.unreadable_anchor(q.target) is not None:
            return None
        pool = np.array([i for i, o in enumerate(self.objects) if normalise_label(o.label) == self.cfg.unnamed_label
                         and self.allowed[i]], dtype=np.int64)
        g = self.e.grounded(self.objects, self.text, pool, np.zeros(len(self.objects)), self.viewpoint)
        if g is None:
            return None
        o = pool[np.argsort(-g, kind="stable")][: self.k_one]
        best = self.objects[o[0]]
        return QueryResult(success=True, achievable=True, kind="where" if q.kind == "where" else "find",
                           object_ids=[self.objects[i].id for i in o],
                           scores=[float(x) for x in np.sort(g)[::-1][:len(o)]], confidence=float(np.max(g)) * 0.5,
                           answer=f"{A.at(best)} (no object is labelled {noun}: the best match among the unnamed "
                                  f"objects)")

    def without_anchor(self, q: Query, anchor: str, kind: str) -> QueryResult:
        """With a grounder, an anchor the map lacks does not block a find: the grounder reads the whole phrase."""
        d = q.target
        kept = Desc(noun=d.noun, plural=d.plural, colors=d.colors, not_colors=d.not_colors, sizes=d.sizes,
                    not_sizes=d.not_sizes, text=d.text)
        try:
            p = self.pick(kept)
        except (NotInMap, NeedsViewpoint):
            p = _Pick([], [], False)
        named, _ = self.res.label(d.noun)
        pool = np.array([i for i in p.order if named[i] > 0], dtype=np.int64)
        g = self.e.grounded(self.objects, self.text, pool, np.zeros(len(self.objects)), self.viewpoint)
        if g is None:
            return QueryResult(success=True, achievable=False, kind=kind,
                               answer=f"there is no {anchor} in the map to relate to, so '{self.text}' cannot be "
                                      f"answered")
        o = pool[np.argsort(-g, kind="stable")][: self.k_one]
        best = self.objects[o[0]]
        return QueryResult(success=True, achievable=True, kind=kind, object_ids=[self.objects[i].id for i in o],
                           scores=[float(x) for x in np.sort(g)[::-1][:len(o)]], confidence=float(np.max(g)) * 0.5,
                           answer=f"{A.at(best)}{self.caveat(int(o[0]), d)} (there is no {anchor} in the map: the "
                                  f"grounding model's best guess from the rest of the description)")

    # ------------------------------------------------------------------------------------------ kinds
    def find(self, q: Query, kind: str = "find") -> QueryResult:
        d = q.target
        if d.quantifier == "every" or (d.plural and d.order is None and kind == "find"):
            return self.related(q, kind=kind)
        p = self.pick(d)
        if not p.order:
            return self.not_found(kind, d)
        k = self.k_one
        i = p.order[0]
        best = self.objects[i]
        supp = self.support(d, i)
        if kind == "where":
            placed = A.place(self.objects, i, self.e.pred_cfg)
            if placed is not None and not any(r.predicate == placed.predicate and r.object_id == placed.object_id
                                              for r in supp):
                supp = [placed] + supp
        desc = ", ".join(A.relation_text(r, self.by_id) for r in supp)
        note = f" ({p.note})" if p.note else ""
        answer = A.at(best) + (f", {desc}" if desc else "") + self.caveat(i, d) + note
        conf = p.scores[0] * (1.0 if p.exact else 0.5)
        return QueryResult(success=True, achievable=True, kind=kind, answer=answer,
                           object_ids=[self.objects[j].id for j in p.order[:k]], scores=p.scores[:k],
                           supporting=supp, confidence=float(min(max(conf, 0.0), 1.0)))

    def where(self, q: Query) -> QueryResult:
        return self.find(q, kind="where")

    def hits(self, ev) -> tuple[list[int], str]:
        """The objects satisfying a description, best first, that count as evidence, and a note on tentative ones
        ("" when none): as for a find, tentative objects count only when no confirmed one satisfies it (unless
        count_tentative)."""
        hits = sorted((int(i) for i in np.nonzero(ev.ok)[0]), key=lambda i: -ev.score[i])
        seen_once = [i for i in hits if self.res.tentative[i]]
        if self.cfg.count_tentative or not seen_once:
            return hits, ""
        names = A.listing([self.objects[i] for i in seen_once], 6)
        if len(seen_once) == len(hits):
            return hits, f" (seen in too few keyframes to be sure: {names})"
        return [i for i in hits if not self.res.tentative[i]], \
            f" (not counted, seen in too few keyframes to be sure: {names})"

    def own_label(self, d: Desc, ev: Evaluated) -> Evaluated:
        """``ev`` less the objects the noun names only through a secondary label (label_candidates): an object is
        one thing, so a chair the model thought might also be a table is not also a table when counting or
        deciding whether there is one."""
        _, how = self.res.label(d.noun)
        return Evaluated(ev.score, ev.ok & np.array([h is None or h.how != "candidate" for h in how], dtype=bool))

    def exists(self, q: Query) -> QueryResult:
        d = q.target
        ev = self.own_label(d, self.res.evaluate(d, self.allowed))
        hits, unsure = self.hits(ev)
        if q.quantity is not None:
            return self.quantity(q, hits, ev, unsure)
        if hits:
            i = hits[0]
            supp = self.support(d, i)
            desc = ", ".join(A.relation_text(r, self.by_id) for r in supp)
            more = f" ({len(hits)} in all: {A.listing([self.objects[j] for j in hits])})" if len(hits) > 1 else ""
            return QueryResult(success=True, achievable=True, kind="exists", numeric=1.0,
                               answer=f"yes: {A.at(self.objects[i])}" + (f", {desc}" if desc else "")
                                      + self.caveat(i, d) + more + unsure,
                               object_ids=[self.objects[j].id for j in hits[: self.k_all]],
                               scores=[float(min(ev.score[j], 1.0)) for j in hits[: self.k_all]], supporting=supp,
                               confidence=float(min(ev.score[i], 1.0)) * (0.5 if self.res.tentative[i] else 1.0))
        named, _ = self.res.label(d.noun)
        cands = [self.objects[j] for j in np.nonzero((named > 0) & self.allowed)[0]]
        what = d.noun or "object"
        mapped = f" ({len(cands)} {A.plural(what, len(cands))} mapped: {A.listing(cands, 6)})" if cands and \
            (d.relations or d.colors or d.not_colors or d.sizes or d.excluded or d.order) else ""
        near_miss = float(ev.score.max(initial=0.0))
        return QueryResult(success=True, achievable=True, kind="exists", numeric=0.0,
                           answer=f"no: nothing in the map is {d.text or what}{mapped}",
                           confidence=float(min(max(1.0 - near_miss, 0.0), 1.0)))

    def quantity(self, q: Query, hits: list[int], ev: Evaluated, unsure: str) -> QueryResult:
        """"are there more than two chairs?": the count (as a count takes it) against the number asked."""
        hits, _ = self.res.distinct(hits, self.cfg.duplicate_iou)
        op, k = q.quantity
        n = len(hits)
        holds = {"gt": n > k, "ge": n >= k, "lt": n < k, "le": n <= k, "eq": n == k}[op]
        what = q.target.noun or "object"
        listed = f": {A.listing([self.objects[j] for j in hits])}" if hits else ""
        return QueryResult(success=True, achievable=True, kind="exists", numeric=float(holds),
                           answer=f"{'yes' if holds else 'no'}: {n} {A.plural(what, n)}{listed}{unsure}",
                           object_ids=[self.objects[j].id for j in hits[: self.k_all]] if holds else [],
                           scores=[float(min(ev.score[j], 1.0)) for j in hits[: self.k_all]] if holds else [],
                           confidence=1.0 if not unsure else 0.5)

    def count(self, q: Query) -> QueryResult:
        """Counts the objects the description names under their own label (own_label), confirmed ones first (hits),
        boxes overlapping that much once (distinct); the answer says how many views support each."""
        d = q.target
        ev = self.own_label(d, self.res.evaluate(d, self.allowed))
        named, _ = self.res.label(d.noun)
        hits, notes = self.hits(ev)
        hits, twins = self.res.distinct(hits, self.cfg.duplicate_iou)
        if twins:
            notes += " (counted once, their boxes overlapping: " + ", ".join(
                f"{A.name(self.objects[i])} and {A.name(self.objects[j])}" for i, j in twins) + ")"
        cand = np.nonzero((named > 0) & self.allowed)[0]
        # how clearly each candidate is in (its score) or out (1 - its score) of the count
        clear = [ev.score[j] if ev.ok[j] else 1.0 - min(ev.score[j], 1.0) for j in cand]
        what = d.noun or "object"
        n = len(hits)
        listed = f": {A.listing([self.objects[j] for j in hits], views=True)}" if hits else ""
        return QueryResult(success=True, achievable=True, kind="count", numeric=float(n),
                           answer=f"{n} {A.plural(what, n)}{listed}{notes}",
                           object_ids=[self.objects[j].id for j in hits[: self.k_all]],
                           scores=[float(min(ev.score[j], 1.0)) for j in hits[: self.k_all]],
                           confidence=float(np.clip(np.mean(clear), 0.0, 1.0)) if clear else 1.0)

    def related(self, q: Query, kind: str = "related") -> QueryResult:
        d = q.target
        ev = self.res.evaluate(d, self.allowed)
        hits, unsure = self.hits(ev)
        hits = hits[: self.k_all]
        if not hits:
            return QueryResult(success=True, achievable=True, kind=kind, confidence=1.0,
                               answer=f"nothing in the map is {d.text or 'so'}")
        supp = self.support(d, hits[0])
        caveats = "".join(dict.fromkeys(self.caveat(j, d) for j in hits))
        return QueryResult(success=True, achievable=True, kind=kind,
                           answer=f"{len(hits)} ({d.text}): {A.listing([self.objects[j] for j in hits])}{caveats}"
                                  f"{unsure}",
                           object_ids=[self.objects[j].id for j in hits],
                           scores=[float(min(ev.score[j], 1.0)) for j in hits], supporting=supp,
                           confidence=float(np.mean([min(ev.score[j], 1.0) for j in hits])))

    def attribute(self, q: Query) -> QueryResult:
        d = q.target
        if d.plural or d.quantifier == "every":
            ev = self.res.evaluate(d, self.allowed)
            idx = sorted((int(i) for i in np.nonzero(ev.ok)[0]), key=lambda i: -ev.score[i])
            p = _Pick(idx, [float(min(ev.score[i], 1.0)) for i in idx], True)
        else:
            p = self.pick(d)
            p = _Pick(p.order[:1], p.scores[:1], p.exact, p.note)
        if not p.order:
            return self.not_found("attribute", d)
        parts, values = [], []
        for i in p.order:
            o = self.objects[i]
            if q.attribute == "color":
                c = self.res.colors()[i]
                parts.append(f"{A.name(o)} is {c}" if c else f"{A.name(o)} has no colour recorded")
                values.append(math.nan)
            elif q.attribute == "height":
                values.append(float(o.box.size[2]))
                parts.append(f"{A.name(o)} is {values[-1]:.2f} m tall")
            elif q.attribute == "width":
                values.append(float(max(o.box.size[0], o.box.size[1])))
                parts.append(f"{A.name(o)} is {values[-1]:.2f} m wide (its largest horizontal extent)")
            else:
                sz = o.box.size
                values.append(float(np.max(sz)))
                parts.append(f"{A.name(o)} is {values[-1]:.2f} m at its largest ({sz[0]:.2f} x {sz[1]:.2f} x "
                             f"{sz[2]:.2f} m)")
        note = f" ({p.note})" if p.note else ""
        i = p.order[0]
        return QueryResult(success=True, achievable=True, kind="attribute", numeric=values[0],
                           answer="; ".join(parts) + self.caveat(i, d) + note,
                           object_ids=[self.objects[j].id for j in p.order], scores=p.scores,
                           confidence=float(p.scores[0] * (1.0 if p.exact else 0.5)))

    def distance(self, q: Query) -> QueryResult:
        a = self.pick(q.target)
        if not a.order:
            return self.not_found("distance", q.target)
        i = a.order[0]
        ci = self.objects[i].box.center
        if q.other == "viewer":
            if self.viewpoint is None:
                raise NeedsViewpoint("how far from the viewer")
            d = float(np.linalg.norm(ci - np.asarray(self.viewpoint.position, dtype=np.float64)))
            return QueryResult(success=True, achievable=True, kind="distance", numeric=d,
                               answer=f"{d:.2f} m from the viewer to {A.name(self.objects[i])} (its box centre)"
                                      + self.caveat(i, q.target),
                               object_ids=[self.objects[i].id], scores=a.scores[:1],
                               confidence=float(a.scores[0] * (1.0 if a.exact else 0.5)))
        if q.other == "pair":  # "the distance between the two monitors": the description's best two
            b = _Pick([x for x in a.order if x != i], a.scores[1:], a.exact)
            if not b.order:
                return QueryResult(success=True, achievable=False, kind="distance",
                                   answer=f"only one object matches '{q.target.text}': a distance needs two")
        else:
            b = self.pick(q.other, ground=False)  # one grounding-head call per query: the rules pick the second
        if not b.order:
            return self.not_found("distance", q.other)
        j = b.order[0]
        if j == i:
            j = next((x for x in b.order[1:] if x != i), None)
            if j is None:
                return QueryResult(success=True, achievable=False, kind="distance",
                                   answer="both phrases name the same object")
        d = float(np.linalg.norm(ci - self.objects[j].box.center))
        return QueryResult(success=True, achievable=True, kind="distance", numeric=d,
                           answer=f"{d:.2f} m between {A.name(self.objects[i])} and {A.name(self.objects[j])} (box "
                                  f"centres)" + self.caveat(i, q.target)
                                  + self.caveat(j, q.target if q.other == "pair" else q.other),
                           object_ids=[self.objects[i].id, self.objects[j].id], scores=[a.scores[0], b.scores[0]],
                           confidence=float(min(a.scores[0], b.scores[0]) * (1.0 if a.exact and b.exact else 0.5)))


def _allowed(objects: list[SceneObject], excluded, center, radius) -> np.ndarray:
    """(N,) bool: objects not excluded and, when a search region is given, with their box centre inside it."""
    return np.array([o.id not in excluded and (center is None or np.linalg.norm(o.box.center - center) <= radius)
                     for o in objects], dtype=bool)
