"""One place where failures get a name and, where they reach HTTP, a status."""

from __future__ import annotations

import re

_PATH = re.compile(r" - at `(\$[^`]*)`$")


class RouterError(Exception):
    """Base class for errors raised by metrics-router code."""

    status = 500
    title = "Internal Server Error"

    def body(self) -> dict[str, object]:
        """The JSON body of the error response."""
        return {"error": self.title, "message": str(self), "statusCode": self.status}


class BadRequest(RouterError):
    """The client sent something we refuse; `path` names the failing field."""

    status = 400

    def __init__(self, message: str, path: str | None = None, reason: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.reason = reason

    @classmethod
    def from_validation(cls, exc: Exception) -> BadRequest:
        """Wrap a msgspec decode/validation error, keeping the `$.path` it carries."""
        text = str(exc)
        match = _PATH.search(text)
        path = match.group(1) if match else None
        return cls(text, path, reason="schema")

    def body(self) -> dict[str, object]:
        """The JSON body of the 400 response, in the shape FxA clients know."""
        keys = [self.path] if self.path else []
        return {
            "error": "Bad Request",
            "message": self.message,
            "statusCode": self.status,
            "validation": {"keys": keys},
        }


class Forbidden(BadRequest):
    """Refused for who is asking (origin, token), not for what was sent."""

    status = 403

    def body(self) -> dict[str, object]:
        return {"error": "Forbidden", "message": self.message, "statusCode": self.status}


class Unauthorized(Forbidden):
    """Missing or wrong credentials."""

    status = 401

    def body(self) -> dict[str, object]:
        return {"error": "Unauthorized", "message": self.message, "statusCode": self.status}


class Unavailable(RouterError):
    """We cannot keep this work right now; the client should retry after `retry_after` s."""

    status = 503
    title = "Service Unavailable"

    def __init__(self, message: str, reason: str, retry_after: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.headers = {"Retry-After": str(retry_after)}


class ConfigError(RouterError):
    """The configuration has problems; all of them are listed."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# -- delivery: buffers, stores, destinations -------------------------------------------------
# Raised inside the delivery engine (router/dispatch, router/sinks, the stores). Ingest turns
# SpoolError into a 503 (handlers/common.py); the rest never reach HTTP.


class DeliveryError(RouterError):
    """Base class of the delivery engine's errors."""


class SpoolError(DeliveryError):
    """A spool could not be written: strict-mode requests are refused, not acknowledged."""


class DiskFull(SpoolError):
    """A write hit ENOSPC (spool, dead-letter store, log file): refuse work until space returns."""


class DeadLetterError(DeliveryError):
    """The dead-letter store could not be written: what it was to keep stays where it was."""


class PublishError(DeliveryError):
    """Some records of a batch were not acknowledged by JetStream."""


class TransportError(DeliveryError):
    """A request never got an answer (timeout, refused, reset): always worth retrying.

    `reason` is the short name counted in `sink.retried{reason}` and dead-letter reasons.
    """

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason
