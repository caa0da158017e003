"""One filter language for every vector backend: an AND of equality, `in` and numeric-range conditions.

Each backend translates a `Filter` to its native form (a faiss id selector built with `Filter.matches`, a
Qdrant `models.Filter`, a Milvus boolean expression); `Filter.matches` is the reference semantics:

- a missing field never matches;
- `eq` / `in` on a list-valued payload field match when any element does;
- numbers compare by value (30 == 30.0), booleans only equal booleans, strings only equal strings
  (so `age=30` from the CLI is the string "30" and does not match the number 30; use `age=30..30`);
- `range` only matches numbers (never strings or booleans).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from indexers.errors import FilterError

Scalar = str | int | float | bool
Op = Literal["eq", "in", "range"]

FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_BOUNDS = ("gte", "gt", "lte", "lt")
_CLI_FORMS = (
    "field=value (equality), field=a,b,c (any of), field>=n, field>n, field<=n, field<n, "
    "field=lo..hi (inclusive range; either side may be empty)"
)
_COMPARISON = re.compile(r"^\s*([^<>=!\s]+)\s*(>=|<=|>|<|=)\s*(.*?)\s*$")


def check_field_name(name: object) -> str:
    """Return `name` if it is a valid payload/filter field name, else raise FilterError.

    Names reach Milvus expressions and Qdrant keys, so only ASCII letters, digits and '_' are allowed,
    starting with a letter (names starting with '_' are reserved for the backends' own fields).
    """
    if not isinstance(name, str) or not FIELD_NAME.match(name):
        raise FilterError(
            f"invalid field name {name!r}: use ASCII letters, digits and '_' only, starting with a letter"
        )
    return name


def is_number(value: object) -> bool:
    """True for int and float values (not bool), the only values a range can match."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_scalar(name: str, value: object) -> Scalar:
    if isinstance(value, str) or isinstance(value, bool) or isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise FilterError(f"filter value {value!r} for field {name!r}: expected a str, int, finite float or bool")


def _same_value(payload_value: object, wanted: Scalar) -> bool:
    if isinstance(wanted, bool) or isinstance(payload_value, bool):
        return type(payload_value) is bool and type(wanted) is bool and payload_value == wanted
    if isinstance(wanted, str):
        return isinstance(payload_value, str) and payload_value == wanted
    return is_number(payload_value) and payload_value == wanted


@dataclass(frozen=True)
class Range:
    """Numeric bounds of a range condition; at least one is set (gte/gt lower, lte/lt upper)."""

    gte: float | None = None
    gt: float | None = None
    lte: float | None = None
    lt: float | None = None

    def __post_init__(self) -> None:
        bounds = self.as_dict()
        if not bounds:
            raise FilterError(f"empty range: give at least one of {list(_BOUNDS)}")
        for key, value in bounds.items():
            if not is_number(value) or not math.isfinite(value):
                raise FilterError(f"range bound {key}={value!r}: expected a finite number")

    def as_dict(self) -> dict[str, float]:
        """The set bounds, e.g. {"gte": 30, "lt": 60}."""
        return {key: getattr(self, key) for key in _BOUNDS if getattr(self, key) is not None}

    def contains(self, value: object) -> bool:
        """True when `value` is a number within every bound."""
        if not is_number(value):
            return False
        return (
            (self.gte is None or value >= self.gte)
            and (self.gt is None or value > self.gt)
            and (self.lte is None or value <= self.lte)
            and (self.lt is None or value < self.lt)
        )


@dataclass(frozen=True)
class Condition:
    """One condition on one payload field.

    Args:
        field: payload field name (letters, digits, '_'; starts with a letter).
        op: "eq" (value: scalar), "in" (value: non-empty sequence of scalars, stored as a tuple) or
            "range" (value: `Range` or a dict with gte/gt/lte/lt).
        value: see `op`.
    """

    field: str
    op: Op
    value: Any

    def __post_init__(self) -> None:
        check_field_name(self.field)
        if self.op == "eq":
            _check_scalar(self.field, self.value)
        elif self.op == "in":
            if isinstance(self.value, (str, bytes, Mapping)) or not isinstance(self.value, Iterable):
                raise FilterError(f"'in' filter on {self.field!r} needs a list of values, got {self.value!r}")
            values = tuple(_check_scalar(self.field, v) for v in self.value)
            if not values:
                raise FilterError(f"'in' filter on {self.field!r} has no values: give at least one")
            object.__setattr__(self, "value", values)
        elif self.op == "range":
            if isinstance(self.value, Mapping):
                object.__setattr__(self, "value", _range_from_dict(self.field, self.value))
            elif not isinstance(self.value, Range):
                raise FilterError(f"range filter on {self.field!r} needs a Range or dict, got {self.value!r}")
        else:
            raise FilterError(f"unknown filter op {self.op!r} on {self.field!r}: use 'eq', 'in' or 'range'")

    def matches(self, payload: Mapping[str, Any]) -> bool:
        """Whether `payload` satisfies this condition (see the module docstring for the rules)."""
        if self.field not in payload:
            return False
        actual = payload[self.field]
        if self.op == "range":
            return self.value.contains(actual)
        wanted = (self.value,) if self.op == "eq" else self.value
        candidates = actual if isinstance(actual, (list, tuple)) else (actual,)
        return any(_same_value(a, w) for a in candidates for w in wanted)


def _range_from_dict(name: str, bounds: Mapping[str, Any]) -> Range:
    unknown = sorted(set(bounds) - set(_BOUNDS))
    if unknown:
        raise FilterError(f"range filter on {name!r} has unknown keys {unknown}: use {list(_BOUNDS)}")
    return Range(**dict(bounds))


@dataclass(frozen=True)
class Filter:
    """An AND of conditions; hashable, so backends can cache what a filter selects.

    Build with `Filter.from_dict({"modality": "CT", "body_part": ["chest", "head"],
    "age": {"gte": 30, "lt": 60}})` (scalar = eq, list = in, dict = range) or `parse_filters([...])`.
    """

    conditions: tuple[Condition, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        conditions = tuple(self.conditions)
        for condition in conditions:
            if not isinstance(condition, Condition):
                raise FilterError(f"Filter takes Condition objects, got {condition!r}")
        object.__setattr__(self, "conditions", conditions)

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Filter:
        """Build from {field: scalar | list | {"gte"/"gt"/"lte"/"lt": number}}."""
        conditions = []
        for name, value in spec.items():
            if isinstance(value, Mapping):
                conditions.append(Condition(name, "range", value))
            elif isinstance(value, (list, tuple, set, frozenset)):
                conditions.append(Condition(name, "in", list(value)))
            else:
                conditions.append(Condition(name, "eq", value))
        return cls(tuple(conditions))

    def to_dict(self) -> dict[str, Any]:
        """The inverse of `from_dict`; raises FilterError when two conditions share a field."""
        spec: dict[str, Any] = {}
        for condition in self.conditions:
            if condition.field in spec:
                raise FilterError(
                    f"filter has several conditions on {condition.field!r}, which a dict cannot hold"
                )
            value = condition.value
            spec[condition.field] = (
                value.as_dict() if condition.op == "range" else list(value) if condition.op == "in" else value
            )
        return spec

    def matches(self, payload: Mapping[str, Any]) -> bool:
        """True when every condition holds for `payload` (an empty filter matches everything)."""
        return all(condition.matches(payload) for condition in self.conditions)

    def fields(self) -> list[str]:
        """The field names the filter reads, in order."""
        return [condition.field for condition in self.conditions]


def _number(text: str, expression: str) -> int | float:
    if not _NUMBER.match(text):
        raise FilterError(f"filter {expression!r}: {text!r} is not a number; accepted forms: {_CLI_FORMS}")
    return int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)


def _parse_expression(expression: str) -> Condition:
    match = _COMPARISON.match(expression)
    if not match or not match.group(3):
        raise FilterError(f"cannot parse filter {expression!r}; accepted forms: {_CLI_FORMS}")
    name, op, text = match.groups()
    if not FIELD_NAME.match(name):
        raise FilterError(
            f"filter {expression!r}: field {name!r} must be ASCII letters, digits and '_', "
            f"starting with a letter; accepted forms: {_CLI_FORMS}"
        )
    if op != "=":
        key = {">=": "gte", ">": "gt", "<=": "lte", "<": "lt"}[op]
        return Condition(name, "range", {key: _number(text, expression)})
    low, dots, high = text.partition("..")
    if dots and (low or high) and all(not part or _NUMBER.match(part) for part in (low, high)):
        bounds = {"gte": _number(low, expression)} if low else {}
        bounds.update({"lte": _number(high, expression)} if high else {})
        return Condition(name, "range", bounds)
    if "," in text:
        values = [part.strip() for part in text.split(",")]
        if not all(values):
            raise FilterError(
                f"filter {expression!r} has an empty value in its list; accepted forms: {_CLI_FORMS}"
            )
        return Condition(name, "in", values)
    return Condition(name, "eq", text)


def _merge_ranges(first: Condition, second: Condition, expressions: str) -> Condition:
    bounds = first.value.as_dict()
    for key, value in second.value.as_dict().items():
        if key in bounds:
            raise FilterError(f"filters {expressions} set {first.field} {key} twice; give each bound once")
        bounds[key] = value
    return Condition(first.field, "range", bounds)


def parse_filters(expressions: Sequence[str] | None) -> Filter | None:
    """Parse CLI filter expressions (ANDed) into a Filter; None when there are none.

    Forms: `modality=CT` (eq, the value stays a string), `body_part=chest,head` (in), `age>=30`,
    `age<60` (ranges on one field are merged), `year=2000..2010` (inclusive range, numbers).

    Raises:
        FilterError: naming the bad expression and listing the accepted forms.
    """
    if not expressions:
        return None
    if isinstance(expressions, str):
        expressions = [expressions]
    conditions: list[Condition] = []
    for expression in expressions:
        condition = _parse_expression(expression)
        previous = next(
            (i for i, c in enumerate(conditions) if c.field == condition.field and c.op == "range"), None
        )
        if condition.op == "range" and previous is not None:
            conditions[previous] = _merge_ranges(conditions[previous], condition, repr(list(expressions)))
        else:
            conditions.append(condition)
    return Filter(tuple(conditions))
