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
        # msgspec names no path for a problem with the whole document (`$`).
        path = match.group(1) if match else "$"
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
        return {**super().body(), "error": "Forbidden"}


class Unauthorized(Forbidden):
    """Missing or wrong credentials."""

    status = 401

    def body(self) -> dict[str, object]:
        return {**super().body(), "error": "Unauthorized"}


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
