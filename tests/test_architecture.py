"""The house's layering, read from the source with ast (docs/architecture.md draws the same two tables).

An import counts wherever it is written (module level, inside a function, under TYPE_CHECKING), and
`from X import Y` where X.Y is a module counts as importing X.Y. Only our own packages are looked at.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cluster", "storage_node", "metadata", "gateway", "cli", "bench")
ANYTHING = frozenset(PACKAGES)
MAX_LINES = 500

# Top-level packages, bottom up, and what of ours each may import besides itself. An entry allows that
# module and everything under it; the gateway gets the storage seam and client and the index seam only.
LAYERS: dict[str, frozenset[str]] = {
    "cluster": frozenset(),
    "storage_node": frozenset({"cluster"}),
    "metadata": frozenset({"cluster"}),
    "gateway": frozenset(
        {
            "cluster",
            "storage_node.drive",
            "storage_node.fragment_format",
            "storage_node.client",
            "storage_node.protocol",
            "metadata.index",
            "metadata.records",
        }
    ),
    "cli": ANYTHING,
    "bench": ANYTHING,
}

# Rooms of metadata/ and gateway/, bottom up, and which other rooms of the same package each may import.
# A module belongs to the longest room name that prefixes it ("metadata" is the seam at metadata/'s root).
ROOMS: dict[str, frozenset[str]] = {
    "metadata": frozenset(),
    "metadata.local": frozenset({"metadata"}),
    "metadata.replica": frozenset({"metadata"}),
    "metadata.replicated": frozenset({"metadata", "metadata.replica"}),
    "metadata.remote": frozenset({"metadata", "metadata.replica"}),
    "gateway": frozenset(),  # gateway/__init__.py: its docstring only
    "gateway.s3": frozenset(),
    "gateway.accounts": frozenset(),
    "gateway.objects": frozenset(),
    "gateway.care": frozenset({"gateway.s3", "gateway.objects"}),
    "gateway.siblings": frozenset(),
    "gateway.context": frozenset(
        {"gateway.s3", "gateway.accounts", "gateway.objects", "gateway.care", "gateway.siblings"}
    ),
    "gateway.metrics": frozenset({"gateway.care"}),
    "gateway.handlers": frozenset({"gateway.s3", "gateway.accounts", "gateway.objects", "gateway.context"}),
    "gateway.admin": frozenset(
        {"gateway.s3", "gateway.accounts", "gateway.objects", "gateway.care", "gateway.context"}
    ),
    "gateway.console": frozenset({"gateway.s3", "gateway.accounts"}),
    "gateway.app": frozenset(
        {
            "gateway.s3",
            "gateway.accounts",
            "gateway.objects",
            "gateway.care",
            "gateway.siblings",
            "gateway.context",
            "gateway.metrics",
            "gateway.handlers",
            "gateway.admin",
        }
    ),
}
ROOMED = ("metadata", "gateway")


@cache
def modules() -> dict[str, Path]:
    """Every module of our packages by dotted name (a package by its own name, from its __init__.py)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


@cache
def imports() -> dict[str, tuple[tuple[str, int], ...]]:
    """module -> the modules of ours it imports, with the line of each import."""
    known = modules()
    graph: dict[str, tuple[tuple[str, int], ...]] = {}
    for module, path in known.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found: list[tuple[str, int]] = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(alias.name, node.lineno) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    source = node.module or ""
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    found.append((sub if sub in known else source, node.lineno))
        graph[module] = tuple(sorted({(m, line) for m, line in found if m.split(".")[0] in PACKAGES}))
    return graph


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def room_of(module: str) -> str | None:
    rooms = [r for r in ROOMS if _under(module, r)]
    return max(rooms, key=len) if rooms else None


def _where(module: str, line: int) -> str:
    return f"{modules()[module].relative_to(ROOT)}:{line}"


def test_packages_import_only_lower_layers() -> None:
    wrong = []
    for module, targets in imports().items():
        package = module.split(".")[0]
        for target, line in targets:
            if target.split(".")[0] != package and not any(_under(target, ok) for ok in LAYERS[package]):
                wrong.append(f"{_where(module, line)}: {module} imports {target}")
    assert not wrong, "imports against the layer order (docs/architecture.md):\n" + "\n".join(wrong)


def test_rooms_import_only_the_rooms_below_them() -> None:
    wrong = []
    for module, targets in imports().items():
        if module.split(".")[0] not in ROOMED:
            continue
        room = room_of(module)
        if room is None:
            wrong.append(f"{module} is in no room of the table")
            continue
        for target, line in targets:
            other = room_of(target) if target.split(".")[0] == module.split(".")[0] else room
            if other != room and other not in ROOMS[room]:
                wrong.append(f"{_where(module, line)}: {module} ({room}) imports {target} ({other})")
    assert not wrong, "imports against the room order (docs/architecture.md):\n" + "\n".join(wrong)


def test_every_room_is_in_the_table() -> None:
    dirs = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for package in ROOMED
        for init in (ROOT / package).rglob("__init__.py")
    }
    assert not dirs - ROOMS.keys(), f"sub-packages missing from the ROOMS table: {sorted(dirs - ROOMS.keys())}"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def test_no_cycles_between_rooms() -> None:
    graph: dict[str, set[str]] = {}
    for module, targets in imports().items():
        room = room_of(module) if module.split(".")[0] in ROOMED else module.split(".")[0]
        for target, _ in targets:
            other = room_of(target) if target.split(".")[0] in ROOMED else target.split(".")[0]
            if room is not None and other is not None and other != room:
                graph.setdefault(room, set()).add(other)
    cycle = _cycle(graph)
    assert cycle is None, "rooms import each other in a cycle: " + " -> ".join(cycle or [])


def test_gateway_uses_seams_and_clients_only() -> None:
    """Never another service's server code, never a concrete index: the CLI composes those."""
    allowed = {m for m in LAYERS["gateway"] if m.split(".")[0] in ("storage_node", "metadata")}
    server = {m for m in modules() if m.split(".")[0] == "storage_node" and m not in allowed}
    concrete = {r for r in ROOMS if r.startswith("metadata.")}
    wrong = []
    for module, targets in imports().items():
        if module.split(".")[0] != "gateway":
            continue
        for target, line in targets:
            if target in server:
                wrong.append(f"{_where(module, line)}: {module} imports storage-node server code {target}")
            elif any(_under(target, r) for r in concrete):
                wrong.append(f"{_where(module, line)}: {module} imports the concrete index {target}")
    assert not wrong, "\n".join(wrong)


def test_only_the_cli_imports_the_gateway_app() -> None:
    wrong = [
        f"{_where(module, line)}: {module}"
        for module, targets in imports().items()
        for target, line in targets
        if _under(target, "gateway.app") and module != "gateway.app" and module.split(".")[0] != "cli"
    ]
    assert not wrong, "gateway.app imported outside cli/:\n" + "\n".join(wrong)


def test_every_package_says_in_one_line_what_it_holds() -> None:
    wrong = []
    for package in PACKAGES:
        for directory in sorted({p.parent for p in (ROOT / package).rglob("*.py")}):
            init = directory / "__init__.py"
            where = init.relative_to(ROOT)
            if not init.exists():
                wrong.append(f"{where}: missing")
                continue
            doc = ast.get_docstring(ast.parse(init.read_text()))
            if not doc or "\n" in doc.strip():
                wrong.append(f"{where}: wants a one-line docstring, has {doc!r}")
    assert not wrong, "\n".join(wrong)


def test_no_module_over_500_lines() -> None:
    skip = {"tests", "build", "dist"}
    long = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if parts[0] in skip or any(p.startswith(".") for p in parts):
            continue
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            long.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert not long, f"modules over {MAX_LINES} lines (split them by meaning):\n" + "\n".join(long)


def _doc_table(heading: str) -> dict[str, frozenset[str]]:
    """The rows of the table under `heading` in docs/architecture.md: first cell's name -> the names in the
    last cell ("anything" for every package, no names for nothing)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split(heading, 1)[1].split("\n#", 1)[0]
    rows: dict[str, frozenset[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| `") or len(cells) < 2:
            continue
        name = re.findall(r"`([^`]+)`", cells[0])[0]
        names = frozenset(re.findall(r"`([^`]+)`", cells[-1]))
        rows[name] = ANYTHING if cells[-1].lower().startswith("anything") else names
    return rows


def test_the_doc_draws_the_same_tables() -> None:
    assert _doc_table("## Packages") == LAYERS
    assert _doc_table("## Rooms") == ROOMS
