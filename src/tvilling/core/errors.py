"""The error hierarchy shared by every Tvilling package.

Every error carries a human message and structured ``fields`` (for example the
twin, the field and the rule that was broken) so that the API can render a JSON
problem body and a program can react without parsing text.

>>> err = Invalid("temperature must be a number", twin="m1", field="reported.temperature", rule="type")
>>> err.fields["rule"]
'type'
"""

from __future__ import annotations

from typing import Any


class TvillingError(Exception):
    """Root of all errors raised by Tvilling."""

    status: int = 500
    title: str = "Internal error"

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields: dict[str, Any] = fields

    def to_problem(self) -> dict[str, Any]:
        """Return an RFC 9457 style problem document."""
        body: dict[str, Any] = {
            "type": f"urn:tvilling:error:{type(self).__name__}",
            "title": self.title,
            "status": self.status,
            "detail": self.message,
        }
        for key, value in self.fields.items():
            if key not in body:
                body[key] = value
        return body


class Malformed(TvillingError):
    """The request could not be read at all (bad JSON, bad query syntax, bad parameter)."""

    status = 400
    title = "Malformed request"


class Invalid(TvillingError):
    """The request was readable but breaks a rule of the model or of the platform."""

    status = 422
    title = "Validation failed"


class TooLarge(TvillingError):
    """The request exceeds a size, length or depth bound."""

    status = 413
    title = "Request too large"


class NotFound(TvillingError):
    """The addressed resource does not exist."""

    status = 404
    title = "Not found"


class Conflict(TvillingError):
    """The request conflicts with the current state (exists already, in use, stale revision)."""

    status = 409
    title = "Conflict"


class PreconditionFailed(Conflict):
    """An ``If-Match`` precondition did not hold: the caller's revision is stale."""

    status = 412
    title = "Precondition failed"


class Unauthorized(TvillingError):
    """The caller is not known: no credential, or one that is malformed, expired, revoked or unknown."""

    status = 401
    title = "Unauthorized"


class Forbidden(TvillingError):
    """The caller is known but not allowed to do this (its roles or scope do not cover it)."""

    status = 403
    title = "Forbidden"


class Unavailable(TvillingError):
    """A dependency (database, broker) cannot be reached right now; retrying may help."""

    status = 503
    title = "Service unavailable"
