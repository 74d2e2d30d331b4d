"""The library's layout: one package or module per stage, on floors in the order the data
flows, imports that only run down (or along a floor, without a circle), no module over 400
lines, no function over 60 lines and no function-level import of the library that could hide
a circle.

`python tests/test_architecture.py` prints the map: each floor, its rooms (the stage
packages and modules of `unetcap`), the arrows out of each room, and the arrows that run
back up (none, or the test fails).
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

# Floors, lowest first: what every stage shares, then the stages in the order the data
# flows (docs/design.md §6). A room may import from its own floor or a lower one.
FLOORS = (
    ("unetcap", "unetcap.study", "unetcap.provenance", "unetcap.scoring", "unetcap.schema"),
    ("unetcap.common",),
    ("unetcap.cohort", "unetcap.metrics"),
    ("unetcap.phantom", "unetcap.prepare", "unetcap.splits"),
    ("unetcap.segmentations", "unetcap.train", "unetcap.merge"),
    ("unetcap.analysis",),
    ("unetcap.figures",),
)


def modules() -> dict[str, Path]:
    """Every module of the library by its dotted name (a package by its own name)."""
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.with_suffix("").relative_to(SRC).parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def room(module: str) -> str:
    """The stage a module belongs to: `unetcap.<first part>`."""
    return ".".join(module.split(".")[:2])


def imports(module: str, path: Path, known) -> list[tuple[str, bool]]:
    """(imported library module, whether the import is inside a function) of `module`."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    inside = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) for n in ast.walk(f) if n is not f}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found += [(name, id(node) in inside) for name in names if name.split(".")[0] == "unetcap" and name in known]
    return found


def graph() -> tuple[nx.DiGraph, list[str]]:
    """The import graph between library modules, and the function-level imports."""
    known = modules()
    g, hidden = nx.DiGraph(), []
    for module, path in known.items():
        g.add_node(module)
        for target, in_function in imports(module, path, known):
            if target != module:
                g.add_edge(module, target)
            if in_function:
                hidden.append(f"{module} imports {target} inside a function")
    return g, hidden


def floor_of(name: str) -> int:
    return next(i for i, rooms in enumerate(FLOORS) if name in rooms)


def arrows_back_up(g: nx.DiGraph) -> list[str]:
    return [
        f"{room(a)} (floor {floor_of(room(a))}) -> {room(b)} (floor {floor_of(room(b))})"
        for a, b in g.edges
        if room(a) != room(b) and floor_of(room(b)) > floor_of(room(a))
    ]


def test_every_room_is_on_a_floor():
    rooms = {room(m) for m in modules()}
    placed = {r for floor in FLOORS for r in floor}
    assert rooms == placed, (
        f"rooms without a floor: {sorted(rooms - placed)}; floors without a room: {sorted(placed - rooms)}"
    )


def test_imports_run_down_the_floors_without_a_circle():
    g, hidden = graph()
    assert arrows_back_up(g) == []
    assert list(nx.simple_cycles(g)) == []
    assert hidden == []


def test_no_module_or_function_is_too_long():
    long = []
    for module, path in modules().items():
        text = path.read_text()
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            long.append(f"{module}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {length} lines")
    assert long == []


def test_the_map_finds_an_arrow_back_up_and_a_circle():
    """The checks above can fail: an import from a lower floor up, and a circle, are found."""
    g = nx.DiGraph([("unetcap.common", "unetcap.analysis.run"), ("unetcap.analysis.run", "unetcap.common")])
    assert arrows_back_up(g) == ["unetcap.common (floor 1) -> unetcap.analysis (floor 5)"]
    assert list(nx.simple_cycles(g))


def main() -> None:
    g, hidden = graph()
    known = modules()
    for i in reversed(range(len(FLOORS))):
        print(f"floor {i}")
        for name in FLOORS[i]:
            members = [m for m in known if room(m) == name]
            lines = sum(len(known[m].read_text().splitlines()) for m in members)
            out = sorted({room(b) for a, b in g.edges if room(a) == name and room(b) != name})
            print(f"  {name}: {len(members)} modules, {lines} lines -> {', '.join(out) or 'nothing'}")
    back = arrows_back_up(g)
    print(f"arrows back up: {len(back)}" + "".join(f"\n  {a}" for a in back))
    print(f"circles: {len(list(nx.simple_cycles(g)))}; function-level imports of the library: {len(hidden)}")


if __name__ == "__main__":
    main()
