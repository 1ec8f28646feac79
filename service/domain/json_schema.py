"""JSON Schema fragments for what the API writes.

Each renderer declares its fields next to itself (name -> schema, with the
field's description) using these; the OpenAPI document is built from those
declarations, so the two cannot drift apart unnoticed
(tests/unit/test_rendered_fields.py renders rows and checks them against it).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from service.domain.phone_numbers import E164_PATTERN
from service.domain.statuses import values

Schema = dict[str, Any]
# A renderer's fields in the order it writes them: name -> schema with description.
Fields = dict[str, Schema]


def anchored(shape: re.Pattern[str] | str) -> str:
    """A shape Python matches with fullmatch, as a JSON Schema pattern (which searches)."""
    text = shape.pattern if isinstance(shape, re.Pattern) else shape
    return f"^{text}$"


def nullable(schema: Schema) -> Schema:
    """The same schema, also allowing null (OpenAPI 3.1: a type list)."""
    out = dict(schema)
    out["type"] = [schema["type"], "null"]
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    return out


def enum(members: type[StrEnum], **extra: Any) -> Schema:
    return {"type": "string", "enum": values(members), **extra}


def object_of(fields: Fields) -> Schema:
    """What a renderer writes: every declared field, always, and nothing else."""
    return {
        "type": "object",
        "required": list(fields),
        "additionalProperties": False,
        "properties": dict(fields),
    }


TIMESTAMP: Schema = {
    "type": "string",
    "format": "date-time",
    "description": "ISO 8601 in UTC to the second, like 2011-04-22T13:33:48Z.",
    "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$",
}
MAYBE_TIMESTAMP = nullable(TIMESTAMP)
URL: Schema = {"type": "string", "format": "uri"}
ID: Schema = {"type": "integer", "minimum": 1}
E164: Schema = {"type": "string", "pattern": anchored(E164_PATTERN)}
