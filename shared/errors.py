"""The one error hierarchy of the backend.

Business code raises these; the HTTP edge (`shared.http`) maps each class to a status code
through a single table, and the CLI maps them to a message and a non-zero exit.
"""

from __future__ import annotations


class AppError(Exception):
    """Base of every error the backend raises on purpose; `code` is a stable machine name."""

    code = "internal"

    def __init__(self, message: str, *, code: str | None = None, details: object = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class ConfigError(AppError):
    """A setting or a configuration file is missing or invalid (the instance cannot serve)."""

    code = "config_error"


class BadRequest(AppError):
    """The request is malformed: bad parameter, bad JSON, unknown field."""

    code = "bad_request"


class Unauthenticated(AppError):
    """No valid credentials were presented."""

    code = "unauthenticated"


class Forbidden(AppError):
    """Valid credentials without the required permission."""

    code = "forbidden"


class NotFound(AppError):
    """The document or path does not exist."""

    code = "not_found"


class MethodNotAllowed(AppError):
    """The HTTP method is not served on this path."""

    code = "method_not_allowed"

    def __init__(self, message: str, *, allowed: tuple[str, ...]):
        super().__init__(message)
        self.allowed = allowed


class Conflict(AppError):
    """The write conflicts with the current state (the document exists already, ...)."""

    code = "conflict"


class PreconditionFailed(AppError):
    """An `If-Match` style precondition did not hold."""

    code = "precondition_failed"


class PayloadTooLarge(AppError):
    """The request body is larger than allowed."""

    code = "payload_too_large"


class UnsupportedMediaType(AppError):
    """The request body is not of a content type the endpoint accepts."""

    code = "unsupported_media_type"


class Unavailable(AppError):
    """Neither the primary store nor the fallback could answer; retry later."""

    code = "unavailable"

    def __init__(self, message: str, *, retry_after_s: int = 5, code: str | None = None):
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


# --- a migration run that stops (its work so far is checkpointed; the same run id resumes it) ---

class RunAborted(AppError):
    """A migration run cannot go on (a count that does not add up, a checkpoint that cannot be
    written, access refused, ...): a 500; `code` names the cause."""

    def __init__(self, code: str, message: str):
        super().__init__(message, code=code)


class RunTakenOver(RunAborted, Conflict):
    """Another runner has taken the run, or a range of it, over: a 409."""


class RunUnavailable(RunAborted, Unavailable):
    """Firestore kept failing for longer than the run waits: a 503, to resume later."""

    def __init__(self, code: str, message: str):
        super().__init__(code, message)
        self.retry_after_s = 30
