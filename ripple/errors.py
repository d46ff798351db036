"""ripple's one exception tree.

Every error ripple raises on purpose derives from :class:`RippleError` and carries a stable ``code`` (the string
clients match on) and the HTTP ``status`` the REST layer answers with::

    RippleError
    ├── BadRequestError               400 bad_request
    │   └── InsecureBindError         400 insecure_bind      (a non-loopback bind without --auth)
    ├── ValidationError               422 invalid
    │   ├── InvalidNameError          422 invalid_name
    │   ├── InvalidValueError         422 invalid_value
    │   ├── ValueTooLargeError        413 value_too_large
    │   ├── InvalidOpError            422 invalid_op
    │   ├── UpdateRejectedError       422 update_rejected   (carries the per-op errors)
    │   └── OffsetOutOfRangeError     400 offset_out_of_range (an `after` outside the log)
    ├── UnauthorizedError             401 unauthorized      (missing, wrong, expired or revoked token)
    ├── ForbiddenError                403 forbidden         (the token lacks the grant)
    │   └── OriginNotAllowedError     403 origin_not_allowed
    ├── HostNotAllowedError           421 host_not_allowed  (DNS rebinding)
    ├── RateLimitedError              429 rate_limited      (Retry-After)
    ├── NotFoundError                 404 not_found
    ├── ConflictError                 409 conflict / idempotency_key_reused
    ├── PreconditionFailedError       412 precondition_failed
    ├── CascadeLimitError             422 cascade_limit
    ├── RegistrationError             422 registration_error
    ├── ProjectionRebuildingError     503 projection_rebuilding
    ├── OverloadedError               503 overloaded        (Retry-After)
    ├── StoreClosedError              503 store_closed
    ├── DatabaseFullError             507 database_full
    ├── StorageError                  500 storage_error
    └── DatabaseFileError             the file cannot be used as a ripple database
        ├── NotARippleDatabaseError       not_a_ripple_database
        ├── SchemaVersionError            schema_version
        └── WriterLockedError             writer_locked      (names the holder's pid)
"""

from __future__ import annotations

from typing import Any


class RippleError(Exception):
    """Root of every error ripple raises on purpose."""

    code: str = "ripple_error"
    status: int = 500

    def __init__(self, message: str, *, code: str | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.detail = detail


class BadRequestError(RippleError):
    code = "bad_request"
    status = 400


class ValidationError(RippleError):
    code = "invalid"
    status = 422


class InvalidNameError(ValidationError):
    code = "invalid_name"


class InvalidValueError(ValidationError):
    code = "invalid_value"


class ValueTooLargeError(ValidationError):
    code = "value_too_large"
    status = 413


class InvalidOpError(ValidationError):
    code = "invalid_op"


class UpdateRejectedError(ValidationError):
    """Every op of an update failed (or there were none): nothing was written."""

    code = "update_rejected"

    def __init__(self, message: str, errors: list[Any], *, detail: Any = None) -> None:
        super().__init__(message, detail=detail if detail is not None else {"errors": errors})
        self.errors = errors


class OffsetOutOfRangeError(ValidationError):
    """A resume point (``after``) outside [earliest - 1, head]: a bad query value, so 400 (DESIGN §8)."""

    code = "offset_out_of_range"
    status = 400


class InsecureBindError(BadRequestError):
    """``ripple serve`` on a non-loopback address without ``--auth`` (and without ``--insecure-no-auth``)."""

    code = "insecure_bind"


class UnauthorizedError(RippleError):
    """No token, or a token that is wrong, expired or revoked. The message never says which."""

    code = "unauthorized"
    status = 401


class ForbiddenError(RippleError):
    """A valid token without the grant the request needs. Says nothing about whether the target exists."""

    code = "forbidden"
    status = 403


class OriginNotAllowedError(ForbiddenError):
    """A browser request from an origin that is neither the server's own nor listed (``--allow-origin``)."""

    code = "origin_not_allowed"


class HostNotAllowedError(RippleError):
    """The ``Host`` header names none of the server's names (DNS rebinding); ``--allow-host`` adds names."""

    code = "host_not_allowed"
    status = 421


class RateLimitedError(RippleError):
    """Too many failed token attempts from one client address; retry after ``retry_after`` seconds."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: int, detail: Any = None) -> None:
        super().__init__(message, detail=detail)
        self.retry_after = retry_after


class NotFoundError(RippleError):
    code = "not_found"
    status = 404


class ConflictError(RippleError):
    code = "conflict"
    status = 409


class PreconditionFailedError(RippleError):
    code = "precondition_failed"
    status = 412


class CascadeLimitError(RippleError):
    code = "cascade_limit"
    status = 422


class RegistrationError(RippleError):
    code = "registration_error"
    status = 422


class ProjectionRebuildingError(RippleError):
    code = "projection_rebuilding"
    status = 503


class OverloadedError(RippleError):
    code = "overloaded"
    status = 503
    retry_after = 1


class StoreClosedError(RippleError):
    code = "store_closed"
    status = 503


class DatabaseFullError(RippleError):
    code = "database_full"
    status = 507


class StorageError(RippleError):
    code = "storage_error"
    status = 500


class DatabaseFileError(RippleError):
    """The file cannot be opened as a ripple database; it was left untouched."""

    code = "database_file"
    status = 500


class NotARippleDatabaseError(DatabaseFileError):
    code = "not_a_ripple_database"


class SchemaVersionError(DatabaseFileError):
    code = "schema_version"


class WriterLockedError(DatabaseFileError):
    code = "writer_locked"

    def __init__(self, message: str, *, pid: int | None) -> None:
        super().__init__(message, detail={"pid": pid})
        self.pid = pid
