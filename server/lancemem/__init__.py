"""lancemem: long-term memory for AI assistants, over LanceDB, served by MCP."""

from .errors import LanceMemError
from .memory import Memory

__all__ = ["LanceMemError", "Memory"]
__version__ = "0.1.0"
