"""Declared template fields and the one-line errors that name them.

A gate kind declares its YAML fields once (:class:`Field`: name, default, check, doc); the
loader reads a gate through an :class:`Entry`, which knows the file, the YAML line of every key
and the gate it belongs to, so every problem becomes one line
``file:line: gate 'g': field 'f': what is wrong`` — the person reading it is editing that file
(see docs/adaptive_gating.md, "Template errors"). A misspelt field gets a "did you mean".

The checks are small functions rather than a pydantic model: most rules are domain-specific
and cross-field (a quantile method needs ``q``; ``keep: between`` needs two cuts), and each
message must keep this one-line form, which pydantic's error texts would have to be rewritten
into anyway.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cytogate.errors import TemplateError


class _Required:
    def __repr__(self) -> str:
        return "required"


REQUIRED: Any = _Required()
"""Default of a field the template must give."""

Check = Callable[["Entry", str, Any], Any]


@dataclass(frozen=True)
class Field:
    """One YAML field of a gate kind (or of a nested mapping such as ``mixture:``).

    ``check`` turns the raw YAML value into the parsed value or raises via
    :meth:`Entry.fail`; ``None`` leaves the value to the kind's own parser (cross-field
    rules). ``default`` is used when the field is absent (:data:`REQUIRED`: it must be given).
    """

    name: str
    doc: str
    default: Any = None
    check: Check | None = None


def field_table(fields: Iterable[Field]) -> dict[str, Field]:
    return {f.name: f for f in fields}


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for a near miss among ``choices``, else ``''``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class MarkedDict(dict[str, Any]):
    """A YAML mapping that remembers its line and each key's line (1-based)."""

    line: int | None = None
    key_lines: dict[Any, int]


class MarkedList(list[Any]):
    """A YAML sequence that remembers its line and each item's line (1-based)."""

    line: int | None = None
    key_lines: dict[Any, int]


def line_of(node: Any, key: str | int | None = None) -> int | None:
    """The 1-based YAML line of ``node`` (or of its ``key``), when the loader recorded it."""
    if not isinstance(node, MarkedDict | MarkedList):
        return None
    if key is not None and key in node.key_lines:
        return node.key_lines[key]
    return node.line


class Entry:
    """A YAML mapping being parsed: its values, declared fields, and where it is.

    ``source`` is the template file (or ``<template>``), ``context`` the gate part of the
    message (``gate 'blasts'``, ``gate 'blasts' variant 2``, ``gate 'blasts': field 'mixture'``).
    """

    def __init__(
        self,
        data: Mapping[str, Any],
        source: str,
        context: str,
        fields: Mapping[str, Field] | None = None,
        line: int | None = None,
        prefix: str = "",
    ) -> None:
        self.data = data
        self.source = source
        self.context = context
        self.fields = dict(fields or {})
        self.line = line if line is not None else line_of(data)
        self.prefix = prefix  # "mixture." for the fields of a gate's nested `mixture:`

    # ------------------------------------------------------------------ errors
    def where(self, key: str | None = None) -> str:
        """``file:line: context`` for this mapping or one of its keys."""
        line = line_of(self.data, key) if key is not None else None
        line = line or self.line
        head = f"{self.source}:{line}" if line else self.source
        return f"{head}: {self.context}" if self.context else head

    def fail(self, name: str | None, message: str, *, label: str | None = None) -> TemplateError:
        """The one-line error for field ``name`` (``label`` overrides how it is named)."""
        what = label if label is not None else (f"field {self.prefix + name!r}" if name else "")
        text = (
            f"{self.where(name)}: {what}: {message}" if what else f"{self.where(name)}: {message}"
        )
        return TemplateError(text)

    def reject_unknown(self, allowed: Iterable[str]) -> None:
        allowed = sorted(set(allowed))
        for key in self.data:
            if key not in allowed:
                hint = did_you_mean(str(key), allowed)
                if hint and self.prefix:
                    hint = hint.replace("'", f"'{self.prefix}", 1)
                raise TemplateError(
                    f"{self.where(key)}: unknown field {self.prefix + str(key)!r}{hint} "
                    f"(allowed: {', '.join(allowed)})"
                )

    # ------------------------------------------------------------------ values
    def __contains__(self, name: str) -> bool:
        return name in self.data

    def raw(self, name: str, default: Any = None) -> Any:
        return self.data.get(name, default)

    def default(self, name: str) -> Any:
        return self.fields[name].default if name in self.fields else None

    def get(self, name: str) -> Any:
        """The field's value, checked by its declared check, or its declared default."""
        spec = self.fields.get(name)
        if name not in self.data:
            if spec is not None and spec.default is REQUIRED:
                raise self.fail(name, f"required ({spec.doc})")
            return None if spec is None else spec.default
        value = self.data[name]
        return spec.check(self, name, value) if spec is not None and spec.check else value

    def sub(self, name: str, fields: Mapping[str, Field]) -> Entry:
        """The nested mapping ``name`` (absent: empty, so every field takes its default); its
        fields are named ``name.field`` in messages."""
        value = self.data.get(name)
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise self.fail(name, f"a mapping ({', '.join(fields)})")
        line = line_of(value) or line_of(self.data, name) or self.line
        return Entry(value, self.source, self.context, fields, line, f"{self.prefix}{name}.")


# --------------------------------------------------------------------------- checks


def number(entry: Entry, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise entry.fail(name, f"{value!r} is not a number")
    return float(value)


def positive(entry: Entry, name: str, value: Any) -> float:
    v = number(entry, name, value)
    if v <= 0:
        raise entry.fail(name, "must be > 0")
    return v


def non_negative(entry: Entry, name: str, value: Any) -> float:
    v = number(entry, name, value)
    if v < 0:
        raise entry.fail(name, "must be >= 0")
    return v


def fraction(entry: Entry, name: str, value: Any) -> float:
    v = number(entry, name, value)
    if not 0 <= v <= 1:
        raise entry.fail(name, f"between 0 and 1 (got {v:g})")
    return v


def flag(entry: Entry, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise entry.fail(name, f"true or false (got {value!r})")
    return value


def count(low: int, high: int | None = None) -> Check:
    """An integer >= ``low`` (and <= ``high``: bounds what a field may allocate)."""

    def check(entry: Entry, name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise entry.fail(name, f"an integer >= {low} (got {value!r})")
        if high is not None and value > high:
            raise entry.fail(name, f"an integer from {low} to {high} (got {value!r})")
        return value

    return check


def choice(*options: str) -> Check:
    """One of ``options`` (the first is the usual default)."""

    def check(entry: Entry, name: str, value: Any) -> str:
        if value not in options:
            hint = did_you_mean(str(value), options)
            raise entry.fail(name, f"one of {', '.join(options)} (got {value!r}){hint}")
        return str(value)

    return check


def pair(entry: Entry, name: str, value: Any) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise entry.fail(name, "an [x, y] pair")
    return (number(entry, name, value[0]), number(entry, name, value[1]))


def int_range(low: int, high: int) -> Check:
    """``[min, max]`` integers with ``low <= min <= max <= high``."""

    def check(entry: Entry, name: str, value: Any) -> tuple[int, int]:
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(c, int) and not isinstance(c, bool) for c in value)
            or not low <= value[0] <= value[1] <= high
        ):
            raise entry.fail(name, f"[min, max] with {low} <= min <= max <= {high}")
        return (value[0], value[1])

    return check


def names(entry: Entry, name: str, value: Any) -> tuple[str, ...]:
    """A population or marker name, or a list of them."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) for v in items):
        raise entry.fail(name, "a list of names")
    return tuple(items)


def dims(entry: Entry, n: int | None) -> tuple[str, ...]:
    """The gate's ``dims``: marker names, ``n`` of them when given."""
    value = entry.raw("dims")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(d, str) for d in value):
        raise entry.fail("dims", "a list of marker names")
    if n is not None and len(value) != n:
        raise entry.fail("dims", f"needs {n} dimension(s), got {len(value)}")
    return tuple(value)


def per_dimension(
    entry: Entry, name: str, n: int, parse_one: Callable[[Any], Any]
) -> tuple[Any, ...]:
    """``min``/``max``-style fields: one value per dimension (``null``: open), or one value for
    one dimension; absent: all open."""
    value = entry.raw(name)
    if value is None:
        return (None,) * n
    values = value if isinstance(value, list) else [value]
    if len(values) != n:
        raise entry.fail(name, f"needs {n} value(s), got {len(values)}")
    return tuple(None if v is None else parse_one(v) for v in values)
