"""Protobuf messages -> JSON-ready dicts with the CLI's stable conventions.

Rules (documented in docs/adr/0002-thin-cli.md):
- keys are the proto field names (snake_case); every field is always present;
- enums are lower-case words without their type prefix (``TASK_STATUS_RUNNING`` ->
  ``"running"``), the UNSPECIFIED value is ``null``;
- timestamps are RFC 3339 UTC with microseconds and ``Z``; unset ones are ``null``;
- empty strings and unset sub-messages are ``null``;
- ``*_micros`` money fields are kept as integers and joined by a ``*_usd`` exact
  decimal string with 6 decimals;
- ``*_json`` fields are parsed and emitted without the suffix (``data_json`` -> ``data``);
- map fields are objects with their keys sorted (protobuf's maps have no order, and
  upb's differs from one process to the next).

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

Setter = Callable[[dict[str, Any], Any], None]


class _Plan:
    """How to convert one message type: a template of defaults plus a setter per field
    (only the fields ``ListFields()`` reports as set are visited)."""

    __slots__ = ("defaults", "fresh", "setters")

    def __init__(self) -> None:
        self.defaults: dict[str, Any] = {}
        self.fresh: list[tuple[str, type]] = []  # keys needing a new [] or {} each time
        self.setters: dict[str, Setter] = {}


_plans: dict[str, _Plan] = {}


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


def json_text(value: Any, *, pretty: bool) -> str:
    """The text ``--json`` prints: indented (``pretty``, on a terminal), else one line
    (the C encoder is 3-4x faster without indent)."""
    if pretty:
        return json.dumps(value, ensure_ascii=False, indent=2)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def page(key: str, items: list[Any], next_page_token: str) -> dict[str, Any]:
    """The ``--json`` shape of a list: ``{"<kind>s": [...], "next_page_token": ...}``,
    the token (null when nothing more matches) asking for the next page."""
    return {key: items, "next_page_token": next_page_token or None}


def with_related(resource: dict[str, Any], **related: Any) -> dict[str, Any]:
    """The one JSON shape of a show/create/action answer (ADR 0016): the resource
    object itself, with data about related things under named keys that never shadow
    one of its fields."""
    clash = set(related) & set(resource)
    if clash:  # a programming error: related data must never hide a field
        raise ValueError(f"related keys {sorted(clash)} clash with the resource's fields")
    return {**resource, **related}


def to_dict(message: Any) -> dict[str, Any]:
    """The JSON-ready dict of ``message`` (see the module docstring for the rules)."""
    plan = _plans.get(message.DESCRIPTOR.full_name) or _build_plan(message.DESCRIPTOR)
    out = dict(plan.defaults)
    for key, kind in plan.fresh:
        out[key] = kind()
    setters = plan.setters
    for field, value in message.ListFields():
        setters[field.name](out, value)
    return out


def _build_plan(descriptor: Any) -> _Plan:
    plan = _Plan()
    for field in descriptor.fields:  # nested messages are converted (and planned) lazily
        _add_field(plan, field)
    # Published only once complete: the MCP bridge converts in several threads, and a
    # half-built plan seen by another one lost fields (KeyError: 'options').
    _plans[descriptor.full_name] = plan
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


def _is_map_entry(message_type: Any) -> bool:
    """Whether a message type is a map's entry (asked without loading the options'
    classes, ``descriptor_pb2``, for types that have no options)."""
    return bool(message_type.has_options and message_type.GetOptions().map_entry)


def _add_field(plan: _Plan, field: Any) -> None:
    name = field.name
    defaults, setters = plan.defaults, plan.setters
    if field.type == _TYPE_MESSAGE and _is_map_entry(field.message_type):
        val = _value_fn(field.message_type.fields_by_name["value"])
        defaults[name] = None
        plan.fresh.append((name, dict))

        def set_map(out: dict[str, Any], v: Any) -> None:
            out[name] = {k: val(v[k]) for k in sorted(v)}  # a map has no order of its own

        setters[name] = set_map
    elif field.is_repeated:
        conv = _value_fn(field)
        defaults[name] = None
        plan.fresh.append((name, list))

        def set_list(out: dict[str, Any], v: Any) -> None:
            out[name] = [conv(x) for x in v]

        setters[name] = set_list
    elif field.type == _TYPE_STRING and name.endswith("_json"):
        key = name[:-5]
        defaults[key] = None

        def set_json(out: dict[str, Any], v: Any) -> None:
            out[key] = json.loads(v)

        setters[name] = set_json
    elif name.endswith("_micros") and field.type != _TYPE_MESSAGE:
        usd_key = name[:-7] + "_usd"
        defaults[name], defaults[usd_key] = 0, usd(0)

        def set_money(out: dict[str, Any], v: Any) -> None:
            out[name], out[usd_key] = v, usd(v)

        setters[name] = set_money
    else:
        conv = _value_fn(field)
        if field.type == _TYPE_MESSAGE or field.type == _TYPE_STRING:
            defaults[name] = None
        elif field.type == _TYPE_ENUM:
            defaults[name] = conv(0)
        elif field.type == _TYPE_BYTES:
            defaults[name] = ""
        else:
            defaults[name] = field.default_value

        def set_value(out: dict[str, Any], v: Any) -> None:
            out[name] = conv(v)

        setters[name] = set_value


def task_dict(task: Any) -> dict[str, Any]:
    """A task, with ``usage.total_cost_micros``/``total_cost_usd`` (api + compute, and
    while it runs the API spend priced from its tokens beyond what the agent reported)."""
    out = to_dict(task)
    u = out.get("usage")
    if u is not None:
        total = u["api_cost_micros"] + u["compute_cost_micros"] + \
            u.get("inflight_api_cost_micros", 0)
        u["total_cost_micros"], u["total_cost_usd"] = total, usd(total)
    return out
