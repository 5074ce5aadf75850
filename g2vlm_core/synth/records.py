"""Language ground-truth records of a synthetic scene: referring expressions and spatial QA pairs."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ReferringExpression:
    """A phrase that picks out exactly one object (``target_id``) of its scene.

    ``program`` is the structured meaning (FORMAT.md): ``{"category", "attributes", "relations":
    [{"predicate", "anchor_id", "anchor": {"category", "attributes"}}]}``; ``viewpoint`` is the reference
    view's frame_id for view-dependent predicates, "" otherwise.
    """

    text: str
    target_id: int
    template: str
    viewpoint: str = ""
    program: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ReferringExpression":
        return cls(text=d["text"], target_id=int(d["target_id"]), template=d.get("template", ""),
                   viewpoint=d.get("viewpoint", ""), program=dict(d.get("program", {})))


@dataclass
class QAPair:
    """A spatial question with its text answer and typed ``value`` (str, int, float metres or bool)."""

    type: str  # what | where | count | distance | relation
    question: str
    answer: str
    value: Any = None
    object_ids: list[int] = field(default_factory=list)  # objects the question is about / the answer names
    viewpoint: str = ""  # reference view's frame_id when the question is view-dependent
    predicate: str = ""  # the spatial predicate a relation / where question is about ("" for others)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "QAPair":
        return cls(type=d["type"], question=d["question"], answer=d["answer"], value=d.get("value"),
                   object_ids=[int(i) for i in d.get("object_ids", [])], viewpoint=d.get("viewpoint", ""),
                   predicate=d.get("predicate", ""))
