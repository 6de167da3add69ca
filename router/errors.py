"""One place where failures get a name and, where they reach HTTP, a status.

Two families: `HttpError`s end a request with their `status` (the error boundary in
`handlers/common.py`, `guarded`, is the one translation point), and `ProblemsError`s refuse a
start-up or a reload, carrying every `Problem` found, each located by file and line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

import msgspec

_PATH = re.compile(r" - at `(\$[^`]*)`$")

Severity = Literal["error", "warning"]


class RouterError(Exception):
    """Base class for errors raised by metrics-router code."""

    status = 500
    title = "Internal Server Error"

    def body(self) -> dict[str, object]:
        """The JSON body of the error response."""
        return {"error": self.title, "message": str(self), "statusCode": self.status}


# -- HTTP ------------------------------------------------------------------------------------


class HttpError(RouterError):
    """A request refused with `status`; `path` names the failing field, `reason` the counter tag."""

    def __init__(self, message: str, path: str | None = None, reason: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.reason = reason
        self.headers: dict[str, str] | None = None

    def body(self) -> dict[str, object]:
        body: dict[str, object] = {
            "error": self.title,
            "message": self.message,
            "statusCode": self.status,
        }
        if self.status < 500:
            # Every refusal names the field it is about, in the shape FxA clients know.
            body["validation"] = {"keys": [self.path] if self.path else []}
        return body


class BadRequest(HttpError):
    """The client sent something we refuse."""

    status = 400
    title = "Bad Request"

    @classmethod
    def from_validation(cls, exc: Exception) -> BadRequest:
        """Wrap a msgspec decode/validation error, keeping the `$.path` it carries."""
        text = str(exc)
        match = _PATH.search(text)
        # msgspec names no path for a problem with the whole document (`$`).
        path = match.group(1) if match else "$"
        return cls(text, path, reason="schema")


class Unauthorized(HttpError):
    """Missing or wrong credentials."""

    status = 401
    title = "Unauthorized"


class Forbidden(HttpError):
    """Refused for who is asking (origin), not for what was sent."""

    status = 403
    title = "Forbidden"


class Unavailable(HttpError):
    """We cannot keep this work right now; the client should retry after `retry_after` s."""

    status = 503
    title = "Service Unavailable"

    def __init__(self, message: str, reason: str, retry_after: int) -> None:
        super().__init__(message, None, reason)
        self.headers = {"Retry-After": str(retry_after)}


# -- start-up and reload problems ------------------------------------------------------------


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """One error or warning in the config, the rule files or a file they name.

    `where` names the thing inside the file (a config key, a rule, an event type).
    """

    file: str
    line: int | None = None
    severity: Severity = "error"
    where: str = ""
    message: str

    def __str__(self) -> str:
        at = f"{self.file}:{self.line}" if self.line is not None else self.file
        what = f"{self.where}: " if self.where else ""
        return f"{at + ': ' if at else ''}{self.severity}: {what}{self.message}"


def summary(problems: Iterable[Problem]) -> str:
    """`N error(s), M warning(s)`: the last line under a list of problems."""
    found = list(problems)
    errors = sum(p.severity == "error" for p in found)
    return f"{errors} error(s), {len(found) - errors} warning(s)"


class ProblemsError(RouterError):
    """Refused because of `problems` (at least one an error); every one is listed.

    `exit_code` is the command's exit status: 2, or 1 when the rule table itself does not
    compile (what `rules check` answers for it, and what `serve` always answered).
    """

    what = "problems"
    exit_code = 2

    def __init__(self, problems: Iterable[Problem | str], exit_code: int | None = None) -> None:
        if exit_code is not None:
            self.exit_code = exit_code
        # A bare string is a problem with no file (a command-line option, say).
        self.problems = [
            p if isinstance(p, Problem) else Problem(file="", message=p) for p in problems
        ]
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{self.what}: {summary(self.problems)}:\n{lines}")

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


class ConfigError(ProblemsError):
    """The configuration (file, environment, command line) has problems."""

    what = "configuration"


class RuleError(ProblemsError):
    """The rule files do not compile."""

    what = "rule files"
    exit_code = 1


class RegistryError(ProblemsError):
    """The event registry (`[events.*]` tables of the rule files) has problems."""

    what = "event registry"


class TemplateError(ValueError):
    """A rule template that cannot be parsed (the compiler makes it a Problem of its rule)."""


class StartupError(ProblemsError):
    """`check()` found errors: in the config, rules, registry or the files they name."""

    what = "start-up check"


# -- delivery: buffers, stores, destinations -------------------------------------------------
# Raised inside the delivery engine (router/dispatch, router/sinks, the stores). Ingest turns
# SpoolError into a 503 (handlers/common.py); the rest never reach HTTP.


class DeliveryError(RouterError):
    """Base class of the delivery engine's errors.

    `retry_later`: the destination, not the batch, is the trouble (a bus that is down); the
    runner keeps the batch in its buffer and tries again instead of giving it up.
    """

    retry_later = False


class SpoolError(DeliveryError):
    """A spool could not be written: strict-mode requests are refused, not acknowledged."""


class DiskFull(SpoolError):
    """A write hit ENOSPC (spool, dead-letter store, log file): refuse work until space returns."""


class DeadLetterError(DeliveryError):
    """The dead-letter store could not be written: what it was to keep stays where it was."""


class PublishError(DeliveryError):
    """Some records of a batch were not acknowledged by JetStream: publish them again later."""

    retry_later = True


class TransportError(DeliveryError):
    """A request never got an answer (timeout, refused, reset): always worth retrying.

    `reason` is the short name counted in `sink.retried{reason}` and dead-letter reasons.
    """

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason
