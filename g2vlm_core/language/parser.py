"""The query grammar (lark, Earley) over the tagger's tokens, and the query structure it builds.

Why a grammar rather than regular expressions: a planner's query nests (a referring expression inside a
count, a distance or an attribute question; relative clauses joined by "and"; an appositive "a box, the one
nearest to the table"), and a grammar states each form once where regular expressions had to repeat the noun
phrase in every question pattern. Lark is a dependency already (rosidl uses it); its Earley parser accepts the
ambiguous, permissive grammar natural language needs. It parses the tagger's tokens, not characters, so the
grammar never lists a word: the lexicon does (lexicon.py). Parses are cached by the sequence of token types.

Relations attach to the head noun (flat, as the synthetic ground truth's programs do): in "the mug on the table
left of the laptop" the mug is on the table and left of the laptop; an anchor after "to" / "from" may carry its
own ("the monitor nearest to the chair at the desk"). A command prefix ("take me to", "move next to") says what to
do with the object, not which one it is. A pronoun ("the cupboard with the vase on it") is the head noun, so the
relation is the anchor's to it (Relation.converse). A bare noun sequence ("cup table red") keeps its readings for
the resolver to choose by the map (_Builder.telegraphic).
"""
from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from threading import Lock

from lark import Lark, Token, Tree
from lark.exceptions import LarkError
from lark.lexer import Lexer

from .lexicon import ASSOCIATION, SUPPORT
from .normalize import Tok, verb_lemma

GRAMMAR = r"""
start: command? (find_q | where_q | exists_q | count_q | color_q | measure_q | dist_q | related_q | list_q)
     | motion_dist_q
     | command find_q deliver
deliver: (REL | PART)+ TO ME

command: (ME TO)? VERB (ME | PART | TO | FROM | REL | SUP | VERB | AND)*

find_q: np
      | WH np
      | WH BE np
      | WH OF np
      | THAT np
      | (OF | AMONG) np COMMA? WH post+                           -> partitive_q
      | (OF | AMONG) np COMMA? THAT clause (AND THAT? clause)*     -> partitive_q
      | (WH ONE? BE? | THAT) SUP ONE? ((TO | FROM) other)? COMMA? np (COMMA? OR np)+  -> choice_q
where_q: WHERE (BE | SEE)? np (BE | SEE)?
       | LOCATION np
exists_q: THEREIS OF? np
        | (THEREIS | SEE) QCMP NUM np                 -> quantity_q
        | BE np HAVE np (REL PRON)?               -> have_q
        | THERE BE np
        | SEE np
        | BE np
        | BE THERE np
        | BE np attr
count_q: (WH BE?)? COUNT np count_tail*
       | COUNT np count_tail+ post+
       | np COUNT count_tail*
count_tail: BE | THEREIS | SEE | THERE
color_q: WH COLORW BE? np
       | WH COLORW np BE
       | WH BE? COLORW OF np
       | COLORW OF np
       | np POSS? COLORW
       | WH BE np POSS COLORW
measure_q: MEASURE BE? np
         | MEASURE np BE
         | WH? BE? MEASUREOF np
dist_q: HOWFAR BE? other (FROM | TO) other
      | HOWFAR BE? PRON (FROM | TO)? other (TO | AND) other
      | HOWFAR (FROM | TO) other BE np
      | HOWFAR BE? BETWEEN np AND np
      | HOWFAR np BE (FROM | TO) other
      | HOWFAR BE? np
      | HOWFAR np BE
      | HOWFARAPART BE? np AND np
      | HOWFAR BE? np AND np APART?
      | WH? BE? DISTBETWEEN np AND np
      | WH? BE? DISTBETWEEN np                 -> pair_dist_q
      | WH? BE? DISTFROM other (TO | AND) other
      | WH? BE? DISTTO np
      | WH? BE? DISTANCE (FROM | OF | BETWEEN)? other (TO | AND | FROM) other
related_q: WH BE? post+
         | THAT post+
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
    | BE? NEG? REL NEG? anchor REL PRON   -> rel_it_post
    | THAT clause (AND THAT? clause)*     -> relcl
    | EXCEPT xnp                          -> except_post
    | SUP ONE? (TO | FROM | OF)? other    -> sup_post
    | BE DET? ORD? SUP ONE? ((TO | FROM | OF)? other)?  -> sup_post
    | SIDEPOST                            -> side_post
    | ORD? ONE? FROMSIDE                  -> fromside_post
    | SIDE                                -> side_post
    | BE? NEG? BETWEEN anchor (AND anchor)?   -> between_post
    | BE? SUP THAN other                  -> cmp_post
    | BE? SUP (TO | FROM) other THAN other  -> cmp_post
    | THAT? anchor BE REL                 -> stranded_post
    | BE? NEG? COLOR                      -> color_post
    | BE? NEG? SIZE                       -> color_post
    | TO other                            -> to_post
    | FROM other                          -> from_post
    | AND post                            -> and_post
clause: BE? NEG? REL anchor (OR anchor)*  -> clause_rel
      | BE? NEG? REL NEG? anchor REL PRON -> clause_rel_it
      | BE? NEG? COLOR                    -> clause_color
      | BE? NEG? SIZE                     -> clause_size
      | BE? DET? ORD? SUP ONE? ((TO | FROM | OF)? other)?  -> clause_sup
      | BE? DET? ORD? ONE? SIDEPOST       -> clause_side
      | BE? DET? ORD? ONE? FROMSIDE       -> clause_fromside
      | BE? NEG? BETWEEN anchor (AND anchor)?  -> clause_between
      | BE? SUP THAN other                -> clause_cmp
      | BE? SUP (TO | FROM) other THAN other  -> clause_cmp
      | anchor BE REL                     -> clause_stranded
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
// "how far do I have to go to reach the desk": motion words between the viewer and the place, before any reading
// of those words as a noun phrase
motion_dist_q.2: HOWFAR BE ME? (HAVE | TO | WORD)+ np

%declare MEASURE MEASUREOF OR VERB PART PRON AMONG THAN HAVE QCMP
"""
MEASURE_OF_TAG = {"HOWBIG": "size", "SIZEQ": "size", "SIZEOF": "size", "HOWTALL": "height", "HEIGHTOF": "height",
                  "HOWWIDE": "width", "WIDTHOF": "width"}


_POSTS = frozenset({"rel_post", "neg_rel_post", "rel_it_post", "relcl", "except_post", "sup_post", "side_post",
                    "fromside_post", "color_post", "to_post", "from_post", "and_post", "between_post", "cmp_post",
                    "stranded_post"})


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
    converse: bool = False  # the anchor relates to the subject: "the shelf with a mug inside it" (mug inside shelf)


@dataclass
class Comparison:
    """A comparative: the object's ``measure`` is more (direction max) or less (min) than the reference's. For
    dist, ``anchor`` is what the distance is to ("closer to the desk"); ``to_reference`` compares with the distance
    to the reference ("closer to the desk than to the table"), else with the reference's own distance to the
    anchor ("closer to the desk than the table (is)")."""

    measure: str
    direction: str
    reference: "Desc | str"  # a description, or "viewer"
    anchor: "Desc | str | None" = None
    to_reference: bool = False
    text: str = ""


@dataclass
class Between:
    """Between two anchors, or the two objects of one plural anchor ("between the two chairs")."""

    first: "Desc"
    second: "Desc | None" = None
    negated: bool = False


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
    # other readings of a telegraphic noun sequence ("cup table red"), most plausible first; the resolver takes
    # the first that some object satisfies (Resolver.choose), else this one
    readings: list["Desc"] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    between: list[Between] = field(default_factory=list)
    # a choice among named objects ("which is bigger, the table or the sofa?"): each member's best object are the
    # candidates, and the order picks among them
    choice: list["Desc"] = field(default_factory=list)


@dataclass
class Query:
    kind: str  # find | where | exists | count | related | attribute | distance | list
    target: Desc | None = None
    other: "Desc | str | None" = None  # distance: the second object, or "viewer"
    attribute: str = ""  # attribute questions: color | size | height | width
    question: bool = False
    quantity: tuple[str, int] | None = None  # exists: how many must satisfy it ("more than two": ("gt", 2))


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
        if tree is None and "COMMA" in types:
            # commas are pauses; only the appositive forms read them ("a box, the one nearest to the table"), so
            # a text that fits no form with them is read without them ("is there, um, a bottle on the cabinet?")
            toks = [t for t in toks if t.type != "COMMA"]
            tree = self._tree(tuple(t for t in types if t != "COMMA")) if toks else None
        if tree is None:
            raise ParseError("the words do not form a question or a description of an object")
        # the command prefix ("take me to", "switch on") and a delivery ("over to me") say what to do with the
        # object, not which one it is
        return _Builder(toks, question).query(next(c for c in tree.children
                                                   if c.data not in ("command", "deliver")))


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
        if kind == "partitive_q":  # "of the chairs (other than the red one), which is closest to the laptop?"
            target = nps[0]
            for c in q.children:
                if isinstance(c, Tree) and c.data != "np":
                    (self.post if c.data in _POSTS else self.clause)(c, target)
            target.text = self.text(q)
            if target.order is not None:  # "which" picks one of them
                target.quantifier, target.plural = "", False
                return Query("find", target, question=self.question)
            return Query("related", target, question=self.question)
        if kind == "choice_q":  # "which is bigger, the table or the sofa?"
            sup = next(self.tok(t) for t in self.terms(q) if t.type == "SUP")
            anchor = others[0] if others else None
            target = Desc(choice=nps, order=Order(*sup.value, anchor=anchor), text=self.text(q))
            return Query("find", target, question=self.question)
        if kind == "have_q":  # "does the desk have a mug on it?": is there a mug on the desk
            holder, target = nps
            rel = [self.tok(t) for t in self.terms(q) if t.type == "REL"]
            target.relations.append(Relation(rel[0].value if rel else ASSOCIATION, holder,
                                             text=rel[0].text if rel else "with"))
            return Query("exists", target, question=True)
        if kind == "quantity_q":  # "are there more than two chairs?"
            op, n = (self.tok(t).value for t in self.terms(q) if t.type in ("QCMP", "NUM"))
            return Query("exists", nps[0], question=True, quantity=(op, int(n)))
        if kind == "motion_dist_q":  # "how far do I have to go to reach the desk": from the viewer
            words = [self.tok(t) for t in self.terms(q) if t.type == "WORD"]
            if any(verb_lemma(w.text) is None for w in words):
                raise ParseError("the words do not form a question or a description of an object")
            return Query("distance", nps[0], other="viewer", question=self.question)
        if kind == "pair_dist_q":  # "the distance between the two monitors": its two objects
            return Query("distance", nps[0], other="pair", question=self.question)
        if kind == "find_q":
            target = nps[0]
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
            for c in q.children:  # "how many chairs do we have around the table"
                if isinstance(c, Tree) and c.data in _POSTS:
                    self.post(c, nps[0])
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
        d.readings = self.telegraphic(core, node.children[1:], d)
        return d

    def telegraphic(self, core: Tree, posts: list[Tree], d: Desc) -> list[Desc]:
        """The readings of a bare noun sequence ("cup table red", "mug pink desk", "couch phone"): the target is
        the first noun (telegraphic speech) or the last (an English compound), the other nouns are what it rests
        on or is inside, else what it is near, and a colour or size word describes the target or a noun next to
        it. Ordered by plausibility: support before nearness, the first noun before the last, a word on the
        target before one on its neighbour."""
        seq = [t for c in core.children if isinstance(c, Tree) and c.data in ("premod", "head")
               for t in self.tokens(c)]
        for p in posts:  # colour words after the nouns: "cup table red"
            toks = self.tokens(p)
            if p.data != "color_post" or any(t.type in ("BE", "NEG") for t in toks):
                break
            seq += toks
        nouns = [k for k, t in enumerate(seq) if t.type in ("NOUN", "WORD")]
        if len(nouns) < 2 or len(nouns) > 3 or any(t.type not in ("NOUN", "WORD", "COLOR", "SIZE") for t in seq):
            return []
        attrs = [k for k, t in enumerate(seq) if t.type in ("COLOR", "SIZE")]
        if len(attrs) > 2:
            return []
        rest_colors, rest_sizes = list(d.colors), list(d.sizes)  # colours from elsewhere in the phrase stay
        for k in attrs:
            rest = rest_colors if seq[k].type == "COLOR" else rest_sizes
            if seq[k].value in rest:
                rest.remove(seq[k].value)
        out: list[Desc] = []
        for preds in (SUPPORT, ASSOCIATION):
            for h in dict.fromkeys((nouns[0], nouns[-1])):
                options = []
                for k in attrs:
                    before = [j for j in nouns if j < k]
                    after = [j for j in nouns if j > k]
                    options.append(list(dict.fromkeys([h] + before[-1:] + after[:1])))
                for choice in itertools.product(*options):
                    descs = {j: Desc(noun=seq[j].value[0], plural=seq[j].value[1], text=seq[j].text) for j in nouns}
                    for k, j in zip(attrs, choice):
                        (descs[j].colors if seq[k].type == "COLOR" else descs[j].sizes).append(seq[k].value)
                    target = descs[h]
                    out.append(replace(
                        d, noun=target.noun, plural=target.plural, colors=target.colors + rest_colors,
                        sizes=target.sizes + rest_sizes, modifiers=[], readings=[],
                        relations=d.relations + [Relation(preds, descs[j], text=descs[j].text) for j in nouns
                                                 if j != h]))
        return out

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

    def _rel_it(self, node: Tree, d: Desc) -> None:
        """"the cupboard with the vase on it": "it" is the head noun, so the relation is the anchor's to it."""
        toks = [self.tok(t) for t in self.terms(node)]
        rel = [t for t in toks if t.type == "REL"][-1]
        neg = any(t.type == "NEG" for t in toks)  # "the table with nothing on it", "the desk without a lamp on it"
        d.relations.append(Relation(rel.value, self.anchor(self.sub(node, "anchor")[0]), neg, rel.text,
                                    converse=True))

    def _between(self, node: Tree, d: Desc) -> None:
        anchors = [self.anchor(a) for a in self.sub(node, "anchor")]
        neg = any(self.tok(t).type == "NEG" for t in self.terms(node))
        d.between.append(Between(anchors[0], anchors[1] if len(anchors) > 1 else None, neg))

    def _comparison(self, node: Tree, d: Desc) -> None:
        """"bigger than the box", "closer to the desk than to the table", "closer to me than the table"."""
        toks = [self.tok(t) for t in self.terms(node)]
        sup = next(t for t in toks if t.type == "SUP")
        others = [self.other(o) for o in self.sub(node, "other")]
        than = next(t for t in toks if t.type == "THAN")
        anchor = others[0] if len(others) > 1 else None
        d.comparisons.append(Comparison(sup.value[0], sup.value[1], others[-1], anchor,
                                        to_reference=than.text.endswith(" to"), text=self.text(node)))

    def _stranded(self, node: Tree, d: Desc) -> None:
        """"the shelf (that) the mug is on": the anchor relates to the head noun (a converse relation)."""
        rel = next(self.tok(t) for t in self.terms(node) if t.type == "REL")
        d.relations.append(Relation(rel.value, self.anchor(self.sub(node, "anchor")[0]), text=rel.text,
                                    converse=True))

    def _set_order(self, d: Desc, value: tuple[str, str], anchor=None, rank: int | None = None) -> None:
        measure, direction = value
        if d.order is None:
            d.order = Order(measure, direction, rank or 1, anchor)
            return
        # an ordinal or a side before the noun, the measure after it: "the second chair from the left"
        if d.order.measure == "right" and d.order.direction == "min" and not (measure == "right"):
            d.order.measure, d.order.direction = measure, direction
        elif measure == "right" or measure == "front":
            d.order.measure, d.order.direction = measure, direction
        if anchor is not None:
            d.order.anchor = anchor
        if rank is not None:
            d.order.rank = rank

    def post(self, node: Tree, d: Desc) -> None:
        kind = node.data
        toks = self.terms(node)
        if kind in ("rel_post", "neg_rel_post"):
            rel = next(self.tok(t) for t in toks if t.type in ("REL", "RELADJ"))
            anchors = [self.anchor(a) for a in self.sub(node, "anchor")]
            d.relations.append(Relation(rel.value, anchors[0], kind == "neg_rel_post", rel.text, anchors[1:]))
        elif kind == "rel_it_post":
            self._rel_it(node, d)
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
            self._set_order(d, sup.value, self.other(others[0]) if others else None,
                            next((self.tok(t).value for t in toks if t.type == "ORD"), None))
        elif kind in ("side_post", "fromside_post"):
            side = next(self.tok(t) for t in toks if t.type in ("SIDE", "SIDEPOST", "FROMSIDE"))
            self._set_order(d, side.value, None, next((self.tok(t).value for t in toks if t.type == "ORD"), None))
            if kind == "side_post" and d.order.rank == -1:
                d.order.rank = 1  # "the last chair on the right": the one at the right end
        elif kind == "between_post":
            self._between(node, d)
        elif kind == "cmp_post":
            self._comparison(node, d)
        elif kind == "stranded_post":
            self._stranded(node, d)
        elif kind in ("to_post", "from_post"):
            other = self.other(self.sub(node, "other")[0])
            if d.order is not None and d.order.measure == "dist":
                d.order.anchor = other  # "the closest chair to the table", "the farthest thing from the tv"
            elif isinstance(other, Desc):  # "the chair next ... to the table", "the book from the cabinet"
                d.relations.append(Relation(("near",) if kind == "to_post" else ASSOCIATION, other,
                                            text="to" if kind == "to_post" else "from"))
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
        elif node.data == "clause_rel_it":
            self._rel_it(node, d)
        elif node.data == "clause_color":
            (d.not_colors if neg else d.colors).append(next(t.value for t in toks if t.type == "COLOR"))
        elif node.data == "clause_size":
            (d.not_sizes if neg else d.sizes).append(next(t.value for t in toks if t.type == "SIZE"))
        elif node.data == "clause_between":
            self._between(node, d)
        elif node.data == "clause_cmp":
            self._comparison(node, d)
        elif node.data == "clause_stranded":
            self._stranded(node, d)
        elif node.data == "clause_sup":
            sup = next(t for t in toks if t.type == "SUP")
            others = self.sub(node, "other")
            self._set_order(d, sup.value, self.other(others[0]) if others else None,
                            next((t.value for t in toks if t.type == "ORD"), None))
        else:  # "that's second from the right", "which is the third one on the left"
            self._set_order(d, next(t.value for t in toks if t.type in ("SIDEPOST", "FROMSIDE")), None,
                            next((t.value for t in toks if t.type == "ORD"), None))
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
