"""ripple's one exception tree.

Every error ripple raises on purpose derives from :class:`RippleError` and carries a stable ``code`` (the string
clients match on) and the HTTP ``status`` the REST layer answers with::

    RippleError
    ├── BadRequestError               400 bad_request
    ├── ValidationError               422 invalid
    │   ├── InvalidNameError          422 invalid_name
    │   ├── InvalidValueError         422 invalid_value
    │   ├── ValueTooLargeError        413 value_too_large
    │   ├── InvalidOpError            422 invalid_op
    │   ├── UpdateRejectedError       422 update_rejected   (carries the per-op errors)
    │   └── OffsetOutOfRangeError     400 offset_out_of_range (an `after` outside the log)
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
