"""Edge validation of every string in an admin request: no NUL character, and a length
limit per field, checked before any servicer or the database sees the request.

Postgres cannot store NUL in `text` or `jsonb`, and the database's own errors either
lack the field name or (CHECK violations) quote the whole row; so both are caught
here and reported as field violations naming the request field. The limits are in
one table (documented in docs/admin.md); `name` matches the CHECK in 0001_core.sql.
"""

from __future__ import annotations

from typing import Final

from google.protobuf import struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from policy_sidecar.admin.errors import Violations

__all__ = ["DEFAULT_MAX_LENGTH", "MAX_LENGTHS", "check_strings"]

#: Characters allowed in a string field not listed in MAX_LENGTHS (ids, org ids,
#: providers, model names, patterns...).
DEFAULT_MAX_LENGTH: Final = 256
#: Per field name (the last part of the path), in characters.
MAX_LENGTHS: Final[dict[str, int]] = {
    "name": 200,  # applications.name CHECK (length(name) <= 200); the same for all names
    "description": 2000,
    "source": 10_000,  # a CEL expression being validated
    "page_token": 1024,
}
#: Labels, like Kubernetes': short keys, values a little longer.
MAX_LABEL_KEY: Final = 63
MAX_LABEL_VALUE: Final = 256
#: Strings inside JSON documents (policy configs, settings): NUL is refused, and a
#: whole-message limit (gRPC's maximum receive size) bounds the rest.
_NUL = "\x00"


def check_strings(message: Message) -> None:
    """Raise InvalidArgument naming every string field that holds NUL or is too long."""
    v = Violations()
    _walk(message, "", v)
    v.check()


def _text(value: str, path: str, limit: int | None, v: Violations, what: str = "") -> None:
    if _NUL in value:
        v.add(path, f"{what}must not contain a NUL character")
    elif limit is not None and len(value) > limit:
        v.add(path, f"{what}at most {limit} characters (got {len(value)})")


def _walk(message: Message, prefix: str, v: Violations) -> None:
    if isinstance(message, struct_pb2.Struct):
        _struct(message, prefix, v)
        return
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        limit = MAX_LENGTHS.get(field.name, DEFAULT_MAX_LENGTH)
        entry = _map_entry(field)
        if entry is not None:
            value_field = entry.fields_by_name["value"]
            for key in value:
                _text(key, path, MAX_LABEL_KEY, v, what="a key: ")
                item = value[key]
                if value_field.type == FieldDescriptor.TYPE_STRING:
                    _text(item, f"{path}.{key}" if _NUL not in key else path, MAX_LABEL_VALUE, v)
                elif value_field.type == FieldDescriptor.TYPE_MESSAGE:
                    _walk(item, f"{path}.{key}.", v)
        elif field.type == FieldDescriptor.TYPE_STRING:
            if _is_repeated(field):
                for i, item in enumerate(value):
                    _text(item, f"{path}[{i}]", limit, v)
            else:
                _text(value, path, limit, v)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if _is_repeated(field):
                for i, item in enumerate(value):
                    _walk(item, f"{path}[{i}].", v)
            else:
                _walk(value, f"{path}.", v)


def _struct(message: struct_pb2.Struct, prefix: str, v: Violations) -> None:
    path = prefix.rstrip(".")
    for key, item in message.fields.items():
        if _NUL in key:
            v.add(path, "a key: must not contain a NUL character")
            continue
        _value(item, f"{path}.{key}", v)


def _value(value: struct_pb2.Value, path: str, v: Violations) -> None:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        _text(value.string_value, path, None, v)
    elif kind == "struct_value":
        _struct(value.struct_value, f"{path}.", v)
    elif kind == "list_value":
        for i, item in enumerate(value.list_value.values):
            _value(item, f"{path}[{i}]", v)


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _map_entry(field: FieldDescriptor) -> Descriptor | None:
    """The entry type of a map field, or None for any other field."""
    entry = field.message_type
    if _is_repeated(field) and entry is not None and entry.GetOptions().map_entry:
        return entry
    return None
