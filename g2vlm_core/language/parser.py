"""The query grammar (lark, Earley) over the tagger's tokens, and the query structure it builds.

Why a grammar rather than regular expressions: a planner's query nests (a referring expression inside a
count, a distance or an attribute question; relative clauses joined by "and"; an appositive "a box, the one
nearest to the table"), and a grammar states each form once where regular expressions had to repeat the noun
phrase in every question pattern. Lark is a dependency already (rosidl uses it); its Earley parser accepts the
ambiguous, permissive grammar natural language needs. It parses the tagger's tokens, not characters, so the
grammar never lists a word: the lexicon does (lexicon.py). Parses are cached by the sequence of token types.

Relations attach to the head noun (flat, as the synthetic ground truth's programs do): in "the mug on the table
left of the laptop" the mug is on the table and left of the laptop.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from threading import Lock

from lark import Lark, Token, Tree
from lark.exceptions import LarkError
from lark.lexer import Lexer

from .lexicon import ASSOCIATION
from .normalize import Tok

GRAMMAR = r"""
start: find_q | where_q | exists_q | count_q | color_q | measure_q | dist_q | related_q | list_q

find_q: np (FROM anchor)?
      | WH np
      | WH BE np
      | WH OF np
where_q: WHERE BE? np BE?
       | LOCATION np
exists_q: THEREIS np
        | THERE BE np
        | SEE np
        | BE np
        | BE THERE np
        | BE np attr
count_q: COUNT np count_tail*
count_tail: BE | THEREIS | SEE | THERE
color_q: WH COLORW BE? np
       | WH BE? COLORW OF np
       | COLORW OF np
       | np POSS? COLORW
       | WH BE np POSS COLORW
measure_q: MEASURE BE? np
         | WH? BE? MEASUREOF np
dist_q: HOWFAR BE? np (FROM | TO) other
      | HOWFAR BE? np
      | HOWFARAPART BE? np AND np
      | HOWFAR BE? np AND np APART?
      | WH? BE? DISTBETWEEN np AND np
      | WH? BE? DISTFROM other (TO | AND) other
      | WH? BE? DISTTO np
      | WH? BE? DISTANCE (FROM | OF | BETWEEN)? other (TO | AND | FROM) other
related_q: WH BE? post+
list_q: LIST np

np: core post* appos*
core: poss? det? premod* head
    | poss? det? premod* ONE   -> core_one
    | det? ORD? (SUP | SIDE) ONE? OF det? premod* head  -> core_partitive
poss: anchor POSS
det: DET | ALL | ALL DET | ANY | NUM | DET NUM | ALL NUM
premod: COLOR | SIZE | NEG COLOR | NEG SIZE | SUP | ORD | SIDE | RELADJ | NOUN | WORD
head: NOUN | WORD | OBJ
post: BE? REL anchor (OR anchor)*         -> rel_post
    | BE? RELADJ anchor                   -> rel_post
    | BE? NEG REL anchor (OR anchor)*     -> neg_rel_post
    | THAT clause (AND THAT? clause)*     -> relcl
    | EXCEPT xnp                          -> except_post
    | BE? SUP (TO | FROM | OF)? other     -> sup_post
    | BE DET? SUP                         -> sup_post
    | SIDEPOST                            -> side_post
    | FROMSIDE                            -> fromside_post
    | BE? NEG? COLOR                      -> color_post
    | BE? NEG? SIZE                       -> color_post
    | TO other                            -> to_post
    | AND post                            -> and_post
clause: BE? NEG? REL anchor (OR anchor)*  -> clause_rel
      | BE? NEG? COLOR                    -> clause_color
      | BE? NEG? SIZE                     -> clause_size
      | BE? SUP ((TO | FROM | OF)? other)?  -> clause_sup
      | BE? SIDEPOST                      -> clause_side
      | BE? FROMSIDE                      -> clause_fromside
appos: COMMA DET? ONE post+               -> appos_one
     | COMMA anchor                       -> appos_assoc
xnp: det? premod* (head | ONE) post*
anchor: det? apremod* head
apremod: COLOR | SIZE | SUP | ORD | SIDE | NOUN | WORD
other: np | ME
attr: NEG? COLOR | NEG? SIZE

%declare FROM WH WHERE BE LOCATION THEREIS THERE SEE COUNT COLORW OF POSS HOWFAR TO HOWFARAPART AND APART
%declare DISTBETWEEN DISTFROM DISTTO DISTANCE BETWEEN LIST DET ALL ANY NUM COLOR SIZE NEG SUP ORD SIDE RELADJ
%declare NOUN WORD OBJ ONE REL THAT EXCEPT SIDEPOST FROMSIDE COMMA ME HOWBIG HOWTALL HOWWIDE SIZEQ SIZEOF
%declare MEASURE MEASUREOF OR
"""
MEASURE_OF_TAG = {"HOWBIG": "size", "SIZEQ": "size", "SIZEOF": "size", "HOWTALL": "height", "HEIGHTOF": "height",
                  "HOWWIDE": "width", "WIDTHOF": "width"}


class ParseError(ValueError):
    """The tokens fit no form of the query grammar."""


# ------------------------------------------------------------------------------------------------ structure
@dataclass
class Order:
    """A superlative or ordinal: the ``rank``-th object (1 = the extreme, -1 = the last) along ``measure``."""

    measure: str  # dist | volume | height | width | z | right | front
    direction: str  # min | max | mid
    rank: int = 1
    anchor: "Desc | str | None" = None  # a description, "viewer", or None (dist: the viewer)


@dataclass
class Relation:
    predicates: tuple[str, ...]
    anchor: "Desc"
    negated: bool = False
    text: str = ""
    alternatives: list["Desc"] = field(default_factory=list)  # "on the desk or the shelf": any of the anchors


@dataclass
class Desc:
    """A noun phrase: which objects it describes."""

    noun: str | None = None  # normalised noun as asked; None = any object
    plural: bool = False
    quantifier: str = ""  # "every" (every / all / each), "any", or ""
    colors: list[str] = field(default_factory=list)
    not_colors: list[str] = field(default_factory=list)
    sizes: list[str] = field(default_factory=list)
    not_sizes: list[str] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    excluded: list["Desc"] = field(default_factory=list)
    order: Order | None = None
    modifiers: list[str] = field(default_factory=list)  # nouns before the head ("couch" in "couch phone")
    one: bool = False  # the head was "one" / "ones": the noun comes from the phrase it refers back to
    text: str = ""


@dataclass
class Query:
    kind: str  # find | where | exists | count | related | attribute | distance | list
    target: Desc | None = None
    other: "Desc | str | None" = None  # distance: the second object, or "viewer"
    attribute: str = ""  # attribute questions: color | size | height | width
    question: bool = False


# ------------------------------------------------------------------------------------------------ parsing
class _IndexLexer(Lexer):
    """Feeds lark the tagger's tokens; each token's value is its index into the token list."""

    def __init__(self, lexer_conf):
        pass

    def lex(self, data):
        for i, typ in enumerate(data):
            yield Token(typ, str(i))


class QueryParser:
    """Tokens -> Query. Thread-safe; caches parse trees by the token-type sequence."""

    def __init__(self, cache_size: int = 1024):
        self._lark = Lark(GRAMMAR, parser="earley", lexer=_IndexLexer, ambiguity="resolve")
        self._cache: OrderedDict[tuple[str, ...], Tree | None] = OrderedDict()
        self._lock = Lock()
        self.cache_size = cache_size

    def _tree(self, types: tuple[str, ...]) -> Tree | None:
        with self._lock:
            if types in self._cache:
                self._cache.move_to_end(types)
                return self._cache[types]
        try:
            tree = self._lark.parse(list(types))
        except LarkError:
            tree = None
        with self._lock:
            self._cache[types] = tree
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return tree

    def parse(self, toks: list[Tok], question: bool = False) -> Query:
        """The query the tokens state; ParseError when they fit no form of the grammar."""
        if not toks:
            raise ParseError("nothing to look for")
        types = tuple("MEASURE" if t.type in ("HOWBIG", "HOWTALL", "HOWWIDE", "SIZEQ") else
                      "MEASUREOF" if t.type in ("SIZEOF", "HEIGHTOF", "WIDTHOF") else t.type for t in toks)
        tree = self._tree(types)
        if tree is None:
            raise ParseError("the words do not form a question or a description of an object")
        return _Builder(toks, question).query(tree.children[0])


class _Builder:
    """Walks a parse tree into a Query; token values come from the tagger's tokens by index."""

    def __init__(self, toks: list[Tok], question: bool):
        self.toks, self.question = toks, question

    # helpers --------------------------------------------------------------------------------------
    def tok(self, t: Token) -> Tok:
        return self.toks[int(t)]

    def tokens(self, node) -> list[Tok]:
        if isinstance(node, Token):
            return [self.tok(node)]
        return [x for c in node.children for x in self.tokens(c)]

    def text(self, node) -> str:
        return " ".join(t.text for t in self.tokens(node) if t.text)

    @staticmethod
    def sub(node: Tree, name: str) -> list[Tree]:
        return [c for c in node.children if isinstance(c, Tree) and c.data == name]

    @staticmethod
    def terms(node: Tree) -> list[Token]:
        return [c for c in node.children if isinstance(c, Token)]

    # queries --------------------------------------------------------------------------------------
    def query(self, q: Tree) -> Query:
        kind = q.data
        nps = [self.np(c) for c in self.sub(q, "np")]
        others = [self.other(c) for c in self.sub(q, "other")]
        types = [t.type for t in self.terms(q)]
        if kind == "find_q":
            target = nps[0]
            anchors = self.sub(q, "anchor")
            if anchors:  # "the book from the cabinet"
                target.relations.append(Relation(ASSOCIATION, self.anchor(anchors[0]), text="from"))
            if "WH" in types and target.noun is None and target.order is None:
                return Query("related", target, question=self.question)  # "which things are on the desk"
            if "WH" in types and target.plural and target.order is None:
                return Query("related", target, question=self.question)  # "which mugs are on the desk"
            first = self.tokens(q)[0]
            if self.question and (first.type == "ANY" or first.text in ("anything", "something")):
                return Query("exists", target, question=True)  # "any boxes on the floor?", "anything on it?"
            return Query("find", target, question=self.question)
        if kind == "where_q":
            return Query("where", nps[0], question=self.question)
        if kind == "exists_q":
            target = nps[0]
            for a in self.sub(q, "attr"):
                self.attr(a, target)
            return Query("exists", target, question=True)
        if kind == "count_q":
            return Query("count", nps[0], question=self.question)
        if kind == "color_q":
            return Query("attribute", nps[0], attribute="color", question=self.question)
        if kind == "measure_q":
            tag = next(self.tok(t).type for t in self.terms(q) if t.type in ("MEASURE", "MEASUREOF"))
            return Query("attribute", nps[0], attribute=MEASURE_OF_TAG[tag], question=self.question)
        if kind == "dist_q":
            items: list = []
            for c in q.children:
                if isinstance(c, Tree) and c.data == "np":
                    items.append(self.np(c))
                elif isinstance(c, Tree) and c.data == "other":
                    items.append(self.other(c))
            if len(items) == 1:
                items.append("viewer")
            a, b = items[0], items[1]
            if a == "viewer":
                a, b = b, a
            if a == "viewer":
                raise ParseError("a distance needs an object")
            return Query("distance", a, other=b, question=self.question)
        if kind == "related_q":
            posts = [c for c in q.children if isinstance(c, Tree)]
            target = Desc(text=" ".join(self.text(p) for p in posts))
            for p in posts:
                self.post(p, target)
            return Query("related", target, question=self.question)
        if kind == "list_q":
            return Query("related", nps[0], question=self.question)
        raise ParseError(f"unknown query form {kind}")  # the grammar has no other forms

    def other(self, node: Tree):
        c = node.children[0]
        if isinstance(c, Token):
            return "viewer"
        return self.np(c)

    # noun phrases ---------------------------------------------------------------------------------
    def np(self, node: Tree) -> Desc:
        core = node.children[0]
        d = self.core(core)
        d.text = self.text(node)
        for c in node.children[1:]:
            if c.data == "appos_one":
                for p in c.children:
                    if isinstance(p, Tree):
                        self.post(p, d)
            elif c.data == "appos_assoc":
                d.relations.append(Relation(ASSOCIATION, self.anchor(c.children[-1]), text=","))
            else:
                self.post(c, d)
        return d

    def core(self, node: Tree) -> Desc:
        d = Desc(one=node.data == "core_one")
        poss = None
        mods: list[tuple[bool, Tok]] = []  # (negated, modifier token) before the noun, in order
        for c in node.children:
            if isinstance(c, Token):  # ONE, or the words of a partitive ("the second biggest of the boxes")
                t = self.tok(c)
                if t.type == "ONE":
                    d.plural = t.value == "ones"
                elif t.type != "OF":
                    mods.append((False, t))
            elif c.data == "poss":
                poss = self.anchor(c.children[0])
            elif c.data == "det":
                self.det(c, d)
            elif c.data == "premod":
                toks = self.tokens(c)
                mods.append((toks[0].type == "NEG", toks[-1]))
            elif c.data == "head":
                t = self.tokens(c)[0]
                if t.type in ("NOUN", "WORD"):
                    d.noun, d.plural = t.value
                else:
                    d.plural = t.text.endswith("s") or t.text in ("everything", "stuff")
        sup = side = reladj = None
        rank = 0
        for neg, t in mods:
            if t.type == "COLOR":
                (d.not_colors if neg else d.colors).append(t.value)
            elif t.type == "SIZE":
                (d.not_sizes if neg else d.sizes).append(t.value)
            elif t.type == "SUP":
                sup = t.value
            elif t.type == "SIDE":
                side = t.value
            elif t.type == "ORD":
                rank = t.value
            elif t.type == "RELADJ":
                reladj = t.value
            else:  # a noun before the head: "couch phone", "kitchen sink"
                d.modifiers.append(t.value[0])
        if sup or side or rank:
            measure, direction = sup or side or ("right", "min")
            d.order = Order(measure, direction, rank or 1)
        if poss is not None:
            if d.order is not None and d.order.measure == "dist":
                d.order.anchor = poss  # "the table's closest chair"
            else:
                d.relations.append(Relation(reladj or ASSOCIATION, poss, text="'s"))
        elif reladj:
            d.order = d.order or Order("dist", "min")  # "the nearby box": the nearest
        return d

    def det(self, node: Tree, d: Desc) -> None:
        for t in self.tokens(node):
            if t.type == "ALL":
                d.quantifier, d.plural = "every", True
            elif t.type == "ANY" and not d.quantifier:
                d.quantifier = "any"
            elif t.type == "DET" and t.value in ("these", "those"):
                d.plural = True

    def anchor(self, node: Tree) -> Desc:
        """An anchor is a noun phrase without modifiers after its noun: read as a core."""
        d = self.core(Tree("core", [Tree("premod", c.children) if c.data == "apremod" else c for c in node.children]))
        d.text = self.text(node)
        return d

    def attr(self, node: Tree, d: Desc) -> None:
        toks = self.tokens(node)
        neg = any(t.type == "NEG" for t in toks)
        t = toks[-1]
        if t.type == "COLOR":
            (d.not_colors if neg else d.colors).append(t.value)
        else:
            (d.not_sizes if neg else d.sizes).append(t.value)

    def _set_order(self, d: Desc, value: tuple[str, str], anchor=None) -> None:
        measure, direction = value
        if d.order is None:
            d.order = Order(measure, direction, 1, anchor)
        else:  # an ordinal or a side before the noun, the measure after it: "the second chair from the left"
            if d.order.measure == "right" and d.order.direction == "min" and not (measure == "right"):
                d.order.measure, d.order.direction = measure, direction
            elif measure == "right" or measure == "front":
                d.order.measure, d.order.direction = measure, direction
            if anchor is not None:
                d.order.anchor = anchor

    def post(self, node: Tree, d: Desc) -> None:
        kind = node.data
        toks = self.terms(node)
        if kind in ("rel_post", "neg_rel_post"):
            rel = next(self.tok(t) for t in toks if t.type in ("REL", "RELADJ"))
            anchors = [self.anchor(a) for a in self.sub(node, "anchor")]
            d.relations.append(Relation(rel.value, anchors[0], kind == "neg_rel_post", rel.text, anchors[1:]))
        elif kind == "color_post":
            self.attr(node, d)
        elif kind == "relcl":
            for c in node.children:
                if isinstance(c, Tree):
                    self.clause(c, d)
        elif kind == "except_post":
            d.excluded.append(self.xnp(self.sub(node, "xnp")[0]))
        elif kind == "sup_post":
            sup = next(self.tok(t) for t in toks if t.type == "SUP")
            others = self.sub(node, "other")
            self._set_order(d, sup.value, self.other(others[0]) if others else None)
        elif kind in ("side_post", "fromside_post"):
            self._set_order(d, self.tok(toks[0]).value)
            if kind == "side_post" and d.order.rank == -1:
                d.order.rank = 1  # "the last chair on the right": the one at the right end
        elif kind == "to_post":
            other = self.other(self.sub(node, "other")[0])
            if d.order is not None and d.order.measure == "dist":
                d.order.anchor = other  # "the closest chair to the table"
            elif isinstance(other, Desc):
                d.relations.append(Relation(("near",), other, text="to"))
        elif kind == "and_post":
            for c in node.children:
                if isinstance(c, Tree):
                    self.post(c, d)
        else:
            raise ParseError(f"unknown modifier {kind}")  # the grammar has no other forms

    def clause(self, node: Tree, d: Desc) -> None:
        toks = [self.tok(t) for t in self.terms(node)]
        neg = any(t.type == "NEG" for t in toks)
        if node.data == "clause_rel":
            rel = next(t for t in toks if t.type == "REL")
            anchors = [self.anchor(a) for a in self.sub(node, "anchor")]
            d.relations.append(Relation(rel.value, anchors[0], neg, rel.text, anchors[1:]))
        elif node.data == "clause_color":
            (d.not_colors if neg else d.colors).append(next(t.value for t in toks if t.type == "COLOR"))
        elif node.data == "clause_size":
            (d.not_sizes if neg else d.sizes).append(next(t.value for t in toks if t.type == "SIZE"))
        elif node.data == "clause_sup":
            sup = next(t for t in toks if t.type == "SUP")
            others = self.sub(node, "other")
            self._set_order(d, sup.value, self.other(others[0]) if others else None)
        else:
            self._set_order(d, next(t.value for t in toks if t.type in ("SIDEPOST", "FROMSIDE")))
            if node.data == "clause_side" and d.order.rank == -1:
                d.order.rank = 1

    def xnp(self, node: Tree) -> Desc:
        parts = ("det", "premod", "head")
        fake = Tree("core_one" if any(isinstance(c, Token) for c in node.children) else "core",
                    [c for c in node.children if isinstance(c, Token) or c.data in parts])
        d = self.core(fake)
        d.text = self.text(node)
        for c in node.children:
            if isinstance(c, Tree) and c.data not in parts:
                self.post(c, d)
        return d
