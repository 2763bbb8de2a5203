"""The lancemem error tree.

Every error carries a stable ``code`` (``VALIDATION_001``, ...) that callers
and assistants can match on, and a message that says what was wrong and what
to do next. ``str(error)`` is ``"CODE: message"``.

    LanceMemError
    ├── ValidationError          VALIDATION_005  bad input in general
    │   ├── ScopeRequiredError   VALIDATION_001  no user/agent/run id
    │   ├── InvalidIdError       VALIDATION_002  a malformed id
    │   ├── ReservedKeyError     VALIDATION_003  custom metadata uses a reserved key
    │   ├── ScopeConflictError   VALIDATION_004  an id given twice with different values
    │   └── FilterError          FILTER_001      a filter that cannot be compiled
    ├── NotFoundError            NOT_FOUND_001   no such memory in the caller's scope
    ├── EmbeddingError           EMBEDDING_002   the model cannot be loaded or run
    │   └── ModelMismatchError   EMBEDDING_001   the store was built with another model
    ├── StorageError             STORAGE_001     LanceDB failed
    │   └── ConflictError        STORAGE_002     a write kept conflicting with others
    ├── ClosedError              CLOSED_001      the Memory was closed (Python API)
    ├── AuthenticationError      AUTH_001        a missing, unknown, expired or revoked credential
    └── PermissionDeniedError    AUTH_002        a call outside what its credential allows
"""

from __future__ import annotations

from typing import ClassVar


class LanceMemError(Exception):
    """Base of every lancemem error; ``code`` is stable across releases."""

    code: ClassVar[str] = "LANCEMEM_000"

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(f"{self.code}: {message}")


class ValidationError(LanceMemError):
    """The caller's input is not acceptable; the message says how to fix it."""

    code = "VALIDATION_005"


class ScopeRequiredError(ValidationError):
    """No session id was given, so the call has no scope."""

    code = "VALIDATION_001"


class InvalidIdError(ValidationError):
    """A session or actor id is empty, too long or contains control characters."""

    code = "VALIDATION_002"


class ReservedKeyError(ValidationError):
    """Custom metadata tried to use a key that lancemem manages itself."""

    code = "VALIDATION_003"


class ScopeConflictError(ValidationError):
    """An id was given as an argument and inside filters with different values."""

    code = "VALIDATION_004"


class FilterError(ValidationError):
    """A filter is malformed; the message names the offending part."""

    code = "FILTER_001"


class NotFoundError(LanceMemError):
    """No memory with that id exists in the caller's scope."""

    code = "NOT_FOUND_001"


class EmbeddingError(LanceMemError):
    """The embedding model could not be loaded or failed to embed."""

    code = "EMBEDDING_002"


class ModelMismatchError(EmbeddingError):
    """The store's vectors were made by a different model than the configured one."""

    code = "EMBEDDING_001"


class StorageError(LanceMemError):
    """LanceDB failed. The message says what failed and why in general terms;
    ``detail`` keeps LanceDB's own text for the log, since it can quote the
    where clause and source paths."""

    code = "STORAGE_001"

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class ConflictError(StorageError):
    """A write conflicted with other writers more often than retries allow."""

    code = "STORAGE_002"


class ClosedError(LanceMemError):
    """A call on a Memory after its ``close()``."""

    code = "CLOSED_001"


class AuthenticationError(LanceMemError):
    """A credential (API token or JWT) is missing, unknown, expired, revoked or
    malformed. HTTP answers it with 401; the message goes to the server's log."""

    code = "AUTH_001"


class PermissionDeniedError(LanceMemError):
    """An authenticated call reaches outside its credential: another user's ids,
    or a write with a read-only token. Nothing was read or changed."""

    code = "AUTH_002"
