"""The MCP layer: tools, their models, strict call checks, authentication hooks."""
