"""From raw query text to tagged tokens: validation, non-query detection, normalisation and the tagger.

The tagger is the lexer of the grammar in parser.py: it matches the longest phrase of the lexicon (or of the
graph's labels) at each position and emits one token per phrase, so "to the left of" is one REL token and
"dining table" one NOUN token. Filler (discourse markers, politeness, request wrappers such as "could you", "in
the kitchen") is dropped here, so the grammar only sees what carries meaning. Some readings depend on the
position: a robot's imperative ("switch", "head", "take") is a VERB only before any other meaningful word (and
its particles "over", "towards" only right after it), and "'s" before a determiner or a relation is "is".
"""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from . import lexicon as lx

MAX_QUERY_CHARS = 1000


@dataclass(frozen=True)
class Tok:
    type: str  # the grammar's terminal name
    value: object  # predicates, colour, (measure, direction), noun phrase, ...
    text: str  # the words it came from
    corrected: str = ""  # a WORD one letter from a noun: the noun it may misspell (see correct_typo)

    def __repr__(self) -> str:
        return f"{self.type}({self.text})"


def validate_query(query) -> str:
    """The query as clean text, or ValueError naming what is wrong (empty, too long, bad UTF-8, control chars)."""
    if isinstance(query, (bytes, bytearray)):
        try:
            query = bytes(query).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"query is not valid UTF-8 ({e.reason} at byte {e.start})") from e
    if not isinstance(query, str):
        raise ValueError(f"query must be text, got {type(query).__name__}")
    if len(query) > MAX_QUERY_CHARS:
        raise ValueError(f"query is {len(query)} characters long; the limit is {MAX_QUERY_CHARS}")
    if "\ufffd" in query:
        raise ValueError("query contains undecodable bytes (U+FFFD): send valid UTF-8")
    if any("\ud800" <= c <= "\udfff" for c in query):  # what bytes that are not UTF-8 decode to (surrogateescape)
        raise ValueError("query contains undecodable bytes (lone surrogates): send valid UTF-8")
    bad = [c for c in query if unicodedata.category(c) in ("Cc", "Cf") and c not in "\t\n\r"]
    if bad:
        raise ValueError(f"query contains control characters {sorted({hex(ord(c)) for c in bad})}")
    if not query.strip():
        raise ValueError("query is empty")
    return query.strip()


_CODE_CHARS = re.compile(r"[;{}<>$`|\\=\[\]#@^~]")
_SQL = re.compile(r"\b(select|insert|update|delete|drop|create|alter|truncate|union|exec|grant)\b.*"
                  r"\b(from|into|table|set|where|values|database|all|privileges)\b")
_SHELL = re.compile(r"(^|\s)(--?[a-z]|\.\./|/[a-z]+/)|/\*|\*/|&&|\bsudo\b|\bchmod\b|\bimport\s+\w+\s*$")


# Structured planner output: "object: lamp; location: cabinet", "target=cup, on=table", or a JSON object
# {"object": "mug", "color": "red", "relation": "on", "anchor": "table"}. Field name -> its role in the phrase the
# fields are read as (see structured_query).
_FIELD_ROLES = {
    **dict.fromkeys(("object", "target", "item", "thing", "noun", "category", "class", "label", "name", "find",
                     "get", "fetch", "grab", "pick", "goal"), "head"),
    **dict.fromkeys(("color", "colour"), "colour"),
    **dict.fromkeys(("size",), "size"),
    **dict.fromkeys(("attribute", "attributes", "property", "adjective"), "attribute"),
    **dict.fromkeys(("relation", "predicate", "spatial relation", "preposition"), "relation"),
    **dict.fromkeys(("anchor", "reference", "landmark", "relative to", "reference object"), "anchor"),
    **dict.fromkeys(("location", "place", "position", "where", "at"), "location"),
}  # no "query" / "text" field: a wrapped free-text query ({"query": "..."}) stays refused, as the dev set expects
# a field named by a relation word is that relation with its value as the anchor ("on: table"); field names are
# looked up with "_" read as a space ("spatial_relation", "left_of")
_RELATION_FIELDS = frozenset(("on", "on top of", "under", "below", "above", "near", "next to", "beside", "by", "in",
                              "inside", "left of", "right of", "in front of", "behind", "between", "nearest to",
                              "closest to", "farthest from"))
_RELATION_FIRST_WORDS = frozenset(r.split()[0] for r in _RELATION_FIELDS)  # a location value that starts a relation
_FIELD_SEP = re.compile(r"\s*[;,\n]\s*")
_FIELD = re.compile(r"^([a-z][a-z _]*?)\s*[:=]\s*(.+)$")
_VALUE = re.compile(r"^[a-z0-9][a-z0-9 '\-]*$")


def structured_query(text: str) -> str | None:
    """The phrase a structured query means ("object: lamp; location: cabinet" -> "the lamp near the cabinet"), or
    None when ``text`` is not one: every field must be ``name: value`` (or ``name=value``; separated by ';', ',' or
    new lines, or a flat JSON object of strings), named by a role of _FIELD_ROLES or a relation word, with a value
    of words only. Anything else (code, SQL, a field we do not know) is left to the ordinary reading, which
    refuses what is not a query."""
    s = unicodedata.normalize("NFKC", text).strip().lower()
    fields: list[tuple[str, str]] = []
    if s.startswith("{"):
        try:
            obj = json.loads(s)
        except ValueError:
            return None
        if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
            return None
        fields = [(str(k).strip(), v.strip()) for k, v in obj.items()]
    else:
        parts = [p for p in _FIELD_SEP.split(s.rstrip(";,. ")) if p]
        for p in parts:
            m = _FIELD.match(p)
            if m is None:
                return None
            fields.append((m.group(1).strip(), m.group(2).strip().rstrip(".")))
    if len(fields) < 2 and ";" not in s and not s.startswith("{"):
        return None  # one plain field: "target: red cup" reads well as it is
    roles: dict[str, str] = {}
    rel_anchor: list[str] = []
    for name, value in fields:
        key = name.replace("_", " ")
        if not _VALUE.match(value):
            return None
        value = re.sub(r"^(the|a|an)\s+", "", value)  # "on: the table"
        if key in _FIELD_ROLES:
            role = _FIELD_ROLES[key]
            if role in roles:
                return None
            roles[role] = value
        elif key in _RELATION_FIELDS:
            rel_anchor.append(f"{key} the {value}")
        else:
            return None
    if "head" not in roles:
        return None
    words = [roles.get("size", ""), roles.get("attribute", ""), roles.get("colour", ""), roles["head"]]
    phrase = "the " + " ".join(w for w in words if w)
    if "relation" in roles:
        if "anchor" not in roles:
            return None
        rel_anchor.insert(0, f"{roles['relation'].replace('_', ' ')} the {roles['anchor']}")
    elif "anchor" in roles:
        return None
    if "location" in roles:
        loc = roles["location"]
        rel_anchor.append(loc if loc.split()[0] in _RELATION_FIRST_WORDS else f"near the {loc}")
    return " ".join([phrase] + rel_anchor)


def non_query_reason(text: str) -> str | None:
    """Why ``text`` is not a spatial query (code, SQL, markup, a path, noise), or None when it may be one."""
    low = text.lower()
    if _CODE_CHARS.search(text):
        return "it looks like code or markup, not a question about the map"
    if _SQL.search(low) or _SHELL.search(low):
        return "it looks like a command or a database query, not a question about the map"
    chars = [c for c in text if not c.isspace()]
    letters = sum(c.isalpha() for c in chars)
    if letters < 2 or letters < 0.6 * len(chars):
        return "it has no words to look for"
    return None


def _words(text: str) -> tuple[list[str], bool]:
    """Lower-case word tokens (contractions expanded, possessives as "'s", commas kept) and whether the text
    asked a question (ends with '?')."""
    s = unicodedata.normalize("NFKC", text).lower()
    s = s.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    question = s.rstrip().endswith("?") or s.rstrip(" .!").endswith("?")
    s = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", s)  # left-most, medium-sized, cell-phone
    s = re.sub(r"(?<=\d)(st|nd|rd|th)\b", r"\1", s)
    raw = re.findall(r"[a-z0-9]+(?:'[a-z]+)?'?|,", s)
    out: list[str] = []
    for w in raw:
        if w in lx.CONTRACTIONS:
            out.extend(lx.CONTRACTIONS[w].split())
        elif w.endswith("'s"):
            out.extend([w[:-2], "'s"])
        elif w.endswith("s'"):
            out.extend([w[:-1], "'s"])
        else:
            out.append(w.strip("'"))
    return [w for w in out if w], question


def _static_table() -> dict[str, tuple[str, object]]:
    """Phrase -> (tag, value) for every grammar word; later entries win, so the order sets precedence."""
    t: dict[str, tuple[str, object]] = {}
    for w in lx.FILLER:
        t[w] = ("FILLER", None)
    for w in lx.COMMANDS:
        t[w] = ("CMD", None)
    for w in lx.DETERMINERS:
        t[w] = ("DET", w)
    for w in lx.QUANTIFIERS:
        t[w] = ("ALL", w)
    for w in lx.ANY_WORDS:
        t[w] = ("ANY", w)
    for w in lx.BE:
        t[w] = ("BE", w)
    t["there"] = ("THERE", None)
    for w in lx.NEGATIONS:
        t[w] = ("NEG", None)
    for w in lx.EXCEPT:
        t[w] = ("EXCEPT", None)
    for w in lx.THAT:
        t[w] = ("THAT", None)
    for w in lx.ONE:
        t[w] = ("ONE", w)
    for w in lx.ANY_OBJECT:
        t[w] = ("OBJ", w)
    for w, tag in lx.FRAMES.items():
        t[w] = (tag, w)
    for w in lx.COLOR_NOUNS:
        t[w] = ("COLORW", None)
        t["the " + w] = ("COLORW", None)
    for w, c in lx.COLOR_WORDS.items():
        t[w] = ("COLOR", c)
        for shade in lx.SHADES:  # "dark red", "light blue": the colour shaded
            t.setdefault(f"{shade} {w}", ("COLOR", c))
    for w, c in lx.SIZE_WORDS.items():
        t[w] = ("SIZE", c)
    for w, v in lx.SUPERLATIVES.items():
        t[w] = ("SUP", v)
    for w, v in lx.SIDES.items():
        t[w] = ("SIDE", v)
        for form in lx.SIDE_POST:
            t[form.format(w)] = ("SIDEPOST", v)
        t[f"from the {w}"] = t[f"from {w}"] = ("FROMSIDE", v)
        t[f"counting from the {w}"] = ("FROMSIDE", v)
    for w, r in lx.ORDINALS.items():
        t[w] = ("ORD", r)
    for w, preds in lx.RELATIONS.items():
        t[w] = ("REL", preds)
    for w, preds in lx.RELATION_ADJECTIVES.items():
        t[w] = ("RELADJ", preds)
    for w in lx.VIEWER:
        t[w] = ("ME", w)
    for w in lx.PRONOUNS:
        t[w] = ("PRON", w)
    # "without" is "not with": the desk without a lamp
    t["without"] = ("SPLIT", (("NEG", None), ("REL", lx.RELATIONS["with"])))
    t["nothing"] = ("SPLIT", (("NEG", None), ("OBJ", "thing")))  # "the table with nothing on it"
    for be in ("is", "are"):  # "is anything on the counter?": the frame and its (any) object
        for w in ("anything", "something"):
            t[f"{be} {w}"] = ("SPLIT", (("THEREIS", f"{be} there"), ("OBJ", w)))
    for w in lx.VIEWER_THINGS:
        for prep, typ in (("to", "TO"), ("from", "FROM"), ("away from", "FROM")):
            t[f"{prep} {w}"] = ("SPLIT", ((typ, None), ("ME", w)))
    for w in lx.THAN:
        t[w] = ("THAN", None)
    for w, k in lx.NUMBER_WORDS.items():
        t[w] = ("NUM", k)
    for w, op in lx.QUANTITY.items():  # "over" and "under" stay relations but before a number
        for n in ["one"] + list(lx.NUMBER_WORDS) + [str(k) for k in range(100)]:
            k = 1 if n == "one" else lx.NUMBER_WORDS[n] if n in lx.NUMBER_WORDS else int(n)
            t[f"{w} {n}"] = ("SPLIT", (("QCMP", op), ("NUM", k)))
    for w in lx.HAVE:
        t[w] = ("HAVE", None)
    t.update({"and": ("AND", None), "as well as": ("AND", None), "or": ("OR", None), "either": ("FILLER", None),
              ",": ("COMMA", None),
              "'s": ("POSS", None), "of": ("OF", None), "to": ("TO", None), "from": ("FROM", None),
              "away from": ("FROM", None), "there": ("THERE", None),
              "over there": ("FILLER", None), "in front": ("SIDEPOST", lx.SIDES["front"]),
              "in the back": ("SIDEPOST", lx.SIDES["back"]), "at the back": ("SIDEPOST", lx.SIDES["back"]),
              "in the middle": ("SIDEPOST", lx.SIDES["middle"])})
    for room in lx.ROOM_WORDS:
        for prep in lx.ROOM_PREPOSITIONS:
            t[f"{prep} {room}"] = ("FILLER", None)
    return t


_STATIC = _static_table()
_LONGEST = max(len(p.split()) for p in _STATIC)
_NOUNS = lx.known_nouns()
_VERBS = frozenset(lx.VERBS)
_DOUBLED = re.compile(r"([bcdfgklmnprstvz])\1$")


def verb_lemma(w: str) -> str | None:
    """The robot verb (lexicon.VERBS) a word is a form of ("finding", "grabbing", "fetched", "locates"), or None."""
    if w in _VERBS:
        return w
    for suf in ("ing", "ed", "es", "s"):
        if w.endswith(suf) and len(w) > len(suf) + 2:
            stem = w[: -len(suf)]
            for cand in (stem, stem + "e", stem[:-1] if _DOUBLED.search(stem) else None):
                if cand and cand in _VERBS:
                    return cand
    return None


def _edits1(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` differ by one insertion, deletion, substitution or swap of adjacent letters
    (Damerau); written here because it is five lines and no dependency of the project offers it."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [k for k in range(len(a)) if a[k] != b[k]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]]
                                  and a[diff[1]] == b[diff[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    k = next((k for k in range(len(short)) if short[k] != long_[k]), len(short))
    return short[k:] == long_[k + 1:]


TYPO_MIN_LETTERS = 4  # shorter words are too often another word one letter away ("cap" / "cup", "mat" / "map")


def correct_typo(word: str, labels: frozenset[str], nouns: frozenset[str]) -> str | None:
    """The one noun a misspelt word is one edit away from ("chiar" -> chair, "refridgerator" -> refrigerator):
    the map's labels first, then the lexicon's nouns (so a misspelt noun the map lacks counts 0); None when no
    noun or several are that close. Only for words neither table knows, of at least TYPO_MIN_LETTERS letters."""
    if len(word) < TYPO_MIN_LETTERS or not word.isalpha():
        return None
    for pool in (labels, nouns):
        close = {n for n in pool if " " not in n and _edits1(word, n)}
        if len(close) == 1:
            return close.pop()
        if close:
            return None
    return None
_PARTICLES = frozenset(lx.PARTICLES)
# Words at the end of a query that add nothing ("any bottles around?", "how many chairs are there").
_TRAILING = re.compile(r"(\s+(around|nearby|here|there|over there|anywhere|somewhere|in here|in view|in sight|"
                       r"at all|please|thanks|thank you|for me|right now|now|currently|ok|okay|at))+\s*$")
# Tokens that may precede an imperative verb: nothing yet, or the command prefix itself ("go and grab",
# "I need you to fetch": "you to" after the dropped "I need").
_COMMAND_SO_FAR = frozenset({"COMMA", "VERB", "PART", "ME", "AND", "TO"})
# After "'s", these start a predicate, so "'s" is "is" ("which chair's the closest", "the mug's on the desk").
_IS_AFTER = frozenset({"DET", "REL", "NEG", "SIDEPOST", "THERE", "ALL"})


@lru_cache(maxsize=64)
def _noun_phrases(labels: frozenset[str]) -> frozenset[str]:
    return frozenset(_NOUNS | set(labels))


def tag(text: str, labels: frozenset[str] = frozenset()) -> tuple[list[Tok], bool]:
    """Tagged tokens of a query (fillers dropped) and whether it was a question; ``labels`` are the graph's
    normalised labels, so multi-word labels ("robot vacuum") tag as one noun."""
    words, question = _words(text)
    # intensifiers go before the phrases are matched, so "at the very back" is "at the back"
    words = [w for w in words if w not in lx.INTENSIFIERS]
    joined = _TRAILING.sub("", " " + " ".join(words)).strip()
    words = joined.split() if joined else []
    nouns = _noun_phrases(labels)
    out: list[Tok] = []
    in_command = True  # every token so far may precede an imperative verb
    i, n = 0, len(words)
    while i < n:
        hit = None
        for L in range(min(_LONGEST, n - i), 0, -1):
            phrase = " ".join(words[i:i + L])
            lemma = lx.lemmatise(phrase)
            static = _STATIC.get(phrase)
            # A noun wins over a grammar word of the same length only when the graph has it as a label
            # ("light"); a longer phrase always wins ("on the left of" over "on the left").
            if (lemma in labels or phrase in labels) and (static is None or static[0] in ("FILLER", "CMD")):
                hit = ("NOUN", (lemma, lemma != phrase), L)
            elif static is not None:
                hit = (static[0], static[1], L)
            elif lemma in nouns or phrase in nouns:
                hit = ("NOUN", (lemma if lemma in nouns else phrase, lemma != phrase), L)
            if hit:
                break
        w = words[i]
        verb = verb_lemma(w) if in_command else None
        fixed = ""
        if hit is not None and hit[2] > 1 or w in labels:
            pass  # a longer phrase ("show all", "close to") or a label of the map keeps its reading
        elif verb is not None:
            hit = ("VERB", verb, 1)  # "switch on the lamp", "head over to the chair": imperatives come first
        elif w in _PARTICLES and out and out[-1].type in ("VERB", "PART", "ME") and in_command:
            hit = ("PART", w, 1)
        elif hit is not None and hit[0] == "EXCEPT" and all(t.type == "COMMA" for t in out):
            i += 1  # "sorry to bother you, but can you find ...": a leading "but" joins clauses, excepts nothing
            continue
        if hit is None:
            lemma = lx.lemmatise(w)
            fixed = "" if w.isdigit() else correct_typo(lemma, labels, nouns) or ""
            # a word neither table knows stays a WORD; the engine reads it as the noun it may misspell (fixed) only
            # when the query fails without that
            hit = ("NUM", int(w), 1) if w.isdigit() else ("WORD", (lemma, lemma != w), 1)
        typ, val, L = hit
        if typ == "SPLIT":  # one phrase, two tokens ("to the robot" -> TO ME); the words go with the first
            out.extend(Tok(t2, v2, " ".join(words[i:i + L]) if k == 0 else "") for k, (t2, v2) in enumerate(val))
        elif typ not in ("FILLER", "CMD"):
            out.append(Tok(typ, val, " ".join(words[i:i + L]), fixed))
        in_command = in_command and all(t.type in _COMMAND_SO_FAR for t in out[-2:])
        i += L
        # "closest to me, the robot": the viewer restated
        if len(out) >= 2 and out[-1].type == "COMMA" and out[-2].type == "ME":
            for L2 in range(min(3, n - i), 0, -1):
                if " ".join(words[i:i + L2]) in lx.VIEWER_THINGS:
                    out.pop()
                    i += L2
                    break
    # commas left at the ends or doubled by dropped fillers ("hey robot, find ...") carry nothing
    cleaned: list[Tok] = []
    for t in out:
        if t.type == "COMMA" and (not cleaned or cleaned[-1].type == "COMMA"):
            continue
        cleaned.append(t)
    while cleaned and cleaned[-1].type == "COMMA":
        cleaned.pop()
    for k, t in enumerate(cleaned[:-1]):
        if t.type == "POSS" and cleaned[k + 1].type in _IS_AFTER:
            cleaned[k] = Tok("BE", "is", t.text)
    return cleaned, question


def with_typos_corrected(tokens: list[Tok]) -> tuple[list[Tok], list[tuple[str, str]]]:
    """The tokens with each possibly misspelt WORD read as its noun, and the (word, noun) pairs read so."""
    out, fixed = [], []
    for t in tokens:
        if t.type == "WORD" and t.corrected:
            out.append(Tok("NOUN", (t.corrected, t.value[1]), t.text))
            fixed.append((t.text, t.corrected))
        else:
            out.append(t)
    return out, fixed


def unknown_word_share(tokens: list[Tok]) -> float:
    """Share of the tokens that are words the lexicon and the graph do not know."""
    return sum(t.type == "WORD" for t in tokens) / max(len(tokens), 1)
