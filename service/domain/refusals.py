"""Why the gateway refuses a request, independent of the transport that
carries the answer: the store and the rules raise `Refused` with a reason,
and the HTTP side alone maps each reason to a status code
(service/http/errors.py).

{"message": "Validation Failed",
 "errors": [{"resource": "Sms", "field": "to", "code": "invalid", "message": "..."}]}
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    BAD_REQUEST = "bad_request"              # the body cannot be read at all
    UNAUTHORIZED = "unauthorized"            # no key, or not a live one
    NOT_FOUND = "not_found"                  # absent, or another account's
    CONFLICT = "conflict"                    # the resource's state forbids it now
    TOO_LARGE = "too_large"                  # the body is over its limit
    UNSUPPORTED_MEDIA = "unsupported_media"  # not a kind of body we take
    INVALID = "invalid"                      # read, but refused on its content
    RATE_LIMITED = "rate_limited"            # over the account's allowance
    BUSY = "busy"                            # no capacity for it now; retry later


@dataclass(frozen=True)
class FieldError:
    resource: str
    field: str
    code: str  # a FieldCode (service/domain/statuses.py)
    message: str

    def as_json(self) -> dict[str, str]:
        return {
            "resource": self.resource,
            "field": self.field,
            "code": str(self.code),
            "message": self.message,
        }


class Refused(Exception):
    def __init__(
        self,
        reason: Reason,
        message: str,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.errors = errors or []
        self.headers = headers or {}


def validation_failed(errors: list[FieldError]) -> Refused:
    return Refused(Reason.INVALID, "Validation Failed", errors)
