"""Declare a node's parameters once (description, range, choices) and read them into a frozen dataclass."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node


class ParameterError(ValueError):
    """A parameter value the node refuses, with the reason: the node's process logs it and exits (no traceback)."""


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    desc = spec.description + (f" One of: {', '.join(spec.choices)}." if spec.choices else "")
    # read_only: the config is read once at start-up into a frozen dataclass, never per frame
    d = ParameterDescriptor(description=desc, read_only=True)
    if spec.min is not None and spec.max is not None:
        if isinstance(spec.default, bool):
            pass
        elif isinstance(spec.default, int):
            d.integer_range = [IntegerRange(from_value=int(spec.min), to_value=int(spec.max), step=0)]
        elif isinstance(spec.default, float):
            d.floating_point_range = [FloatingPointRange(from_value=float(spec.min), to_value=float(spec.max),
                                                         step=0.0)]
    return d


def declare_and_read(node: Node, specs: tuple[ParamSpec, ...], config_cls):
    """Declare every spec on ``node`` and return ``config_cls(**values)``.

    Raises ParameterError naming the parameter when a value is outside its range or choices (rclpy itself rejects
    out-of-range numbers and wrong types at declaration with its own exception, which names the parameter too).
    """
    values: dict[str, Any] = {}
    for spec in specs:
        values[spec.name] = node.declare_parameter(spec.name, spec.default, _descriptor(spec)).value
        v = values[spec.name]
        if spec.choices and v not in spec.choices:
            raise ParameterError(f"parameter {spec.name}={v!r} is invalid: expected one of {', '.join(spec.choices)}")
        if spec.min is not None and isinstance(v, (int, float)) and not isinstance(v, bool) and \
                not (spec.min <= v <= spec.max):
            raise ParameterError(f"parameter {spec.name}={v} is outside [{spec.min}, {spec.max}]")
    names = {f.name for f in dataclasses.fields(config_cls)}
    return config_cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items() if k in names})
