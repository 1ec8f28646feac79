"""Field checks shared by every JSON body the API takes. Each appends a
FieldError to `errors` instead of raising, so one answer names every problem."""

from __future__ import annotations

from typing import Any

from service.domain.destinations import refused_type
from service.domain.phone_numbers import InvalidNumber, parse_e164
from service.domain.refusals import FieldError, validation_failed
from service.domain.statuses import FieldCode


class HugeInteger(float):
    """An integer in a JSON body too long to convert (the HTTP side's parser
    keeps it as this, an infinity, so it still serialises): out of range for
    any integer field, and of the wrong type for any other."""


HUGE_INTEGER = HugeInteger("inf")


def require_object(resource: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise validation_failed(
            [FieldError(resource, "(body)", "invalid", "the body must be a JSON object")])
    return body


def unknown_fields(resource: str, body: dict[str, Any], allowed: tuple[str, ...],
                   errors: list[FieldError], prefix: str = "") -> None:
    """Each name not in `allowed`; `prefix` names a nested object ("escalate.")."""
    for name in body:
        if name not in allowed:
            errors.append(FieldError(resource, f"{prefix}{name}", FieldCode.UNKNOWN_FIELD,
                                     f"unknown field {name!r}; allowed: {', '.join(allowed)}"))


def numbers(resource: str, body: dict[str, Any], errors: list[FieldError]) -> dict[str, str]:
    """`from` and `to`, both required, as validated E.164 numbers."""
    out: dict[str, str] = {}
    for name in ("from", "to"):
        if body.get(name) is None:
            errors.append(FieldError(resource, name, "missing_field", f"{name} is required"))
            continue
        try:
            out[name] = parse_e164(body[name])
        except InvalidNumber as exc:
            errors.append(FieldError(resource, name, "invalid", f"{name} {exc}"))
    if "to" in out and (why := refused_type(out["to"])):
        errors.append(destination_not_allowed(resource, f"{out['to']} is {why}"))
    return out


def destination_not_allowed(resource: str, why: str) -> FieldError:
    return FieldError(resource, "to", FieldCode.DESTINATION_NOT_ALLOWED,
                      f"{why}: messages may not be sent there")


def not_owned(resource: str, number: str) -> FieldError:
    """`from` under the `owned` sender policy (checked by the store, which knows)."""
    return FieldError(resource, "from", FieldCode.NOT_OWNED,
                      f"{number} is not one of this account's numbers (GET /numbers)")


def bool_field(resource: str, body: dict[str, Any], name: str, default: bool,
               errors: list[FieldError]) -> bool:
    """An optional boolean field."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        errors.append(FieldError(resource, name, "invalid", f"{name} must be true or false"))
        return default
    return value


def int_field(resource: str, body: dict[str, Any], name: str, low: int, high: int,
              errors: list[FieldError]) -> int | None:
    """An optional integer field from `low` to `high`."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, HugeInteger):
        errors.append(FieldError(resource, name, "out_of_range",
                                 f"{name} must be between {low} and {high}"))
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON has one number type: 3.0 is the integer 3
    if isinstance(value, bool) or not isinstance(value, int):
        errors.append(FieldError(resource, name, "invalid", f"{name} must be an integer"))
        return None
    if not low <= value <= high:
        errors.append(FieldError(resource, name, "out_of_range",
                                 f"{name} must be between {low} and {high}"))
        return None
    return value
