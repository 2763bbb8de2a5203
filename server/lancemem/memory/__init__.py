"""The memory library: ``Memory`` and the writer and searcher under it."""

from .facade import Memory

__all__ = ["Memory"]
