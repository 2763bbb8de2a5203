"""Imports point one way: edges -> memory -> storage | search -> core.

The package folders are the layers (server/lancemem/core, storage, search,
memory, mcp, serving; the modules at the top are the CLI and the package
itself). Parsed from the source, so a new folder must be given a layer here,
and an import against the direction fails with the module and line that made
it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "server" / "lancemem"
TOP = "top"  # cli.py, cli_tokens.py, __main__.py (and __init__.py)
INIT = "package"  # names defined in lancemem/__init__.py (__version__): anyone may import them

# Lower layers never import higher ones; storage and search never import each other.
LAYERS = {"core": 0, "storage": 1, "search": 1, "memory": 2, "mcp": 3, "serving": 4, TOP: 5}
MAY_IMPORT = {
    "core": {"core"},
    "storage": {"core", "storage"},
    "search": {"core", "search"},
    "memory": {"core", "storage", "search", "memory"},
    "mcp": {"core", "storage", "search", "memory", "mcp"},
    "serving": {"core", "storage", "search", "memory", "mcp", "serving"},
    TOP: set(LAYERS),
}
# Only the storage layer talks to LanceDB.
STORAGE_LIBRARIES = {"lancedb", "lance"}


def layer_of(path: Path) -> str:
    """The layer of a module: its folder under the package, or TOP."""
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else TOP


def imports(path: Path, text: str | None = None) -> list[tuple[int, str | None, str]]:
    """(line, layer imported from (None: not ours), name) for every import in a module
    (``text``: its source, if not read from ``path``)."""
    here = path.relative_to(PACKAGE).parent.parts  # () at the top
    found: list[tuple[int, str | None, str]] = []
    for node in ast.walk(ast.parse(path.read_text() if text is None else text)):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(here[:len(here) - (node.level - 1)]) if node.level > 1 else list(here)
            target = [*base, *(node.module.split(".") if node.module else [])]
            if not target:  # from . import x / from .. import x: the names are modules
                found += [(node.lineno, _layer(alias.name), alias.name) for alias in node.names]
            else:
                found.append((node.lineno, _layer(target[0]), ".".join(target)))
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, _ours(node.module), node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, _ours(alias.name), alias.name) for alias in node.names]
    return found


def _layer(first: str) -> str:
    if first in LAYERS:
        return first
    return TOP if (PACKAGE / f"{first}.py").exists() else INIT


def _ours(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "lancemem":
        return None
    return _layer(parts[1]) if len(parts) > 1 else TOP


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_folder_is_a_layer() -> None:
    folders = {path.relative_to(PACKAGE).parts[0] for path in modules()
               if len(path.relative_to(PACKAGE).parts) > 1}
    assert folders == set(LAYERS) - {TOP}


def test_imports_point_one_way() -> None:
    wrong = []
    for path in modules():
        layer = layer_of(path)
        for line, imported, name in imports(path):
            if imported not in (None, INIT) and imported not in MAY_IMPORT[layer]:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} ({layer}) imports {name} "
                             f"({imported})")
            if imported is None and name.split(".")[0] in STORAGE_LIBRARIES and (
                    layer != "storage"):
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} ({layer}) imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_imports_of_every_kind() -> None:
    source = ("import lancedb.table\nfrom . import history as hist\n"
              "from ..core.errors import X\nfrom lance import dataset\n"
              "from .. import __version__\nimport lancemem.mcp.server\n"
              "from .. import cli\n"
              "def f():\n    from ..memory.facade import Memory\n")
    found = sorted(imports(PACKAGE / "storage" / "sample.py", source))  # only its place counts
    assert found == [(1, None, "lancedb.table"), (2, "storage", "storage"),
                     (3, "core", "core.errors"), (4, None, "lance"), (5, INIT, "__version__"),
                     (6, "mcp", "lancemem.mcp.server"), (7, TOP, "cli"),
                     (9, "memory", "memory.facade")]


def test_a_planted_upward_import_is_caught() -> None:
    found = imports(PACKAGE / "core" / "sample.py", "from ..storage.store import Store\n")
    assert [name for _, layer, name in found if layer not in MAY_IMPORT["core"]] == [
        "storage.store"]


# Only storage builds Arrow data or writes SQL around the where clauses that
# scoping and filters compile (the core's two compilers).
ARROW_LIBRARIES = {"pyarrow"}
SQL_HELPERS = {"sql_string", "sql_timestamp", "like_pattern"}
SQL_COMPILERS = {"filters", "scoping"}


def test_only_storage_writes_sql_or_builds_arrow() -> None:
    wrong = []
    for path in modules():
        if layer_of(path) == "storage" or (layer_of(path) == "core"
                                           and path.stem in SQL_COMPILERS):
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
