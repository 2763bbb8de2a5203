"""lancemem: long-term memory for AI assistants, over LanceDB, served by MCP.

The Python API is ``Memory`` (``from lancemem import Memory``), with ``Store``
(another store) and ``FastEmbedder`` (another model); its errors are
``LanceMemError`` and the subclasses in ``lancemem.core.errors``, importable
from here too. They are imported on first use, so ``import lancemem`` stays
cheap for the server's start-up.

The package folders are its layers: ``core`` (errors, settings, scope and
filter compilation, records), ``storage`` (the only one that talks to
LanceDB), ``search`` (embeddings, ranking), ``memory`` (``Memory``), ``mcp``
(the tools) and ``serving`` (transports, limits, JWT checks); ``cli`` sits on
top.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
_LAZY = {
    "Memory": "lancemem.memory.facade",
    "Store": "lancemem.storage.store",
    "FastEmbedder": "lancemem.search.embeddings",
}
_ERRORS = ("LanceMemError", "ValidationError", "ScopeRequiredError", "InvalidIdError",
           "ReservedKeyError", "ScopeConflictError", "FilterError", "NotFoundError",
           "EmbeddingError", "ModelMismatchError", "StorageError", "ConflictError",
           "ClosedError", "AuthenticationError", "PermissionDeniedError")
__all__ = [  # noqa: RUF022 (the API first, then the errors in the order of their tree)
    "__version__", "Memory", "Store", "FastEmbedder", "LanceMemError", "ValidationError",
    "ScopeRequiredError", "InvalidIdError", "ReservedKeyError", "ScopeConflictError",
    "FilterError", "NotFoundError", "EmbeddingError", "ModelMismatchError", "StorageError",
    "ConflictError", "ClosedError", "AuthenticationError", "PermissionDeniedError"]

if TYPE_CHECKING:
    from .core.errors import (
        AuthenticationError,
        ClosedError,
        ConflictError,
        EmbeddingError,
        FilterError,
        InvalidIdError,
        LanceMemError,
        ModelMismatchError,
        NotFoundError,
        PermissionDeniedError,
        ReservedKeyError,
        ScopeConflictError,
        ScopeRequiredError,
        StorageError,
        ValidationError,
    )
    from .memory.facade import Memory
    from .search.embeddings import FastEmbedder
    from .storage.store import Store


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    if name in _ERRORS:
        return getattr(import_module("lancemem.core.errors"), name)
    raise AttributeError(f"module 'lancemem' has no attribute {name!r}")
