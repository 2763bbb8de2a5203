"""Storage: the only package that talks to LanceDB (tables, schema, retries, upkeep)."""
