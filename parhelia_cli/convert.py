"""Protobuf messages -> JSON-ready dicts with the CLI's stable conventions.

Rules (documented in docs/adr/0002-thin-cli.md):
- keys are the proto field names (snake_case); every field is always present;
- enums are lower-case words without their type prefix (``TASK_STATUS_RUNNING`` ->
  ``"running"``), the UNSPECIFIED value is ``null``;
- timestamps are RFC 3339 UTC with microseconds and ``Z``; unset ones are ``null``;
- empty strings and unset sub-messages are ``null``;
- ``*_micros`` money fields are kept as integers and joined by a ``*_usd`` exact
  decimal string with 6 decimals;
- ``*_json`` fields are parsed and emitted without the suffix (``data_json`` -> ``data``).

Works on message instances only, so this module imports no protobuf itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from parhelia_cli.durations import usd

_TIMESTAMP = "google.protobuf.Timestamp"
# field type numbers of google.protobuf.descriptor.FieldDescriptor
_TYPE_STRING, _TYPE_MESSAGE, _TYPE_BYTES, _TYPE_ENUM = 9, 11, 12, 14

Getter = Callable[[Any], Any]
_plans: dict[str, list[tuple[str, Getter]]] = {}


def timestamp(ts: Any) -> str | None:
    """RFC 3339 UTC of a ``Timestamp`` (``None`` when unset)."""
    seconds, nanos = ts.seconds, ts.nanos
    if not seconds and not nanos:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos // 1000:06d}Z"


def enum_word(enum_descriptor: Any, number: int) -> str | None:
    """``TASK_STATUS_RUNNING`` -> ``running``; UNSPECIFIED (and unknown numbers) -> None."""
    return _enum_table(enum_descriptor).get(number)


_enum_tables: dict[str, dict[int, str | None]] = {}


def _enum_table(enum_descriptor: Any) -> dict[int, str | None]:
    table = _enum_tables.get(enum_descriptor.full_name)
    if table is None:
        names = [v.name for v in enum_descriptor.values]
        prefix = names[0][: names[0].rfind("_") + 1] if names else ""
        while prefix and not all(n.startswith(prefix) for n in names):
            prefix = prefix[: prefix[:-1].rfind("_") + 1]
        table = {}
        for v in enum_descriptor.values:
            word = v.name[len(prefix):].lower()
            table[v.number] = None if word == "unspecified" else word
        _enum_tables[enum_descriptor.full_name] = table
    return table


def to_dict(message: Any) -> dict[str, Any]:
    """The JSON-ready dict of ``message`` (see the module docstring for the rules)."""
    plan = _plans.get(message.DESCRIPTOR.full_name)
    if plan is None:
        plan = _build_plan(message.DESCRIPTOR)
    out: dict[str, Any] = {}
    for key, get in plan:
        out[key] = get(message)
    return out


def _build_plan(descriptor: Any) -> list[tuple[str, Getter]]:
    plan: list[tuple[str, Getter]] = []
    _plans[descriptor.full_name] = plan  # before recursing: messages may nest themselves
    for field in descriptor.fields:
        plan.extend(_field_plan(field))
    return plan


def _value_fn(field: Any) -> Callable[[Any], Any]:
    """How to convert one (non-repeated) value of ``field``."""
    if field.type == _TYPE_MESSAGE:
        if field.message_type.full_name == _TIMESTAMP:
            return timestamp
        return to_dict
    if field.type == _TYPE_ENUM:
        table = _enum_table(field.enum_type)
        return lambda v: table.get(v)
    if field.type == _TYPE_BYTES:
        return lambda v: v.decode("utf-8", "replace")
    return lambda v: v


def _field_plan(field: Any) -> list[tuple[str, Getter]]:
    name = field.name
    if field.type == _TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
        val = _value_fn(field.message_type.fields_by_name["value"])
        return [(name, lambda m: {k: val(v) for k, v in getattr(m, name).items()})]
    if field.is_repeated:
        conv = _value_fn(field)
        return [(name, lambda m: [conv(v) for v in getattr(m, name)])]
    if field.type == _TYPE_MESSAGE:
        conv = _value_fn(field)
        return [(name, lambda m: conv(getattr(m, name)) if m.HasField(name) else None)]
    if field.type == _TYPE_STRING and name.endswith("_json"):
        return [(name[:-5], lambda m: json.loads(getattr(m, name)) if getattr(m, name) else None)]
    if field.type == _TYPE_STRING:
        return [(name, lambda m: getattr(m, name) or None)]
    if field.type == _TYPE_ENUM:
        table = _enum_table(field.enum_type)
        return [(name, lambda m: table.get(getattr(m, name)))]
    if name.endswith("_micros"):
        return [(name, lambda m: getattr(m, name)),
                (name[:-7] + "_usd", lambda m: usd(getattr(m, name)))]
    if field.type == _TYPE_BYTES:
        return [(name, lambda m: getattr(m, name).decode("utf-8", "replace"))]
    return [(name, lambda m: getattr(m, name))]


def task_dict(task: Any) -> dict[str, Any]:
    """A task, with ``usage.total_cost_micros``/``total_cost_usd`` (api + compute) added."""
    out = to_dict(task)
    u = out.get("usage")
    if u is not None:
        total = u["api_cost_micros"] + u["compute_cost_micros"]
        u["total_cost_micros"], u["total_cost_usd"] = total, usd(total)
    return out
