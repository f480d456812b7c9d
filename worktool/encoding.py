"""JSON of pydantic models by orjson, byte for byte what pydantic-core writes, for the models whose
serialisation is plain enough to be sure of it (the monitor events, worktool/events.py).

`compile_encoder(cls)` reads the model's core schema (what its pydantic-core serializer is built from)
and writes a Python function that turns an instance into plain values for orjson: the instance's
`__dict__` itself when nothing needs converting, else a copy in the same key order (pydantic writes the
fields in `__dict__` order, which `construct` makes defaults-first) with each UTC datetime as `iso(...)`'s
text, each nested model as its own dict and each int in a float field as a float (pydantic writes
`0.0` for a default of `0`). Every value's type is checked exactly (`type(v) is str`, ...): a value of any
other type (a subclass, an enum, a tuple for a list, a missing or an extra field, ...) raises
`Unsupported`, and the caller falls back to pydantic, so that the bytes never differ, warnings
included. A model the encoder does not understand (a serialization alias, an excluded field, a field or
model serializer, computed fields, extra="allow", serialisation options in its config, a union of
different kinds, ...) gets no encoder (`None`): it is always written by pydantic.

orjson writes strings, ints, floats (nan and infinities as null), bools and None exactly as pydantic-core
does (tests/worktool/test_event_encoding.py checks every catalogue event with generated values); it
refuses integers beyond 64 bits, which pydantic writes: the caller's fallback decides those.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from worktool.models import _ISO_SEEN, iso


class Unsupported(Exception):
    """A model or value the fast encoder does not write: pydantic does."""


# Schema keys that change nothing in how a value is written (validation, documentation).
_MODEL_KEYS = {"type", "cls", "schema", "config", "custom_init", "root_model", "ref", "metadata", "post_init"}
_FIELDS_KEYS = {"type", "fields", "computed_fields", "model_name", "extra_behavior"}
_FIELD_KEYS = {"type", "schema", "metadata", "validation_alias", "frozen"}
_CONFIG_KEYS = {"title", "extra_fields_behavior"}
_ISO_SERIALIZER = {"type", "function", "info_arg", "return_schema", "when_used"}

# Node kinds of a field's schema: a leaf is its Python type's name; ("nullable", n), ("list", n),
# ("dict", n) of values by str keys, ("model", cls, fields schema), "iso" (UtcDatetime).
Node = Any


def _node(schema: dict[str, Any], defs: dict[str, Any]) -> Node:
    kind = schema["type"]
    if "serialization" in schema:
        return _serializer(schema, defs)
    if kind in ("function-before", "function-after", "default"):
        return _node(schema["schema"], defs)
    if kind == "definitions":
        defs = {**defs, **{d["ref"]: d for d in schema["definitions"]}}
        return _node(schema["schema"], defs)
    if kind == "definition-ref":
        return _node(defs[schema["schema_ref"]], defs)
    if kind in ("str", "int", "float", "bool", "datetime"):
        return kind
    if kind == "model":
        return ("model", schema["cls"], _fields_schema(schema, defs))
    return _composite(schema, defs)


def _serializer(schema: dict[str, Any], defs: dict[str, Any]) -> Node:
    """The one serializer understood: `iso` of a UTC datetime (worktool/models.py: UtcDatetime)."""
    ser = schema["serialization"]
    if (
        ser.get("type") == "function-plain"
        and ser.get("function") is iso
        and not ser.get("info_arg")
        and ser.get("when_used", "always") == "always"
        and ser.get("return_schema") == {"type": "str"}
        and set(ser) <= _ISO_SERIALIZER
        and schema["type"] == "function-before"
        and _node(schema["schema"], defs) == "datetime"
    ):
        return "iso"
    raise Unsupported(f"serializer {ser.get('type')}")


def _composite(schema: dict[str, Any], defs: dict[str, Any]) -> Node:
    kind = schema["type"]
    if kind == "literal":
        if all(type(e) is str for e in schema["expected"]):
            return "str"
        raise Unsupported("a literal other than strings")
    if kind == "union":
        choices = {_node(c[0] if isinstance(c, tuple) else c, defs) for c in schema["choices"]}
        if choices == {"str"}:
            return "str"
        raise Unsupported("a union of different kinds")
    if kind == "nullable":
        return ("nullable", _node(schema["schema"], defs))
    if kind == "list" and "items_schema" in schema:
        return ("list", _node(schema["items_schema"], defs))
    if kind == "dict" and "keys_schema" in schema and "values_schema" in schema:
        if _node(schema["keys_schema"], defs) != "str":
            raise Unsupported("dict keys other than strings")
        return ("dict", _node(schema["values_schema"], defs))
    raise Unsupported(f"schema {kind}")


def _fields_schema(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Node]:
    """The model's fields, in declared order, as nodes."""
    if set(schema) - _MODEL_KEYS or schema.get("root_model") or schema.get("custom_init"):
        raise Unsupported(f"model {schema['cls'].__name__}: {sorted(set(schema) - _MODEL_KEYS)}")
    config = schema.get("config") or {}
    if set(config) - _CONFIG_KEYS or config.get("extra_fields_behavior") == "allow":
        raise Unsupported(f"model {schema['cls'].__name__}: config {config}")
    inner = schema["schema"]
    while inner["type"] in ("function-before", "function-after") and "serialization" not in inner:
        inner = inner["schema"]
    if inner["type"] != "model-fields" or set(inner) - _FIELDS_KEYS or inner.get("computed_fields"):
        raise Unsupported(f"model {schema['cls'].__name__}: {inner['type']}")
    if inner.get("extra_behavior") == "allow":
        raise Unsupported(f"model {schema['cls'].__name__}: extra allowed")
    nodes = {}
    for name, field in inner["fields"].items():
        if field["type"] != "model-field" or set(field) - _FIELD_KEYS:
            raise Unsupported(f"field {name}: {sorted(set(field) - _FIELD_KEYS)}")
        nodes[name] = _node(field["schema"], defs)
    return nodes


_LEAVES = ("str", "int", "bool")


class _Writer:
    """Writes the source of the encoders of one model and of the models inside it."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[type, str] = {}
        self.globals: dict[str, Any] = {
            "iso": iso,
            "iso_seen": _ISO_SEEN.get,
            "datetime": datetime,
            "Unsupported": Unsupported,
        }
        self.count = 0

    def var(self) -> str:
        self.count += 1
        return f"v{self.count}"

    def model(self, cls: type[BaseModel], fields: dict[str, Node]) -> str:
        name = self.names.get(cls)
        if name is not None:
            return name
        name = self.names[cls] = f"encode_{cls.__name__}_{len(self.names)}"
        self.globals[f"{name}_cls"] = cls
        copies = any(_converts(n) for n in fields.values())
        # the fields of a string, int or bool (or None) are checked in one expression
        simple = [f"len(d) != {len(fields)}"]  # and every field is looked up: the same keys
        body: list[str] = []
        for field, node in fields.items():
            key = repr(field)
            if node in _LEAVES:
                simple.append(f"type(d[{key}]) is not {node}")
            elif isinstance(node, tuple) and node[0] == "nullable" and node[1] in _LEAVES:
                simple.append(f"((v := d[{key}]) is not None and type(v) is not {node[1]})")
            elif node in ("float", ("nullable", "float")):  # pydantic writes an int here as a float
                v = self.var()
                body += [
                    f"{v} = d[{key}]",
                    f"if type({v}) is not float:",
                    f"    if type({v}) is int:",
                    *([] if copies else ["        if out is d:", "            out = d.copy()"]),
                    f"        out[{key}] = float({v})",
                    "    else:" if node == "float" else f"    elif {v} is not None:",
                    "        raise Unsupported",
                ]
            else:
                v = self.var()
                lines, changed = self.check(node, v)
                body += [f"{v} = d[{key}]", *lines]
                if changed:
                    body.append(f"out[{key}] = {v}")
        head = [
            f"if type(obj) is not {name}_cls:",
            "    raise Unsupported",
            "d = obj.__dict__",
            "if (",
            *(f"    {c} or" for c in simple[:-1]),
            f"    {simple[-1]}",
            "):",
            "    raise Unsupported",
            "out = d.copy()" if copies else "out = d",
        ]
        self.lines += [f"def {name}(obj):", *(f"    {line}" for line in (*head, *body, "return out")), ""]
        return name

    def check(self, node: Node, v: str) -> tuple[list[str], bool]:
        """Lines that check `v` against `node` and, if it must be converted, rebind `v` to its value
        for orjson; and whether they do."""
        if isinstance(node, str):
            if node == "iso":
                check = [f"if type({v}) is not datetime:", "    raise Unsupported"]
                return [*check, f"{v} = iso_seen({v}) or iso({v})"], True
            if node == "datetime":  # a datetime without our serializer: pydantic's own format
                raise Unsupported("datetime")
            return [f"if type({v}) is not {node}:", "    raise Unsupported"], False
        kind = node[0]
        if kind == "model":
            return [f"{v} = {self.model(node[1], node[2])}({v})"], True
        if kind == "nullable":
            lines, changed = self.check(node[1], v)
            return [f"if {v} is not None:", *(f"    {line}" for line in lines)], changed
        item = self.var()
        lines, changed = self.check(node[1], item)
        if kind == "list":
            head = [f"if type({v}) is not list:", "    raise Unsupported"]
            if not changed:
                return [*head, f"for {item} in {v}:", *(f"    {line}" for line in lines)], False
            if node[1][0] == "model":
                return [
                    *head,
                    f"{v} = [{self.model(node[1][1], node[1][2])}({item}) for {item} in {v}]",
                ], True
            acc = self.var()
            loop = [f"for {item} in {v}:", *(f"    {line}" for line in lines), f"    {acc}.append({item})"]
            return [*head, f"{acc} = []", *loop, f"{v} = {acc}"], True
        key = self.var()
        head = [f"if type({v}) is not dict:", "    raise Unsupported"]
        loop = [
            f"for {key}, {item} in {v}.items():",
            f"    if type({key}) is not str:",
            "        raise Unsupported",
            *(f"    {line}" for line in lines),
        ]
        if not changed:
            return [*head, *loop], False
        acc = self.var()
        return [*head, f"{acc} = {{}}", *loop, f"    {acc}[{key}] = {item}", f"{v} = {acc}"], True


def _converts(node: Node) -> bool:
    if isinstance(node, str):
        return node == "iso"
    if node[0] == "model":
        return True
    return _converts(node[1])


def compile_encoder(cls: type[BaseModel]) -> Callable[[BaseModel], Any] | None:
    """A function turning an instance of exactly `cls` into plain values that orjson writes as
    pydantic-core would (raising `Unsupported` for a value it cannot vouch for), or None if the model's
    serialisation is beyond it."""
    try:
        node = _node(cls.__pydantic_core_schema__, {})
        if node[0] != "model" or node[1] is not cls:
            return None
        writer = _Writer()
        name = writer.model(cls, node[2])
    except (Unsupported, KeyError, TypeError):
        return None
    source = "\n".join(writer.lines)
    namespace = dict(writer.globals)
    exec(compile(source, f"<encoder of {cls.__qualname__}>", "exec"), namespace)  # noqa: S102
    encoder: Callable[[BaseModel], Any] = namespace[name]
    encoder.__source__ = source  # type: ignore[attr-defined]  # for a reader (and a test)
    return encoder
