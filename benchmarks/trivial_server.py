"""The SDK's trivial server: one tool returning a constant, for benchmarks.hop to compare.

    python -m benchmarks.trivial_server                          # stdio
    python -m benchmarks.trivial_server --transport streamable-http --port 8766

Built with the same SDK and served the same way as ``lancemem serve``
(MCPServer, its own stdio or streamable HTTP transport), so what a lancemem
tool costs beyond it is lancemem's.
"""

from __future__ import annotations

import argparse

from mcp.server.mcpserver import MCPServer


def build() -> MCPServer:
    """An MCPServer with one tool, ``constant``, that returns the same text every time."""
    server = MCPServer(name="trivial")

    @server.tool()
    def constant() -> str:
        """Return a constant."""
        return "ok"

    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    server = build()
    if args.transport == "stdio":
        server.run()
    else:
        server.run("streamable-http", host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
