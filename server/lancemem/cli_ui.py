"""``lancemem ui``: the memory browser alone, on this machine, for stdio users.

The page that ``serve --transport streamable-http|sse`` serves beside its MCP
endpoint (serving/page.py), without an MCP endpoint: on 127.0.0.1 only, its
URL printed on stderr.
"""

from __future__ import annotations

import argparse
from typing import Any

from .core.config import Settings


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``ui`` command; ``common`` gives --db, --model and the ids (the scope it opens)."""
    ui = sub.add_parser("ui", parents=[common],
                        help="browse, search and edit memories in a web page on this machine")
    ui.add_argument("--port", type=int, help="port to serve on (default 8765; 0 picks a "
                                             "free one)")
    ui.add_argument("--host", help="loopback address to serve on (default 127.0.0.1)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the page until interrupted."""
    from .serving.serve import serve_page

    serve_page(settings)
    return 0
