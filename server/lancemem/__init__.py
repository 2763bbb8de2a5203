"""lancemem: long-term memory for AI assistants, over LanceDB, served by MCP.

The Python API is ``lancemem.memory.Memory``; errors live in ``lancemem.errors``.
"""

__version__ = "0.1.0"
