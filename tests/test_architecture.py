"""Imports point one way: edges -> Memory -> storage | search -> core.

Parsed from the source, so a new module must be placed in a layer here, and
an import against the direction fails with the module and line that made it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "server" / "lancemem"

# Lower layers never import higher ones; storage and search never import each other.
LAYERS: dict[str, set[str]] = {
    "core": {"errors", "filters", "scoping", "config", "messages", "records", "runtime",
             "principal"},
    "storage": {"store", "storage_connection", "storage_retries", "storage_schema",
                "storage_meta", "storage_maintenance", "storage_sql", "memory_table", "history",
                "consistency", "snapshot", "tokens"},
    "search": {"embeddings", "retrieval"},
    "memory": {"memory", "memory_context", "memory_writer", "memory_searcher", "reindex"},
    "edge": {"mcp_models", "mcp_strict", "mcp_server", "mcp_auth", "serve", "http_limits",
             "jwt_auth", "jwks", "cli", "cli_tokens", "__init__", "__main__"},
}
MAY_IMPORT = {
    "core": {"core"},
    "storage": {"core", "storage"},
    "search": {"core", "search"},
    "memory": {"core", "storage", "search", "memory"},
    "edge": set(LAYERS),
}
# Only the storage layer talks to LanceDB.
STORAGE_LIBRARIES = {"lancedb", "lance"}


def layer_of(module: str) -> str:
    [layer] = [name for name, members in LAYERS.items() if module in members]
    return layer


def imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, imported name, is it one of ours) for every import in a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.append((node.lineno, node.module.split(".")[0], True))
            else:  # from . import history, or a name defined in __init__
                found += [(node.lineno, alias.name if (PACKAGE / f"{alias.name}.py").exists()
                           else "__init__", True) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, node.module.split(".")[0], False))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0], False) for alias in node.names]
    return found


def modules() -> list[Path]:
    return sorted(PACKAGE.glob("*.py"))


def test_every_module_has_a_layer() -> None:
    names = {path.stem for path in modules()}
    placed = set().union(*LAYERS.values())
    assert names == placed, f"unplaced: {names - placed}, gone: {placed - names}"


def test_imports_point_one_way() -> None:
    wrong = []
    for path in modules():
        layer = layer_of(path.stem)
        for line, name, ours in imports(path):
            if ours and layer_of(name) not in MAY_IMPORT[layer]:
                wrong.append(f"{path.name}:{line} ({layer}) imports {name} ({layer_of(name)})")
            if not ours and name in STORAGE_LIBRARIES and layer != "storage":
                wrong.append(f"{path.name}:{line} ({layer}) imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_imports_of_every_kind(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import lancedb.table\nfrom . import history as hist\n"
                      "from .store import Store\nfrom lance import dataset\n"
                      "from . import __version__\n"
                      "def f():\n    from .memory import Memory\n")
    assert sorted(imports(sample)) == [(1, "lancedb", False), (2, "history", True),
                                       (3, "store", True), (4, "lance", False),
                                       (5, "__init__", True), (7, "memory", True)]


# Only storage builds Arrow data or writes SQL around the where clauses that
# scoping and filters compile (the core's two compilers).
ARROW_LIBRARIES = {"pyarrow"}
SQL_HELPERS = {"sql_string", "sql_timestamp", "like_pattern"}
SQL_COMPILERS = {"filters", "scoping"}


def test_only_storage_writes_sql_or_builds_arrow() -> None:
    wrong = []
    for path in modules():
        if layer_of(path.stem) == "storage" or path.stem in SQL_COMPILERS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {alias.name for alias in node.names}
                if node.module.split(".")[0] in ARROW_LIBRARIES or names & SQL_HELPERS:
                    wrong.append(f"{path.name}:{node.lineno} imports from {node.module}")
            elif isinstance(node, ast.Import):
                wrong += [f"{path.name}:{node.lineno} imports {alias.name}" for alias in node.names
                          if alias.name.split(".")[0] in ARROW_LIBRARIES]
    assert not wrong, "\n".join(wrong)
