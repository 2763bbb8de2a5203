"""lancemem: long-term memory for AI assistants, over LanceDB, served by MCP.

The Python API is ``Memory`` (``from lancemem import Memory``); its errors are
in ``lancemem.errors``. ``Memory`` is imported on first use, so ``import
lancemem`` stays cheap for the server's start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Memory", "__version__"]

if TYPE_CHECKING:
    from .memory import Memory


def __getattr__(name: str) -> Any:
    if name == "Memory":
        from .memory import Memory

        return Memory
    raise AttributeError(f"module 'lancemem' has no attribute {name!r}")
